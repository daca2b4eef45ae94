"""``FleetClient``'s streamed answers (bound as its methods): ``exec_stream``, the output of a
command as it runs (``machines.execStream`` over ``POST /rpc/stream``),
``machines_code_run_stream``, a kernel's output, results and error as they come
(``machines.code.run`` over ``POST /rpc/stream``), ``machines_watch``, a path's changes
(``machines.watch`` over ``POST /rpc/stream``), and ``code_stream``, a codemode run's events
(``POST /codemode/run``), each ending with its result.

async with FleetClient(url, token) as fleet:
    async for item in fleet.exec_stream(mid, ["make"]):   # OutputChunk..., then the result
        print(item)
    async for part in fleet.machines_code_run_stream(mid, "print(1)"):  # CodeRunPart..., then
        print(part)                                                      # the CodeRunResult
    async for event in fleet.code_stream(code):            # RunEvent..., then the RunResult
        print(event)
    async for change in fleet.machines_watch(mid, "~/src", recursive=True):  # FileEvent...,
        print(change)                                                         # then WatchEnded
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from contracts.daemon import code as dc
from contracts.daemon.rpc import DEFAULT_EXEC_TIMEOUT_S, ExecCommandResult, OutputChunk
from contracts.daemon.watch import FileEvent, FileEventType
from contracts.errors import ERROR_HEADER, FleetError, error_from_http, error_from_wire
from contracts.gateway import code as gc, codemode as cm, files as gf, live
from contracts.rpc.jsonrpc import MethodSpec, Params, decode_result, encode_call, new_params
from fleet.client.sse_lines import MAX_EVENT_LINE, STREAM_MARGIN_S, EventLines
from fleet.client.transport import Body, Timeout

if TYPE_CHECKING:  # the client binds these
    from fleet.client.core import ClientCore

StreamItem = OutputChunk | ExecCommandResult
#: A streamed code run's items: its parts, then its answer.
CodeRunItem = dc.CodeRunPart | dc.CodeRunResult
_CHUNK = msgspec.json.Decoder(OutputChunk)
_PART = msgspec.json.Decoder(dc.CodeRunPart)
Part = TypeVar("Part")
Answer = TypeVar("Answer")
_EVENT = msgspec.json.Decoder(cm.RunEvent)
_FILE_EVENT = msgspec.json.Decoder(FileEvent)
_DROPPED = msgspec.json.Decoder(dict[str, int])
#: A watch's items: its changes, then why it ended.
WatchItem = FileEvent | gf.WatchEnded


async def exec_stream(
    self: ClientCore, machine_id: str, command: list[str], *, timeout_s: float | None = None,
    cwd: str | None = None, env: dict[str, str] | None = None,
) -> AsyncGenerator[StreamItem, None]:  # fmt: skip
    """The command's output chunks as it produces them, then its result. Leaving the
    iteration early (or a Ctrl-C) closes the stream, which kills the remote command."""
    wait = timeout_s or DEFAULT_EXEC_TIMEOUT_S
    params = new_params(live.MachineExecStreamParams, machine_id=machine_id, command=command,
                        timeout_s=wait, cwd=cwd, env=env)  # fmt: skip
    stream = rpc_stream(self, live.MACHINES_EXEC_STREAM, params, _CHUNK, wait)
    async with contextlib.aclosing(stream) as items:  # left early: the response closes now
        async for item in items:
            yield item


async def machines_code_run_stream(
    self: ClientCore, machine_id: str, code: str, *, language: str | None = None,
    context_id: str | None = None, timeout_s: float = dc.DEFAULT_CODE_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> AsyncGenerator[CodeRunItem, None]:  # fmt: skip
    """``machines.code.run``'s parts as the kernel sends them (``CodeRunPart``: a stdout or
    stderr chunk, a result, the error), then its answer (``CodeRunResult``, as
    ``machines_code_run`` answers). Leaving the iteration early (or a Ctrl-C) closes the
    stream, which interrupts the run (its context keeps its state)."""
    params = new_params(gc.MachineCodeRunParams, machine_id=machine_id, code=code,
                        language=language, context_id=context_id, timeout_s=timeout_s,
                        env=env)  # fmt: skip
    # The code may run until its timeout, after a kernel's start and an interrupt's grace.
    wait = timeout_s + dc.KERNEL_START_S + dc.INTERRUPT_GRACE_S
    stream = rpc_stream(self, gc.MACHINES_CODE_RUN, params, _PART, wait)
    async with contextlib.aclosing(stream) as items:
        async for item in items:
            yield item


async def machines_watch(
    self: ClientCore, machine_id: str, path: str, *, recursive: bool = False,
    events: list[FileEventType] | None = None,
) -> AsyncGenerator[WatchItem, None]:  # fmt: skip
    """Each change under ``path`` of the machine's home as its kernel reports it
    (``FileEvent``), until the watch ends, then why it ended (``WatchEnded``). Events the
    gateway left out for a reader slower than the machine come as one ``overflow`` event
    (``dropped``: how many). Leaving the iteration early ends the watch."""
    params = new_params(gf.MachineWatchParams, machine_id=machine_id, path=path,
                        recursive=recursive, events=events)  # fmt: skip
    told = 0

    def dropped(total: int) -> FileEvent | None:
        nonlocal told
        missed, told = total - told, max(told, total)
        return FileEvent(type="overflow", path=path, is_dir=True, dropped=missed) if missed > 0 \
            else None  # fmt: skip

    stream = rpc_stream(self, gf.MACHINES_WATCH, params, _FILE_EVENT, None, dropped)
    async with contextlib.aclosing(stream) as items:
        async for item in items:
            yield item


async def rpc_stream(
    self: ClientCore, spec: MethodSpec[Any, Answer], params: Params,
    part: msgspec.json.Decoder[Part], wait: float | None,
    dropped: Callable[[int], Part | None] | None = None,
) -> AsyncGenerator[Part | Answer, None]:  # fmt: skip
    """``spec`` POSTed to ``RPC_STREAM_PATH``: each ``output`` event decoded by ``part`` as it
    comes, then the answer (``wait`` seconds, and a margin, for it all; None: no limit).
    ``dropped``: the item a ``dropped`` event (the count of parts left out so far) becomes,
    if any (None: such events are not told)."""
    body = encode_call(spec, params, next(self._ids))
    timeout = Timeout(total=None if wait is None else wait + STREAM_MARGIN_S, read=None)
    headers = {**self.headers, "Content-Type": "application/json"}
    async with self.transport.request(
        "POST", live.RPC_STREAM_PATH, headers=headers, body=body, timeout=timeout
    ) as resp:
        if resp.content_type != "text/event-stream":  # an error before the stream
            body = await resp.read()
            if resp.status == 200:  # a JSON-RPC answer: its error
                decode_result(spec, body)
            raise self.http_error(resp.status, body, resp.headers.get(ERROR_HEADER))
        async for event, data in sse_events(resp.content):
            if event == live.SSE_OUTPUT:
                yield part.decode(data)
            elif event == live.SSE_DROPPED and dropped is not None:
                told = dropped(_DROPPED.decode(data).get("parts", 0))
                if told is not None:
                    yield told
            elif event == live.SSE_RESULT:
                yield decode_result(spec, data)
                return
    raise FleetError("the stream ended without a result")


async def code_stream(
    self: ClientCore,
    code: str,
    *,
    machine_id: str | None = None,
    instance_id: str | None = None,
    timeout_s: float = cm.DEFAULT_TIMEOUT_S,
) -> AsyncGenerator[cm.RunEvent | cm.RunResult, None]:
    """The run's events as they happen (``POST /codemode/run``), then its result."""
    params = new_params(cm.RunParams, code=code, machine_id=machine_id,
                        instance_id=instance_id, timeout_s=timeout_s)  # fmt: skip
    timeout = Timeout(total=timeout_s + 30)
    async with self.transport.request(
        "POST",
        cm.RUN_STREAM_PATH,
        headers=self.headers,
        body=msgspec.json.encode(params),
        timeout=timeout,
    ) as resp:
        if resp.content_type == "application/json":
            raise error_from_http(resp.status, await resp.read())
        async for kind, body in sse_events(resp.content):
            if kind == cm.RUN_STREAM_END:
                yield _end(body)
                return
            yield _EVENT.decode(body)


async def sse_events(content: Body) -> AsyncGenerator[tuple[str, bytes], None]:
    """(event name, data) of each server-sent event; comments (keepalives) skipped."""
    events = EventLines()
    # An event's data is one line: a code run's answer holds a whole NATS message (its images).
    while raw := await content.readuntil(b"\n", max_size=MAX_EVENT_LINE):
        if (ended := events.feed(raw)) is not None and ended[1] is not None:
            yield ended[0].decode(), ended[1]


def _end(body: bytes) -> cm.RunResult:
    decoded = msgspec.json.decode(body, type=dict[str, Any])
    if "error" in decoded and "runId" not in decoded:
        raise error_from_wire(decoded["error"])
    return msgspec.convert(decoded, cm.RunResult)
