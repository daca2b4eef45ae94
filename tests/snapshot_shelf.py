"""A local host's snapshots directory as takes leave it (providers/local/home_copies.py's layout:
``<id>``, ``<id>.upper``, ``<id>.memory``), made by hand for the sweeper's tests
(services/provisioner/sweep.py): no runsc is needed to leave what a checkpoint leaves. Also the
store's side: machines moved to a status, snapshot records, and instances' disk budgets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from contracts.gateway.fork import Snapshot
from contracts.ids import new_snapshot_id
from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.store import Store, disk as store_disk
from providers.gvisor.fork import LEFT_FILE, MARKER, SOURCE_FILE, SPEC_FILE, UID_FILE
from providers.local import LocalProvider

#: How a machine reaches each status the tests need, from ``created``.
STEPS = {
    S.CREATED: [],
    S.PROVISIONING: [S.PROVISIONING],
    S.READY: [S.PROVISIONING, S.BOOTING, S.SETTING_UP, S.PROBING, S.READY],
    S.FAILED: [S.FAILED],
    S.ARCHIVED: [S.ARCHIVING, S.ARCHIVED],
}


def local_shelf(data_dir: Path) -> LocalProvider:
    """The provider whose layout the sweeper reads (nothing of it is started)."""
    return LocalProvider(data_dir=data_dir, nats_url="nats://127.0.0.1:4222", environ={},
                         sandbox=False)  # fmt: skip


def home_copy(local: LocalProvider, image_id: str) -> list[Path]:
    """A snapshot's home copy and layer, as a take (or a failed one) leaves them."""
    home, upper = (
        local.parts.copies.snapshot_dir(image_id),
        local.parts.copies.snapshot_upper(image_id),
    )
    (home / ".config").mkdir(parents=True)
    (home / "notes.txt").write_text("the source's home")
    (upper / "usr" / "local").mkdir(parents=True)
    (upper / "usr" / "local" / "tool").write_text("written outside the home")
    return [home, upper]


def memory_image(local: LocalProvider, image_id: str, source_id: str,
                 forks: int | None) -> list[Path]:  # fmt: skip
    """A memory image with its home copy, as gvisor_fork.take_image leaves it (``forks``:
    the forks still to be restored from it; None: a snapshot's)."""
    made = home_copy(local, image_id)
    memory = local.parts.copies.memory_dir(image_id)
    memory.mkdir(mode=0o700)
    (memory / "checkpoint.img").write_bytes(b"\x01" * 65536)  # runsc's part
    (memory / "pages-0.img").write_bytes(b"\x02" * 65536)
    (memory / SPEC_FILE).write_text("{}")
    (memory / SOURCE_FILE).write_text(str(local.machine_dir(source_id)))
    (memory / UID_FILE).write_text("200001")
    if forks is not None:
        (memory / LEFT_FILE).write_text(str(forks))
    return [*made, memory]


def failed_take(local: LocalProvider, image_id: str) -> list[Path]:
    """What a memory image's take that failed past its checkpoint, and whose cleanup did not
    run (its provisioner killed), leaves: the image not described yet, and the home copy."""
    made = home_copy(local, image_id)
    memory = local.parts.copies.memory_dir(image_id)
    memory.mkdir(mode=0o700)
    (memory / "pages-0.img").write_bytes(b"\x02" * 65536)
    return [*made, memory]


def fork_dir(local: LocalProvider, fork_id: str, image_id: str) -> None:
    """A fork with memory's directory before its restore: the marker naming its image."""
    machine_dir = local.machine_dir(fork_id)
    machine_dir.mkdir(parents=True)
    (machine_dir / MARKER).write_text(image_id)


async def machine_in(store: Store, instance_id: str, status: S,
                     provider: str = "local") -> Machine:  # fmt: skip
    machine = await store.create_machine(instance_id, provider, current=False)
    for step in STEPS[status]:
        assert (await store.transition(machine.id, step, "test")).accepted, (machine.id, step)
    return await store.get_machine(machine.id)


async def recorded_snapshot(store: Store, source: Machine, memory: bool) -> str:
    snapshot_id = new_snapshot_id()
    await store.snapshots.save(Snapshot(
        id=snapshot_id, name="kept", instance_id=source.instance_id, machine_id=source.id,
        created_at=datetime.now(UTC), how="copy", pause_ms=1.0, memory=memory,
    ))  # fmt: skip
    return snapshot_id


async def counted(store: Store, instance_id: str, image_id: str) -> int | None:
    """What the instance's disk budget counts for ``image_id`` (None: nothing)."""
    return (await store.disk.used(instance_id)).get(store_disk.image(image_id))
