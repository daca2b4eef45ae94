"""Benchmark 30: start-up, paid by every command and every service start.

In one run, interleaved so that all see the same load: the wall time of ``fleet --help`` and
``fleet --version`` against bare ``python -c pass``; of ``fleet machines list`` and ``fleet
machines exec M -- true`` against a `fleet up` stack (one machine), each against the floor of
any command, a bare Python process making the same call with urllib (goal: 1.5x); and the CPU
(user + sys) of importing each service's ``__main__`` against ``python -c pass`` (goal: 0.4 s).
Medians of N runs each.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import REPO, Figure, Report, median, temp_dir
from bench.create_ready import _one
from bench.stack import ADMIN_TOKEN, FLEET, EventWatch, FleetUp, Gateway, servers
from contracts.gateway.live import RPC_STREAM_PATH
from contracts.gateway.rpc import INSTANCES_CREATE, CreateInstanceParams

PYTHON = sys.executable
BARE = [PYTHON, "-c", "pass"]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/__main__.py"))
#: The floor of a command: a process that makes the one call (argv: the path and the method,
#: its params JSON) and reads the whole answer, nothing else.
RAW_CALL = """
import json, os, sys, urllib.request as u
path, method, params = sys.argv[1:4]
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": json.loads(params)})
req = u.Request(os.environ["FLEET_URL"] + path, data=body.encode(), headers={
    "Authorization": "Bearer " + os.environ["FLEET_TOKEN"], "Content-Type": "application/json"})
assert b"result" in u.urlopen(req, timeout=30).read()
"""


def _wall(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Wall seconds from start to exit. The wait blocks, and a timer kills a run that hangs:
    Popen.wait with a timeout polls with sleeps doubling up to 50 ms, which rounded each
    figure up to the end of a sleep (63.5, 113.5, 163.5 ms: bare Python's ~40 ms read 64)."""
    t0 = time.perf_counter()
    with subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL) as proc:
        timer = threading.Timer(60, proc.kill)
        timer.start()
        try:
            code = proc.wait()
        finally:
            timer.cancel()
    took = time.perf_counter() - t0
    if code:
        raise subprocess.CalledProcessError(code, list(argv))
    return took


def _cpu(argv: Sequence[str]) -> float:
    """User + sys seconds of one child process (its own, from RUSAGE_CHILDREN's growth)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=60, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _medians(n: int, probes: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each probe ``n`` times, interleaved (one of each per round), and each one's median."""
    got: dict[str, list[float]] = {k: [] for k in probes}
    for _ in range(n):
        for key, probe in probes.items():
            got[key].append(probe())
    return {k: median(v) for k, v in got.items()}


def _within(report: Report, name: str, value: float, base: float, base_name: str,
            target_s: float, unit: str = "s") -> None:  # fmt: skip
    report.add(Figure("30", name, value, unit, base, base_name, f"<= {target_s} s",
                      value <= target_s))  # fmt: skip


async def _machines_list(report: Report, n: int) -> None:
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        gw, watch = Gateway(up.url), await EventWatch().start(ns.url)
        try:
            inst = await gw.call(INSTANCES_CREATE, CreateInstanceParams(name="startup"))
            await _one(gw, watch, inst.id)  # one machine: the table has a row
            (machine,) = [mid for kind, mid in watch.seen if kind == "ready"]
        finally:
            await watch.close()
            await gw.close()
        env = os.environ | {"FLEET_URL": up.url, "FLEET_TOKEN": ADMIN_TOKEN}
        exec_params = json.dumps({"machineId": machine, "command": ["true"]})
        argvs = {
            "raw list": [PYTHON, "-c", RAW_CALL, "/rpc", "machines.list", "{}"],
            "list": [FLEET, "machines", "list"],
            "raw exec": [PYTHON, "-c", RAW_CALL, RPC_STREAM_PATH, "machines.execStream",
                         exec_params],
            "exec": [FLEET, "machines", "exec", machine, "--", "true"],
        }  # fmt: skip
        cwd = root  # not the checkout: no .fleet-data token there to read
        got = _medians(n, {k: functools.partial(_wall, v, env, cwd) for k, v in argvs.items()})
    for name, key in (("fleet machines list", "list"), ("fleet machines exec M -- true", "exec")):
        value, base = got[key], got[f"raw {key}"]
        report.add(Figure("30", f"{name}, wall (median)", value, "s", base,
                          "python + one urllib call", "<= 1.5x", value <= 1.5 * base))  # fmt: skip


async def run(report: Report, quick: bool) -> None:
    n = 11 if quick else 31
    print(f"[30] start-up: {n} runs of each command; services' imports: {', '.join(SERVICES)}")
    got = _medians(n, {
        "bare": lambda: _wall(BARE),
        "help": lambda: _wall([FLEET, "--help"]),
        "version": lambda: _wall([FLEET, "--version"]),
    })  # fmt: skip
    _within(report, "fleet --help, wall (median)", got["help"], got["bare"], "python -c pass", 0.12)
    _within(report, "fleet --version, wall (median)", got["version"], got["bare"],
            "python -c pass", 0.12)  # fmt: skip
    await _machines_list(report, n)
    m = 5 if quick else 15
    probes = {"bare": lambda: _cpu(BARE)} | {
        s: (lambda s=s: _cpu([PYTHON, "-c", f"import services.{s}.__main__"])) for s in SERVICES
    }
    cpu = _medians(m, probes)
    for s in SERVICES:
        _within(report, f"import services.{s}.__main__, CPU (median)", cpu[s], cpu["bare"],
                "python -c pass", 0.4)  # fmt: skip
    report.note(f"start-up: medians of {n} runs of each command and {m} of each import")
