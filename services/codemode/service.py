"""The codemode service: takes run jobs from the gateway, runs them, keeps their records.

Jobs arrive on ``CODEMODE_RUN`` in a queue group, so replicas share them; each replica runs at
most ``FLEET_CODEMODE_CONCURRENCY`` at once (more wait their turn). The replica running a run
also answers its cancel subject. A job that cannot be decoded, or a run that crashes, is
answered with an error and logged: it never takes the service down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from base.reply_server import ReplyServer, respond
from base.tasks import cancel_and_join
from contracts.bus import subjects
from contracts.errors import FleetError, InternalError, InvalidParams, NotFound
from contracts.gateway.codemode import (
    DescribeJob,
    DescribeOutcome,
    RunEvent,
    RunJob,
    RunOutcome,
    RunRecord,
    RunResult,
    Stubs,
    now,
)
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from services.codemode.bridges import bridge_providers
from services.codemode.engine import Run, ToolProvider
from services.codemode.providers import FleetProvider, GatewayCaller, MachineProvider
from services.codemode.sandbox import Limits
from services.codemode.sandbox_gvisor import codemode_runsc

log = structlog.get_logger(__name__)
J = TypeVar("J")
_ENC = msgspec.json.Encoder()
#: A tool call through the gateway may take as long as a daemon's exec (its own timeout).
TOOL_TIMEOUT_S = 3600.0


class CodemodeService:
    def __init__(self, nc: NATS, store: Store, box: SecretBox, settings: Settings) -> None:
        self._nc = nc
        self._records = store.codemode
        self._box = box
        self._limits = Limits(
            cpu_s=settings.codemode_cpu_s,
            memory_mb=settings.codemode_memory_mb,
            processes=settings.codemode_processes,
        )
        self._runsc = codemode_runsc(settings)
        self._slots = asyncio.Semaphore(settings.codemode_concurrency)
        # A stop cancels the runs at once: each run's sandbox is killed as its context unwinds.
        runs = (subjects.CODEMODE_RUN, self._answer_run)
        describes = (subjects.CODEMODE_DESCRIBE, self._answer_describe)
        self._servers = [
            ReplyServer(nc, subject, handle, queue=subjects.CODEMODE_QUEUE, drain_s=0,
                        failed_event="codemode.respond_failed")
            for subject, handle in (runs, describes)
        ]  # fmt: skip

    async def __aenter__(self) -> CodemodeService:
        for server in self._servers:
            await server.__aenter__()
        await self._nc.flush()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for server in self._servers:
            await server.stop()

    async def _answer_run(self, msg: Msg) -> bytes:
        try:
            return _ENC.encode(RunOutcome(result=await self.run(_decode(msg, RunJob, "run"))))
        except Exception as exc:  # noqa: BLE001 - task boundary: this run fails, the service goes on
            return _ENC.encode(RunOutcome(error=_wire(exc, "run", "the run crashed")))

    async def run(self, job: RunJob) -> RunResult:
        async with self._slots:
            providers = await self.providers(job.run_id, job.instance_id, job.machine_id)
            run = Run(job, providers, self._limits, self._publisher(job.run_id), runsc=self._runsc)
            record = RunRecord(run_id=job.run_id, status="running", instance_id=job.instance_id,
                               machine_id=job.machine_id, token_id=job.token_id,
                               started_at=now())  # fmt: skip
            await self._records.save_run(record)
            cancel = await self._nc.subscribe(subjects.codemode_cancel(job.run_id), cb=None)
            watcher = asyncio.create_task(self._watch_cancel(cancel, run))
            t0 = time.monotonic()
            log.info("codemode.run_started", run_id=job.run_id, instance_id=job.instance_id)
            try:
                result = await run.execute()
            finally:
                await cancel_and_join(watcher)
                await cancel.unsubscribe()
            record.status, record.result, record.error = result.status, result.result, result.error
            record.logs, record.duration_ms = result.logs, int((time.monotonic() - t0) * 1000)
            await self._records.save_run(record)
            log.info("codemode.run_ended", run_id=job.run_id, status=result.status)
            return result

    async def _watch_cancel(self, sub: Subscription, run: Run) -> None:
        async for msg in sub.messages:
            run.cancel()
            with contextlib.suppress(nats.errors.Error):  # the canceller may be gone
                await respond(msg, b'{"cancelled":true}')

    def _publisher(self, run_id: str) -> Any:
        subject = subjects.codemode_events(run_id)

        async def publish(event: RunEvent) -> None:
            await self._nc.publish(subject, _ENC.encode(event))

        return publish

    async def providers(
        self, run_id: str, instance_id: str | None, machine_id: str | None
    ) -> dict[str, ToolProvider]:
        gateway = GatewayCaller(self._nc, run_id, TOOL_TIMEOUT_S)
        found: dict[str, ToolProvider] = {"fleet": FleetProvider(gateway)}
        if machine_id is not None:
            found["machine"] = MachineProvider(gateway, machine_id)
        if instance_id is not None:
            for bridge in await bridge_providers(self._records, self._box, instance_id):
                found.setdefault(bridge.name, bridge)
        return found

    async def _answer_describe(self, msg: Msg) -> bytes:
        try:
            stubs = await self.describe(_decode(msg, DescribeJob, "describe"))
            return _ENC.encode(DescribeOutcome(stubs=stubs))
        except Exception as exc:  # noqa: BLE001 - task boundary
            return _ENC.encode(DescribeOutcome(error=_wire(exc, "describe", "describe crashed")))

    async def describe(self, job: DescribeJob) -> Stubs:
        providers = await self.providers("run-describe", job.instance_id, job.machine_id)
        wanted = job.providers if job.providers is not None else sorted(providers)
        unknown = [p for p in wanted if p not in providers]
        if unknown:
            raise NotFound(f"no provider {unknown[0]!r} (have: {', '.join(sorted(providers))})")
        return Stubs(stubs={name: await providers[name].describe() for name in wanted})


def _decode(msg: Msg, job: type[J], what: str) -> J:
    try:
        return msgspec.json.decode(msg.data, type=job)
    except msgspec.DecodeError as exc:
        raise InvalidParams(f"bad {what} job: {exc}") from None


def _wire(exc: Exception, what: str, crashed: str) -> dict[str, Any]:
    """The error a job is answered with: a FleetError as it is, anything else a crash (logged)."""
    if isinstance(exc, FleetError):
        return exc.to_wire()
    log.error(f"codemode.{what}_crashed", exc_info=exc)
    return InternalError(crashed).to_wire()
