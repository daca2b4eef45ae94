"""``tool.gitClone``: a repo's branch cloned with the daemon's own runtime, for an image that
has no git (a static busybox, distroless, a slim base).

The platform brings its interpreter into any image (read-only, run through its own loader), so
the clone runs there: a child process of the daemon's interpreter with dulwich (a git written
in Python), as the machine's user, in the machine's own namespaces (its egress policy holds)
and killed at its timeout like any command. The image's git is never needed, nor a shell, nor
the image's C library. The result is an ordinary checkout (``.git`` with its origin and
branch) that a git installed later reads as its own.

Run as ``python -m daemon.gitclone URL BRANCH PATH [--check]`` (the credentials, if any, in
``FLEET_GIT_USERNAME`` and ``FLEET_GIT_PASSWORD``: never in argv, never on disk).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from contracts.daemon.rpc import EXIT_CLONE_UNFINISHED, ExecCommandParams, GitCloneParams
from daemon.supervision.nodump import DAEMON_FLAGS, python_argv

USER_VAR = "FLEET_GIT_USERNAME"
PASSWORD_VAR = "FLEET_GIT_PASSWORD"  # noqa: S105 - a variable name


def clone_command(p: GitCloneParams) -> ExecCommandParams:
    """The child that clones ``p``: this interpreter, through its loader, with the daemon's
    own module path (its children's environment has none of it)."""
    env = {"PYTHONPATH": os.pathsep.join(x for x in sys.path if x), "GIT_TERMINAL_PROMPT": "0"}
    if p.username is not None:
        env[USER_VAR] = p.username
    if p.password is not None:
        env[PASSWORD_VAR] = p.password
    argv = python_argv(*DAEMON_FLAGS, "-m", "daemon.gitclone", p.url, p.branch, p.path,
                       *(["--check"] if p.check_only else []))  # fmt: skip
    return ExecCommandParams(command=argv, timeout_s=p.timeout_s, env=env)


def checkout_state(path: Path, url: str) -> tuple[int, str]:
    """``(0, branch)`` if ``path`` is a finished checkout of ``url``: its own repository, the
    same origin, a HEAD that resolves and an index (a clone writes the index last, after the
    work tree). ``(EXIT_CLONE_UNFINISHED, "")`` if it is a repository of ``url`` with no index
    yet: a clone fetching or checking out, or one cut off. Else ``(1, "")``."""
    from dulwich.repo import Repo

    git = path / ".git"
    try:
        if not git.is_dir():
            return 1, ""
        with Repo(str(path)) as repo:
            if repo.get_config().get((b"remote", b"origin"), b"url") != url.encode():
                return 1, ""
            if not (git / "index").is_file():
                return EXIT_CLONE_UNFINISHED, ""
            repo.head()
        head = (git / "HEAD").read_text(errors="replace").strip()
        return 0, head.removeprefix("ref: refs/heads/")
    except Exception as exc:  # noqa: BLE001 - the child's boundary: whatever it could not read
        print(f"{path}: not read as a checkout of {url}: {exc!r}"[:300], file=sys.stderr)
        return 1, ""


def main(argv: list[str]) -> int:
    url, branch, path, *flags = argv
    target = Path(path)
    state, current = checkout_state(target, url)
    if flags == ["--check"]:
        print(current)
        return state
    if state == 0:
        print(f"{path} is already a checkout of {url}")
        return 0
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(f"fatal: destination path '{path}' already exists and is not empty", file=sys.stderr)
        return 128
    from dulwich import porcelain

    user, password = os.environ.get(USER_VAR), os.environ.get(PASSWORD_VAR)
    # The clone's reflog names someone: an image may have no user list to take a name from.
    if not any(os.environ.get(v) for v in ("LOGNAME", "USER", "LNAME", "USERNAME")):
        os.environ["USER"] = "fleet"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # as git clone makes them
        if user is not None and password is not None:
            porcelain.clone(url, str(target), branch=branch, checkout=True,
                            errstream=sys.stderr.buffer, username=user,
                            password=password)  # fmt: skip
        else:
            porcelain.clone(url, str(target), branch=branch, checkout=True,
                            errstream=sys.stderr.buffer)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the child's boundary: said, and a git-like exit
        print(f"fatal: cloning {url} (branch {branch}): {exc}", file=sys.stderr)
        return 128
    print(f"cloned {url} (branch {branch}) into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
