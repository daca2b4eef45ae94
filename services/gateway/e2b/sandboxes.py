"""E2B's sandbox lifecycle in fleetd's methods: a sandbox is an instance with its machine, its id
the machine's (docs/e2b.md).

- create: ``instances.create``, its ``envVars`` as the instance's variables (``env.set``), its
  template's environment (``instances.setEnvironment``), ``machines.create`` on the front's
  runtime (``FLEET_E2B_RUNTIME``, gvisor: its pause keeps memory); answered once it is ready,
  its timeout counted from then;
- kill: ``machines.archive``; pause: ``machines.pause``; connect: ``machines.resume`` when it is
  paused (its timeout from then), else its timeout only lengthened;
- what E2B says beyond the machine (template, metadata, its end) is ``store.e2b``'s record.

Each call runs as the caller whose API key it came with, through the gateway's dispatcher: the
same rights, budgets and audit as the JSON-RPC method it becomes.
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime

import msgspec
import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.retry import Backoff, Retries
from contracts import status
from contracts.bus.events import WakeBy
from contracts.e2b import control as api
from contracts.errors import Conflict, NotFound
from contracts.gateway.environments import (
    INSTANCES_SET_ENVIRONMENT,
    Environment,
    SetEnvironmentParams,
)
from contracts.gateway.limits import INSTANCES_GET_LIMITS
from contracts.gateway.rpc import (
    ENV_SET,
    INSTANCES_CREATE,
    MACHINES_ARCHIVE,
    MACHINES_CREATE,
    MACHINES_GET,
)
from contracts.gateway.stop import MACHINES_PAUSE, MACHINES_RESUME, MACHINES_START, MACHINES_STOP
from contracts.gateway.types import (
    CreateInstanceParams,
    CreateMachineParams,
    InstanceRef,
    MachineRef,
    SetEnvParams,
)
from contracts.ids import SNAPSHOT_ID_RE
from contracts.models import Machine
from contracts.rpc.jsonrpc import MethodSpec
from contracts.status import MachineStatus as S
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import E2bSandbox, Store, TokenHolder
from services.gateway.auth import Caller, current_caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.errors import unsupported
from services.gateway.e2b.network import egress_of, set_egress
from services.gateway.rpc import Waker

log = structlog.get_logger(__name__)

#: Statuses a sandbox is ``paused`` in (E2B knows running and paused only), and the ones it
#: no longer exists in.
ASLEEP = status.ASLEEP
GONE = status.TERMINAL
#: Statuses a new or resumed machine is on its way to ready in.
ON_ITS_WAY = status.NOT_PROVISIONED | status.COMING_UP | {S.RESUMING}
#: How often a pause under way is looked at.
POLL = Backoff(base=0.02, cap=0.1)


class Sandboxes:
    def __init__(self, *, store: Store, calls: Calls, waker: Waker, box: SecretBox,
                 settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        self._store = store
        self._box = box
        self._records = store.e2b
        self._calls = calls
        self._waker = waker
        self._settings = settings
        self._clock = clock

    @property
    def store(self) -> Store:
        return self._store

    # --- create ----------------------------------------------------------------------------------
    async def create(self, body: api.NewSandbox, caller: Caller) -> api.Sandbox:
        """A new sandbox of ``body``'s template (or of a snapshot, by its id), ready."""
        _refuse_unsupported(body)
        if SNAPSHOT_ID_RE.fullmatch(body.template_id):
            snapshot = await self._store.snapshots.get(body.template_id)
            machine = await self._calls(MACHINES_CREATE, CreateMachineParams(
                instance_id=snapshot.instance_id, from_snapshot=snapshot.id,
                runtime=self._settings.e2b_runtime), caller)  # fmt: skip
            return await self.adopt(machine, body, caller)
        environment = self.environment_of(body.template_id)
        instance = await self._calls(INSTANCES_CREATE, CreateInstanceParams(
            name=f"e2b-{_slug(body.template_id)}"), caller)  # fmt: skip
        # As the store has it now: a member owns the instance it just made.
        caller = await current_caller(self._store, caller.token_id) or caller
        for name, value in (body.env_vars or {}).items():
            await self._calls(ENV_SET, SetEnvParams(instance_id=instance.id, name=name,
                                                    value=value), caller)  # fmt: skip
        if (egress := egress_of(body.network, body.allow_internet_access)) is not None:
            await set_egress(self._calls, instance.id, egress, caller)
        if environment is not None:
            await self._calls(INSTANCES_SET_ENVIRONMENT, SetEnvironmentParams(
                instance_id=instance.id, environment=environment), caller)  # fmt: skip
        machine = await self._calls(MACHINES_CREATE, CreateMachineParams(
            instance_id=instance.id, runtime=self._settings.e2b_runtime), caller)  # fmt: skip
        return await self.adopt(machine, body, caller)

    async def adopt(self, machine: Machine, body: api.NewSandbox,
                    caller: Caller) -> api.Sandbox:  # fmt: skip
        """A sandbox of a machine just made (a create's, a fork's), once it is ready; archived
        when it does not get there: nothing is left of a sandbox that was not made."""
        try:
            machine = await self._ready(machine)
        except BaseException:
            await self._calls(MACHINES_ARCHIVE, MachineRef(machine_id=machine.id), caller)
            raise
        now = self._clock.now()
        public = body.network is None or body.network.allow_public_traffic is not False
        record = E2bSandbox(
            id=machine.id, instance_id=machine.instance_id, template_id=body.template_id,
            alias=body.template_id, metadata=body.metadata or {}, made_by=caller.token_id,
            started_at=now, end_at=now + _timeout(body.timeout),
            on_timeout="pause" if body.auto_pause else "kill",
            auto_resume=bool(body.auto_resume and body.auto_resume.enabled),
            public_traffic=public,
        )  # fmt: skip
        await self._records.put(record)
        log.info("e2b.sandbox_made", machine_id=machine.id, template=body.template_id)
        return await self.answer(record, caller)

    def environment_of(self, template: str) -> Environment | None:
        """The environment a template names (None: the platform's default); NotFound when it
        names none."""
        if template in (api.BASE_TEMPLATE, api.CODE_INTERPRETER_TEMPLATE):
            return None
        image = self._settings.e2b_templates.get(template)
        if image is None:
            raise NotFound(
                f"template {template!r} not found: fleetd knows {api.BASE_TEMPLATE!r}, "
                f"{api.CODE_INTERPRETER_TEMPLATE!r} and FLEET_E2B_TEMPLATES_SPEC's names"
            )
        return Environment(image=image)

    async def answer(self, record: E2bSandbox, caller: Caller) -> api.Sandbox:
        """A create's, connect's or fork's answer: with an access token of its own, reaching
        this sandbox and no other, with ``caller``'s rights, and a traffic token that opens its
        ports only."""
        token, traffic = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        for made, is_traffic in ((token, False), (traffic, True)):
            await self._records.add_token(made, TokenHolder(
                sandbox_id=record.id, caller_id=caller.token_id, sealed=self._box.encrypt(made),
                traffic=is_traffic))  # fmt: skip
        return api.Sandbox(template_id=record.template_id, sandbox_id=record.id,
                           client_id=record.made_by, alias=record.alias,
                           envd_access_token=token, traffic_access_token=traffic)  # fmt: skip

    async def _ready(self, machine: Machine) -> Machine:
        """The machine once ready (its daemon answering); Conflict naming why it is not."""
        within = self._settings.boot_timeout_s + self._settings.probe_timeout_s
        waits = Retries(POLL, budget_s=within, clip=True, clock=self._clock)
        while machine.status in ON_ITS_WAY and await waits.pause():
            machine = await self._store.get_machine(machine.id)
        if machine.status is S.READY:  # and its daemon answers, within what is left
            machine = await self._waker.wake(machine, WakeBy.REQUEST, within)
        if machine.status is not S.READY:
            raise Conflict(
                f"sandbox {machine.id} did not start: {machine.status_reason}",
                data={"machineId": machine.id, "status": machine.status.value},
            )
        return machine

    # --- one sandbox -----------------------------------------------------------------------------
    async def find(self, sandbox_id: str, caller: Caller) -> tuple[E2bSandbox, Machine]:
        """The sandbox's record and its machine as ``caller`` may see it; NotFound when there
        is none (killed, or never one of the front's)."""
        record = await self._records.get(sandbox_id)
        if record is None:
            raise NotFound(f"sandbox {sandbox_id} not found")
        machine = await self._calls(MACHINES_GET, MachineRef(machine_id=sandbox_id), caller)
        if machine.status in GONE:
            raise NotFound(f"sandbox {sandbox_id} not found ({machine.status.value})")
        return record, machine

    async def detail(self, sandbox_id: str, caller: Caller) -> api.SandboxDetail:
        record, machine = await self.find(sandbox_id, caller)
        limits = await self._calls(INSTANCES_GET_LIMITS, InstanceRef(
            instance_id=record.instance_id), caller)  # fmt: skip
        return api.SandboxDetail(
            template_id=record.template_id, sandbox_id=record.id, client_id=record.made_by,
            alias=record.alias, started_at=_at(record.started_at), end_at=_at(record.end_at),
            cpu_count=max(1, math.ceil(limits.cpus)), memory_mb=limits.memory_mb,
            disk_size_mb=self._settings.instance_disk_mb, state=state_of(machine),
            metadata=record.metadata,
            lifecycle=api.Lifecycle(auto_resume=record.auto_resume,
                                    on_timeout="pause" if record.on_timeout == "pause"
                                    else "kill"),
        )  # fmt: skip

    async def kill(self, sandbox_id: str, caller: Caller) -> bool:
        """False when there is no such sandbox (E2B's SDKs answer that without raising)."""
        try:
            await self.find(sandbox_id, caller)
        except NotFound:
            return False
        await self._calls(MACHINES_ARCHIVE, MachineRef(machine_id=sandbox_id), caller)
        await self._records.forget(sandbox_id)
        log.info("e2b.sandbox_killed", machine_id=sandbox_id)
        return True

    async def set_timeout(self, sandbox_id: str, timeout_s: int, caller: Caller) -> None:
        """Its end moved to ``timeout_s`` from now, shorter or longer."""
        record, _ = await self.find(sandbox_id, caller)
        await self._records.put(_ending(record, self._clock.now() + _timeout(timeout_s)))

    async def pause(self, sandbox_id: str, caller: Caller) -> bool:
        """False when it is paused already (E2B answers 409, the SDKs False)."""
        _, machine = await self.find(sandbox_id, caller)
        if machine.status in ASLEEP:
            return False
        await self._calls(pause_of(machine), MachineRef(machine_id=sandbox_id), caller)
        await self.until_asleep(sandbox_id)
        return True

    async def until_asleep(self, machine_id: str) -> None:
        """Until the machine's pause is done (a connect right after it would find it
        pausing); Conflict naming its status when it did not pause."""
        machine = await self._store.get_machine(machine_id)
        waits = Retries(POLL, budget_s=self._settings.wake_timeout_s, clip=True,
                        clock=self._clock)  # fmt: skip
        while machine.status in (S.PAUSING, S.STOPPING) and await waits.pause():
            machine = await self._store.get_machine(machine_id)
        if machine.status not in ASLEEP:
            raise Conflict(
                f"sandbox {machine_id} did not pause: it is {machine.status.value}",
                data={"machineId": machine_id, "status": machine.status.value},
            )

    async def connect(self, sandbox_id: str, timeout_s: int | None,
                      caller: Caller) -> tuple[api.Sandbox, bool]:  # fmt: skip
        """The sandbox, resumed if it was paused (its timeout counted from now), else its end
        only ever lengthened; and whether it was resumed."""
        record, machine = await self.find(sandbox_id, caller)
        end = self._clock.now() + _timeout(timeout_s)
        resumed = machine.status in ASLEEP
        if machine.status in (S.PAUSING, S.STOPPING):  # a pause under way: woken once done
            await self.until_asleep(sandbox_id)
        if resumed:
            paused = (await self._store.get_machine(sandbox_id)).status is S.PAUSED
            wake = MACHINES_RESUME if paused else MACHINES_START
            await self._calls(wake, MachineRef(machine_id=sandbox_id), caller)
            await self._ready(await self._store.get_machine(sandbox_id))
        elif record.end_at > end:
            end = record.end_at
        await self._records.put(_ending(record, end))
        return await self.answer(record, caller), resumed


def pause_of(machine: Machine) -> MethodSpec[MachineRef, Machine]:
    """What pauses a sandbox: ``machines.pause`` (its memory kept); a namespaces machine keeps
    no memory, and its pause is ``machines.stop`` (E2B's filesystem-only pause)."""
    return MACHINES_PAUSE if machine.runtime == "gvisor" else MACHINES_STOP


def state_of(machine: Machine) -> api.State:
    return "paused" if machine.status in ASLEEP else "running"


def _refuse_unsupported(body: api.NewSandbox) -> None:
    for field, value, why in (
        ("volumeMounts", body.volume_mounts, "fleetd has no volumes: a machine's home is kept"),
        ("mcp", body.mcp, "fleetd has no MCP gateway in a sandbox"),
        ("iam", body.iam, "fleetd mints no cloud identity tokens"),
    ):
        if value:
            raise unsupported(field, why)


def _timeout(timeout_s: int | None) -> int:
    return api.DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s


def _ending(record: E2bSandbox, end_at: float) -> E2bSandbox:
    return msgspec.structs.replace(record, end_at=end_at)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _slug(template: str) -> str:
    """A template's name as an instance's name may hold it."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in template)[:48] or "sandbox"
