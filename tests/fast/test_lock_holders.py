"""A lock whose holder process has ended on this host is taken over at once, not when its TTL
runs out (controlplane/store/locks.py): a provisioner killed while it held a machine's
``provision:`` lock through a checkpoint (up to ten minutes) left the machine's next pause,
resume, stop or start waiting until its handler gave up, and the machine failed (found by the
soak: a provisioner's restart during a pause). A live holder, a holder of another host and a
token that names none are never judged."""

from __future__ import annotations

import subprocess
from pathlib import Path

from contracts.status import MachineStatus as S
from controlplane.store import Store
from controlplane.store.locks import holder, holder_gone
from tests.fast.conftest import World
from tests.fast.test_pause import ready_gvisor

BOOT = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def ended_process() -> tuple[int, int]:
    """A pid of this host whose process has ended, and a start time it could have had."""
    with subprocess.Popen(["true"]) as ended:
        ended.wait()
    return ended.pid, 12345


def dead_token() -> str:
    pid, ticks = ended_process()
    return f"0123abcd@{BOOT}/{pid}/{ticks}"


async def test_a_lock_of_an_ended_holder_is_taken_over_and_only_the_new_holder_frees_it(
    store: Store,
) -> None:
    dead = dead_token()
    assert holder_gone(dead)
    assert await store.locks.take("provision:m-1", dead, ttl_s=600)
    mine = store.locks.token()
    assert await store.locks.take("provision:m-1", mine, ttl_s=600)  # at once, not in 600 s
    await store.locks.release("provision:m-1", dead)  # the dead one's release frees nothing
    assert not await store.locks.take("provision:m-1", store.locks.token(), ttl_s=600)
    await store.locks.release("provision:m-1", mine)
    assert await store.locks.take("provision:m-1", store.locks.token(), ttl_s=600)


async def test_a_live_holder_another_hosts_holder_and_an_unnamed_one_are_never_judged(
    store: Store,
) -> None:
    pid, ticks = ended_process()
    for held in (store.locks.token(),  # this process: alive
                 f"0123abcd@another-boot-id/{pid}/{ticks}",  # another host's: never judged
                 "0123abcd"):  # fmt: skip
        assert not holder_gone(held)
        assert await store.locks.take(f"l:{held}", held, ttl_s=600)
        assert not await store.locks.take(f"l:{held}", store.locks.token(), ttl_s=600)
    assert holder().startswith(f"{BOOT}/")


async def test_a_pause_redelivered_after_its_provisioner_died_holding_the_lock_goes_on(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    # The provisioner that took the machine's lock for its pause was killed mid-checkpoint.
    assert await world.store.locks.take(f"provision:{m.id}", dead_token(), ttl_s=600)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    got = await world.machine(m.id)
    assert (got.status, got.status_reason) == (S.PAUSED, "paused by request")
    assert world.provider.pauses == [m.id]
