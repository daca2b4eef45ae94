"""What a child process writes, read as it is written and bounded then, never after.

A machine's output (a root command's, a listing read inside its sandbox, a tool's complaints
about each of its files) is the machine's to make as large as it likes, and the platform's
process that reads it runs outside the machine's memory limit: reading it to its end first and
cutting it afterwards lets a machine grow the platform's process until the host runs out.

Each stream keeps at most ``cap`` bytes (its first, or its last: ``keep``); the rest is read
and dropped. Reading goes on, so the child never blocks on a full pipe and runs to its own end
(its exit status and its time are what they would be unread), while what is kept stays
bounded; ``truncated`` says that something was dropped. Once the child has exited, a process it
left behind may still hold its pipes (runsc hands a command's pipes to the sandbox: one started
in the background there keeps them): they are read for ``PIPE_GRACE_S`` more, then let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from base.fd_readable import Readable
from base.tasks import cancel_and_join, finished

CHUNK = 1 << 16
#: After the child exits, how long its pipes are still read (see the module).
PIPE_GRACE_S = 2.0
Keep = Literal["head", "tail"]


class CappedSink:
    """At most ``cap`` bytes of what it is given: the first of them, or the last."""

    def __init__(self, cap: int, keep: Keep = "head") -> None:
        self.cap = cap
        self.keep = keep
        self.truncated = False
        self._buf = bytearray()

    def take(self, chunk: bytes) -> None:
        if self.keep == "head":
            room = self.cap - len(self._buf)
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[: max(room, 0)]
            self._buf += chunk
            return
        self._buf += chunk[-self.cap :]
        if len(self._buf) > self.cap:
            self.truncated = True
            del self._buf[: len(self._buf) - self.cap]

    def data(self) -> bytes:
        return bytes(self._buf)


@dataclass(frozen=True)
class Captured:
    """A child's end: its exit status (negative: the signal that ended it), what was kept of
    each stream, whether any was cut, whether it was killed at its timeout."""

    returncode: int
    stdout: bytes
    stderr: bytes
    truncated: bool
    timed_out: bool = False

    def completed(self, argv: Sequence[str]) -> Completed:
        """As ``subprocess.run(..., text=True)`` answers, with ``truncated``."""
        return Completed(list(argv), self.returncode, self.stdout.decode(errors="replace"),
                         self.stderr.decode(errors="replace"), self.truncated)  # fmt: skip


class Completed(subprocess.CompletedProcess[str]):
    """``subprocess.run``'s answer (text), and whether a stream was cut at its cap."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str,
                 truncated: bool = False) -> None:  # fmt: skip
        super().__init__(args, returncode, stdout, stderr)
        self.truncated = truncated


def _kill_group(pid: int) -> None:
    """The child leads a session of its own (each runner starts it so): it and what it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _pump(fd: int, sink: CappedSink) -> None:
    """``fd`` read to its end into ``sink``; one chunk per turn of the loop, so a flood never
    holds it up."""
    os.set_blocking(fd, False)
    async with Readable(fd) as readable:
        while True:
            await readable.wait()
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                return
            sink.take(chunk)


async def run_capped(
    argv: Sequence[str], *, cap: int, timeout_s: float | None,
    env: dict[str, str] | None = None, keep: Keep = "head",
) -> Captured:  # fmt: skip
    """``argv`` run to its end (stdin empty, a session of its own), at most ``cap`` bytes of
    each stream kept; past ``timeout_s`` it and its process group are killed (``timed_out``).
    Cancelled, they are killed too. The pipes are the caller's own, not asyncio's: its
    ``wait()`` would wait for them to close as well as for the child."""
    out, err = CappedSink(cap, keep), CappedSink(cap, keep)
    r_out, w_out = os.pipe2(os.O_CLOEXEC)
    r_err, w_err = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=w_out, stderr=w_err, env=env,
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(w_out)
            os.close(w_err)
        pumps = [asyncio.create_task(_pump(r_out, out)), asyncio.create_task(_pump(r_err, err))]
        try:
            timed_out = await _wait(proc, timeout_s)
            await asyncio.wait(pumps, timeout=PIPE_GRACE_S)
        finally:
            if proc.returncode is None:  # cancelled: killed before anything is awaited, and
                _kill_group(proc.pid)  # reaped however often the caller cancels meanwhile
                await finished(proc.wait())
            await cancel_and_join(*pumps)
    finally:
        os.close(r_out)
        os.close(r_err)
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return Captured(code, out.data(), err.data(), out.truncated or err.truncated, timed_out)


async def _wait(proc: asyncio.subprocess.Process, timeout_s: float | None) -> bool:
    """Until ``proc`` exits; killed with its group past ``timeout_s`` (True then)."""
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
        return False
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        return True


def run_capped_sync(argv: Sequence[str], *, cap: int, timeout_s: float | None,
                    env: dict[str, str] | None = None, pass_fds: Sequence[int] = (),
                    keep: Keep = "head") -> Captured:  # fmt: skip
    """``run_capped`` for a thread: ``argv`` run to its end, at most ``cap`` bytes of each
    stream kept. Past ``timeout_s`` (None: none) it and its group are killed and
    ``TimeoutExpired`` raised, as ``subprocess.run`` does."""
    out, err = CappedSink(cap, keep), CappedSink(cap, keep)
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, pass_fds=pass_fds,
                          start_new_session=True) as proc:  # fmt: skip
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
            exited = _pump_sync(proc.pid, {proc.stdout.fileno(): out, proc.stderr.fileno(): err},
                                deadline)  # fmt: skip
        finally:
            if proc.poll() is None:
                _kill_group(proc.pid)
        proc.wait()
    if not exited:
        raise subprocess.TimeoutExpired(list(argv), timeout_s or 0.0, out.data(), err.data())
    return Captured(proc.returncode, out.data(), err.data(), out.truncated or err.truncated)


def _pump_sync(pid: int, sinks: dict[int, CappedSink], deadline: float) -> bool:
    """Each descriptor read into its sink until the child has exited and all are at their
    end, or ``PIPE_GRACE_S`` after its exit (its pidfd readable); whether it exited before
    ``deadline``."""
    pidfd = os.pidfd_open(pid)
    exited = False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            for fd in sinks:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            until = deadline
            while selector.get_map() and (left := until - time.monotonic()) > 0:
                for key, _ in selector.select(None if left == math.inf else left):
                    if key.fd == pidfd:
                        exited, until = True, min(until, time.monotonic() + PIPE_GRACE_S)
                        selector.unregister(pidfd)
                    elif chunk := os.read(key.fd, CHUNK):
                        sinks[key.fd].take(chunk)
                    else:
                        selector.unregister(key.fd)
    finally:
        os.close(pidfd)
    return exited


def json_text(data: bytes, budget: int) -> tuple[str, bool]:
    """``data`` as text, cut so that it takes at most ``budget`` bytes as a JSON string (a
    control byte takes six there, an undecodable one three): an answer of a few streams fits
    one message. Whether it was cut."""
    text = data.decode(errors="replace")
    size = len(msgspec.json.encode(text))
    cut = False
    while size > budget:
        text, cut = text[: max(len(text) * budget // size - 1, 0)], True
        size = len(msgspec.json.encode(text))
    return text, cut
