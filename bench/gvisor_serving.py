"""Benchmark 27's serving machine: a gvisor machine doing real work, paused, resumed and forked
with its memory, each against the same done to an idle gvisor machine (nothing started in it),
alternating, in the same run and the same stack (bench/gvisor.py's).

The serving machine runs two background processes (``machines.process.start``): a dev server,
``python3 -m http.server 8000`` on its loopback, and a Jupyter-style kernel, a server on a port
of its loopback and a client of it holding one connected TCP connection, which sends a counter
10 times a second and checks the server's echo (the process dies if the connection breaks).

- pause p50: ``machines.pause`` to ``machine.paused`` (goal: at most 1 s).
- resume p50: ``machines.resume`` to the first ``machines.exec`` answered (goal: at most 300 ms).
  Off the clock after each resume: the dev server answers a request inside the machine, both
  processes have the PIDs they had before the pause, and the kernel's counter goes on from
  where the pause left it (its next value is past the one written before the pause).
- fork with memory p50: ``machines.fork {count: 1, memory: true}`` to the fork's
  ``machine.ready`` (goal: at most 500 ms). Off the clock: the fork's own dev server answers
  inside the fork and its kernel's counter goes on from the source's.

A check that fails makes its row missed, its note saying which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import gvisor_fork
from bench.common import Report
from bench.gvisor import WAIT_S, _pause_resume
from bench.gvisor_steps import Steps, figure, p50
from bench.warm_pool import _Side
from contracts.gateway.rpc import MACHINES_EXEC, MACHINES_PROCESS_START
from contracts.gateway.types import MachineExecParams, MachineProcessStartParams

#: The machines it makes: the serving one and the idle one.
INSTANCES = 2
WEB = 8000
#: Where the kernel writes "<pid> <count>", in the machine's home.
KERNEL_MARK = "kernel-count"
#: A loopback server and a client holding one connection to it, echoing a counter.
KERNEL = f"""
import os, socket, threading, time
server = socket.create_server(('127.0.0.1', 0))
def echo():
    conn, _ = server.accept()
    with conn, conn.makefile('rwb') as f:
        for line in f:
            f.write(line)
            f.flush()
threading.Thread(target=echo, daemon=True).start()
client = socket.create_connection(server.getsockname())
stream = client.makefile('rwb')
n = 0
while True:
    n += 1
    stream.write(f'{{n}}\\n'.encode())
    stream.flush()
    if int(stream.readline()) != n:
        raise SystemExit('echo out of step')
    with open('{KERNEL_MARK}.tmp', 'w') as out:
        out.write(f'{{os.getpid()}} {{n}}')
    os.replace('{KERNEL_MARK}.tmp', '{KERNEL_MARK}')
    time.sleep(0.1)
"""
#: Inside the machine: the dev server's PID (0: none) and whether it answers a request.
PROBE = f"""
import os, urllib.request
pid = 0
for p in filter(str.isdigit, os.listdir('/proc')):
    try:
        if b'http.server' in open(f'/proc/{{p}}/cmdline', 'rb').read().split(b'\\0'):
            pid = int(p)
    except OSError:
        pass
try:
    answers = urllib.request.urlopen('http://127.0.0.1:{WEB}/', timeout=20).status == 200
except OSError:
    answers = False
print(pid, int(answers))
"""
CHECKS = ("server answered", "PIDs kept", "counter went on", "fork's server answered",
          "fork's counter went on")  # fmt: skip


def _kernel(home: Path) -> tuple[int, int]:
    """The kernel's PID and count, from its mark in ``home`` ((0, 0) before its first)."""
    try:
        pid, n = (home / KERNEL_MARK).read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(pid), int(n)


class _Serving:
    """The serving machine, its PIDs, and how many of each check passed (``kept``)."""

    def __init__(self, side: _Side, mid: str) -> None:
        self.side, self.mid = side, mid
        self.server_pid, self.kernel_pid, self.at_pause = 0, 0, 0
        self.kept = {check: [0, 0] for check in CHECKS}

    def home(self, mid: str) -> Path:
        return self.side.up.data_dir / "machines" / mid / "home"

    def _count(self, check: str, ok: bool) -> None:
        self.kept[check][0] += ok
        self.kept[check][1] += 1

    async def start(self) -> None:
        for tag, command in (("dev-server", ["python3", "-m", "http.server", str(WEB), "--bind",
                                             "127.0.0.1"]),
                             ("kernel", ["python3", "-c", KERNEL])):  # fmt: skip
            await self.side.gw.call(MACHINES_PROCESS_START, MachineProcessStartParams(
                machine_id=self.mid, command=command, tag=tag))  # fmt: skip
        async with asyncio.timeout(WAIT_S):
            while not await self._serves():  # noqa: ASYNC110
                await asyncio.sleep(0.5)

    async def _serves(self) -> bool:
        """Whether both processes are up: if so, their PIDs are taken."""
        self.server_pid, answers = await self._probe(self.mid)
        self.kernel_pid = _kernel(self.home(self.mid))[0]
        return answers and self.kernel_pid > 0

    async def _probe(self, mid: str) -> tuple[int, bool]:
        done = await self.side.gw.call(MACHINES_EXEC, MachineExecParams(
            machine_id=mid, command=["python3", "-c", PROBE], timeout_s=60))  # fmt: skip
        if done.exit_code != 0:
            return 0, False
        pid, answers = done.stdout.split()
        return int(pid), answers == "1"

    async def _went_on(self, mid: str, past: int) -> bool:
        """Until the kernel's count of ``mid`` changes from ``past``: whether it went on."""
        try:
            async with asyncio.timeout(60):
                while _kernel(self.home(mid))[1] == past:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return _kernel(self.home(mid))[1] > past

    def paused(self) -> None:
        self.at_pause = _kernel(self.home(self.mid))[1]

    async def resumed(self) -> None:
        pid, answers = await self._probe(self.mid)
        self._count("server answered", answers)
        self._count("counter went on", await self._went_on(self.mid, self.at_pause))
        kernel_pid = _kernel(self.home(self.mid))[0]
        self._count("PIDs kept", (pid, kernel_pid) == (self.server_pid, self.kernel_pid))

    async def forked(self, ids: list[str]) -> None:
        for fork in ids:
            self._count("fork's server answered", (await self._probe(fork))[1])
            past = _kernel(self.home(fork))[1]
            self._count("fork's counter went on", past > 0 and await self._went_on(fork, past))


async def measure(side: _Side, make: Callable[[], Awaitable[str]], rounds: int,
                  times: dict[str, list[float]]) -> dict[str, list[int]]:  # fmt: skip
    """Every sample, into ``times`` (keys ``serving …`` and ``idle …``); ``make`` makes a ready
    gvisor machine of the side's stack. Each check: [passed, made]."""
    serving, idle = _Serving(side, await make()), await make()
    await serving.start()
    times["serving fork"], times["idle fork"] = [], []
    for _ in range(rounds):
        await _pause_resume(side, idle, times, "idle ")
        await _pause_resume(side, serving.mid, times, "serving ", serving.paused)
        await serving.resumed()
    for _ in range(rounds):
        times["idle fork"].append((await gvisor_fork._fork(side, idle, 1, True))[0])
        took = await gvisor_fork._fork(side, serving.mid, 1, True, check=serving.forked)
        times["serving fork"].append(took[0])
    return serving.kept


def report_serving(report: Report, steps: Steps, times: dict[str, list[float]], on: str,
                   kept: dict[str, list[int]]) -> None:  # fmt: skip
    """The three rows; ``kept``: what ``measure`` returned."""
    failed = [f"{c} {ok}/{n}" for c, (ok, n) in kept.items() if ok < n]
    checks = f"checks not passed: {', '.join(failed)}" if failed else "every check passed"
    for name, key, goal, target in (
        ("pause p50, serving gvisor machine", "pause", 1.0, "<= 1 s"),
        ("resume p50, serving machine, to first exec", "resume", 0.3, "<= 300 ms"),
        ("fork with memory p50, serving machine", "fork", 0.5, "<= 500 ms"),
    ):
        value = p50(times, f"serving {key}")
        figure(report, steps, "serving", name, value, "s", p50(times, f"idle {key}"),
               f"idle gvisor {key}", target=target,
               met=value is not None and value <= goal and not failed,
               note=f"{on}; {checks}")  # fmt: skip
    serving, idle = p50(times, "serving image MB"), p50(times, "idle image MB")
    if serving is None or idle is None:
        return
    report.note(
        f"27: the serving machine's memory image p50 {serving:.0f} MB "
        f"(the idle machine's {idle:.0f} MB); checks after each resume "
        f"and in each fork: " + ", ".join(f"{c} {ok}/{n}" for c, (ok, n) in kept.items())
    )
