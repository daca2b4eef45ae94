"""The soak's machines and operations (tests/soak.py): what the soak knows of each machine (its
kernel's counter as the soak left it, whether its writer was ever started again), and each
operation, driven through the gateway as a user drives it.

An operation holds its machine's lock (other operations on that machine wait; the clients'
execs and writes do not), and either returns what it saw, or raises: a ``FleetError`` (a refusal
if its code is one ``REFUSALS`` expects of that operation, else a failure), ``Cut`` (the
gateway's restart cut a call that is not safe to send again), or ``Broken`` (what it saw is
wrong: a machine failed, a kernel lost its count, a page did not come).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from contracts.bus.events import kind_of
from contracts.errors import ERROR_HEADER, RETRYABLE, FleetError, NotFound, error_from_http
from contracts.models import Machine
from fleet.client import ConnectionFailed, FleetClient
from tests.e2e.conftest import FleetUp
from tests.e2e.test_chaos import service_pid
from tests.soak_inside import DEV_PORT
from tests.waiters import wait_until

T = TypeVar("T")

#: What the dev server of every machine serves (``~/soak/www/index.html``).
PAGE = "soak dev server\n"
#: How long a call is sent again while the gateway cannot be reached (its restart).
_REACH_S = 120.0
#: How long a machine may take to leave a status on its way (a pause, a restore, a start).
SETTLE_S = 300.0
#: Statuses a machine is on its way out of.
_MOVING = frozenset({"created", "provisioning", "booting", "setting-up", "probing", "pausing",
                     "resuming", "stopping", "archiving"})  # fmt: skip
#: The most memory snapshots the soak keeps at once (the oldest is deleted first).
MAX_SHOTS = 3
KERNEL_CODE = "soak_n = globals().get('soak_n', 0) + 1\nsoak_n"
KERNEL_LOOK = "globals().get('soak_n', 0)"

# Error codes (contracts/errors.py) each operation may be refused with, given a machine in
# another state than it needs, or a limit reached: Conflict 1009, MachineStopped 1040,
# RunningMachinesLimit 1041, HostFull 1048, SnapshotLimit 1060, DiskLimit 1061, NotSupported
# 1601 (a memory copy of a machine not running), DaemonTimeout 1504 (a wake past
# FLEET_WAKE_TIMEOUT_S), PortUnreachable 1055 (a dev server not listening after a wake),
# HostUnavailable 1505 (a method of the machine's host while its provisioner restarts).
_MACHINE = frozenset({1009, 1040, 1041, 1048})
REFUSALS: dict[str, frozenset[int]] = {
    "pause": _MACHINE | {1061},
    "resume-exec": _MACHINE | {1061, 1504},
    "resume-preview": _MACHINE | {1061, 1504, 1055},
    "fork-memory": _MACHINE | {1060, 1061, 1601, 1504, 1505},
    "snapshot-memory": _MACHINE | {1060, 1061, 1601, 1505},
    # NotFound 1004: the rotation (snapshot_memory) deleted the snapshot it chose before
    # its create came; a delete of one a machine is being made from is refused instead (1009).
    "from-snapshot": _MACHINE | {1004, 1060, 1061, 1504, 1505},
    "stop-start": _MACHINE | {1504},
    "provisioner-restart": frozenset(),
    "gateway-restart": frozenset(),
}
#: Each operation's share of the random choice.
WEIGHTS = {"pause": 4, "resume-exec": 4, "resume-preview": 3, "fork-memory": 2,
           "snapshot-memory": 2, "from-snapshot": 2, "stop-start": 2,
           "provisioner-restart": 1, "gateway-restart": 1}  # fmt: skip


class Cut(Exception):
    """The gateway's restart cut a call after it was sent: it may or may not have run."""


class Broken(Exception):
    """What the soak saw is wrong."""


@dataclass(eq=False)
class Member:
    """A machine of the soak."""

    id: str
    instance_id: str
    origin: str
    #: Its kernel's counter as the soak last left it (None: unknown).
    kernel: int | None
    #: It, or the machine it was copied from before the copy, was stopped: its writer was
    #: started again, so its connection to its sink broke once.
    stopped: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Archived by the soak, or failed (said among the failures): never chosen again.
    gone: bool = False


@dataclass(eq=False)
class Shot:
    """A memory snapshot the soak took, and what a machine made from it holds."""

    id: str
    source: Member
    kernel: int | None
    stopped: bool


@dataclass
class Note:
    """One operation, as it is recorded: its machine is named as soon as it is chosen."""

    index: int
    kind: str
    machine: str | None = None
    outcome: str = ""
    detail: str = ""
    took_s: float = 0.0
    #: When it began (epoch seconds, UTC in what the soak prints: the services' logs' time).
    began: float = 0.0


@dataclass(eq=False)
class Fleet:
    """The soak's stack, its machines and snapshots, and the files its clients wrote."""

    up: FleetUp
    client: FleetClient
    http: aiohttp.ClientSession
    max_machines: int
    #: How long a machine may take to leave a status on its way (a pause, a restore, a start).
    settle_s: float = SETTLE_S
    members: list[Member] = field(default_factory=list)
    shots: list[Shot] = field(default_factory=list)
    #: (machine, path, content) of every write a client saw answered.
    writes: list[tuple[Member, str, str]] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=lambda: {"provisioner": 0, "gateway": 0})
    #: One restart of a service at a time: a second meets no process between the first's
    #: kill and its supervisor's new one, which is the first's to wait for, not a failure.
    restarting: dict[str, asyncio.Lock] = field(
        default_factory=lambda: {"provisioner": asyncio.Lock(), "gateway": asyncio.Lock()}
    )

    def alive(self) -> list[Member]:
        return [m for m in self.members if not m.gone]

    async def answered(self, make: Callable[[], Awaitable[T]], *, resend: bool = True) -> T:
        """``make()``'s answer, sent again while the gateway cannot be reached (it restarts),
        or answers that nothing ran (``contracts.errors.RETRYABLE``: a daemon reconnecting),
        and, with ``resend``, when its restart cut the call after it was sent."""
        deadline = time.monotonic() + _REACH_S
        while True:
            try:
                return await make()
            except ConnectionFailed as exc:
                if exc.sent and not resend:
                    raise Cut(str(exc)) from None
                if time.monotonic() > deadline:
                    raise Broken(f"the gateway was out of reach for {_REACH_S:.0f} s") from None
            except FleetError as exc:  # nothing ran (a daemon reconnecting): sent again
                if exc.code not in RETRYABLE or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.5)

    async def machine(self, machine_id: str) -> Machine:
        return await self.answered(lambda: self.client.get_machine(machine_id))

    async def settled(self, machine_id: str) -> Machine:
        """The machine once it is in no status on its way to another; failed is Broken."""
        timeout_s = self.settle_s
        deadline = time.monotonic() + timeout_s
        while (m := await self.machine(machine_id)).status.value in _MOVING:
            if time.monotonic() > deadline:
                raise Broken(f"{machine_id} stayed {m.status.value} for {timeout_s:.0f} s "
                             f"({m.status_reason})")  # fmt: skip
            await asyncio.sleep(0.5)
        if m.status.value == "failed":
            raise Broken(f"{machine_id} failed: {m.status_reason}")
        return m

    async def ready(self, machine_id: str) -> Machine:
        m = await self.settled(machine_id)
        if m.status.value != "ready":
            raise Broken(f"{machine_id} is {m.status.value}, not ready ({m.status_reason})")
        return m

    async def kernel(self, m: Member) -> int:
        """One more in the machine's kernel's counter: it must follow the soak's. Sent once (a
        count is not run twice): a call the gateway's restart cut is followed by a look at the
        count, which is then the one before or the one after."""
        try:
            value = await self._run(m, KERNEL_CODE, resend=False)
            expected = None if m.kernel is None else {m.kernel + 1}
        except Cut:
            value = await self._run(m, KERNEL_LOOK, resend=True)
            expected = None if m.kernel is None else {m.kernel, m.kernel + 1}
        if expected is not None and value not in expected:
            raise Broken(f"{m.id}'s kernel counted {value}, after {m.kernel}: its state was lost")
        m.kernel = value
        return value

    async def _run(self, m: Member, code: str, *, resend: bool) -> int:
        got = await self.answered(
            lambda: self.client.machines_code_run(machine_id=m.id, code=code), resend=resend
        )
        if got.error is not None:
            raise Broken(f"{m.id}'s kernel: {got.error}")
        [value] = [int(r["text/plain"]) for r in got.results if r.get("isMain")]
        return value

    async def page(self, m: Member) -> None:
        """The machine's dev server's page, through its preview (which wakes it); an error
        answer is raised as the FleetError it carries."""
        url = f"http://127.0.0.1:{self.up.preview_port}/machines/{m.id}/ports/{DEV_PORT}/"
        headers = {"Authorization": f"Bearer {self.up.token}"}
        deadline = time.monotonic() + _REACH_S
        while True:
            restarts = self.restarts["gateway"]
            try:
                async with self.http.get(url, headers=headers) as r:
                    status, body = r.status, await r.read()
                    header = r.headers.get(ERROR_HEADER)
                    break
            except aiohttp.ClientPayloadError:  # an answer cut short: only a restart may
                if self.restarts["gateway"] == restarts:
                    raise
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise Broken(f"the preview of {m.id} was out of reach") from None
            await asyncio.sleep(0.5)
        if status != 200:
            raise error_from_http(status, body, header)
        if PAGE.encode() not in body:
            raise Broken(f"the preview of {m.id} served {body[:300]!r}")


async def timeline(f: Fleet, machine_id: str, last: int = 20) -> str:
    """The machine's last events, as a failure's context: ``HH:MM:SS kind (reason, by)``."""
    said: list[str] = []
    with contextlib.suppress(Exception):  # context only: a failure is said without it
        async with contextlib.aclosing(f.client.events(machine_id, follow=False)) as events:
            async for _, event in events:
                more = [str(getattr(event, k)) for k in ("reason", "by", "stage")
                        if getattr(event, k, None)]  # fmt: skip
                at = event.occurred_at.strftime("%H:%M:%S")
                said.append(f"{at} {kind_of(event).value}" + (f" ({', '.join(more)})"
                                                              if more else ""))  # fmt: skip
    return "; ".join(said[-last:])


async def paused_first(f: Fleet, m: Member) -> str:
    """Pause the machine if it runs; what it is then (a client's call may wake it at once)."""
    before = await f.settled(m.id)
    if before.status.value == "ready":
        await f.answered(lambda: f.client.pause_machine(m.id))
        before = await f.settled(m.id)
    return f"{before.status.value}"


async def pause(f: Fleet, m: Member, note: Note) -> str:
    await f.answered(lambda: f.client.pause_machine(m.id))
    got = await f.settled(m.id)
    return f"{got.status.value}: {got.status_reason}"


async def resume_exec(f: Fleet, m: Member, note: Note) -> str:
    was = await paused_first(f, m)
    out = await f.answered(lambda: f.client.exec(m.id, ["cat", "soak/www/index.html"]))
    if (out.exit_code, out.stdout) != (0, PAGE):
        raise Broken(f"the exec that woke {m.id} answered {out.exit_code}: {out.stderr[-300:]}")
    await f.ready(m.id)
    return f"was {was}; kernel at {await f.kernel(m)}"


async def resume_preview(f: Fleet, m: Member, note: Note) -> str:
    was = await paused_first(f, m)
    await f.page(m)
    return f"was {was}; page served"


async def fork_memory(f: Fleet, m: Member, note: Note) -> str:
    room = await make_room(f, m)
    try:
        [made] = await f.answered(lambda: f.client.fork_machine(m.id, 1, memory=True),
                                  resend=False)  # fmt: skip
    except Cut:
        await adopt(f, m.instance_id, f"fork of {m.id} (its answer cut)", m.kernel, m.stopped)
        raise
    child = await joined(f, made.id, m.instance_id, f"fork of {m.id}", m.kernel, m.stopped)
    return f"{room}fork {child.id}, kernel at {child.kernel}"


async def snapshot_memory(f: Fleet, m: Member, note: Note) -> str:
    dropped = ""
    if len(f.shots) >= MAX_SHOTS:
        # The oldest, whether or not a machine is being made from it: a cleanup job does not
        # know, and the platform refuses that delete (1009, naming the machine), which keeps it.
        old = f.shots[0]
        f.shots.remove(old)  # before the delete: no operation chooses it meanwhile
        try:
            await f.answered(lambda: f.client.delete_snapshot(old.id))
        except FleetError as exc:
            if exc.code != NotFound.code:  # deleted by another operation meanwhile
                f.shots.insert(0, old)  # refused (in use, its provisioner restarting): ours
                raise
        dropped = f"deleted {old.id}; "
    name = f"soak-{note.index}"
    try:
        shot = await f.answered(lambda: f.client.snapshot_machine(m.id, name, memory=True),
                                resend=False)  # fmt: skip
    except Cut:
        for s in await f.answered(lambda: f.client.list_snapshots(m.instance_id)):
            if s.name == name:
                f.shots.append(Shot(s.id, m, m.kernel, m.stopped))
        raise
    f.shots.append(Shot(shot.id, m, m.kernel, m.stopped))
    return f"{dropped}snapshot {shot.id}"


async def from_snapshot(f: Fleet, m: Member, note: Note) -> str:
    """A machine made from a memory snapshot (of ``m``'s instance if it has one, else any)."""
    shots = [s for s in f.shots if s.source.instance_id == m.instance_id] or f.shots
    if not shots:
        return f"no snapshot yet: took one, {await snapshot_memory(f, m, note)}"
    shot = shots[-1]
    iid = shot.source.instance_id
    try:
        room = await make_room(f, m)
        made = await f.answered(lambda: f.client.create_from_snapshot(iid, shot.id),
                                resend=False)  # fmt: skip
    except Cut:
        await adopt(f, iid, f"from {shot.id} (its answer cut)", shot.kernel, shot.stopped)
        raise
    child = await joined(f, made.id, iid, f"from {shot.id} of {shot.source.id}", shot.kernel,
                         shot.stopped)  # fmt: skip
    return f"{room}{child.id} from {shot.id}, kernel at {child.kernel}"


async def stop_start(f: Fleet, m: Member, note: Note) -> str:
    await f.answered(lambda: f.client.stop_machine(m.id))
    # Its kernel and writer end with it (a client's call may start it again at once).
    m.kernel, m.stopped = 0, True
    stopped = await f.settled(m.id)
    await f.answered(lambda: f.client.start_machine(m.id))
    await f.ready(m.id)
    return f"{stopped.status.value}, then ready; kernel at {await f.kernel(m)}"


async def restart(f: Fleet, service: str, rng: random.Random) -> str:
    """End a service of `fleet up` (SIGTERM or SIGKILL, by ``rng``), and wait for the one its
    supervisor starts in its place."""
    sig = rng.choice([signal.SIGTERM, signal.SIGKILL])
    async with f.restarting[service]:
        old = service_pid(f.up.proc.pid, service)
        os.kill(old, sig)
        f.restarts[service] += 1
        found: list[int] = []

        def replaced() -> bool:
            with contextlib.suppress(AssertionError):  # none between the old and its successor
                found.append(service_pid(f.up.proc.pid, service))
            return bool(found) and found[-1] != old

        try:
            await wait_until(replaced, timeout=_REACH_S, every=0.2)
        except TimeoutError:
            raise Broken(f"no {service} again {_REACH_S:.0f} s after {sig.name}") from None
        new = found[-1]
    if service == "gateway":  # back when it answers
        await f.answered(lambda: f.client.list_instances())
    return f"{sig.name}: pid {old}, then {new}"


async def make_room(f: Fleet, keep: Member) -> str:
    """At ``max_machines``, archive one machine no operation holds (the last made first)."""
    alive = f.alive()
    if len(alive) < f.max_machines:
        return ""
    free = [m for m in reversed(alive) if m is not keep and not m.lock.locked()]
    if not free:
        return ""
    victim = free[0]
    async with victim.lock:
        victim.gone = True
        await f.answered(lambda: f.client.archive_machine(victim.id))
        got = await f.settled(victim.id)
    return f"archived {victim.id} ({got.status.value}) for room; "


async def joined(f: Fleet, machine_id: str, instance_id: str, origin: str, kernel: int | None,
                 stopped: bool) -> Member:  # fmt: skip
    """A new machine of the soak, once ready and its kernel counting on from its source's."""
    child = Member(machine_id, instance_id, origin, kernel, stopped)
    async with child.lock:  # no operation takes it before it is ready
        f.members.append(child)
        await f.ready(child.id)
        await f.kernel(child)
    return child


async def adopt(f: Fleet, instance_id: str, origin: str, kernel: int | None,
                stopped: bool) -> None:  # fmt: skip
    """The instance's machines the soak does not know (made by a call whose answer was cut)."""
    known = {m.id for m in f.members}
    for m in await f.answered(lambda: f.client.list_machines(instance_id)):
        if m.id not in known and m.status.value not in ("archiving", "archived"):
            f.members.append(Member(m.id, instance_id, origin, kernel, stopped))


OPS: dict[str, Callable[[Fleet, Member, Note], Awaitable[str]]] = {
    "pause": pause, "resume-exec": resume_exec, "resume-preview": resume_preview,
    "fork-memory": fork_memory, "snapshot-memory": snapshot_memory,
    "from-snapshot": from_snapshot, "stop-start": stop_start,
}  # fmt: skip
