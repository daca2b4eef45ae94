"""A sandbox's end (services/gateway/e2b/ends.py), in memory: a pause at its timeout that is
refused after it was asked is asked again until the sandbox sleeps. With E2B's SDK on real
gvisor machines: tests/integration/test_e2b_gvisor.py."""

from __future__ import annotations

from pathlib import Path

from contracts.errors import Conflict
from contracts.status import MachineStatus as S
from controlplane.store.e2b import E2bSandbox
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.ends import LOOK_AGAIN_S, SandboxEnds
from tests.fakes.clock import ManualClock
from tests.fast.conftest import World
from tests.fast.test_pause import ready_gvisor


async def test_a_pause_refused_at_a_sandboxs_end_is_asked_again_until_it_sleeps(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    clock = ManualClock()
    await world.store.e2b.put(E2bSandbox(
        id=m.id, instance_id=m.instance_id, template_id="base", made_by="t", started_at=0.0,
        end_at=clock.now(), on_timeout="pause",
    ))  # fmt: skip
    ends = SandboxEnds(world.store, Calls(world.dispatcher.handle), clock)
    world.provider.fail_pause = Conflict("the daemon did not let its NATS connection go")
    assert await ends.tick() == [m.id]
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.READY  # refused: it runs on

    await clock.advance(LOOK_AGAIN_S - 1)
    assert await ends.tick() == []  # not yet looked at again
    world.provider.fail_pause = None
    await clock.advance(1)
    assert await ends.tick() == [m.id]
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.PAUSED
    assert world.provider.pauses == [m.id, m.id]

    await clock.advance(LOOK_AGAIN_S)
    assert await ends.tick() == [m.id]  # looked at once more: asleep, so left be
    await clock.advance(LOOK_AGAIN_S)
    assert await ends.tick() == []
    assert world.provider.pauses == [m.id, m.id]


async def test_a_new_end_set_meanwhile_is_not_moved_by_the_look_again(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    clock = ManualClock()
    sandbox = E2bSandbox(id=m.id, instance_id=m.instance_id, template_id="base", made_by="t",
                         started_at=0.0, end_at=clock.now() + 60, on_timeout="pause")  # fmt: skip
    await world.store.e2b.put(sandbox)  # a connect's new end, before the look again
    await world.store.e2b.look_again(m.id, clock.now())
    assert await world.store.e2b.end_of(m.id) == int((clock.now() + 60) * 1000)
