"""One run: the sandbox, its messages, its tool calls, its events, its end.

The runner inside the sandbox is treated as hostile: every message it sends is decoded against
a type, a call names a provider the run was given or is refused, its output is capped, and it
ends when it says so, when its time is up, when it is cancelled, or when it dies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, cast

import msgspec
import structlog

from base.first import first_of
from base.tasks import OwnedTasks
from contracts.errors import FleetError, InternalError, InvalidRequest, MethodNotFound
from contracts.gateway.codemode import (
    RunCancelled,
    RunError,
    RunEvent,
    RunJob,
    RunLog,
    RunResult,
    RunResultEvent,
    RunStarted,
    RunToolCall,
    RunToolResult,
)
from services.codemode.sandbox import Limits, Sandbox
from services.codemode.sandbox_gvisor import Runsc, open_sandbox

log = structlog.get_logger(__name__)

#: Logs kept in the run's result and record, and sent as events; past it, one "truncated" line.
MAX_LOG_LINES = 1000
MAX_LOG_BYTES = 256 * 1024
#: One message from the runner (a call's arguments, the result) may be this large.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: Tool calls of one run in flight at once.
MAX_CONCURRENT_CALLS = 16


class ToolProvider(Protocol):
    """A named callable of the run: ``fleet``, ``machine``, an OpenAPI or MCP bridge."""

    name: str

    async def call(self, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Perform one call; a FleetError becomes the ToolError the code sees."""

    async def describe(self) -> str:
        """Python stubs (``.pyi`` text) of what this provider offers."""


Publish = Callable[[RunEvent], Awaitable[None]]


class _Call(msgspec.Struct):
    t: Literal["call"]
    id: int
    provider: str
    path: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)


class _Result(msgspec.Struct):
    t: Literal["result"]
    value: Any = None


class _Error(msgspec.Struct):
    t: Literal["error"]
    message: str
    line: int | None = None


class _Kind(msgspec.Struct):
    t: str


_ENC = msgspec.json.Encoder()


class Run:
    def __init__(
        self,
        job: RunJob,
        providers: dict[str, ToolProvider],
        limits: Limits,
        publish: Publish,
        *,
        runsc: Runsc | None = None,
    ) -> None:
        self.job = job
        self.providers = providers
        self.limits = limits
        self.runsc = runsc  # None: bubblewrap's sandbox, else gVisor's
        self._publish = publish
        self._seq = 0
        self.logs: list[str] = []
        self._log_bytes = 0
        self._truncated = False
        self._call_slots = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
        #: The tool calls under way (cancelled once the run ends).
        self._calls = OwnedTasks(
            f"codemode-calls:{job.run_id}", failed_event="codemode.call_failed"
        )
        self._cancelled = asyncio.Event()
        self._t0 = time.monotonic()

    def cancel(self) -> None:
        self._cancelled.set()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    async def emit(self, event: RunEvent) -> None:
        try:
            await self._publish(event)
        except Exception:  # boundary: a lost event must not end the run
            log.exception("codemode.event_publish_failed", run_id=self.job.run_id)

    def _ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    async def execute(self) -> RunResult:
        job = self.job
        await self.emit(
            RunStarted(run_id=job.run_id, seq=self._next(), instance_id=job.instance_id,
                       machine_id=job.machine_id, providers=sorted(self.providers))
        )  # fmt: skip
        # Exits in turn: the output read to its end (2 s at most), the calls, the sandbox.
        pumps = OwnedTasks(f"codemode-logs:{job.run_id}", drain_s=2.0)
        sandbox = open_sandbox(self.limits, self.runsc, limit=MAX_MESSAGE_BYTES)
        async with sandbox as sb, self._calls, pumps:
            assert sb.writer is not None
            assert sb.proc is not None
            start = {"t": "start", "code": job.code, "providers": sorted(self.providers)}
            sb.writer.write(_ENC.encode(start) + b"\n")
            pumps.spawn(self._pump_logs(sb.proc.stdout, "stdout"))
            pumps.spawn(self._pump_logs(sb.proc.stderr, "stderr"))
            outcome = await self._until_end(sb)
            await sb.kill()  # the whole tree, whatever the outcome
        return await self._finish(outcome)

    async def _until_end(self, sb: Sandbox) -> _Result | _Error | str:
        which, outcome = await first_of(self._pump_channel(sb), self._cancelled.wait(),
                                        asyncio.sleep(self.job.timeout_s))  # fmt: skip
        if which == 0:
            return cast("_Result | _Error | str", outcome)
        return "cancelled" if which == 1 else "timeout"

    async def _pump_channel(self, sb: Sandbox) -> _Result | _Error | str:
        assert sb.reader is not None
        assert sb.writer is not None
        while True:
            try:
                line = await sb.reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                return _Error(t="error", message="a message from the code is too large")
            if not line:
                return "died"
            try:
                kind = msgspec.json.decode(line, type=_Kind).t
                if kind == "call":
                    self._start_call(msgspec.json.decode(line, type=_Call), sb.writer)
                    continue
                if kind == "result":
                    return msgspec.json.decode(line, type=_Result)
                return msgspec.json.decode(line, type=_Error)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return _Error(t="error", message=f"the sandbox sent a bad message: {exc}")

    def _start_call(self, call: _Call, writer: asyncio.StreamWriter) -> None:
        self._calls.spawn(self._serve_call(call, writer), call_id=call.id)

    async def _serve_call(self, call: _Call, writer: asyncio.StreamWriter) -> None:
        async with self._call_slots:
            run_id = self.job.run_id
            await self.emit(RunToolCall(run_id=run_id, seq=self._next(), call_id=call.id,
                                        provider=call.provider, path=call.path))  # fmt: skip
            t0 = time.monotonic()
            answer: dict[str, Any]
            try:
                value = await self._perform(call)
                answer = {"t": "ret", "id": call.id, "ok": True, "value": value}
                event = RunToolResult(run_id=run_id, seq=0, call_id=call.id, ok=True,
                                      duration_ms=_since(t0))  # fmt: skip
            except FleetError as exc:
                wire = exc.to_wire()
                answer = {"t": "ret", "id": call.id, "ok": False, **wire}
                event = RunToolResult(
                    run_id=run_id,
                    seq=0,
                    call_id=call.id,
                    ok=False,
                    duration_ms=_since(t0),
                    code=exc.code,
                    message=str(exc),
                )
            writer.write(_ENC.encode(answer) + b"\n")
            event.seq = self._next()
            await self.emit(event)
            await writer.drain()

    async def _perform(self, call: _Call) -> Any:
        provider = self.providers.get(call.provider)
        if provider is None:
            raise MethodNotFound(f"no provider {call.provider!r} in this run")
        if not call.path or len(call.path) > 200:
            raise InvalidRequest(f"{call.provider}: a call needs a method path")
        try:
            return await provider.call(call.path, call.args, call.kwargs)
        except FleetError:
            raise
        except Exception as exc:  # boundary: one provider's bug is the call's error, not ours
            log.exception("codemode.tool_crashed", provider=call.provider, path=call.path)
            raise InternalError(f"{call.provider}.{call.path} failed: {exc}") from None

    async def _pump_logs(self, stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                raw = await stream.read(MAX_MESSAGE_BYTES)
            if not raw:
                return
            await self._log(raw.decode(errors="replace").rstrip("\n"), name)  # type: ignore[arg-type]

    async def _log(self, line: str, stream: Literal["stdout", "stderr", "system"]) -> None:
        if self._truncated:
            return
        self._log_bytes += len(line)
        if len(self.logs) >= MAX_LOG_LINES or self._log_bytes > MAX_LOG_BYTES:
            self._truncated = True
            line, stream = "[codemode] output truncated: later lines are dropped", "system"
        self.logs.append(line)
        await self.emit(RunLog(run_id=self.job.run_id, seq=self._next(), stream=stream, line=line))

    async def _finish(self, outcome: _Result | _Error | str) -> RunResult:
        run_id, ms = self.job.run_id, self._ms()
        if isinstance(outcome, _Result):
            await self.emit(RunResultEvent(run_id=run_id, seq=self._next(), result=outcome.value,
                                           duration_ms=ms))  # fmt: skip
            return RunResult(run_id=run_id, status="ok", result=outcome.value, logs=self.logs)
        if outcome == "cancelled":
            await self.emit(RunCancelled(run_id=run_id, seq=self._next(), duration_ms=ms))
            return RunResult(run_id=run_id, status="cancelled", error="cancelled", logs=self.logs)
        if outcome == "timeout":
            error, status = f"timed out after {self.job.timeout_s:g}s", "timeout"
        elif outcome == "died":
            error, status = "the sandbox ended without a result (a limit was reached)", "error"
        else:
            assert isinstance(outcome, _Error)
            error, status = outcome.message, "error"
        await self.emit(RunError(run_id=run_id, seq=self._next(), status=status,  # type: ignore[arg-type]
                                 error=error, duration_ms=ms))  # fmt: skip
        return RunResult(run_id=run_id, status=status, error=error, logs=self.logs)  # type: ignore[arg-type]


def _since(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 3)
