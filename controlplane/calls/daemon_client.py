"""The platform's client to machines' daemons: JSON-RPC 2.0 over NATS request/reply.

``DaemonClient.machine(id)`` is the "give me an authenticated client for this machine" helper:
every service and the gateway talk to daemons through it, and get typed results or a
``FleetError`` (``DaemonUnavailable`` when nothing serves the machine, ``DaemonTimeout`` when it
does not answer in time, ``ReplyForged`` when the answer is not MACed with the machine's key,
or whatever error the daemon itself answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base.first import first_of
from contracts.bus import subjects
from contracts.daemon.files import STAT, StatParams, StatResult
from contracts.daemon.rpc import (
    EXEC_COMMAND,
    EXEC_KILL,
    EXEC_STREAM,
    GET_VERSION,
    GIT_CLONE,
    HEALTH,
    PROCESS_START,
    WRITE_FILE,
    ExecCommandParams,
    ExecCommandResult,
    ExecKillParams,
    ExecStreamParams,
    GetVersionResult,
    GitCloneParams,
    HealthParams,
    HealthResult,
    ProcessInfo,
    ProcessStartParams,
    WriteFileParams,
    WriteFileResult,
)
from contracts.daemon.signing import H_ID, request_ttl, sign, signing_key, verify_reply
from contracts.errors import DaemonTimeout, DaemonUnavailable, FleetError, PayloadTooLarge
from contracts.rpc.jsonrpc import (
    AnySpec,
    MethodSpec,
    NoParams,
    P,
    Params,
    R,
    decode_result,
    encode_call,
)
from contracts.rpc.jsonrpc_batch import decode_batch
from controlplane.process.metrics import Metrics, rpc_outcome
from controlplane.security.crypto import SecretBox
from controlplane.store import Store

log = structlog.get_logger(__name__)
#: Time allowed on top of a command's own timeout for the answer to come back.
EXEC_MARGIN_S = 5.0
#: Room left in a NATS message for the request's headers (signature, ids).
_HEADROOM = 1024


#: Where the client gets the signing key of a machine (see contracts.daemon.signing).
KeySource = Callable[[str], Awaitable[bytes]]
#: Takes each output chunk of a streamed command, as published (an encoded ``OutputChunk``).
OnOutput = Callable[[bytes], None]


def static_key(machine_token: str) -> KeySource:
    """For a caller that holds the machine's token itself (tests, benchmarks)."""
    key = signing_key(machine_token)

    async def get(_: str) -> bytes:
        return key

    return get


class MachineKeys:
    """Signing keys from the machines' encrypted tokens in Redis, cached (a machine's token
    never changes: a rebuild makes a new machine)."""

    def __init__(self, store: Store, box: SecretBox) -> None:
        self._store = store
        self._box = box
        self._cache: dict[str, bytes] = {}

    async def warm(self, machine_ids: list[str]) -> None:
        """Load the keys of many machines at once (before a fan-out), in one round trip."""
        missing = [m for m in machine_ids if m not in self._cache]
        for mid, sealed in (await self._store.machine_secrets(missing)).items():
            if sealed is not None:
                self._cache[mid] = signing_key(self._box.decrypt(sealed))

    def prime(self, machine_id: str, sealed: str | None) -> None:
        """Cache a key from a sealed token the caller read anyway (a stage reads the machine's
        hash with its status change), saving the round trip of a lookup."""
        if sealed is not None and machine_id not in self._cache:
            self._cache[machine_id] = signing_key(self._box.decrypt(sealed))

    async def __call__(self, machine_id: str) -> bytes:
        key = self._cache.get(machine_id)
        if key is None:
            await self.warm([machine_id])
            key = self._cache.get(machine_id)
            if key is None:
                raise DaemonUnavailable(f"machine {machine_id} has no credentials (yet)")
        return key


class DaemonClient:
    def __init__(
        self,
        nc: NATS,
        *,
        keys: KeySource,
        timeout_s: float = 10.0,
        metrics: Metrics | None = None,
        methods: tuple[AnySpec, ...] = (),
        fail_when_offline: bool = False,
    ) -> None:
        """``methods``: the daemon methods this process calls, whose latency series start at 0
        (any other method's start at its first call). ``fail_when_offline``: with our own bus
        gone, fail at once (the gateway answers 1501 and the caller retries) rather than wait
        out the timeout for a reconnect (a stage's live push would rather wait and land)."""
        self._fail_when_offline = fail_when_offline
        self._nc = nc
        self._keys = keys
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        # Without one (tests, tools) the latencies go to a registry nobody scrapes.
        self._metrics = metrics or Metrics()
        for spec in methods:
            self._metrics.declare_rpc(spec.name, spec.errors)

    def machine(self, machine_id: str) -> MachineClient:
        return MachineClient(self, machine_id)

    async def call(
        self,
        machine_id: str,
        spec: MethodSpec[P, R],
        params: P,
        *,
        timeout_s: float | None = None,
    ) -> R:
        start = time.perf_counter()
        outcome = "cancelled"  # unless it ends otherwise
        try:
            result = await self._call(machine_id, spec, params, timeout_s)
            outcome = "ok"
            return result
        except Exception as exc:
            outcome = rpc_outcome(exc)
            raise
        finally:
            self._metrics.observe_rpc(spec.name, outcome, time.perf_counter() - start, spec.errors)

    async def answers(self, machine_id: str, timeout_s: float = 2.0) -> bool:
        """Whether the machine's daemon answers now (``daemon.getVersion``): a daemon that
        answers serves every call sent after, on this NATS."""
        try:
            await self.call(machine_id, GET_VERSION, NoParams(), timeout_s=timeout_s)
        except (DaemonUnavailable, DaemonTimeout):
            return False
        return True

    async def call_batch(self, machine_id: str, spec: MethodSpec[P, R], calls: list[P]) -> list[R]:
        """Several calls of one method in one JSON-RPC batch: one signed request, one answer.
        The results in order; the first call that failed raises its error."""
        start = time.perf_counter()
        outcome = "cancelled"
        try:
            ids = [next(self._ids) for _ in calls]
            parts = [encode_call(spec, params, i) for params, i in zip(calls, ids, strict=True)]
            raw = await self._request(machine_id, spec, b"[" + b",".join(parts) + b"]", None)
            results = decode_batch(spec, raw, ids)
            outcome = "ok"
            return results
        except Exception as exc:
            outcome = rpc_outcome(exc)
            raise
        finally:
            elapsed = time.perf_counter() - start
            for _ in calls:
                self._metrics.observe_rpc(spec.name, outcome, elapsed, spec.errors)

    async def _call(
        self, machine_id: str, spec: MethodSpec[P, R], params: P, timeout_s: float | None
    ) -> R:
        body = encode_call(spec, params, next(self._ids))
        return decode_result(spec, await self._request(machine_id, spec, body, timeout_s))

    async def _request(
        self, machine_id: str, spec: AnySpec, body: bytes, timeout_s: float | None
    ) -> bytes:
        """The signed request/reply; the answer's bytes, MAC checked."""
        if len(body) > self._nc.max_payload - _HEADROOM:
            raise PayloadTooLarge(
                f"{spec.name} request is {len(body)} bytes; the limit is "
                f"{self._nc.max_payload - _HEADROOM} (the NATS max_payload less headers)",
                data={"limit": self._nc.max_payload - _HEADROOM, "size": len(body)},
            )
        timeout = timeout_s or self._timeout_s
        # Valid while we wait (capped: only the request's delivery needs the window), plus
        # slack for the clocks; see contracts.daemon.signing.
        key = await self._keys(machine_id)
        headers = sign(key, machine_id, body, ttl_s=request_ttl(timeout))
        if self._fail_when_offline and not self._nc.is_connected:  # our bus is gone: 1501
            raise nats.errors.ConnectionReconnectingError
        try:
            ask = functools.partial(self._nc.request, subjects.daemon_rpc(machine_id), body,
                                    timeout=timeout, headers=headers)  # fmt: skip
            msg = await (ask() if timeout <= self._timeout_s
                         else self._unless_gone(machine_id, spec, ask))  # fmt: skip
        except nats.errors.NoRespondersError:
            raise DaemonUnavailable(
                f"no daemon is serving machine {machine_id} (not running or not connected)"
            ) from None
        except nats.errors.TimeoutError:
            if self._fail_when_offline and not self._nc.is_connected:  # a failover, not the daemon
                raise
            raise DaemonTimeout(
                f"machine {machine_id} did not answer {spec.name} within {timeout:g}s"
            ) from None
        # Whoever answers on the machine's subject must hold its key (ReplyForged otherwise).
        verify_reply(key, machine_id, headers[H_ID], msg.data, msg.headers)
        return msg.data

    async def _unless_gone(
        self, machine_id: str, spec: AnySpec, ask: Callable[[], Awaitable[Msg]]
    ) -> Msg:
        """``ask()``'s reply, unless an event says the machine's daemon is gone first (its
        memory on disk, its processes ended): a call that may wait long (a command, a code
        run) would otherwise wait out its whole timeout for an answer that cannot come. The
        subscription goes out before the request on the one connection: no event is missed."""
        gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def seen(msg: Msg) -> None:
            became = subjects.DAEMON_GONE.get(subjects.kind_of(msg.subject))
            if became is not None and not gone.done():
                gone.set_result(became)

        sub = await self._nc.subscribe(subjects.machine_events(machine_id), cb=seen)
        try:
            _, got = await first_of(ask(), gone)
        finally:
            with contextlib.suppress(nats.errors.Error):  # the link is gone: so is the interest
                await sub.unsubscribe()
        if isinstance(got, Msg):
            return got
        raise DaemonUnavailable(f"machine {machine_id} was {got} before it answered {spec.name}")


class MachineClient:
    """A typed client bound to one machine."""

    def __init__(self, client: DaemonClient, machine_id: str) -> None:
        self._c = client
        self.machine_id = machine_id

    async def write_file(self, path: str, content: str, mode: int = 0o644) -> WriteFileResult:
        params = WriteFileParams(path=path, content=content, mode=mode)
        return await self._c.call(self.machine_id, WRITE_FILE, params)

    async def write_files(self, files: list[WriteFileParams]) -> list[WriteFileResult]:
        """Several files in one request (a JSON-RPC batch), written in order."""
        return await self._c.call_batch(self.machine_id, WRITE_FILE, files)

    async def exec(self, params: ExecCommandParams) -> ExecCommandResult:
        return await self._c.call(
            self.machine_id, EXEC_COMMAND, params, timeout_s=params.timeout_s + EXEC_MARGIN_S
        )

    async def git_clone(self, params: GitCloneParams) -> ExecCommandResult:
        """``tool.gitClone``: a clone by the daemon's own runtime (an image with no git)."""
        return await self._c.call(
            self.machine_id, GIT_CLONE, params, timeout_s=params.timeout_s + EXEC_MARGIN_S
        )

    async def exec_stream(self, nc: NATS, params: ExecCommandParams,
                          on_output: OnOutput | None = None) -> ExecCommandResult:  # fmt: skip
        """``params`` run as ``tool.execStream``: each chunk of its output goes to ``on_output``
        (read on ``nc``) as the daemon reads it, every one before this returns the result.
        Cancelled, it kills the command's process group: nothing keeps running on the machine
        for a caller that left."""
        stream = ExecStreamParams(**msgspec.structs.asdict(params), stream_id=secrets.token_hex(16))
        if on_output is None:
            return await self._stream(stream)
        return await self.with_output(nc, stream.stream_id, on_output,
                                      lambda: self._stream(stream))  # fmt: skip

    async def with_output(self, nc: NATS, stream_id: str, on_output: OnOutput,
                          call: Callable[[], Awaitable[R]]) -> R:  # fmt: skip
        """``call()`` (a daemon method that publishes on ``exec_output(machine, stream_id)``)
        awaited while what it publishes goes to ``on_output`` (read on ``nc``), every message
        before this returns its answer."""

        async def forward(msg: Msg) -> None:
            on_output(msg.data)

        sub = await nc.subscribe(subjects.exec_output(self.machine_id, stream_id), cb=forward)
        try:
            await nc.flush()  # the interest is known to the server before any output
            result = await call()
            # The daemon sent every chunk before its answer, on one connection: drain's round
            # trip brings them all in, and it returns once each was handed on.
            await sub.drain()  # type: ignore[no-untyped-call]
            return result
        finally:
            with contextlib.suppress(nats.errors.Error):  # drained already, or the link is gone
                await sub.unsubscribe()

    async def _stream(self, params: ExecStreamParams) -> ExecCommandResult:
        kill = ExecKillParams(stream_id=params.stream_id)
        return await self.call_or_undo(EXEC_STREAM, params, params.timeout_s + EXEC_MARGIN_S,
                                       (EXEC_KILL, kill))  # fmt: skip

    async def call_or_undo(self, spec: MethodSpec[P, R], params: P, timeout_s: float,
                           undo: tuple[AnySpec, Params]) -> R:  # fmt: skip
        """``spec`` called; cancelled (its caller left), ``undo``'s method is called before the
        cancellation goes on (shielded: it reaches the daemon even so), which ends what the
        first call started (a stream's command or code run)."""
        try:
            return await self._c.call(self.machine_id, spec, params, timeout_s=timeout_s)
        except asyncio.CancelledError:
            with contextlib.suppress(FleetError):
                await asyncio.shield(self._c.call(self.machine_id, undo[0], undo[1]))
            log.info("daemon.call_undone", machine_id=self.machine_id, method=spec.name)
            raise

    async def run(self, *argv: str, timeout_s: float = 120.0) -> ExecCommandResult:
        return await self.exec(ExecCommandParams(command=list(argv), timeout_s=timeout_s))

    async def health(
        self, *, files: list[str] | None = None, timeout_s: float | None = None
    ) -> HealthResult:
        params = HealthParams(files=files or [])
        return await self._c.call(self.machine_id, HEALTH, params, timeout_s=timeout_s)

    async def stat(self, path: str) -> StatResult:
        """What is at ``path`` (under the home), a link described, not followed."""
        return await self._c.call(self.machine_id, STAT, StatParams(path=path))

    async def get_version(self) -> GetVersionResult:
        return await self._c.call(self.machine_id, GET_VERSION, NoParams())

    async def start_process(self, params: ProcessStartParams) -> ProcessInfo:
        return await self._c.call(self.machine_id, PROCESS_START, params)
