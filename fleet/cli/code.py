"""``fleet code run|describe|list|cancel`` and ``fleet mcp``: codemode from a terminal."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from fleet.cli.common import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, SubAction, command, emit, group
from fleet.cli.render import table

if TYPE_CHECKING:
    from contracts.gateway import codemode as cm
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(sub: SubAction) -> None:
    g = group(sub, "code", "codemode: run Python against the fleet's tools in a sandbox")
    run = command(g, "run", _run, "run FILE (or - for stdin); stream its events")
    run.add_argument("file", help="a Python file, or - for stdin")
    run.add_argument("--machine", help="bind `machine` to this machine")
    run.add_argument("--instance", help="the instance whose bridges the run gets")
    run.add_argument("--timeout", type=float, help="seconds")  # default: the contract's, in _run
    d = command(g, "describe", _describe, "print the providers' Python stubs")
    d.add_argument("providers", nargs="*", help="provider names (default: all)")
    d.add_argument("--machine", help="include `machine` for this machine")
    d.add_argument("--instance", help="include this instance's bridges")
    command(g, "list", _list, "kept runs, newest first")
    command(g, "cancel", _cancel, "cancel a running run").add_argument("run_id")
    mcp = sub.add_parser("mcp", help="serve codemode as an MCP server on stdio")
    mcp.set_defaults(func=_mcp)


def _code(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


async def _run(c: FleetClient, a: Args) -> int:
    from contracts.gateway import codemode as cm

    code = _code(a.file)
    timeout = cm.DEFAULT_TIMEOUT_S if a.timeout is None else a.timeout
    stream = c.code_stream(code, machine_id=a.machine, instance_id=a.instance, timeout_s=timeout)
    async for item in stream:
        if isinstance(item, cm.RunResult):
            return _ended(a, item)
        if not a.json:
            _show(item)
    return EXIT_FAILED


def _show(event: cm.RunEvent) -> None:
    from contracts.gateway import codemode as cm

    if isinstance(event, cm.RunLog):
        print(event.line, file=sys.stderr if event.stream == "stderr" else sys.stdout)
    elif isinstance(event, cm.RunToolCall):
        print(f"→ {event.provider}.{event.path}", file=sys.stderr)
    elif isinstance(event, cm.RunToolResult) and not event.ok:
        print(f"← error {event.code}: {event.message}", file=sys.stderr)


def _ended(a: Args, result: cm.RunResult) -> int:
    if a.json:
        emit(a, result, str)
    elif result.status == "ok":
        emit(a, result.result, lambda: cm_json(result.result))
    else:
        print(f"fleet: run {result.run_id} {result.status}: {result.error}", file=sys.stderr)
    codes = {"ok": EXIT_OK, "timeout": EXIT_TIMEOUT}
    return codes.get(result.status, EXIT_FAILED)


def cm_json(value: object) -> str:
    import msgspec

    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


async def _describe(c: FleetClient, a: Args) -> int:
    stubs = await c.code_describe(a.providers or None, machine_id=a.machine, instance_id=a.instance)
    return emit(a, stubs, lambda: "\n".join(f"# --- {n}.pyi\n{s}" for n, s in stubs.items()))


async def _list(c: FleetClient, a: Args) -> int:
    runs = await c.code_list()
    rows = [[r.run_id, r.status, r.instance_id or "-", str(r.duration_ms or "-"),
             r.started_at.isoformat()] for r in runs]  # fmt: skip
    return emit(a, runs, lambda: table(rows, ["RUN", "STATUS", "INSTANCE", "MS", "STARTED"]))


async def _cancel(c: FleetClient, a: Args) -> int:
    cancelled = await c.code_cancel(a.run_id)
    return emit(a, {"cancelled": cancelled}, lambda: "cancelled" if cancelled else "not running")


async def _mcp(c: FleetClient, a: Args) -> int:
    from fleet.cli.mcp_server import build_server

    await build_server(c).run_stdio_async()
    return EXIT_OK
