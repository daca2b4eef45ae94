"""The gateway's ``codemode.*`` methods: scope a run to the caller, hand it to the codemode
service, and serve its ``fleet``/``machine`` tool calls with the caller's rights.

No token leaves the gateway: while a run lasts, this gateway answers ``codemode.<runId>.tool``
with its own dispatcher and the ``Caller`` that started the run, so a tool call is checked
exactly like the same call over ``POST /rpc``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from base.reply_server import ReplyServer
from contracts.bus import subjects
from contracts.bus.events import WakeBy
from contracts.errors import CodemodeUnavailable, InvalidParams, NotFound, error_from_wire
from contracts.gateway.codemode import (
    CODEMODE_BRIDGES_LIST,
    CODEMODE_BRIDGES_REMOVE,
    CODEMODE_BRIDGES_SET,
    CODEMODE_CANCEL,
    CODEMODE_DESCRIBE,
    CODEMODE_LIST,
    CODEMODE_RUN,
    BridgeInfo,
    BridgeList,
    BridgeListParams,
    BridgeRef,
    BridgeRemoved,
    Cancelled,
    DescribeJob,
    DescribeOutcome,
    DescribeParams,
    ListRunsParams,
    McpBridge,
    OpenApiBridge,
    RunJob,
    RunList,
    RunOutcome,
    RunParams,
    RunRef,
    RunResult,
    SetBridgeParams,
    Stubs,
    new_run_id,
)
from contracts.rpc.jsonrpc import handles
from controlplane.bus import Bus
from controlplane.security.crypto import SecretBox
from controlplane.store import Store
from services.gateway.auth import Access, Caller, default_instance

log = structlog.get_logger(__name__)
Dispatch = Callable[[bytes, Caller], Awaitable[bytes | None]]
#: How long past its own timeout a run may take to be answered (sandbox start, records).
ANSWER_GRACE_S = 15.0
DESCRIBE_TIMEOUT_S = 60.0


class CodemodeOps:
    @property
    def _nc(self) -> NATS:
        return self._bus.nc

    def __init__(
        self, *, bus: Bus, store: Store, box: SecretBox, access: Access, dispatch: Dispatch
    ) -> None:
        self._bus = bus
        self._records = store.codemode
        self._box = box
        self._access = access
        #: What a run's tool calls go through: the gateway's dispatcher, with the run's caller.
        self.dispatch = dispatch

    async def _scope(
        self, c: Caller, instance_id: str | None, machine_id: str | None
    ) -> str | None:
        """The instance a run (or describe) belongs to, once the caller is checked for the
        method's scope on it (on the platform when it is none): a run gets that instance's
        bridges, which call their APIs with the credentials its owner stored."""
        if machine_id is not None:
            # Its machine starts waking now; the run's calls on it wait for it.
            machine = await self._access.live_machine(c, machine_id, wake=WakeBy.CODEMODE,
                                                      wait=False)  # fmt: skip
            if instance_id is not None and instance_id != machine.instance_id:
                raise InvalidParams(
                    f"machine {machine_id} is not in instance {instance_id}", field="$.instanceId"
                )
            return machine.instance_id
        if instance_id is None:
            instance_id = _implied_instance(c)
        await self._access.instance_exists(c, instance_id)
        return instance_id

    async def prepare(self, p: RunParams, c: Caller) -> RunJob:
        instance_id = await self._scope(c, p.instance_id, p.machine_id)
        return RunJob(
            run_id=new_run_id(),
            code=p.code,
            timeout_s=p.timeout_s,
            token_id=c.token_id,
            instance_id=instance_id,
            machine_id=p.machine_id,
        )

    async def execute(self, job: RunJob, c: Caller) -> RunResult:
        """Run ``job`` for ``c`` to its end (the caller may watch its events meanwhile)."""
        async with self._serving_tools(job.run_id, c):
            try:
                msg = await self._nc.request(
                    subjects.CODEMODE_RUN,
                    msgspec.json.encode(job),
                    timeout=job.timeout_s + ANSWER_GRACE_S,
                )
            except NoRespondersError:
                raise CodemodeUnavailable("no codemode service is running") from None
            except NatsTimeout:
                raise CodemodeUnavailable(f"run {job.run_id} was not answered in time") from None
        outcome = msgspec.json.decode(msg.data, type=RunOutcome)
        if outcome.error is not None:
            raise error_from_wire(outcome.error)
        assert outcome.result is not None
        return outcome.result

    @asynccontextmanager
    async def _serving_tools(self, run_id: str, c: Caller) -> AsyncIterator[None]:
        dispatch = self.dispatch

        async def answer(msg: Msg) -> bytes:
            return await dispatch(msg.data, c) or b"null"

        # One call at a time, as they come; those under way when the run ends are moot.
        async with ReplyServer(self._nc, subjects.codemode_tool(run_id), answer, concurrency=1,
                               drain_s=0, failed_event="codemode.tool_call_failed"):  # fmt: skip
            yield

    @handles(CODEMODE_RUN)
    async def codemode_run(self, p: RunParams, c: Caller) -> RunResult:
        return await self.execute(await self.prepare(p, c), c)

    @handles(CODEMODE_CANCEL)
    async def codemode_cancel(self, p: RunRef, c: Caller) -> Cancelled:
        record = await self._records.get_run(p.run_id)
        if record is None:
            raise NotFound(f"no run {p.run_id}")
        if record.token_id != c.token_id:  # its starter may always; others by instance
            c.require(record.instance_id)
        try:
            await self._nc.request(subjects.codemode_cancel(p.run_id), b"", timeout=5.0)
        except (NoRespondersError, NatsTimeout):
            return Cancelled(cancelled=False)
        return Cancelled(cancelled=True)

    @handles(CODEMODE_LIST)
    async def codemode_list(self, p: ListRunsParams, c: Caller) -> RunList:
        instance_id = p.instance_id if p.instance_id is not None else default_instance(c)
        if instance_id is not None:
            await self._access.instance_exists(c, instance_id)
        return RunList(runs=await self._records.list_runs(instance_id, p.limit))

    @handles(CODEMODE_DESCRIBE)
    async def codemode_describe(self, p: DescribeParams, c: Caller) -> Stubs:
        instance_id = await self._scope(c, p.instance_id, p.machine_id)
        job = DescribeJob(providers=p.providers, instance_id=instance_id, machine_id=p.machine_id)
        try:
            msg = await self._nc.request(
                subjects.CODEMODE_DESCRIBE, msgspec.json.encode(job), timeout=DESCRIBE_TIMEOUT_S
            )
        except (NoRespondersError, NatsTimeout):
            raise CodemodeUnavailable("no codemode service answered") from None
        outcome = msgspec.json.decode(msg.data, type=DescribeOutcome)
        if outcome.error is not None:
            raise error_from_wire(outcome.error)
        assert outcome.stubs is not None
        return outcome.stubs

    @handles(CODEMODE_BRIDGES_SET)
    async def codemode_bridges_set(self, p: SetBridgeParams, c: Caller) -> BridgeInfo:
        await self._access.instance_exists(c, p.instance_id)
        bridge = p.bridge
        if bridge.authorization is not None:
            bridge = msgspec.structs.replace(
                bridge, authorization=self._box.encrypt(bridge.authorization)
            )
        await self._records.set_bridge(p.instance_id, bridge)
        return _info(bridge)

    @handles(CODEMODE_BRIDGES_LIST)
    async def codemode_bridges_list(self, p: BridgeListParams, c: Caller) -> BridgeList:
        await self._access.instance_exists(c, p.instance_id)
        return BridgeList(bridges=[_info(b) for b in await self._records.bridges(p.instance_id)])

    @handles(CODEMODE_BRIDGES_REMOVE)
    async def codemode_bridges_remove(self, p: BridgeRef, c: Caller) -> BridgeRemoved:
        await self._access.instance_exists(c, p.instance_id)
        return BridgeRemoved(removed=await self._records.remove_bridge(p.instance_id, p.name))


def _implied_instance(c: Caller) -> str | None:
    """The instance a run that names none belongs to: the caller's one instance; the platform
    for the admin and for a caller bound to no instance; a caller bound to several names it."""
    if c.admin or c.instance_id is not None or c.instance_ids is None:
        return c.instance_id
    raise InvalidParams("name an instance (instanceId): this caller may reach several",
                        field="$.instanceId")  # fmt: skip


def _info(bridge: OpenApiBridge | McpBridge) -> BridgeInfo:
    if isinstance(bridge, OpenApiBridge):
        kind, url = "openapi", bridge.spec_url
    else:
        kind, url = "mcp", bridge.url
    has_auth = bridge.authorization is not None
    return BridgeInfo(name=bridge.name, kind=kind, url=url, has_authorization=has_auth)  # type: ignore[arg-type]
