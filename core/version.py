"""The version of the code this process runs: package version and git SHA."""

from __future__ import annotations

import contextlib
import os
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version as _pkg_version
from pathlib import Path

from contracts.machine_files import CODE_SHA_FILE

SOURCE_ROOT = Path(__file__).resolve().parent.parent


@cache
def package_version() -> str:
    try:
        return _pkg_version("fleetd")
    except PackageNotFoundError:
        return "0+unknown"


@cache
def git_sha() -> str | None:
    """The SHA of the code this process runs: the marker of an installed code directory
    (``~/.fleet/code/<sha>``), else FLEET_GIT_SHA (deployments), else the checkout's HEAD."""
    with contextlib.suppress(OSError):
        return (SOURCE_ROOT / CODE_SHA_FILE).read_text().strip()
    if sha := os.environ.get("FLEET_GIT_SHA"):
        return sha
    try:
        out = subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None
