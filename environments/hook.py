"""A devcontainer machine's lifecycle commands as the platform's services run them
(environments/lifecycle_commands.py): the setup pusher after setup (the once-per-machine ones not
yet done, and ``postStartCommand``: a setup follows every start) and after a reconcile brought new
content (``updateContentCommand``); whoever opens a terminal session, ``ON_ATTACH``. Inert for
a machine with no lifecycle record: nothing runs, nothing is read beyond one key.
Each command's output is ``machine.lifecycle-output`` events while it runs (batched: at most
one per ``OUTPUT_INTERVAL_S``), its end a ``machine.lifecycle-ran`` event after the last of
them; a failing one raises LifecycleFailed, and the machine fails at the stage it names."""

from __future__ import annotations

import msgspec
import structlog

from contracts.bus.events import LIFECYCLE_OUTPUT_MAX, LifecycleOutput, LifecycleRan
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult, OutputChunk
from contracts.errors import ToolError
from contracts.ids import derived_event_id, new_event_id
from contracts.models import Machine
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineClient
from controlplane.events.output_lines import OutputTrickle
from controlplane.machines.failures import fail_machine
from controlplane.machines.machine_config import InstanceConfig, for_machine, load_instance_config
from controlplane.settings import Settings
from controlplane.store import Store
from environments import lifecycle_commands as lc

log = structlog.get_logger(__name__)
_CHUNK = msgspec.json.Decoder(OutputChunk)


def with_project_env(cfg: InstanceConfig, life: lc.MachineLifecycle | None) -> InstanceConfig:
    """``cfg`` with the file's containerEnv and remoteEnv over the platform's variables (the
    instance's still over them: environments/lifecycle_commands.py's precedence), and as the
    container's variables of every process of the machine."""
    if life is None:
        return cfg
    project = lc.project_env(cfg.platform_env, life.devcontainer, life.image_env)
    own = lc.project_env({}, life.devcontainer, life.image_env)
    return msgspec.structs.replace(cfg, platform_env=project, container_env=own)


async def machine_config(
    store: Store, instance: InstanceConfig, machine: Machine
) -> InstanceConfig:
    """What ``machine`` is given of its instance's configuration ``instance``: pointed at the
    egress proxy where its host said its gvisor machines reach it, with its devcontainer's
    variables. The one way the stages and the gateway make a machine's configuration."""
    door = await store.hosts.proxy_url(machine.host_id) if machine.runtime == "gvisor" else ""
    life = await store.lifecycles.load(machine.id, lc.MachineLifecycle)
    return with_project_env(for_machine(instance, machine, door), life)


async def run_lifecycle(store: Store, bus: Bus, machine: Machine, mc: MachineClient,
                        cfg: InstanceConfig, stages: tuple[str, ...], *,
                        cause_event_id: str) -> None:  # fmt: skip
    """Run ``stages`` of the machine's lifecycle (the once-per-machine ones only if not done).
    Raises LifecycleFailed."""
    life = await store.lifecycles.load(machine.id, lc.MachineLifecycle)
    if life is None:
        return
    once = set(lc.ON_CREATE)
    done = await store.lifecycles.done(machine.id) if once & set(stages) else set()
    todo = lc.plan(stages, life.devcontainer, life.feature_lifecycle, done=done & once)
    if not todo:
        return
    count = 0

    async def ran(step: lc.Step, result: ExecCommandResult) -> None:
        nonlocal count
        count += 1
        await bus.publish(LifecycleRan(
            event_id=derived_event_id(cause_event_id, f"lifecycle-ran/{step.stage}/{count}"),
            machine_id=machine.id, stage=step.stage, command=step.describe(),
            exit_code=result.exit_code, timed_out=result.timed_out,
            output=lc.tail(result, 200)[-LIFECYCLE_OUTPUT_MAX:],
        ))  # fmt: skip

    async def mark(stage: str) -> None:
        if stage in once:
            await store.lifecycles.mark_done(machine.id, stage)

    def say(line: str) -> None:
        log.debug("lifecycle.output", machine_id=machine.id, line=line)

    async def run(step: lc.Step, params: ExecCommandParams) -> ExecCommandResult:
        return await streamed(bus, machine.id, mc, step, params)

    env = lc.machine_env(cfg.platform_env, cfg.instance_env, None, life.image_env)
    await lc.run_stages(run, todo, env=env, cwd=life.cwd, say=say, done=mark, ran=ran)


async def streamed(bus: Bus, machine_id: str, mc: MachineClient, step: lc.Step,
                   params: ExecCommandParams) -> ExecCommandResult:  # fmt: skip
    """``step``'s command run with its output published as it comes, every batch of it before
    this returns (and so before its ``lifecycle-ran``)."""
    command = step.describe()

    async def send(lines: list[str], dropped: int) -> None:
        # Ids of their own, not derived from the cause: a command run again (a redelivered
        # event) prints anew, and where a batch ends depends on timing, not on the command.
        await bus.publish(LifecycleOutput(event_id=new_event_id(), machine_id=machine_id,
                                          stage=step.stage, command=command, lines=lines,
                                          dropped=dropped))  # fmt: skip

    async with OutputTrickle(send, what=f"{step.stage}:{machine_id}") as output:

        def heard(data: bytes) -> None:
            try:
                chunk = _CHUNK.decode(data)
            except msgspec.DecodeError:  # the machine's to say: a view of it, never a failure
                log.warning("lifecycle.chunk_unreadable", machine_id=machine_id, size=len(data))
                return
            output.write(chunk.data, chunk.stream)

        return await mc.exec_stream(bus.nc, params, heard)


async def on_attach(store: Store, bus: Bus, settings: Settings, daemons: DaemonClient,
                    machine_id: str) -> None:  # fmt: skip
    """A terminal session opened on the machine: its postAttachCommand (the features', then the
    file's). A failing one fails the machine at stage ``postAttachCommand`` and raises
    ToolError with the reason."""
    life = await store.lifecycles.load(machine_id, lc.MachineLifecycle)
    if life is None or not lc.plan(lc.ON_ATTACH, life.devcontainer, life.feature_lifecycle):
        return
    machine = await store.get_machine(machine_id)
    cfg = with_project_env(await load_instance_config(store, settings, machine.instance_id), life)
    cause = new_event_id()
    try:
        await run_lifecycle(store, bus, machine, daemons.machine(machine_id), cfg, lc.ON_ATTACH,
                            cause_event_id=cause)  # fmt: skip
    except lc.LifecycleFailed as exc:
        await fail_machine(store, bus, machine_id, stage=exc.stage, reason=exc.reason,
                           cause_event_id=cause)  # fmt: skip
        raise ToolError(exc.reason) from None
