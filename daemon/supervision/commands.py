"""``fleet-daemon status|stop|doctor``: look after the daemon of a home from its shell.

They read the state file; ``status`` and ``stop`` talk to the control server and fall back to
signals when it does not answer. ``doctor`` lists the daemon and every process it started and
flags runaways (started by a daemon that is gone); ``doctor --clean`` ends those, and only
those: a pid whose start time is not the recorded one is somebody else's and is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec

from base import procinfo
from base.wait import wait_until
from daemon.processes.children import signal_group
from daemon.supervision.control import ControlUnavailable, control_request
from daemon.supervision.lifecycle import effective_state
from daemon.supervision.state import (
    CorruptState,
    DaemonState,
    TrackedProcess,
    read_state,
    state_path,
)

#: Exit codes: 0 running / healthy, 1 runaways found, 3 not running (as for `systemctl status`).
EXIT_OK, EXIT_RUNAWAYS, EXIT_NOT_RUNNING = 0, 1, 3


def _inspect(home: Path) -> DaemonState | None:
    """The state file, read without touching it (a corrupt one stays where it is, for the
    daemon to set aside when it starts): None, with a line saying why, when it is corrupt."""
    try:
        return read_state(home)
    except CorruptState as exc:
        print(f"warning: {exc} (left as it is)")
        return None


def status(home: Path, *, as_json: bool) -> int:
    state = _inspect(home)
    if state is None:
        print(f"no daemon has run in {home} (no {state_path(home)})")
        return EXIT_NOT_RUNNING
    live: dict[str, Any] | None = None
    if state.control_port and procinfo.is_alive(state.pid, state.start_ticks):
        try:
            live = control_request(home, state.control_port, "GET", "/status")
        except ControlUnavailable as exc:
            print(f"warning: {exc}; showing the state file")
    shown = live or _with_effective_state(state)
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        _print_status(shown)
    return EXIT_OK if shown["state"] == "running" else EXIT_NOT_RUNNING


def _with_effective_state(state: DaemonState) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(state)
    out["state"], out["stateReason"] = effective_state(state)
    return out


def _print_status(s: dict[str, Any]) -> None:
    print(f"daemon   pid {s['pid']}  {s['state']}: {s['stateReason']}")
    print(f"machine  {s['machineId']}  version {s['version']}  git {s.get('gitSha') or '?'}")
    if s.get("lastHeartbeat"):
        print(f"beat     {time.time() - s['lastHeartbeat']:.1f}s ago")
    for p in s.get("processes", []):
        print(f"process  {p['pid']:>7}  {p['kind']:<7} {p['state']:<8} {p.get('tag') or '-':<16} "
              f"{' '.join(p['command'])}")  # fmt: skip


def stop(home: Path, *, grace_s: float = 15.0) -> int:
    state = _inspect(home)
    if state is None or not procinfo.is_alive(state.pid, state.start_ticks):
        print(f"no daemon is running in {home}")
        return EXIT_NOT_RUNNING
    try:
        control_request(home, state.control_port or 0, "POST", "/stop")
        how = "asked on the control port"
    except ControlUnavailable as exc:
        print(f"warning: {exc}; sending SIGTERM")
        os.kill(state.pid, signal.SIGTERM)
        how = "SIGTERM"
    if _wait_gone(state.pid, state.start_ticks, grace_s):
        print(f"daemon pid {state.pid} stopped ({how})")
        return EXIT_OK
    print(f"daemon pid {state.pid} still running after {grace_s:g}s; sending SIGKILL")
    os.kill(state.pid, signal.SIGKILL)
    _wait_gone(state.pid, state.start_ticks, 5.0)
    return EXIT_OK


def _wait_gone(pid: int, ticks: int | None, timeout_s: float) -> bool:
    return wait_until(lambda: not procinfo.is_alive(pid, ticks), within_s=timeout_s,
                      every_s=0.05)  # fmt: skip


def find_runaways(state: DaemonState) -> list[TrackedProcess]:
    """Processes the daemon started that still run while the daemon itself is gone."""
    if procinfo.is_alive(state.pid, state.start_ticks):
        return []
    return [p for p in state.processes if procinfo.is_alive(p.pid, p.start_ticks)]


def doctor(home: Path, *, clean: bool, grace_s: float = 3.0, as_json: bool = False) -> int:
    state = _inspect(home)
    if state is None:
        print(f"no daemon has run in {home}; nothing to check")
        return EXIT_OK
    daemon_alive = procinfo.is_alive(state.pid, state.start_ticks)
    runaways = find_runaways(state)
    rows = [_row(p, runaway=p in runaways) for p in state.processes]
    if as_json:
        print(json.dumps({"daemon": {"pid": state.pid, "alive": daemon_alive,
                                     "state": effective_state(state)[0]},
                          "processes": rows}, indent=2))  # fmt: skip
    else:
        print(f"daemon  pid {state.pid}  {'alive' if daemon_alive else 'gone'}  "
              f"({effective_state(state)[0]})")  # fmt: skip
        for r in rows:
            flag = "RUNAWAY" if r["runaway"] else ("alive" if r["alive"] else "gone")
            print(f"  {r['pid']:>7}  {r['kind']:<7} {flag:<8} {' '.join(r['command'])}")
    if not runaways:
        return EXIT_OK
    if not clean:
        print(f"{len(runaways)} runaway process(es); `fleet-daemon doctor --clean` ends them")
        return EXIT_RUNAWAYS
    for p in runaways:
        end_process(p, grace_s)
        print(f"ended runaway pid {p.pid} ({' '.join(p.command)})")
    return EXIT_OK


def _row(p: TrackedProcess, *, runaway: bool) -> dict[str, Any]:
    return {"pid": p.pid, "kind": p.kind, "tag": p.tag, "command": p.command,
            "alive": procinfo.is_alive(p.pid, p.start_ticks), "runaway": runaway}  # fmt: skip


def end_process(p: TrackedProcess, grace_s: float) -> None:
    """SIGTERM the process group it leads (the daemon starts each in a new session), wait up
    to ``grace_s`` for it, then SIGKILL what is left of the group, members that outlived it
    included. ``signal_group`` re-checks the start time: never a reused pid."""
    signal_group(p.pid, p.start_ticks, signal.SIGTERM)
    _wait_gone(p.pid, p.start_ticks, grace_s)
    signal_group(p.pid, p.start_ticks, signal.SIGKILL)
    _wait_gone(p.pid, p.start_ticks, 2.0)
