"""`fleet machines shell` and `fleet machines sessions list|attach|close`: interactive sessions
(a terminal on the machine, see fleet/cli/terminal.py)."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import TYPE_CHECKING

from fleet.cli.common import EXIT_FAILED, EXIT_OK, SubAction, command, emit, group
from fleet.cli.defaults import DETACH_HELP
from fleet.cli.stop import ensure_started

if TYPE_CHECKING:
    from contracts.daemon.sessions import SessionInfo
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(machines: SubAction) -> None:
    what = f"a terminal on the machine: shell ID [-- ARGV] ({DETACH_HELP})"
    sh = command(machines, "shell", _shell, what)
    sh.add_argument("machine_id")
    sh.add_argument("--cwd", help="relative to the machine's home")
    sh.add_argument("--name", help="a name for the session (shown by `sessions list`)")
    g = group(machines, "sessions", "a machine's interactive sessions (terminals)")
    command(g, "list", _list, "the machine's sessions").add_argument("machine_id")
    attach = command(g, "attach", _attach, f"join a session ({DETACH_HELP})")
    close = command(g, "close", _close, "hang up a session and forget it")
    for p in (attach, close):
        p.add_argument("machine_id")
        p.add_argument("session_id")


def _size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return max(1, min(size.columns, 1000)), max(1, min(size.lines, 1000))


async def _shell(c: FleetClient, a: Args) -> int:
    await ensure_started(c, a.machine_id)  # a stopped machine is started first, saying so
    cols, rows = _size()
    opened = await c.open_session(a.machine_id, a.argv or None, cols=cols, rows=rows, cwd=a.cwd,
                                  name=a.name)  # fmt: skip
    return await _join(c, a.machine_id, opened.session_id)


async def _attach(c: FleetClient, a: Args) -> int:
    return await _join(c, a.machine_id, a.session_id)


async def _join(c: FleetClient, machine_id: str, session_id: str) -> int:
    from fleet.cli import (
        terminal,  # here: it imports aiohttp, which building the parser does not need
    )

    ws = await c.attach_session(machine_id, session_id)
    try:
        outcome = await terminal.run(ws)
    finally:
        await ws.close()
    if outcome.detached:
        print(f"\r\ndetached; reattach with: fleet machines sessions attach {machine_id} "
              f"{session_id}", file=sys.stderr)  # fmt: skip
        return EXIT_OK
    if outcome.exit_code is None:
        print(f"\r\nfleet: {outcome.lost or 'the session ended'}", file=sys.stderr)
        return EXIT_FAILED
    await c.close_session(machine_id, session_id)  # it exited: nothing left to keep
    return outcome.exit_code


async def _list(c: FleetClient, a: Args) -> int:
    xs = await c.list_sessions(a.machine_id)
    return emit(a, xs, lambda: _table(xs))


def _table(xs: list[SessionInfo]) -> str:
    if not xs:
        return "no sessions"
    lines = [f"{'SESSION':<17} {'NAME':<16} {'STATE':<10} {'SIZE':<8} {'VIEWERS':<7} COMMAND"]
    for s in xs:
        state = "running" if s.running else f"exit {s.exit_code}"
        size = f"{s.cols}x{s.rows}"
        lines.append(f"{s.session_id:<17} {s.name[:16]:<16} {state:<10} {size:<8} "
                     f"{s.attached:<7} {' '.join(s.command)}")  # fmt: skip
    return "\n".join(lines)


async def _close(c: FleetClient, a: Args) -> int:
    closed = await c.close_session(a.machine_id, a.session_id)
    return emit(a, {"closed": closed},
                lambda: "closed" if closed else f"no session {a.session_id}")  # fmt: skip
