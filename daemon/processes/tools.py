"""The daemon's tools: write a file, run an argv. No shell anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import signal
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from contracts.daemon.rpc import (
    EXIT_NOT_FOUND,
    ExecCommandParams,
    ExecCommandResult,
    WriteFileParams,
    WriteFileResult,
)
from contracts.errors import FileNotFound, FleetError, InvalidParams, ToolError, WrongFileKind
from daemon.files import homefs
from daemon.processes.env import ProcessEnv

log = structlog.get_logger(__name__)

#: Set, to a value of its own, in each command's environment: when the command ends (or times
#: out), every process still carrying it is ended too, even one that left the command's
#: session with setsid. (One that also clears its environment escapes this; it still ends
#: with the machine: archive ends the machine's whole pid namespace.)
EXEC_MARK = "FLEET_EXEC_ID"
_READ_CHUNK = 64 * 1024
#: After a command exits, how long its output pipes may stay open; a background child that
#: still holds them then is killed with the rest of the command's process group.
_PIPE_GRACE_S = 2.0
#: Called with ("stdout" | "stderr", bytes) for each piece of output kept.
OnChunk = Callable[[str, bytes], Awaitable[None]]


def resolve_path(home: Path, path: str, field: str = "$.path") -> Path:
    """``~`` and relative paths resolve against the machine's home; absolute paths stay."""
    if path == "~" or path.startswith("~/"):
        return home / path[2:]
    if path.startswith("~"):
        raise InvalidParams(f"{path!r}: ~user paths are not supported", field=field)
    p = Path(path)
    return p if p.is_absolute() else home / p


def working_dir(home: Path, cwd: str | None) -> Path:
    """The directory a command starts in: ``cwd`` as resolve_path resolves it (the home
    without one). ToolError when it is not a directory; BadPath when the path itself cannot
    be used (a name too long, a link loop), as the file tools say (homefs.fs_error)."""
    if not cwd:
        return home
    path = resolve_path(home, cwd, "$.cwd")
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        is_dir = False
    except OSError as exc:
        raise homefs.fs_error(f"cwd {path}", exc) from None
    if not is_dir:
        raise ToolError(f"cwd {path} is not a directory on the machine")
    return path


def write_file(home: Path, params: WriteFileParams, umask: int | None = None) -> WriteFileResult:
    """Atomic write: readers see the old file or the new one, never a half-written one, and
    the file has its final mode from the moment it exists (a .env is never world-readable).

    The path is walked by descriptors (homefs): no directory on the way can lead out of the
    home, not even one swapped for a link while the write runs. A link at the path itself is
    replaced, never written through; one that points out of the home is refused.

    ``umask``: the process's umask, if the caller knows it; then the mode is fixed with an
    extra fchmod only when the umask would change it (one system call fewer per write)."""
    data = params.content.encode()

    def attempt() -> WriteFileResult:
        with homefs.walk(str(home), params.path, make_dirs=True) as found:
            dir_fd, name = found.entry()
            if homefs.link_target(dir_fd, name) is not None:
                homefs.refuse_link_out(str(home), params.path)
            _write_at(dir_fd, name, found.shown, data, params.mode, umask)
        return WriteFileResult(path=found.shown, bytes_written=len(data))

    try:
        return homefs.retrying(attempt)
    except (FileNotFound, WrongFileKind) as exc:  # writeFile's errors stay what they were
        raise ToolError(f"cannot write {params.path}: {exc.message}", data=exc.data) from None


def _write_at(dir_fd: int, name: str, shown: str, data: bytes, mode: int,
              umask: int | None) -> None:  # fmt: skip
    try:
        tmp, fd = _create_temp(dir_fd, name, mode)
    except OSError as exc:
        raise _write_error(shown, exc) from None
    try:
        try:
            if umask is None or mode & umask:
                os.fchmod(fd, mode)  # the umask must not weaken what was asked
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)  # ours: created above
        raise _write_error(shown, exc) from None


def _write_error(target: str, exc: OSError) -> ToolError:
    detail = exc.strerror or str(exc)
    return ToolError(f"cannot write {target}: {detail}", data={"errno": exc.errno})


def _create_temp(dir_fd: int, name: str, mode: int) -> tuple[str, int]:
    """The temporary file next to ``name``: first at one fixed name (creating a new name in a
    directory each time costs an ext4 home 10 µs of CPU per write, bench 1), else, when that
    exists (a write of the same file in a thread, a leftover, anything planted there: O_EXCL
    never follows or reuses it), at a random one."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    tmp = f".{name}.fleet-tmp"
    try:
        return tmp, os.open(tmp, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        tmp = f".{name}.{os.urandom(4).hex()}.tmp"
        return tmp, os.open(tmp, flags, mode, dir_fd=dir_fd)


def current_umask() -> int | None:
    """The process's umask from /proc (setting it to read it would race other threads);
    None where /proc does not say."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return None


async def exec_command(
    home: Path,
    params: ExecCommandParams,
    env: ProcessEnv,
    output_cap: int,
    *,
    on_spawn: Callable[[int], None] | None = None,
    on_exit: Callable[[int], None] | None = None,
    on_chunk: OnChunk | None = None,
) -> ExecCommandResult:
    """``env``: the machine's environment (daemon/processes/env.py), the call's variables last.
    ``on_spawn``/``on_exit`` get the child's pid once it runs / once it is reaped (the
    daemon tracks exec children in its state file, so doctor can find runaways);
    ``on_chunk`` gets each piece of output as it is read (within the cap), for streaming."""
    cwd = working_dir(home, params.cwd)
    mark = secrets.token_hex(8)
    try:
        proc = await asyncio.create_subprocess_exec(
            *params.command,
            cwd=cwd,
            env=env(params.env) | {EXEC_MARK: mark},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a timeout kills the whole tree
        )
    except FileNotFoundError:
        return ExecCommandResult(exit_code=EXIT_NOT_FOUND, stdout="",
                                 stderr=f"{params.command[0]}: not found")  # fmt: skip
    except PermissionError:
        return ExecCommandResult(
            exit_code=126, stdout="", stderr=f"{params.command[0]}: permission denied"
        )
    except OSError as exc:
        raise start_failed(params.command[0], exc) from None
    if on_spawn is not None:
        on_spawn(proc.pid)
    assert proc.stdout is not None
    assert proc.stderr is not None
    out = _CappedReader(proc.stdout, output_cap, "stdout", on_chunk)
    err = _CappedReader(proc.stderr, output_cap, "stderr", on_chunk)
    readers = asyncio.gather(out.run(), err.run())
    timed_out = False
    try:
        async with asyncio.timeout(params.timeout_s):
            await proc.wait()
            await asyncio.wait_for(asyncio.shield(readers), _PIPE_GRACE_S)
    except TimeoutError:
        timed_out = proc.returncode is None
    finally:
        _kill_group(proc.pid)
        try:
            await asyncio.to_thread(kill_marked, mark)
        except RuntimeError:  # no thread to be had at the pids limit: the sweep is short
            kill_marked(mark)
        if proc.returncode is None:
            await proc.wait()
        if on_exit is not None:
            on_exit(proc.pid)
        with contextlib.suppress(TimeoutError):  # a setsid'd grandchild may hold the pipe
            await asyncio.wait_for(readers, _PIPE_GRACE_S)
    if timed_out:
        log.info("tool.exec_timed_out", argv0=params.command[0], timeout_s=params.timeout_s)
    return ExecCommandResult(
        exit_code=proc.returncode if proc.returncode is not None else -9,
        stdout=out.text(),
        stderr=err.text(),
        timed_out=timed_out,
        truncated=out.truncated or err.truncated,
    )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def start_failed(argv0: str, exc: OSError) -> ToolError:
    """The error for a command the machine could not start; at its pids limit (fork's EAGAIN)
    it says so, since "Resource temporarily unavailable" alone does not tell what to do."""
    if exc.errno == errno.EAGAIN:
        return ToolError(
            f"cannot start {argv0!r}: the machine is at its process limit; {_END_SOME}"
        )
    return ToolError(f"cannot start {argv0!r}: {exc.strerror or exc}")


def at_thread_limit(exc: Exception) -> FleetError | None:
    """The error for a call that needed a thread at the machine's pids limit (a file read in a
    worker thread, say): named, as a fork refused there is, rather than an internal error."""
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return ToolError(
            f"the machine is at its process limit: no thread for this call; {_END_SOME}"
        )
    return None


_END_SOME = "end some of its processes (machines.process.list shows the managed ones)"


def kill_marked(mark: str) -> int:
    """SIGKILL every process whose environment carries this command's mark; how many."""
    needle = f"{EXEC_MARK}={mark}".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
        except OSError:
            continue
    return killed


class _CappedReader:
    """Reads a pipe to its end, keeping at most ``cap`` bytes (so a chatty command cannot
    exhaust the daemon's memory or the RPC's payload limit)."""

    def __init__(
        self, stream: asyncio.StreamReader, cap: int, name: str, on_chunk: OnChunk | None
    ) -> None:
        self._stream = stream
        self._cap = cap
        self._name = name
        self._on_chunk = on_chunk
        self._chunks: list[bytes] = []
        self._size = 0
        self.truncated = False

    async def run(self) -> None:
        while chunk := await self._stream.read(_READ_CHUNK):
            room = self._cap - self._size
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[: max(room, 0)]
            if chunk:
                self._chunks.append(chunk)
                self._size += len(chunk)
                if self._on_chunk is not None:
                    await self._on_chunk(self._name, chunk)

    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")
