"""`fleet machines|processes|events`: machines, what runs on them, and their events."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING

from contracts.bus.events import Event, MachineReady
from contracts.bus.subjects import EventKind
from contracts.ids import MACHINE_ID_RE
from contracts.models import Machine
from contracts.status import MachineStatus
from fleet.cli import (
    desktop as cli_desktop,
    fork as cli_fork,
    kernels as cli_kernels,
    live as cli_live,
    metrics as cli_metrics,
    network as cli_network,
    ports as cli_ports,
    sessions as cli_sessions,
    stop as cli_stop,
)
from fleet.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    SubAction,
    UsageError,
    command,
    emit,
    group,
    to_json,
)
from fleet.cli.oneshot import exec_arguments, list_arguments
from fleet.cli.render import (
    Progress,
    event_line,
    exit_text,
    final,
    machine_detail,
    machine_line,
    machine_path,
    machines_table,
    processes_table,
)

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(sub: SubAction) -> None:
    _machines(group(sub, "machines", "machines: create, inspect, run commands, refresh"))
    _processes(group(sub, "processes", "background processes on a machine"))
    ev = command(sub, "events", _events, "machine events: stored ones, then live")
    ev.add_argument("--machine", help="one machine's events, from its first")
    ev.add_argument("--kind", action="append", choices=[k.value for k in EventKind],
                    help="only this kind (repeat for more)")  # fmt: skip
    ev.add_argument("--since", type=int, help="after this stream sequence (0: from the start)")
    ev.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep waiting for new events (default); --no-follow stops after the stored ones",
    )


def _machines(g: SubAction) -> None:
    cli_network.register_machine(g)
    cli_kernels.register_machine(g)
    create = command(g, "create", _machines_create, "create the instance's machine")
    create.add_argument("--instance", required=True)
    create.add_argument("--provider", choices=["local", "docker", "swarm"],
                        help="default: the platform's (fleet up --provider)")  # fmt: skip
    create.add_argument("--runtime", choices=["namespaces", "gvisor"],
                        help="default: the instance's, else the platform's")  # fmt: skip
    rebuild = command(g, "rebuild", _machines_create, "archive the current machine, make anew")
    rebuild.add_argument("--instance", required=True)
    for p in (create, rebuild):
        p.add_argument("--idempotency-key", default=None,
                       help="sent again: the machine it made (default: a new key)")  # fmt: skip
        p.add_argument("--wait", action="store_true", help="show the stages until ready/failed")
        p.add_argument("--timeout", type=float, default=300.0, help="seconds, for --wait")
    command(g, "get", _machines_get, "one machine").add_argument("machine_id")
    list_arguments(command(g, "list", _machines_list, "machines, newest first"))
    archive = command(g, "archive", _machines_archive, "end a machine for good, files and all")
    archive.add_argument("machine_id")
    archive.add_argument("--timeout", type=float, default=120.0,
                         help="seconds to wait until its files are gone")  # fmt: skip
    ex = command(g, "exec", _machines_exec, "run a command: exec MACHINE_ID [--cwd DIR] -- ARGV")
    exec_arguments(ex)
    wa = command(g, "watch", cli_live.machines_watch,
                 "print each change under PATH of the machine's home as it happens")  # fmt: skip
    wa.add_argument("machine_id")
    wa.add_argument("path")
    wa.add_argument("-r", "--recursive", action="store_true", help="every directory below too")
    wa.add_argument("--events", action="append",
                    choices=["create", "write", "remove", "rename", "chmod"],
                    help="only this kind (repeat for more; default: all)")  # fmt: skip
    dl = command(g, "logs", cli_live.daemon_log, "the last lines of the machine's daemon log")
    dl.add_argument("machine_id")
    dl.add_argument("-n", "--lines", type=int, default=200)
    # The command itself comes after `--`: main() splits it off before argparse sees it.
    wr = command(g, "write", _machines_write, "write stdin (or --content) to PATH on the machine")
    wr.add_argument("machine_id")
    wr.add_argument("path")
    wr.add_argument("--content")
    wr.add_argument("--mode", type=lambda s: int(s, 8), help="octal, e.g. 600")
    cp = command(g, "cp", _machines_cp, "copy a file to or from a machine, any size: "
                 "cp LOCAL MACHINE_ID:PATH, or cp MACHINE_ID:PATH LOCAL")  # fmt: skip
    cp.add_argument("source")
    cp.add_argument("dest")
    cp.add_argument("--mode", type=lambda s: int(s, 8),
                    help="octal, for an upload (default: the local file's)")  # fmt: skip
    env = command(g, "refresh-env", _refresh_env, "rebuild the .env, push it to running machines")
    env.add_argument("--instance", help="only this instance's machine (default: all you may)")
    code = command(g, "refresh-code", _refresh_code, "run the platform's code on the machine")
    code.add_argument("machine_id")
    restart = command(g, "restart", _restart, "restart the machine's daemon (processes kept)")
    restart.add_argument("machine_id")
    cli_sessions.register(g)
    cli_ports.register(g)
    cli_desktop.register(g)
    cli_metrics.register(g)
    cli_stop.machine_commands(g)
    cli_fork.machine_commands(g)


async def _machines_create(c: FleetClient, a: Args) -> int:
    if a.sub == "create":
        m = await c.create_machine(a.instance, a.provider, idempotency_key=a.idempotency_key,
                                   runtime=a.runtime)  # fmt: skip
    else:
        m = await c.rebuild_machine(a.instance, idempotency_key=a.idempotency_key)
    if not a.wait:
        return emit(a, m, lambda: machine_line(m))
    return await _follow(c, a, m)


async def _follow(c: FleetClient, a: Args, m: Machine) -> int:
    """Show each stage as its event arrives; 0 at ready (a repo that could not be cloned named
    on stderr: the machine works without it), 1 at failed/archived. With --json, only the
    final machine record is printed."""
    import asyncio  # here: the parser (`fleet --help`) does without it

    progress = Progress(sys.stdout, tty=sys.stdout.isatty() and not a.json)
    if not a.json:
        print(f"machine {m.id} (instance {m.instance_id})", flush=True)
    animation = asyncio.create_task(progress.animate()) if progress.tty else None
    try:
        async with asyncio.timeout(a.timeout):
            last = await _stages(c, m.id, progress if not a.json else None)
    except TimeoutError:
        print(f"fleet: machine {m.id} not ready after {a.timeout:g}s", file=sys.stderr)
        return EXIT_TIMEOUT
    finally:
        if animation is not None:
            animation.cancel()
    machine = await c.get_machine(m.id)
    if a.json:
        print(to_json(machine))
    elif not isinstance(last, MachineReady):
        print(f"machine {m.id} {machine.status.value}: {machine.status_reason}", file=sys.stderr)
    elif machine.setup_warning:
        print(f"machine {m.id} is ready, with a warning: {machine.setup_warning}", file=sys.stderr)
    return EXIT_OK if isinstance(last, MachineReady) else EXIT_FAILED


async def _stages(c: FleetClient, machine_id: str, progress: Progress | None) -> Event | None:
    """The machine's events until the pipeline ends; the last one."""
    async with contextlib.aclosing(c.events(machine_id)) as stream:
        async for _, event in stream:
            if progress is not None:
                progress.add(event)
            if final(event):
                return event
    return None


async def _machines_get(c: FleetClient, a: Args) -> int:
    m = await c.get_machine(a.machine_id)
    return emit(a, m, lambda: machine_detail(m))


async def _machines_list(c: FleetClient, a: Args) -> int:
    xs = await c.list_machines(a.instance)
    return emit(a, xs, lambda: machines_table(xs))


async def _machines_archive(c: FleetClient, a: Args) -> int:
    """Waits for ``archived``: when it returns, nothing of the machine is left on its host."""
    m = await c.archive_machine(a.machine_id)
    if m.status is MachineStatus.ARCHIVING:
        try:
            m = await c.wait_for(m.id, ("archived",), a.timeout)
        except TimeoutError:
            print(f"fleet: machine {m.id} still archiving after {a.timeout:g}s (its host "
                  "removes its files when it can reach them)", file=sys.stderr)  # fmt: skip
            return EXIT_TIMEOUT
    return emit(a, m, lambda: machine_line(m))


def _argv(a: Args, what: str) -> list[str]:
    if not a.argv:
        raise UsageError(f"{what} needs a command after --, e.g. {what} ID -- ls -la")
    return list(a.argv)


async def _machines_exec(c: FleetClient, a: Args) -> int:
    return await cli_live.machines_exec(c, a, _argv(a, "machines exec"))


async def _machines_write(c: FleetClient, a: Args) -> int:
    content = a.content if a.content is not None else sys.stdin.read()
    r = await c.write_file(a.machine_id, a.path, content, a.mode)
    return emit(a, r, lambda: f"wrote {r.bytes_written} bytes to {machine_path(r.path, a.path)}")


def _remote(arg: str) -> tuple[str, str] | None:
    """``MACHINE_ID:PATH`` as (machine id, path); None for a local path."""
    head, sep, tail = arg.partition(":")
    return (head, tail) if sep and MACHINE_ID_RE.fullmatch(head) else None


async def _machines_cp(c: FleetClient, a: Args) -> int:
    src, dst = _remote(a.source), _remote(a.dest)
    if (src is None) == (dst is None):
        raise UsageError("cp copies between here and a machine: one of its two paths must be "
                         "MACHINE_ID:PATH, the other local")  # fmt: skip
    if dst is not None:
        remote = dst[1] or a.source.rsplit("/", 1)[-1]
        up = await c.upload(dst[0], a.source, remote, mode=a.mode)
        shown = machine_path(up.path, remote)
        return emit(a, up, lambda: f"{a.source} -> {dst[0]}:{shown} ({up.size} bytes, "
                    f"sha256 {up.sha256})")  # fmt: skip
    assert src is not None
    local = a.dest
    if os.path.isdir(local):
        local = os.path.join(local, src[1].rstrip("/").rsplit("/", 1)[-1])
    down = await c.download(src[0], src[1], local)
    return emit(a, down, lambda: f"{src[0]}:{src[1]} -> {down.path} ({down.size} bytes, "
                f"sha256 {down.sha256})")  # fmt: skip


async def _refresh_env(c: FleetClient, a: Args) -> int:
    r = await c.refresh_env(a.instance)

    def human() -> str:
        lines = [f"written to {r.written} of {r.machines} running machine(s)"]
        lines += [f"  failed {f.machine_id}: error {f.code}: {f.message}" for f in r.failed]
        return "\n".join(lines)

    emit(a, r, human)
    return EXIT_FAILED if r.failed else EXIT_OK


async def _refresh_code(c: FleetClient, a: Args) -> int:
    r = await c.refresh_code(a.machine_id)
    then = "its daemon restarts with it" if r.restarting else "the daemon already ran it"
    shas = f"{(r.from_git_sha or '?')[:12]} -> {(r.to_git_sha or '?')[:12]}"
    return emit(a, r, lambda: f"{r.machine_id}: {shas}; {then}\n{r.message}")


async def _restart(c: FleetClient, a: Args) -> int:
    m = await c.restart_machine(a.machine_id)
    return emit(a, m, lambda: f"{m.id}: its daemon restarts; processes keep running")


# --- processes ----------------------------------------------------------------------------------
def _processes(g: SubAction) -> None:
    start = command(g, "start", _proc_start, "start: processes start ID [--tag T] -- ARGV")
    start.add_argument("machine_id")
    start.add_argument("--tag", help="a name to find it by (unique among live processes)")
    start.add_argument("--cwd")
    start.add_argument("--restart", choices=["never", "on-env-change", "always"], default="never")
    command(g, "list", _proc_list, "the machine's processes").add_argument("machine_id")
    kill = command(g, "kill", _proc_kill, "stop it (its process group): TERM, then KILL")
    logs = command(g, "logs", _proc_logs, "the last lines of its output")
    logs.add_argument("--tail", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    for p in (kill, logs):
        p.add_argument("machine_id")
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--pid", type=int)
        which.add_argument("--tag")


async def _proc_start(c: FleetClient, a: Args) -> int:
    argv = _argv(a, "processes start")
    p = await c.start_process(a.machine_id, argv, cwd=a.cwd, tag=a.tag, restart=a.restart)
    return emit(a, p, lambda: f"started pid {p.pid}" + (f" ({p.tag})" if p.tag else ""))


async def _proc_list(c: FleetClient, a: Args) -> int:
    xs = await c.list_processes(a.machine_id)
    return emit(a, xs, lambda: processes_table(xs))


async def _proc_kill(c: FleetClient, a: Args) -> int:
    p = await c.kill_process(a.machine_id, pid=a.pid, tag=a.tag)
    return emit(a, p, lambda: f"pid {p.pid} {p.state} ({exit_text(p.exit_code)})")


async def _proc_logs(c: FleetClient, a: Args) -> int:
    if a.follow:
        return await cli_live.follow_process_log(c, a)
    r = await c.process_logs(a.machine_id, pid=a.pid, tag=a.tag, tail=a.tail)
    return emit(a, r, lambda: "\n".join(r.lines))


# --- events -------------------------------------------------------------------------------------
async def _events(c: FleetClient, a: Args) -> int:
    """Without --follow and without --machine or --since, the whole stored stream."""
    since = 0 if a.since is None and not a.follow and a.machine is None else a.since
    stream = c.events(a.machine, since, a.kind, follow=a.follow)
    async with contextlib.aclosing(stream):
        async for seq, event in stream:
            print(to_json(event) if a.json else event_line(seq, event), flush=True)
    return EXIT_OK
