"""Every gateway method that acts on a machine, walked on a ready ``namespaces`` machine and a
ready ``gvisor`` machine of one stack (NATS on the host's loopback, as ``./run up`` has it):
each answers, or is refused by a named error of contracts/errors.py (never -32603, never a
timeout, never a daemon that stopped answering), and a method that answers on namespaces
answers on gvisor too unless its refusal names the runtime (issue 60: "a gvisor machine is a
full machine").

The methods are the contracts' own: every spec of ``GATEWAY_METHODS`` whose params have a
``machineId``. ``SAMPLES`` gives each its params, in the order of the walk (the ones that stop,
pause, restart, fork or snapshot the machine late, ``machines.archive`` last); a method the
contracts add without a sample here fails the walk, naming it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from contracts.errors import (
    ERRORS,
    DaemonTimeout,
    DaemonUnavailable,
    FleetError,
    InternalError,
    InvalidParams,
    MethodNotFound,
    NotSupported,
)
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.models import Runtime
from contracts.rpc.jsonrpc import AnySpec
from controlplane.settings import Settings
from fleet.client import ConnectionFailed, FleetClient
from services.codemode.__main__ import build as codemode
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import READY_S, answers
from tests.waiters import wait_until

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")

RUNTIMES: tuple[Runtime, ...] = ("namespaces", "gvisor")
#: A daemon on ptrace traps every syscall: one call of the walk may take tens of seconds.
CALL_S = 180.0
#: Refusals that say nothing about the method: a bug, a wait, a daemon gone from a ready
#: machine, a sample the method does not understand, or a method the gateway does not know.
UNNAMED = frozenset(
    c.code for c in (InternalError, DaemonTimeout, DaemonUnavailable, InvalidParams, MethodNotFound)
)
#: Refusals that are product gaps, each with its issue: (method, runtime) -> (code, reference).
KNOWN: dict[tuple[str, str], tuple[int, str]] = {}


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """NATS on 127.0.0.1 (the default layout), namespaces by default, gvisor on request."""
    with gvisor_settings(tmp_path_factory.mktemp("walk"), host="127.0.0.1",
                         rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="walker")
async def with_codemode(stack: FleetClient, stack_settings: Settings) -> AsyncIterator[FleetClient]:
    """The module's stack with the codemode service too: ``codemode.run`` on a machine."""
    async with AsyncExitStack() as es:
        await codemode(stack_settings, es)
        yield stack


def machine_methods() -> dict[str, AnySpec]:
    """Every gateway method whose params name a machine, from the contracts."""
    return {
        spec.name: spec
        for spec in GATEWAY_METHODS
        if any(f.encode_name == "machineId" for f in msgspec.structs.fields(spec.params))
    }


@dataclass
class Walk:
    """One machine's walk: its id, and what earlier answers handed on (a session, a context)."""

    runtime: str
    machine_id: str
    found: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)


Sample = Callable[[Walk], dict[str, Any]]


def on(**params: Any) -> Sample:
    return lambda w: {"machineId": w.machine_id, **params}


def with_found(key: str, name: str, **params: Any) -> Sample:
    """Params naming what an earlier answer handed on (``found[key]``) as ``name``."""
    return lambda w: {"machineId": w.machine_id, name: w.found[key], **params}


#: The walk, in order: a test table, keyed by wire name, params as on the wire.
SAMPLES: dict[str, Sample] = {
    "machines.get": on(),
    "machines.daemonLog": on(lines=20),
    "machines.ports": on(),
    "machines.previewTicket": on(port=8000),
    "audit.list": on(limit=5),
    "machines.exec": on(command=["echo", "walk"], timeoutS=60),
    "machines.execStream": on(command=["echo", "walk"], timeoutS=60),
    "machines.writeFile": on(path="walk.txt", content="walked\n"),
    "machines.readFile": on(path="walk.txt"),
    "machines.stat": on(path="walk.txt"),
    # A watch answers when it ends (POST /rpc: the stream buffered), which an open one does not
    # within a call: a file is refused by name (WrongFileKind), having reached the daemon.
    "machines.watch": on(path="walk.txt"),
    "machines.listDir": on(path=".", limit=50, depth=2),
    "machines.makeDir": on(path="walked/in"),
    "machines.move": on(source="walk.txt", destination="walked/in/walk.txt"),
    "machines.removeFile": on(path="walked/in/walk.txt"),
    "machines.process.start": on(command=["sleep", "600"], tag="walk"),
    "machines.process.list": on(),
    "machines.process.logs": on(tag="walk", tail=10),
    "machines.process.kill": on(tag="walk"),
    "sessions.open": on(command=["sleep", "600"], cols=80, rows=24),
    "sessions.list": on(),
    "sessions.resize": with_found("session", "sessionId", cols=100, rows=30),
    "sessions.write": with_found("session", "sessionId", data="d2Fsaw==", eof=True),
    "sessions.signal": with_found("session", "sessionId", signal=15),
    "sessions.close": with_found("session", "sessionId"),
    "machines.metrics": on(),
    "machines.desktop.start": on(width=800, height=600),
    "machines.desktop.get": on(),
    "machines.desktop.act": on(actions=[{"type": "move", "x": 10, "y": 10}]),
    "machines.desktop.screenshot": on(format="png", scale=0.5),
    "machines.desktop.open": on(url="about:blank"),
    "machines.desktop.view": on(),
    "machines.desktop.stop": on(),
    "machines.code.listContexts": on(),
    "machines.code.createContext": on(language="python"),
    "machines.code.run": with_found("context", "contextId", code="1 + 1", timeoutS=60),
    "machines.code.interrupt": with_found("context", "contextId"),
    "machines.code.restartContext": with_found("context", "contextId"),
    "machines.code.deleteContext": with_found("context", "contextId"),
    "codemode.describe": on(),
    "codemode.run": on(code="(await machine.exec(['echo', 'walk']))['stdout']", timeoutS=120),
    "machines.refreshCode": on(),
    "machines.restart": on(),
    "machines.stop": on(),
    "machines.start": on(),
    "machines.pause": on(),
    "machines.resume": on(),
    "machines.fork": on(count=1),
    "machines.snapshot": on(name="walk"),
    "machines.archive": on(),
}
#: What an answer must hold where "it answered" alone could hide a failure.
CHECKS: dict[str, Callable[[Any], bool]] = {
    "machines.exec": lambda r: (r.exit_code, r.stdout) == (0, "walk\n"),
    "machines.execStream": lambda r: (r.exit_code, r.stdout) == (0, "walk\n"),
    "machines.readFile": lambda r: r.content == "walked\n",
    "machines.makeDir": lambda r: r.created,
    "sessions.write": lambda r: r.written == 4,
    "sessions.signal": lambda r: r.signaled,
    "machines.desktop.screenshot": lambda r: (r.width, r.height) == (400, 300),
    "machines.code.run": lambda r: r.error is None and "2" in str(r.results),
    "codemode.run": lambda r: (r.status, r.result) == ("ok", "walk\n"),
}
#: Once answered, the status the machine is awaited in before the walk goes on, and whether
#: its daemon must answer again.
SETTLE: dict[str, tuple[str, bool]] = {
    "machines.refreshCode": ("ready", True),
    "machines.restart": ("ready", True),
    "machines.stop": ("stopped", False),
    "machines.start": ("ready", True),
    "machines.pause": ("paused", False),
    "machines.resume": ("ready", True),
    "machines.archive": ("archived", False),
}


@dataclass(frozen=True)
class Outcome:
    #: ``ok``, ``refused`` (a named code) or ``failed`` (anything else).
    kind: str
    code: int | None = None
    detail: str = ""
    seconds: float = 0.0

    def cell(self) -> str:
        head = self.kind if self.code is None else f"{self.kind} {self.code}"
        name = ERRORS[self.code].__name__ if self.code in ERRORS else ""
        return f"{head} {name} ({self.seconds:.1f}s) {self.detail[:90]}".strip()


def judged(exc: BaseException, seconds: float) -> Outcome:
    if isinstance(exc, FleetError) and exc.code in ERRORS and exc.code not in UNNAMED:
        return Outcome("refused", exc.code, exc.message, seconds)
    code = exc.code if isinstance(exc, FleetError) else None
    return Outcome("failed", code, f"{type(exc).__name__}: {exc}", seconds)


async def call(stack: FleetClient, spec: AnySpec, walk: Walk) -> Outcome:
    try:
        params = msgspec.convert(SAMPLES[spec.name](walk), spec.params)
    except KeyError as exc:  # what it names was never handed on: an earlier call failed
        return Outcome("failed", None, f"no {exc} from an earlier answer")
    began = time.monotonic()
    try:
        result = await stack.call(spec, params, timeout_s=CALL_S)
    except (FleetError, ConnectionFailed, TimeoutError) as exc:  # judged after the walk
        return judged(exc, time.monotonic() - began)
    took = time.monotonic() - began
    if not CHECKS.get(spec.name, lambda _: True)(result):
        return Outcome("failed", None, f"answered {result!r}"[:300], took)
    if spec.name == "sessions.open":
        walk.found["session"] = result.session_id
    elif spec.name == "machines.code.createContext":
        walk.found["context"] = result.id
    elif spec.name == "machines.fork":
        return await forks_ready(stack, [m.id for m in result.machines], took)
    return Outcome("ok", seconds=took)


async def forks_ready(stack: FleetClient, ids: list[str], took: float) -> Outcome:
    """A fork answers once its machines exist: each must come to ready as a created one."""
    for mid in ids:
        got = await stack.wait_for(mid, ["ready", "failed"], timeout_s=READY_S)
        if got.status != "ready":
            return Outcome("failed", None, f"fork {mid} {got.status}: {got.status_reason}", took)
    return Outcome("ok", seconds=took, detail=f"{len(ids)} fork(s) ready")


async def settled(stack: FleetClient, walk: Walk, method: str) -> None:
    """After a call that changes the machine's state: until it is in the state asked for (the
    walk goes on either way; the next calls then say what they find)."""
    status, daemon = SETTLE[method]
    mid = walk.machine_id
    got = await stack.wait_for(mid, [status, "failed"], timeout_s=READY_S)
    if got.status == status and daemon:
        await wait_until(lambda: answers(stack, mid), timeout=READY_S, every=0.5)


async def walked(stack: FleetClient, runtime: Runtime, specs: dict[str, AnySpec]) -> Walk:
    inst = await stack.create_instance(f"walk-{runtime}")
    created = await stack.create_machine(inst.id, runtime=runtime)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert (got.status, got.runtime) == ("ready", runtime), got.status_reason
    walk = Walk(runtime, created.id)
    for name in SAMPLES:
        if name not in specs:
            continue
        walk.outcomes[name] = outcome = await call(stack, specs[name], walk)
        if outcome.kind == "ok" and name in SETTLE:
            await settled(stack, walk, name)
    return walk


def problems(specs: dict[str, AnySpec], walks: dict[str, Walk]) -> list[str]:
    """What breaks the rules, one line each."""
    found = []
    for name in specs:
        cells = {rt: walks[rt].outcomes[name] for rt in RUNTIMES}
        for rt, got in cells.items():
            known = KNOWN.get((name, rt))
            if got.kind == "failed" and not (known and known[0] == got.code):
                found.append(f"{name} on {rt}: {got.cell()}")
        ns, gv = cells["namespaces"], cells["gvisor"]
        names_runtime = gv.code == NotSupported.code and "gvisor" in gv.detail
        known = KNOWN.get((name, "gvisor"))
        if ns.kind == "ok" and gv.kind == "refused" and not names_runtime and not known:
            found.append(f"{name}: answers on namespaces, refused on gvisor: {gv.cell()}")
    return found


def table(specs: dict[str, AnySpec], walks: dict[str, Walk]) -> str:
    rows = [f"| {n} | " + " | ".join(walks[rt].outcomes[n].cell() for rt in RUNTIMES) + " |"
            for n in SAMPLES if n in specs]  # fmt: skip
    return "\n".join(["| method | namespaces | gvisor |", "|---|---|---|", *rows])


@pytest.mark.timeout(1500)
async def test_every_machine_method_answers_or_is_refused_by_name_on_both_runtimes(
    walker: FleetClient,
) -> None:
    specs = machine_methods()
    unsampled = sorted(set(specs) - set(SAMPLES))
    assert not unsampled, f"machine methods with no sample in SAMPLES: {unsampled}"
    assert not set(SAMPLES) - set(specs), "samples of methods the contracts no longer have"
    assert list(SAMPLES)[-1] == "machines.archive"  # it ends the machine: last
    done = await asyncio.gather(*(walked(walker, rt, specs) for rt in RUNTIMES))
    walks = {w.runtime: w for w in done}
    print("\n" + table(specs, walks))
    found = problems(specs, walks)
    assert not found, "\n".join(found) + "\n\n" + table(specs, walks)
