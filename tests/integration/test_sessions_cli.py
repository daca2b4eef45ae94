"""`fleet machines shell` and `fleet machines sessions` as a user runs them: the real CLI process,
on a pipe and on a real local terminal (a PTY), against the stack and a real daemon."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_refresh import ready_machine
from tests.waiters import wait_until

SHELL = ["bash", "--norc", "--noprofile", "-i"]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "FLEET_URL": f"http://127.0.0.1:{settings.port}",
            "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip


def _fleet(*args: str) -> list[str]:
    return [sys.executable, "-c", "from fleet.cli.entry import main; main()", *args]


async def test_shell_on_a_pipe_types_stdin_and_exits_with_the_remote_code(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "cli-pipe")
    cli = await asyncio.create_subprocess_exec(
        *_fleet("machines", "shell", mid, "--", *SHELL), env=_env(settings),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(b"echo hi-$((40+2))\nexit 4\n"), 60)
    assert b"hi-42" in out, (out, err)
    assert cli.returncode == 4
    assert await stack.list_sessions(mid) == []  # an exited shell's session is closed


async def test_shell_on_a_stopped_machine_starts_it_says_so_and_waits(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "cli-asleep")
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=30)
    cli = await asyncio.create_subprocess_exec(
        *_fleet("machines", "shell", mid, "--", *SHELL), env=_env(settings),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(b"echo up-$((40+2))\nexit 0\n"), 120)
    assert f"machine {mid} is stopped; starting it".encode() in err, err
    assert f"machine {mid} is ready".encode() in err, err
    assert b"up-42" in out, (out, err)
    assert cli.returncode == 0
    assert (await stack.get_machine(mid)).status.value == "ready"


class LocalTerminal:
    """The CLI on a real terminal of its own: what it prints, what we type, the window size."""

    def __init__(self, cols: int, rows: int) -> None:
        self.master, self.slave = pty.openpty()
        self.resize(cols, rows)
        os.set_blocking(self.master, False)
        self.text = b""
        #: ``until`` looks only past here.
        self.mark = 0

    def resize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    async def until(self, wanted: bytes, timeout: float = 30) -> None:
        try:
            await asyncio.wait_for(self._until(wanted), timeout)
        except TimeoutError:
            raise AssertionError(f"no {wanted!r} in {self.text[-500:]!r}") from None

    async def _until(self, wanted: bytes) -> None:
        while wanted not in self.text[self.mark :]:
            try:
                self.text += os.read(self.master, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.02)
            except OSError:  # EIO: the CLI is gone
                raise AssertionError(f"no {wanted!r} in {self.text[-500:]!r}") from None


async def test_shell_on_a_terminal_is_raw_follows_resizes_and_detaches(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "cli-tty")
    term = LocalTerminal(100, 30)
    cli = await asyncio.create_subprocess_exec(
        *_fleet("machines", "shell", mid, "--", *SHELL), env=_env(settings),
        stdin=term.slave, stdout=term.slave, stderr=term.slave, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )  # fmt: skip
    try:
        await term.until(b"$ ")  # the prompt: bash drops what is typed while it starts
        term.type(b"stty size\r")
        await term.until(b"30 100")  # the local size went along at the start
        term.resize(120, 40)
        cli.send_signal(signal.SIGWINCH)  # what the kernel does for a resized window
        [session] = await stack.list_sessions(mid)
        await wait_until(lambda: _size(stack, mid, (120, 40)), timeout=10)
        term.type(b"stty size\r")
        await term.until(b"40 120")
        term.mark = len(term.text)
        term.type(b"\x03")  # raw: Ctrl-C is a byte for the remote shell, not a signal here
        await term.until(b"$ ")  # a fresh prompt (readline drops what is typed meanwhile)
        term.type(b"echo still-$((1+2))\r")
        await term.until(b"still-3")
        assert cli.returncode is None
        term.type(b"\r~.")  # detach
        assert await asyncio.wait_for(cli.wait(), 20) == 0
        await term.until(b"detached")
        [still] = await stack.list_sessions(mid)
        assert (still.session_id, still.running) == (session.session_id, True)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
        os.close(term.slave)
    # Back through `sessions attach` (on a pipe this time): the scrollback, then the exit code.
    again = await asyncio.create_subprocess_exec(
        *_fleet("machines", "sessions", "attach", mid, session.session_id), env=_env(settings),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(again.communicate(b"exit 6\n"), 60)
    assert b"still-3" in out
    assert again.returncode == 6


async def _size(stack: FleetClient, mid: str, size: tuple[int, int]) -> bool:
    [info] = await stack.list_sessions(mid)
    return (info.cols, info.rows) == size
