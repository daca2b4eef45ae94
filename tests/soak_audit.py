"""What the soak (tests/soak.py) checks once its operations are over: each surviving machine's
files and kernel continuous, its dev server and the clients' files there; the instances' disk
figures against ``du``; and, once every machine is archived, nothing left of them: images,
homes, sandboxes, pasta, cgroups, mounts. Each problem names its machine (or its path)."""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from contracts.errors import FileNotFound, FleetError
from controlplane.store import Store
from controlplane.store.disk import RESERVATION_S
from fleet.up import gc
from providers.gvisor import container_id
from providers.sandbox import NETNS_OF
from providers.sandbox.cgroup import ROOT as CGROUPS, V1_CONTROLLERS
from providers.scratch import mounts_under
from tests.soak_inside import chain
from tests.soak_ops import Broken, Fleet, Member
from tests.waiters import wait_until

#: A disk figure and ``du`` agree within this much (du counts a hard link once).
_SLACK = 0.01
_SLACK_BYTES = 256 * 1024
#: An uncounted copy (a take cut short, its place lapsed) is swept within this: the sweeper's
#: grace and interval in the soak's stack (tests/soak.py SWEEP_ENV), and room.
SWEPT_WITHIN_S = 60.0
#: Programs of a machine, by the name they run as: none may outlive its machine.
MACHINE_PROGRAMS = frozenset({"pasta", "pasta.avx2", "passt", "bwrap", "runsc", "runsc-gofer",
                              "runsc-sandbox", "unshare", "nsenter"})  # fmt: skip


@dataclass
class Figures:
    """What the audit measured."""

    lines: int = 0
    kernel_ticks: int = 0
    client_files: int = 0
    disk: list[str] = field(default_factory=list)


async def up_again(f: Fleet, m: Member) -> None:
    """A surviving machine ready and answering (resumed or started if it is not)."""
    got = await f.settled(m.id)
    if got.status.value == "paused":
        await f.answered(lambda: f.client.resume_machine(m.id))
    elif got.status.value == "stopped":
        await f.answered(lambda: f.client.start_machine(m.id))
        m.kernel = 0
    await f.ready(m.id)
    out = await f.answered(lambda: f.client.exec(m.id, ["echo", "back"], timeout_s=120))
    if out.stdout != "back\n":
        raise Broken(f"{m.id} answered {out!r}")


async def text_of(f: Fleet, m: Member, path: str, work: Path) -> str:
    """A file of the machine, whole (a download: it may be past one message)."""
    local = work / f"{m.id}-{path.replace('/', '_')}"
    try:
        await f.answered(lambda: f.client.download(m.id, path, local))
    except FleetError as exc:
        if exc.code == FileNotFound.code:
            return ""
        raise
    return local.read_text()


async def continuous(f: Fleet, m: Member, work: Path, figures: Figures) -> list[str]:
    """The machine's writer stopped, its two files read back: each a whole chain from line 0,
    the same lines (the sink may lack the very last), no line out of turn at its sink, and a
    broken connection only where the machine (or its source) was stopped."""
    problems: list[str] = []
    await f.answered(lambda: f.client.kill_process(m.id, tag="writer"))
    direct_text = await text_of(f, m, "soak/direct.log", work)
    via_text = await text_of(f, m, "soak/via-tcp.log", work)
    for name, text in (("direct.log", direct_text), ("via-tcp.log", via_text)):
        count, broken = chain(text)
        problems += [f"{m.id} ({m.origin}) {name}: {p}" for p in broken]
        if name == "direct.log":
            figures.lines += count
    last_cut = direct_text[: direct_text.rstrip("\n").rfind("\n") + 1]
    if via_text not in (direct_text, last_cut):
        problems.append(f"{m.id} ({m.origin}): via-tcp.log ({len(via_text)} bytes) is not "
                        f"direct.log ({len(direct_text)} bytes)")  # fmt: skip
    writer_events = (await text_of(f, m, "soak/writer.events", work)).splitlines()
    sink_events = (await text_of(f, m, "soak/sink.events", work)).splitlines()
    for line in writer_events:
        if "the sink holds" in line or ("connection broke" in line and not m.stopped):
            problems.append(f"{m.id} ({m.origin}) writer: {line}")
    starts = [line for line in writer_events if "started at line" in line]
    if len(starts) > 1 and not m.stopped:  # its processes were lost without a stop
        problems.append(f"{m.id} ({m.origin}) writer started {len(starts)} times: {starts}")
    # "<time> line N after line M": a line out of turn ("connection ended ..." is not one).
    problems += [f"{m.id} ({m.origin}) sink: {line}" for line in sink_events
                 if line.partition(" ")[2].startswith("line ")]  # fmt: skip
    return problems


async def survivor(f: Fleet, m: Member, work: Path, figures: Figures) -> list[str]:
    """Everything a surviving machine must still hold."""
    try:
        await up_again(f, m)
        await f.kernel(m)
        figures.kernel_ticks += 1
        problems = await continuous(f, m, work, figures)
        await f.page(m)
        for who, path, content in f.writes:
            if who is m:
                got = await f.answered(lambda p=path: f.client.read_file(m.id, p))
                figures.client_files += 1
                if got.content != content:
                    problems.append(f"{m.id}: the client's {path} holds {got.content!r}")
    except (Broken, FleetError) as exc:
        return [f"{m.id} ({m.origin}): {type(exc).__name__}: {exc}"]
    return problems


def du(*paths: Path) -> int:
    """What ``du`` says the paths take on disk, bytes (the ones that exist)."""
    there = [str(p) for p in paths if p.exists()]
    if not there:
        return 0
    out = subprocess.run(["du", "-s", "-c", "-B1", *there], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return int(out.splitlines()[-1].split()[0])


async def ledger(f: Fleet, store: Store, data: Path, figures: Figures) -> list[str]:
    """Each instance's disk figures (``store.disk``) against ``du`` of what they count: a paused
    machine's image and a snapshot's copies as measured; a home no more than it takes now
    (measured when last copied, it grows); nothing of it missing, and nothing on disk that no
    figure counts."""
    problems: list[str] = []
    snapshots = data / "snapshots"
    counted: set[str] = set()
    instances = sorted({m.instance_id for m in f.members})
    # A place is what a copy may take, not what it took: one a provisioner killed mid-copy
    # left is counted until it lapses, and only its measured figures are held against du.
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: _no_places(store, instances), timeout=RESERVATION_S + 15,
                         every=1.0)  # fmt: skip
    for iid in instances:
        if held := await store.disk.places(iid):
            problems.append(f"{iid}: places held past their time: {held}")
        for name, figure in sorted((await store.disk.used(iid)).items()):
            kind, _, what = name.partition(":")
            counted.add(what)
            if kind == "paused":
                on_disk = du(data / "machines" / what / "gvisor-image")
            elif kind == "image":
                on_disk = du(*(snapshots / f"{what}{s}" for s in ("", ".upper", ".memory")))
            else:  # a home: as last measured, and it grows
                on_disk = du(data / "machines" / what / "home")
            figures.disk.append(f"{name}: {figure >> 20} MiB counted, du {on_disk >> 20} MiB")
            off = figure - on_disk if kind == "home" else abs(figure - on_disk)
            if off > figure * _SLACK + _SLACK_BYTES:
                problems.append(f"{iid} {name}: {figure} bytes counted, du {on_disk}")
    # What a take cut short left has no figure once its place lapsed; the sweeper takes it
    # within its grace and interval (tests/soak.py SWEEP_ENV).
    with contextlib.suppress(TimeoutError):  # what is left then is reported below
        await wait_until(lambda: not _uncounted(snapshots, counted), timeout=SWEPT_WITHIN_S,
                         every=0.5)  # fmt: skip
    for entry in _uncounted(snapshots, counted):
        problems.append(f"{entry}: on disk, counted by no figure ({du(entry)} bytes)")
    for image in sorted((data / "machines").glob("*/gvisor-image")):
        if image.parent.name not in counted:
            problems.append(f"{image}: a memory image counted by no figure ({du(image)} bytes)")
    return problems


async def _no_places(store: Store, instances: list[str]) -> bool:
    return not any([await store.disk.places(iid) for iid in instances])


def _uncounted(snapshots: Path, counted: set[str]) -> list[Path]:
    found = sorted(snapshots.iterdir()) if snapshots.exists() else []
    return [entry for entry in found if entry.name.split(".")[0] not in counted]


async def archived_all(f: Fleet) -> list[str]:
    """Every machine of the soak's instances archived, then every snapshot deleted (a machine
    still being made from one, made by a call whose answer was cut, holds it until then)."""
    problems: list[str] = []
    ids = {m.id for m in f.members}
    for iid in sorted({m.instance_id for m in f.members}):
        ids |= {m.id for m in await f.answered(lambda i=iid: f.client.list_machines(i))}
    for mid in sorted(ids):
        await f.answered(lambda x=mid: f.client.archive_machine(x))
    for mid in sorted(ids):
        try:
            got = await f.settled(mid)
        except Broken as exc:
            problems.append(f"{mid}: archive: {exc}")
            continue
        if got.status.value != "archived":
            problems.append(f"{mid}: {got.status.value} after its archive ({got.status_reason})")
    for s in f.shots:
        await f.answered(lambda s=s: f.client.delete_snapshot(s.id))
    return problems


def of_a_machine(p: gc.Process) -> bool:
    """A process that stands for a machine (never one of the stack's services or servers)."""
    return bool(p.argv) and (Path(p.argv[0]).name in MACHINE_PROGRAMS
                             or any(a.startswith("daemon") for a in p.argv[1:3]))  # fmt: skip


def pool_slots(data: Path) -> set[str]:
    """The warm pool's live slots (``<data>/pool/<kind>/<owner>/<slot>``): theirs is not left."""
    return {p.name for p in data.glob("pool/*/*/*") if p.is_dir()}


def of_the_pool(p: gc.Process, slots: set[str]) -> bool:
    """A process of a live pooled machine: named by its slot, or its pasta's (``NETNS_OF``)."""
    try:
        environ = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
    except OSError:
        environ = []
    owner = next((e.split(b"=", 1)[1].decode() for e in environ
                  if e.startswith(NETNS_OF.encode() + b"=")), "")  # fmt: skip
    return owner in slots or any(slot in arg for arg in p.argv for slot in slots)


def leftovers(data: Path, machine_ids: set[str], mounts: set[str]) -> list[str]:
    """What is left of the archived machines: their processes (sandboxes, gofers, pasta,
    namespace holders, daemons), cgroups, memory images, homes, snapshots, runsc state, and
    mounts beyond ``mounts`` (what the stack held before any machine); the warm pool's live
    machines are not (``pool_slots``)."""
    slots = pool_slots(data)
    found = [str(p) for p in gc.naming(data) if of_a_machine(p) and not of_the_pool(p, slots)]
    found += [f"mount {m}" for m in mounts_under(data) if str(m) not in mounts]
    for mid in sorted(machine_ids):
        groups = [CGROUPS / c / "fleet" / mid for c in (*V1_CONTROLLERS, "freezer")]
        found += [f"cgroup {g}" for g in [*groups, CGROUPS / "fleet" / mid] if g.exists()]
        machine = data / "machines" / mid
        found += [f"{p}" for p in (machine / "home", machine / "gvisor-image") if p.exists()]
    snapshots = data / "snapshots"
    found += [f"snapshot {p}" for p in sorted(snapshots.iterdir())] if snapshots.exists() else []
    pooled = {container_id(slot) for slot in slots}
    state = sorted((data / "gvisor").iterdir()) if (data / "gvisor").exists() else []
    found += [f"runsc state {p}" for p in state if not any(c in p.name for c in pooled)]
    return found


async def settle_leftovers(data: Path, machine_ids: set[str], mounts: set[str],
                           timeout_s: float = 30.0) -> list[str]:  # fmt: skip
    """``leftovers``, given what was asked to end ``timeout_s`` to end."""
    with contextlib.suppress(TimeoutError):  # what is left then is the answer
        await wait_until(lambda: not leftovers(data, machine_ids, mounts), timeout=timeout_s,
                         every=0.5)  # fmt: skip
    return leftovers(data, machine_ids, mounts)
