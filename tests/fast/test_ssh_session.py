"""An ssh session's start (daemon/ssh_session.py, the machine SSH server's ForceCommand), run
as sshd runs it: the session gets the machine's environment by the one rule (the .env over the
container's variables over sshd's own), then becomes the command asked for, or a login shell.
Through a real sshd on a docker machine: tests/integration/test_docker_ssh.py."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from base.dotenv import render
from base.version import SOURCE_ROOT
from contracts.daemon.machine_files import CONTAINER_ENV_FILE, ENV_FILE

#: As the image's sshd_config says it (providers/docker/image.py), with this checkout's code.
FORCE_COMMAND = f"PYTHONPATH={SOURCE_ROOT} exec {sys.executable} -s -P -m daemon.ssh_session"


async def session(home: Path, command: str | None, stdin: bytes = b"") -> str:
    """What a session printed, started as sshd starts one: ``$SHELL -c <ForceCommand>`` with
    the variables sshd sets (and the client's command, if any, in SSH_ORIGINAL_COMMAND)."""
    env = {"HOME": str(home), "SHELL": "/bin/sh", "USER": "fleet", "PATH": os.defpath,
           "SSH_CONNECTION": "127.0.0.1 5 127.0.0.1 22", "A": "sshd", "B": "sshd"}  # fmt: skip
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", FORCE_COMMAND, env=env, cwd=home, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode == 0, out
    return out.decode()


async def test_a_command_gets_the_machines_environment_and_a_change_the_next(
    tmp_path: Path,
) -> None:
    (tmp_path / ".fleet").mkdir()
    (tmp_path / CONTAINER_ENV_FILE).write_text(render({"B": "container", "C": "container"}))
    (tmp_path / ENV_FILE).write_text(render({"C": "dotenv"}))
    script = 'echo "$A $B $C ${SSH_ORIGINAL_COMMAND-none} $SSH_CONNECTION"'
    said = await session(tmp_path, script)
    assert said == "sshd container dotenv none 127.0.0.1 5 127.0.0.1 22\n"
    (tmp_path / ENV_FILE).write_text(render({"C": "changed"}))
    assert await session(tmp_path, "printenv C") == "changed\n"


async def test_no_command_is_a_login_shell_reading_its_input(tmp_path: Path) -> None:
    (tmp_path / ".fleet").mkdir()
    (tmp_path / ENV_FILE).write_text(render({"C": "dotenv"}))
    said = await session(tmp_path, None, b'echo "$0 $C"\n')
    assert said == "-sh dotenv\n"
