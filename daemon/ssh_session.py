"""``python -m daemon.ssh_session``: the ForceCommand of a machine's SSH server
(providers/docker/image.py ``SSHD_CONFIG_TEXT``), so that an ssh session gets the machine's
environment by the rule of every process the daemon starts (daemon/processes/env.py): sshd's own
session variables in the place of the daemon's, then the container's variables, then the
pushed ``.env``. Both files are read as the session starts: a push reaches the next session.

Then it becomes what the client asked for, as sshd would have run it: a command through the
user's shell (``$SHELL -c``), or with none a login shell (``-sh``). A subsystem is a command
too (sftp is configured as its external server: sshd's own in-process one would bypass this).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from base.logs import configure_logging
from daemon.processes.env import ProcessEnv

#: What sshd sets when a ForceCommand replaced the client's command; a plain session has none.
ORIGINAL_COMMAND = "SSH_ORIGINAL_COMMAND"


def session(environ: Mapping[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """The program, its argv and its environment for the session sshd started us for."""
    given = dict(environ)
    command = given.pop(ORIGINAL_COMMAND, None)
    user = pwd.getpwuid(os.getuid())
    shell = given.get("SHELL") or user.pw_shell or "/bin/sh"
    home = Path(given.get("HOME") or user.pw_dir)
    env = ProcessEnv(home, given)()
    name = os.path.basename(shell)
    argv = [f"-{name}"] if command is None else [name, "-c", command]
    return shell, argv, env


def main() -> None:
    # A warning (a .env that does not parse) to stderr: stdout is the session's, or sftp's.
    configure_logging(level="warning")
    shell, argv, env = session(os.environ)
    os.execve(shell, argv, env)  # noqa: S606 - the shell, as sshd runs it


if __name__ == "__main__":
    main()
