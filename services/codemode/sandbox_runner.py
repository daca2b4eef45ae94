"""The program that runs inside the sandbox: standard library only, never imported by fleetd.

Its source is handed to ``python -I -S -c`` inside the sandbox. Its channel to the codemode
service is a socket: the fd named by ``CODEMODE_FD`` (bubblewrap), or the Unix socket at the
path ``CODEMODE_SOCKET`` names (gVisor), carrying one JSON object per line:

- service -> runner, first: ``{"t": "start", "code": str, "providers": [name, ...]}``
- runner -> service: ``{"t": "call", "id": n, "provider": p, "path": "a.b", "args": [...],
  "kwargs": {...}}``, answered ``{"t": "ret", "id": n, "ok": true, "value": v}`` or
  ``{"t": "ret", "id": n, "ok": false, "code": c, "message": m, "data": d}``
- runner -> service, last: ``{"t": "result", "value": v}`` or
  ``{"t": "error", "message": m, "line": n | null}``

The sandbox holds no credentials: a tool call is only a request to the service, which checks it
and performs it with the caller's rights. stdout and stderr are pipes the service reads as logs.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sys
import traceback
from types import CodeType
from typing import Any

FILENAME = "<run>"
RESULT_NAME = "__codemode_result__"


class ToolError(Exception):
    """A tool call's JSON-RPC error: ``code``, ``message`` and ``data`` as the service gave."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.data = data


class _Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    def send(self, obj: dict[str, Any]) -> None:
        self._writer.write(json.dumps(obj, default=repr).encode() + b"\n")

    async def call(
        self, provider: str, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self._next += 1
        fut = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = fut
        self.send(
            {"t": "call", "id": self._next, "provider": provider, "path": path,
             "args": list(args), "kwargs": kwargs}
        )  # fmt: skip
        await self._writer.drain()
        return await fut

    async def pump(self) -> None:
        while line := await self._reader.readline():
            msg = json.loads(line)
            fut = self._waiting.pop(msg.get("id"), None)
            if fut is None or fut.done():
                continue
            if msg.get("ok"):
                fut.set_result(msg.get("value"))
            else:
                fut.set_exception(ToolError(msg.get("code"), msg.get("message"), msg.get("data")))


class _Tool:
    """``fleet.machines.exec(...)``: attribute access builds the path, a call sends it."""

    def __init__(self, channel: _Channel, provider: str, path: str = "") -> None:
        self._channel = channel
        self._provider = provider
        self._path = path

    def __getattr__(self, name: str) -> _Tool:
        if name.startswith("__"):
            raise AttributeError(name)
        path = f"{self._path}.{name}" if self._path else name
        return _Tool(self._channel, self._provider, path)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.call(self._provider, self._path, args, kwargs)

    def __repr__(self) -> str:
        return f"<tool {self._provider}:{self._path or '*'}>"


def _compile(code: str) -> CodeType:
    """The code object; a last expression statement is kept as the result."""
    tree = ast.parse(code, FILENAME, "exec")
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        target = ast.Name(id=RESULT_NAME, ctx=ast.Store())
        tree.body[-1] = ast.copy_location(ast.Assign(targets=[target], value=last.value), last)
        ast.fix_missing_locations(tree)
    code_object: CodeType = compile(tree, FILENAME, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    return code_object


def _error(exc: BaseException) -> tuple[str, int | None]:
    """The message and the line in the user's code an exception points at."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})", exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == FILENAME:
            line = frame.lineno
    where = f" (line {line})" if line else ""
    return f"{type(exc).__name__}: {exc}{where}", line


async def _execute(channel: _Channel, start: dict[str, Any]) -> Any:
    scope: dict[str, Any] = {"__name__": "__main__", "ToolError": ToolError}
    for name in start["providers"]:
        scope[name] = _Tool(channel, name)
    code = _compile(start["code"])
    value = eval(code, scope)  # noqa: S307 - running the user's code is this program's job
    if asyncio.iscoroutine(value):
        await value
    return scope.get(RESULT_NAME)


async def main() -> None:
    reader, writer = await asyncio.open_connection(sock=_socket())
    start = json.loads(await reader.readline())
    channel = _Channel(reader, writer)
    pump = asyncio.get_running_loop().create_task(channel.pump())
    try:
        value = await _execute(channel, start)
        try:
            text = json.dumps({"t": "result", "value": value})
        except (TypeError, ValueError):  # not JSON: its repr is the best the caller can get
            text = json.dumps({"t": "result", "value": repr(value)})
        writer.write(text.encode() + b"\n")
    except BaseException as exc:  # noqa: BLE001 - everything the user's code raises is the run's error
        message, line = _error(exc)
        channel.send({"t": "error", "message": message, "line": line})
    sys.stdout.flush()
    sys.stderr.flush()
    await writer.drain()
    pump.cancel()


def _socket() -> Any:
    import socket

    path = os.environ.get("CODEMODE_SOCKET")
    if path is None:
        return socket.socket(fileno=int(os.environ["CODEMODE_FD"]))
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    return sock


def _limit_processes() -> None:
    import resource

    n = int(os.environ["CODEMODE_NPROC"])
    resource.setrlimit(resource.RLIMIT_NPROC, (n, n))


if __name__ == "__main__":
    _limit_processes()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    asyncio.run(main())
    os._exit(0)  # threads or children the code left behind do not keep the run open
