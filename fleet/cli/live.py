"""`fleet machines exec` (live), `fleet machines logs`, `fleet machines watch` and
`fleet processes logs -f`.

exec prints the command's output as it is produced; a Ctrl-C closes the stream, which kills
the remote process group, and fleet exits 130 (``fleet.cli.main``). ``processes logs -f``
follows the process's log file with ``tail -F`` through the same stream.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

from fleet.cli.common import EXIT_FAILED, EXIT_OK, UsageError, emit, to_json
from fleet.cli.oneshot import command_exit, exec_ended

if TYPE_CHECKING:
    from contracts.daemon.rpc import ExecCommandResult
    from fleet.client import FleetClient

Args = argparse.Namespace


async def machines_exec(c: FleetClient, a: Args, argv: list[str]) -> int:
    # One JSON document (the whole result, as machines.exec gives it); root's is not streamed.
    if a.json or getattr(a, "user", None) == "root":
        r = await c.exec(a.machine_id, argv, timeout_s=a.timeout, cwd=a.cwd,
                         user=getattr(a, "user", None))  # fmt: skip
        if not a.json:
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
            return command_exit(r.exit_code)
        print(to_json(r))
        return command_exit(r.exit_code)
    return exec_ended(await print_stream(c, a.machine_id, argv, timeout_s=a.timeout, cwd=a.cwd))


async def print_stream(
    c: FleetClient, machine_id: str, argv: list[str], *, timeout_s: float | None = None,
    cwd: str | None = None,
) -> ExecCommandResult:  # fmt: skip
    from contracts.daemon.rpc import OutputChunk  # here: it loads the method specs

    stream = c.exec_stream(machine_id, argv, timeout_s=timeout_s, cwd=cwd)
    async with contextlib.aclosing(stream):
        async for item in stream:
            if isinstance(item, OutputChunk):
                out = sys.stderr if item.stream == "stderr" else sys.stdout
                out.write(item.data)
                out.flush()
            else:
                return item
    raise UsageError("the stream ended without a result")  # unreachable: exec_stream raises


async def daemon_log(c: FleetClient, a: Args) -> int:
    lines = await c.daemon_log(a.machine_id, a.lines)
    return emit(a, lines, lambda: "\n".join(lines))


async def follow_process_log(c: FleetClient, a: Args) -> int:
    """``tail -F`` of the process's log on the machine, streamed until Ctrl-C (or the longest
    exec the daemon allows)."""
    procs = await c.list_processes(a.machine_id)
    found = [p for p in procs if p.pid == a.pid or (a.tag is not None and p.tag == a.tag)]
    if not found or not found[0].log_path:
        raise UsageError(f"no process with {'pid ' + str(a.pid) if a.pid else 'tag ' + a.tag}")
    from contracts.daemon.rpc import MAX_EXEC_TIMEOUT_S

    argv = ["tail", "-n", str(a.tail), "-F", "--", found[0].log_path]
    await print_stream(c, a.machine_id, argv, timeout_s=MAX_EXEC_TIMEOUT_S)
    return EXIT_OK


async def machines_watch(c: FleetClient, a: Args) -> int:
    """Each change under the path as it happens (``TYPE<TAB>PATH``, a directory's with a
    ``/``; with --json one JSON object a line), until the watch ends: why is said on stderr
    (0 unless its stream was cut). A Ctrl-C ends it (exit 130)."""
    from contracts.daemon.watch import FileEvent  # here: it loads the method specs

    stream = c.machines_watch(a.machine_id, a.path, recursive=a.recursive, events=a.events)
    async with contextlib.aclosing(stream):
        async for item in stream:
            if not isinstance(item, FileEvent):
                print(f"fleet: the watch of {item.path} ended ({item.reason}): {item.message}",
                      file=sys.stderr)  # fmt: skip
                return EXIT_FAILED if item.reason == "cut" else EXIT_OK
            if a.json:
                print(to_json(item), flush=True)
            elif item.type == "overflow":
                print(f"overflow\t{item.path} ({item.dropped or 'some'} events left out)",
                      flush=True)  # fmt: skip
            else:
                print(f"{item.type}\t{item.path}{'/' if item.is_dir else ''}", flush=True)
    raise UsageError("the watch ended without a result")  # unreachable: rpc_stream raises
