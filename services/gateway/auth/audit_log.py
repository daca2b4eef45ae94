"""The gateway's audit log: entries recorded off the call path, stored on the audit stream.

``record`` never waits: it puts the entry in a bounded buffer, and one owned task stores what
the buffer holds (a batch at a time, its entries stored concurrently) on
``contracts.gateway.audit.AUDIT_STREAM``, resolving a machine's instance on the way. A full buffer,
or
an entry the stream refused after its retries, is counted and logged, never lost silently;
leaving the context drains the buffer.

An entry is bounded in size (``contracts.gateway.audit.bounded``, ``MAX_ENTRY_BYTES``), and refusals
are bounded in number (``audit_refusals``): each caller's past its budget a minute, and any
past half the buffer, are counted into ``audit.suppressed`` entries, so that a flood of them
neither fills the buffer that real entries (what callers did, sign-ins) need nor pushes old
entries out of the stream faster than the budgets allow.

Every JSON-RPC method that is not read-only (``contracts.gateway.rpc.READ_ONLY_METHODS``) is
recorded by ``audited``; the routes that are no method (a terminal's attach, a file transfer, a
tunnel) by the byte stream opener. The client's address and user agent come from the HTTP
request the call came in (``Caller.origin``, set by the gateway's authentication; ``origin_of``
for a request that authenticated as no one).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from types import TracebackType
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from prometheus_client import Counter

from base import natsconn
from base.clock import SYSTEM_CLOCK, Clock
from base.tasks import cancel_and_join
from contracts.errors import FleetError, Forbidden, InternalError, Unauthorized
from contracts.gateway import audit as a
from contracts.gateway.rpc import READ_ONLY_METHODS
from contracts.rpc.jsonrpc import Handler, Router
from controlplane.bus import DUPLICATE_WINDOW_S, put_stream
from controlplane.failover import TRANSIENT
from controlplane.process.metrics import Metrics
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth.access import Caller, Origin
from services.gateway.auth.audit_read import read_entries
from services.gateway.auth.audit_refusals import CallerRefusals, RefusalGate, SuppressedWriter

log = structlog.get_logger(__name__)

#: Entries stored at once (pipelined) by the writer.
_BATCH = 256
#: A drop is logged at most this often (the count is always kept).
_DROP_LOG_S = 1.0
#: Leaving the context waits this long for the buffer to drain.
_DRAIN_S = 5.0
_MACHINE_CACHE = 10000


def actor_of(caller: Caller | None) -> str:
    """Who an entry names as acting: the caller's user (``u-...``), else its token id
    (``admin`` for the operator's token, ``t-...`` for a token of no user), ``anonymous``
    without one. The entry's ``tokenId`` names the credential used (a token, or a sign-in
    session ``ws-...``)."""
    if caller is None:
        return "anonymous"
    return caller.user_id or caller.token_id


def origin_of(request: web.Request) -> Origin:
    """Where ``request`` came from, as an entry names it."""
    agent = request.headers.get("User-Agent")
    return Origin(request.remote, agent[: a.MAX_STRING] if agent else None)


def audit_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=a.AUDIT_STREAM,
        subjects=[a.ALL_AUDIT],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=settings.stream_replicas,
        max_age=settings.audit_max_age_s,
        max_bytes=settings.audit_max_bytes,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
    )


class AuditLog:
    """Async context manager: the audit account's connection, the stream and the writer.
    Its rules (refusal budgets, the suppressed entries' period, how often a drop is logged)
    are ``clock``'s time."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        self.settings = settings
        self._clock = clock
        self._counted = Counter("fleet_audit_entries", "Audit entries by outcome: stored, or "
                                "dropped (lost, and logged).", ["outcome"],
                                registry=metrics.registry if metrics else None)  # fmt: skip
        for outcome in ("stored", "dropped"):  # both series exist from the start, at 0
            self._counted.labels(outcome)
        self.enabled = settings.audit_enabled
        self._store = store
        self._queue: asyncio.Queue[a.AuditEntry] = asyncio.Queue(max(1, settings.audit_buffer))
        self._nc: NATS | None = None
        self._task: asyncio.Task[None] | None = None
        self._resources = contextlib.AsyncExitStack()
        self._instances: OrderedDict[str, str | None] = OrderedDict()
        #: Entries lost: the buffer was full, or the stream refused them after retries.
        self.dropped = 0
        self.refusals = RefusalGate(settings.audit_unauthenticated_per_min,
                                    clock=clock.monotonic)  # fmt: skip
        self.callers = CallerRefusals(settings.audit_refusals_per_min, clock=clock.monotonic)
        self._suppressed = SuppressedWriter(self.flush_suppressed,
                                            settings.audit_suppressed_every_s, clock)  # fmt: skip
        self.stored = 0
        self._dropped_logged_at: float | None = None

    @property
    def nc(self) -> NATS:
        assert self._nc is not None, "AuditLog used outside its context"
        return self._nc

    async def __aenter__(self) -> AuditLog:
        s = self.settings
        user = s.audit_nats_user or s.nats_user
        password = s.audit_nats_password if s.audit_nats_user else s.nats_password
        async with contextlib.AsyncExitStack() as stack:
            nc = await natsconn.connect(s.nats_url, name="gateway-audit", user=user,
                                        password=password)  # fmt: skip
            stack.push_async_callback(_close, nc)
            await put_stream(nc.jetstream(), audit_stream_config(s))  # the settings win
            await stack.enter_async_context(self._suppressed)
            self._nc, self._resources = nc, stack.pop_all()
        self._task = asyncio.create_task(self._write(), name="audit-writer")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.flush_suppressed()  # what was counted since the last period, stored with the rest
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), _DRAIN_S)
            await cancel_and_join(task)
        if left := self._queue.qsize():
            self._drop(left, "the gateway stopped before they were stored")
        self._nc = None
        await self._resources.aclose()

    # --- recording --------------------------------------------------------------------------
    def record(
        self,
        method: str,
        *,
        caller: Caller | None = None,
        actor: str | None = None,
        token_id: str | None = None,
        instance_id: str | None = None,
        machine_id: str | None = None,
        params: Any = None,
        result: Any = None,
        error: BaseException | None = None,
        origin: Origin | None = None,
    ) -> None:
        """Record one action; never waits. ``actor`` names who acted when there is no
        ``caller`` (a failed sign-in's claimed name), else ``actor_of(caller)``; ``origin``:
        where its request came from (by default the caller's). ``params`` and
        ``result``: Structs or builtins, redacted and bounded here. ``error``: a FleetError's
        code and message; any other exception is an internal error. A refused (or failed)
        call is an entry within its caller's budget (``CallerRefusals``) and while the buffer
        has room for refusals, else counted into that caller's ``audit.suppressed``."""
        if not self.enabled:
            return
        entry = self._entry(method, caller=caller, actor=actor, token_id=token_id,
                            instance_id=instance_id, machine_id=machine_id, params=params,
                            result=result, error=error, origin=origin)  # fmt: skip
        if entry.ok:
            self._put(entry)
            return
        code = entry.error_code or InternalError.code
        if not self._room_for_refusals():
            self.callers.count(entry.actor, entry.method, code, entry.token_id)
        elif self.callers.admit(entry.actor, entry.method, code, entry.token_id):
            self._put(entry)

    def refused(self, method: str, error: FleetError, *, origin: Origin | None,
                actor: str | None = None, token_id: str | None = None,
                machine_id: str | None = None) -> None:  # fmt: skip
        """A refusal of a request (from ``origin``) that authenticated as no one (``actor``,
        ``token_id``: whom the credential it sent names, if anyone: an expired token's): an
        entry, within the refusal gate's limits (``audit_refusals``) and the buffer's room for
        refusals, else counted."""
        if not self.enabled:
            return
        address = origin.client_address if origin else None
        if not self._room_for_refusals():
            self.refusals.count(method, address)
        elif self.refusals.admit(method, address):
            self._put(self._entry(method, actor=actor, token_id=token_id,
                                  machine_id=machine_id, error=error, origin=origin))  # fmt: skip

    def flush_suppressed(self) -> None:
        """Write what was counted since the last time: one ``audit.suppressed`` entry for the
        refusals of no one, and one for each caller past its budget."""
        if (counts := self.refusals.take_counts()) is not None:
            self._put(self._entry(a.Action.SUPPRESSED, actor="anonymous", params=counts,
                                  error=Unauthorized(f"{counts['count']} refusals of requests "
                                                     "that authenticated as no one, past "
                                                     "their limit")))  # fmt: skip
        room = self._queue.maxsize - self._queue.qsize()
        for actor, summary in self.callers.take_summaries(room):
            entry = self._entry(a.Action.SUPPRESSED, actor=actor, params=summary.params())
            entry.ok, entry.error_code = False, next(iter(summary.codes))
            entry.error = f"{summary.count} refused or failed calls past the caller's limit"
            self._put(entry)

    def _entry(self, method: str, *, caller: Caller | None = None, actor: str | None = None,
               token_id: str | None = None, instance_id: str | None = None,
               machine_id: str | None = None, params: Any = None, result: Any = None,
               error: BaseException | None = None,
               origin: Origin | None = None) -> a.AuditEntry:  # fmt: skip
        if origin is None and caller is not None:
            origin = caller.origin
        failure = _as_fleet_error(error)
        return a.AuditEntry(
            id=uuid.uuid4().hex,
            actor=actor or actor_of(caller),
            token_id=caller.token_id if caller is not None else token_id,
            method=method[: a.MAX_STRING],
            instance_id=instance_id,
            machine_id=machine_id,
            params=a.bounded(_builtins(params), "params") or {},
            ok=failure is None,
            result=None if failure is not None else a.bounded(_builtins(result), "result"),
            error_code=None if failure is None else failure.code,
            error=None if failure is None else failure.message[: a.MAX_STRING],
            client_address=origin.client_address if origin else None,
            user_agent=origin.user_agent if origin else None,
        )

    def _room_for_refusals(self) -> bool:
        """Refusals take at most half the buffer: the other half is always there for what
        callers did, however many refusals come."""
        return self._queue.qsize() < self._queue.maxsize // 2

    def _put(self, entry: a.AuditEntry) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self._drop(1, "the buffer is full")

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        self._counted.labels("dropped").inc(count)
        now, last = self._clock.monotonic(), self._dropped_logged_at
        if last is None or now - last >= _DROP_LOG_S or self._task is None:
            self._dropped_logged_at = now
            log.error("audit.dropped", count=count, dropped_total=self.dropped, reason=why)

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._store_batch(batch)
            except asyncio.CancelledError:  # stopped mid-batch: none of it is known stored
                self._drop(len(batch), "the gateway stopped while storing them")
                raise
            except Exception as exc:  # task boundary: the writer goes on with the next batch
                log.exception("audit.store_failed", entries=len(batch), error=repr(exc))
                self._drop(len(batch), f"storing them failed: {exc!r}")
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _store_batch(self, batch: list[a.AuditEntry]) -> None:
        for entry in batch:
            if entry.machine_id is not None and entry.instance_id is None:
                entry.instance_id = await self._instance_of(entry.machine_id)
        outcomes = await asyncio.gather(*(self._store_one(e) for e in batch))
        failed = {e.id: why for e, why in zip(batch, outcomes, strict=True) if why is not None}
        self.stored += len(batch) - len(failed)
        self._counted.labels("stored").inc(len(batch) - len(failed))
        if failed:
            reasons = sorted(set(failed.values()))
            self._drop(len(failed), f"the stream did not store them: {'; '.join(reasons)}")

    async def _store_one(self, entry: a.AuditEntry) -> str | None:
        """Stored (None), or why not."""
        subject = a.audit_subject(entry.instance_id, entry.machine_id)
        try:
            await natsconn.publish_stored(self.nc, subject, a.encode_entry(entry),
                                          msg_id=entry.id, attempts=6)  # fmt: skip
        except natsconn.PublishRejected as exc:
            return str(exc)
        except (*natsconn.TRANSIENT, natsconn.StreamUnavailable):
            return "no acknowledgement from the stream"
        return None

    async def _instance_of(self, machine_id: str) -> str | None:
        """The machine's instance (a machine never changes instance: cached)."""
        if machine_id in self._instances:
            return self._instances[machine_id]
        try:
            instance_id: str | None = (await self._store.get_machine(machine_id)).instance_id
        except FleetError:  # no such machine (a refused call named it)
            instance_id = None
        except TRANSIENT as exc:  # the store is failing over: stored without it, not cached
            log.warning("audit.instance_unknown", machine_id=machine_id, error=repr(exc))
            return None
        self._instances[machine_id] = instance_id
        if len(self._instances) > _MACHINE_CACHE:
            self._instances.popitem(last=False)
        return instance_id

    # --- reading ----------------------------------------------------------------------------
    async def entries(self, p: a.AuditListParams) -> a.AuditEntries:
        """What ``audit.list`` answers (whoever asks may read: ``may_read``)."""
        return a.AuditEntries(entries=await read_entries(self.nc, p))

    def buffered(self) -> list[a.AuditEntry]:
        """The entries recorded and not stored yet, oldest first."""
        return list(self._queue._queue)  # type: ignore[attr-defined]


async def _close(nc: NATS) -> None:
    with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
        await nc.drain()


def may_read(c: Caller) -> None:
    """Who may read the audit log: admins and auditors."""
    if not (c.admin or c.role == "auditor"):
        raise Forbidden("only an admin or an auditor may read the audit log")


def _as_fleet_error(error: BaseException | None) -> FleetError | None:
    if error is None or isinstance(error, FleetError):
        return error
    return InternalError(f"internal error: {type(error).__name__}")


def _builtins(value: Any) -> Any:
    if value is None:
        return None
    try:
        return a.redact(msgspec.to_builtins(value))
    except (TypeError, ValueError):  # not encodable: say what it was, never fail the call
        return {"unrecordable": type(value).__name__}


# --- every state-changing method ------------------------------------------------------------
def audited(router: Router[Caller], audit: AuditLog) -> Router[Caller]:
    """``router`` with each method that is not read-only recorded as it answers, and each
    read-only one when it is refused (``Forbidden``: a viewer's env read, a token's look
    outside its instances)."""
    out = Router[Caller]()
    for name, route in router.routes.items():
        read_only = name in READ_ONLY_METHODS
        out.register(route.spec, _recorded(name, route.handler, audit, refusals_only=read_only))
    return out


def _recorded(name: str, handler: Handler[Any, Any, Caller], audit: AuditLog, *,
              refusals_only: bool) -> Any:  # fmt: skip
    async def call(params: Any, c: Caller) -> Any:
        instance_id = getattr(params, "instance_id", None)
        machine_id = getattr(params, "machine_id", None)
        try:
            result = await handler(params, c)
        except Exception as exc:
            if not refusals_only or isinstance(exc, Forbidden):
                audit.record(name, caller=c, instance_id=instance_id, machine_id=machine_id,
                             params=params, error=exc)  # fmt: skip
            raise
        if refusals_only:
            return result
        found = _ids_in(result)
        audit.record(name, caller=c, instance_id=instance_id or found.get("i"),
                     machine_id=machine_id or found.get("m"), params=params,
                     result=result)  # fmt: skip
        return result

    return call


def _ids_in(result: object) -> dict[str, str]:
    """The instance and machine a result names (a created instance's or machine's own id)."""
    found: dict[str, str] = {}
    for value in (getattr(result, "id", None), getattr(result, "instance_id", None)):
        if isinstance(value, str) and value[:2] in ("i-", "m-"):
            found.setdefault(value[0], value)
    return found
