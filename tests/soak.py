"""The soak (docs/stop-start.md#the-soak): gvisor machines of a real `fleet up`, each running a
dev server, a kernel with state (``machines.code.run``) and a writer of numbered, checksummed
lines to a file and over a loopback connection (tests/soak_inside.py), through operations chosen
at random with a seed (tests/soak_ops.py: pause, resume by exec and by preview, fork and
snapshot with memory, a machine made from that snapshot, stop and start, the provisioner's and
the gateway's restarts), several at once, while clients exec and write files. After it
(tests/soak_audit.py): every surviving machine's files and kernel continuous, every operation
answered (done, or refused with its code and reason: never a 500, never a hang), the disk
figures as ``du`` has them, and nothing left once every machine is archived.

CI runs a short form (tests/e2e/test_soak.py, the chaos tier); by hand::

    .venv/bin/python -m tests.soak --minutes 30 [--seed N] [--machines 8]

It prints the seed first, each operation as it ends, then the report; a failure names the
operation (its index, kind) and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from contracts.errors import FleetError
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up import NatsServer, ValkeyServer
from providers.scratch import mounts_under
from tests.e2e.conftest import FleetUp, start_fleet_up
from tests.soak_audit import Figures, archived_all, ledger, settle_leftovers, survivor
from tests.soak_inside import DEV_PORT
from tests.soak_ops import (
    OPS,
    PAGE,
    REFUSALS,
    SETTLE_S,
    WEIGHTS,
    Broken,
    Cut,
    Fleet,
    Member,
    Note,
    restart,
    timeline,
)

#: An operation that has not ended after this long hangs.
OP_DEADLINE_S = 420.0
#: The sweeper as often as its soak may need it: what a take cut short by a provisioner's kill
#: left is swept once its disk place lapses (a minute) and it is this old, before the audit
#: (soak_audit.ledger) looks for copies no figure counts.
SWEEP_ENV = {"FLEET_SWEEP_INTERVAL_S": "5", "FLEET_SWEEP_GRACE_S": "30"}
#: What a client's exec or write may be refused with (see soak_ops.REFUSALS): the machine is
#: archived or on its way, stopped, past a limit, its wake took longer than the wake timeout,
#: or its daemon did not come back within the retries (a machine that failed says so itself).
CLIENT_REFUSALS = frozenset({1009, 1040, 1041, 1048, 1502, 1504})
INSIDE = Path(__file__).with_name("soak_inside.py")


@dataclass(frozen=True)
class Plan:
    seed: int
    #: This many operations; or (``minutes``) operations until that long has passed.
    ops: int | None = None
    minutes: float | None = None
    machines: int = 8
    max_machines: int = 12
    at_once: int = 3
    clients: int = 2
    #: An operation that has not ended after this long hangs (and a machine that stays on its
    #: way to a status this long is stuck): said with the machine's events and log lines.
    op_deadline_s: float = OP_DEADLINE_S


@dataclass
class Report:
    plan: Plan
    notes: list[Note] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    figures: Figures = field(default_factory=Figures)
    calls: Counter[str] = field(default_factory=Counter)
    load: list[str] = field(default_factory=list)
    took_s: float = 0.0
    made: Counter[str] = field(default_factory=Counter)
    began: float = field(default_factory=time.monotonic)
    #: The events of each machine an operation failed on, as they were then.
    context: list[str] = field(default_factory=list)

    def text(self) -> str:
        load = " -> ".join(self.load)
        lines = [f"soak: seed {self.plan.seed}, {len(self.notes)} operations, "
                 f"{self.plan.at_once} at once, {self.plan.clients} clients, "
                 f"{self.took_s / 60:.1f} minutes; load average {load}"]  # fmt: skip
        by_kind: dict[str, list[Note]] = {}
        for n in self.notes:
            by_kind.setdefault(n.kind, []).append(n)
        for kind, notes in sorted(by_kind.items()):
            outcomes = Counter(n.outcome for n in notes)
            codes = Counter(n.detail.split(" ", 1)[0] for n in notes if n.outcome == "refused")
            took = sorted(n.took_s for n in notes if n.outcome == "ok")
            p50 = f"{statistics.median(took):.1f} s" if took else "-"
            p95 = f"{took[math.ceil(0.95 * len(took)) - 1]:.1f} s" if took else "-"
            refused = ", ".join(f"{c} x{k}" for c, k in sorted(codes.items()))
            lines.append(f"  {kind:<20} {len(notes):>4}: ok {outcomes['ok']}, refused "
                         f"{outcomes['refused']}{f' ({refused})' if refused else ''}, cut "
                         f"{outcomes['cut']}, failed {outcomes['failed']}; p50 {p50}, "
                         f"p95 {p95}")  # fmt: skip
        f = self.figures
        lines.append(f"  machines: {dict(self.made)}; lines checked {f.lines}, kernel counts "
                     f"checked {f.kernel_ticks}, client files checked {f.client_files}; client "
                     f"calls {dict(self.calls)}")  # fmt: skip
        lines += [f"  disk {d}" for d in f.disk]
        lines += [f"FAILED: {x}" for x in self.failures]
        lines += [f"  events of {x}" for x in self.context]
        lines.append("soak: passed" if not self.failures else
                     f"soak: {len(self.failures)} failures (seed {self.plan.seed})")  # fmt: skip
        return "\n".join(lines)


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


async def soak(plan: Plan, work: Path, say: Callable[[str], None] = print) -> Report:
    """The soak on servers and a `fleet up` of its own under ``work``."""
    report = Report(plan, load=[load_average()])
    say(f"soak: seed {plan.seed} (python -m tests.soak --seed {plan.seed} repeats its choices)")
    with (
        NatsServer(work / "nats") as nats,
        ValkeyServer(work / "redis", password=secrets.token_urlsafe(16), unix=True) as redis,
    ):
        up = start_fleet_up(
            work / "data", "--runtime", "gvisor", "--nats-url", nats.url,
            "--redis-url", redis.url, timeout=300,
            env={"FLEET_LOG_LEVEL": "info", "PATH": os.environ["PATH"], **SWEEP_ENV},
        )  # fmt: skip
        drained = drain(up, work / "fleet-up.out")
        try:
            async with Store.of(Settings(redis_url=redis.url)) as store:
                await soaked(plan, up, store, work, report, say)
        finally:
            up.stop(timeout=120)
            drained.join(10)
        found = await settle_leftovers(up.data_dir, set(), set())
        report.failures += [f"left after fleet up stopped: {x}" for x in found]
        if report.failures:  # a stall of a whole service shows in its last lines
            report.context += [last_lines(up.data_dir / "logs" / f"{s}.log")
                               for s in ("provisioner", "gateway")]  # fmt: skip
    report.took_s = time.monotonic() - report.began
    report.load.append(load_average())
    return report


async def soaked(plan: Plan, up: FleetUp, store: Store, work: Path, report: Report,
                 say: Callable[[str], None]) -> None:  # fmt: skip
    data = up.data_dir
    mounts = {str(m) for m in mounts_under(data)}
    timeout = aiohttp.ClientTimeout(total=OP_DEADLINE_S)
    async with (
        FleetClient(up.url, up.token, timeout_s=OP_DEADLINE_S) as client,
        aiohttp.ClientSession(timeout=timeout) as http,
    ):
        f = Fleet(up, client, http, plan.max_machines, settle_s=min(SETTLE_S, plan.op_deadline_s))
        await populate(f, plan, report)
        say(f"soak: {len(f.members)} machines ready ({time.monotonic() - report.began:.0f} s)")
        stop = asyncio.Event()
        clients = [asyncio.create_task(client_calls(f, plan.seed, k, stop, report))
                   for k in range(plan.clients)]  # fmt: skip
        try:
            await operations(f, plan, report, say)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        for m in f.alive():
            try:
                await f.settled(m.id)
            except Broken as exc:  # said, and left out of the checks of survivors
                report.failures.append(f"{m.id} never settled for the audit: {exc}")
                report.context.append(await context(f, m.id))
                m.gone = True
        report.failures += await ledger(f, store, data, report.figures)
        checked = work / "checked"
        checked.mkdir(exist_ok=True)
        for m in f.alive():
            if problems := await survivor(f, m, checked, report.figures):
                report.failures += problems
                report.context.append(await context(f, m.id))
        report.failures += await archived_all(f)
        ids = {m.id for m in f.members}
        report.failures += [f"left after every machine was archived: {x}"
                            for x in await settle_leftovers(data, ids, mounts)]  # fmt: skip
        for iid in sorted({m.instance_id for m in f.members}):
            if left := await store.disk.used(iid):
                report.failures.append(f"{iid}: disk figures left after its archive: {left}")


async def populate(f: Fleet, plan: Plan, report: Report) -> None:
    """``plan.machines`` machines, each running the soak's programs and its kernel counting."""
    gate = asyncio.Semaphore(plan.at_once)

    async def one(k: int) -> None:
        async with gate:
            inst = await f.client.create_instance(f"soak-{k}")
            made = await f.client.create_machine(inst.id)
            m = Member(made.id, inst.id, "created", None)
            f.members.append(m)
            await f.ready(m.id)
            await f.client.write_file(m.id, "soak_inside.py", INSIDE.read_text())
            await f.client.write_file(m.id, "soak/www/index.html", PAGE)
            for tag, argv in (
                ("sink", ["python3", "-I", "soak_inside.py", "sink"]),
                ("writer", ["python3", "-I", "soak_inside.py", "writer"]),
                ("web", ["python3", "-m", "http.server", str(DEV_PORT), "--bind", "127.0.0.1",
                         "--directory", "soak/www"]),
            ):  # fmt: skip
                await f.client.start_process(m.id, argv, tag=tag)
            await f.kernel(m)

    await asyncio.gather(*(one(k) for k in range(plan.machines)))
    report.made["created"] += plan.machines


async def operations(f: Fleet, plan: Plan, report: Report, say: Callable[[str], None]) -> None:
    """The operations, ``plan.at_once`` at a time: each one's kind from one generator seeded
    with the seed (the same sequence whatever the timing), its machine from one of its own."""
    choose = random.Random(plan.seed)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    deadline = None if plan.minutes is None else time.monotonic() + plan.minutes * 60
    index = 0

    def next_op() -> tuple[int, str] | None:
        nonlocal index
        if plan.ops is not None and index >= plan.ops:
            return None
        if deadline is not None and time.monotonic() > deadline:
            return None
        index += 1
        return index, choose.choices(kinds, weights)[0]

    async def worker() -> None:
        while (op := next_op()) is not None:
            note = await run_op(f, plan, *op)
            report.notes.append(note)
            if note.outcome == "failed":
                report.failures.append(f"operation #{note.index} {note.kind} on "
                                       f"{note.machine or 'the stack'}: {note.detail}")  # fmt: skip
                if note.machine:
                    report.context.append(await context(f, note.machine))
            at = time.strftime("%H:%M:%S", time.gmtime(note.began))
            say(f"  {at} #{note.index:<4} {note.kind:<20} {note.machine or '-':<20} "
                f"{note.outcome:<8} {note.took_s:6.1f} s  {note.detail[:160]}")  # fmt: skip

    await asyncio.gather(*(worker() for _ in range(plan.at_once)))
    report.made["forks"] = sum(1 for m in f.members if m.origin.startswith("fork"))
    report.made["from snapshots"] = sum(1 for m in f.members if m.origin.startswith("from"))
    report.made["archived for room"] = sum(1 for m in f.members if m.gone)


async def context(f: Fleet, machine_id: str, last: int = 30) -> str:
    """A failure's context: the machine's last events, then the last lines of the stack's logs
    that name it (its tmp directory is gone once CI has run)."""
    lines: list[tuple[str, str]] = []  # (its time, the line): each line begins with its time
    for log in sorted((f.up.data_dir / "logs").glob("*.log")):
        with log.open(errors="replace") as text:
            lines += [(x[:27], f"{log.stem}: {x.rstrip()[:400]}") for x in text if machine_id in x]
    said = "\n    ".join(line for _, line in sorted(lines)[-last:])
    return f"{machine_id}: {await timeline(f, machine_id)}\n  its log lines:\n    {said}"


def last_lines(log: Path, n: int = 25) -> str:
    with log.open(errors="replace") as text:
        tail = [x.rstrip()[:400] for x in text][-n:]
    return f"the last lines of {log.name}:\n    " + "\n    ".join(tail)


async def run_op(f: Fleet, plan: Plan, index: int, kind: str) -> Note:
    note = Note(index, kind, began=time.time())
    rng = random.Random(f"{plan.seed}:{index}")
    began = time.monotonic()
    try:
        async with asyncio.timeout(plan.op_deadline_s):
            note.detail = await dispatch(f, kind, rng, note)
        note.outcome = "ok"
    except Cut as exc:
        note.outcome, note.detail = "cut", f"its answer was cut by the gateway's restart: {exc}"
    except FleetError as exc:
        note.outcome = "refused" if exc.code in REFUSALS[kind] else "failed"
        note.detail = f"{exc.code} {type(exc).__name__}: {exc.message}"
    except TimeoutError:
        note.outcome = "failed"
        note.detail = f"no answer within {plan.op_deadline_s:.0f} s (a hang)"
    except Exception as exc:  # noqa: BLE001 - the operation's boundary: it is said, others go on
        note.outcome, note.detail = "failed", f"{type(exc).__name__}: {exc}"
    note.took_s = time.monotonic() - began
    if note.outcome == "failed":
        for m in f.alive():
            if m.id == note.machine and (await f.machine(m.id)).status.value == "failed":
                m.gone = True
    return note


async def dispatch(f: Fleet, kind: str, rng: random.Random, note: Note) -> str:
    if kind.endswith("-restart"):
        return await restart(f, kind.removesuffix("-restart"), rng)
    alive = f.alive()
    if not alive:
        raise Broken("no machine left to operate on")
    m = rng.choice(alive)
    note.machine = m.id
    async with m.lock:
        if m.gone:
            return "archived meanwhile"
        return await OPS[kind](f, m, note)


async def client_calls(f: Fleet, seed: int, k: int, stop: asyncio.Event, report: Report) -> None:
    """A client's execs and file writes on machines chosen at random, at a user's pace; each
    write answered is checked at the end."""
    rng = random.Random(f"{seed}:client:{k}")
    j = 0
    while not stop.is_set():
        m = rng.choice(f.alive())
        j += 1
        what = f"client {k} call {j} on {m.id}"
        try:
            if rng.random() < 0.5:
                out = await f.answered(lambda m=m, j=j: f.client.exec(m.id, ["echo", f"c{k}-{j}"]))
                if out.stdout != f"c{k}-{j}\n":
                    raise Broken(f"echo answered {out!r}")
            else:
                path, content = f"soak/clients/c{k}-{j}.txt", f"client {k} write {j}\n"
                await f.answered(lambda m=m, p=path, c=content: f.client.write_file(m.id, p, c))
                f.writes.append((m, path, content))
            report.calls["ok"] += 1
        except FleetError as exc:
            if exc.code not in CLIENT_REFUSALS:
                report.failures.append(f"{what}: {exc.code} {type(exc).__name__}: {exc}")
            report.calls[f"refused {exc.code}"] += 1
        except Exception as exc:  # noqa: BLE001 - the call's boundary: said, the client goes on
            report.failures.append(f"{what}: {type(exc).__name__}: {exc}")
            report.calls["failed"] += 1
        # Its pause, ended early by the stop; the stop's waiter ends with it (one left pending
        # a call filled a timed-out test's task dump with hundreds of them).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=rng.uniform(0.5, 1.5))


def drain(up: FleetUp, to: Path) -> threading.Thread:
    """`fleet up`'s output copied to ``to`` as it comes: a pipe nobody reads would stop it."""
    out = up.proc.stdout
    assert out is not None

    def copy() -> None:
        with to.open("a") as f:
            shutil.copyfileobj(out, f, 4096)

    thread = threading.Thread(target=copy, name="fleet-up-output", daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description="the soak (docs/stop-start.md#the-soak)")
    parser.add_argument("--seed", type=int, default=secrets.randbelow(10**6))
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--ops", type=int, default=None)
    parser.add_argument("--machines", type=int, default=8)
    parser.add_argument("--at-once", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="kept after the run")
    a = parser.parse_args()
    plan = Plan(a.seed, ops=a.ops if a.ops or a.minutes else 200, minutes=a.minutes,
                machines=a.machines, at_once=a.at_once)  # fmt: skip
    work = a.work or Path(tempfile.mkdtemp(prefix="fleet-soak-"))
    report = asyncio.run(soak(plan, work))
    print(report.text())
    print(f"soak: its stack's logs are under {work}")
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
