"""git as the tests run it: a fixed author, and the suite's global config (which trusts every
directory: the tests' repositories belong to whoever made them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": str(Path(__file__).with_name("git-trust-all.gitconfig")),
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def repo_with(tmp_path: Path, files: dict[str, str], message: str = "env") -> Path:
    """A repository at ``tmp_path/work`` with ``files`` committed on ``main``."""
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return work
