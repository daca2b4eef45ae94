"""`fleet`: run fleetd and drive it from a terminal.

Exit codes: 0 ok; 1 the machine failed (or a remote command's own non-zero exit code for
`machines exec`); 2 usage; 3 fleetd unreachable; 4 the API answered an error; 5 timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from contracts.errors import FleetError
from contracts.events import (
    DaemonStatusReported,
    Event,
    MachineFailed,
    MachineProvisioned,
    SetupPushed,
    kind_of,
)
from contracts.models import Machine
from contracts.status import MachineStatus
from fleet.client import DEFAULT_URL, ConnectionFailed, FleetClient

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_API, EXIT_TIMEOUT = 1, 2, 3, 4, 5


def _default_token() -> str:
    if token := os.environ.get("FLEET_TOKEN"):
        return token
    local = Path(".fleet-data/admin-token")  # `fleet up`'s default, for the local quick start
    return local.read_text().strip() if local.exists() else ""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleet", description="fleetd: remote development machines")
    p.add_argument(
        "--url",
        default=os.environ.get("FLEET_URL", DEFAULT_URL),
        help="gateway URL (FLEET_URL; default %(default)s)",
    )
    p.add_argument("--token", default=None, help="access token (FLEET_TOKEN)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="run the embedded stack")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--data-dir", type=Path, default=Path(".fleet-data"))
    up.add_argument("--nats-url", help="use this NATS (JetStream on) instead of the embedded one")
    up.add_argument("--redis-url", help="use this Redis instead of the embedded valkey")
    up.add_argument("--prod", action="store_true", help="JSON logs")

    inst = sub.add_parser("instances").add_subparsers(dest="sub", required=True)
    inst.add_parser("create").add_argument("name")
    inst.add_parser("list")
    inst.add_parser("get").add_argument("instance_id")

    env = sub.add_parser("env").add_subparsers(dest="sub", required=True)
    e_set = env.add_parser("set", help="without --instance: a platform var")
    e_set.add_argument("name")
    e_set.add_argument("value")
    e_unset = env.add_parser("unset")
    e_unset.add_argument("name")
    e_list = env.add_parser("list")
    for e in (e_set, e_unset, e_list):
        e.add_argument("--instance")

    repos = sub.add_parser("repos").add_subparsers(dest="sub", required=True)
    r_add = repos.add_parser("add")
    for flag in ("--instance", "--branch", "--path"):
        r_add.add_argument(flag, required=True)
    r_add.add_argument("--url", dest="repo_url", required=True, help="the repository to clone")
    r_rm = repos.add_parser("remove")
    r_rm.add_argument("--instance", required=True)
    r_rm.add_argument("--path", required=True)
    repos.add_parser("list").add_argument("--instance", required=True)

    m = sub.add_parser("machines").add_subparsers(dest="sub", required=True)
    m_create = m.add_parser("create")
    m_create.add_argument("--instance", required=True)
    m_create.add_argument("--provider", default="local")
    m_rebuild = m.add_parser("rebuild")
    m_rebuild.add_argument("--instance", required=True)
    for c in (m_create, m_rebuild):
        c.add_argument("--wait", action="store_true", help="follow the stages until ready/failed")
        c.add_argument("--timeout", type=float, default=300.0)
    m.add_parser("get").add_argument("machine_id")
    m.add_parser("list").add_argument("--instance")
    m.add_parser("archive").add_argument("machine_id")
    m_exec = m.add_parser("exec", help="fleet machines exec ID [--cwd DIR] -- argv...")
    m_exec.add_argument("machine_id")
    m_exec.add_argument("--cwd")
    m_exec.add_argument("--timeout", type=float, help="seconds before the command is killed")
    # The command itself comes after `--`; main() splits it off before argparse sees it.
    m_write = m.add_parser("write", help="write stdin (or --content) to PATH on the machine")
    m_write.add_argument("machine_id")
    m_write.add_argument("path")
    m_write.add_argument("--content")
    m_write.add_argument("--mode", type=lambda s: int(s, 8))

    tok = sub.add_parser("tokens", help="access tokens").add_subparsers(dest="sub", required=True)
    t_create = tok.add_parser("create", help="prints the secret once")
    t_create.add_argument("name")
    t_create.add_argument("--instance", help="scope it to one instance (default: admin token)")
    tok.add_parser("list")
    tok.add_parser("revoke").add_argument("token_id")

    ev = sub.add_parser("events", help="tail machine events")
    ev.add_argument("--machine")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    # Everything after the first `--` is a remote command, passed verbatim (argparse would
    # try to read options in it, or drop a `*` positional placed before other options).
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = _parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.argv = command
    if args.cmd == "up":
        from fleet.up import UpOptions, up

        opts = UpOptions(
            port=args.port,
            host=args.host,
            data_dir=args.data_dir,
            nats_url=args.nats_url,
            redis_url=args.redis_url,
            env="prod" if args.prod else "dev",
        )
        raise SystemExit(up(opts))
    try:
        code = asyncio.run(_run_client(args))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


async def _run_client(args: argparse.Namespace) -> int:
    token = args.token or _default_token()
    async with FleetClient(args.url, token) as client:
        try:
            return await COMMANDS[(args.cmd, getattr(args, "sub", None))](client, args)
        except ConnectionFailed as exc:
            print(f"fleet: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except FleetError as exc:
            print(f"fleet: error {exc.code}: {exc.message}", file=sys.stderr)
            return EXIT_API
        except TimeoutError as exc:
            print(f"fleet: timed out: {exc}", file=sys.stderr)
            return EXIT_TIMEOUT


def _out(args: argparse.Namespace, obj: Any, human: Callable[[], str]) -> int:
    if args.json:
        print(msgspec.json.encode(obj).decode())
    else:
        print(human())
    return 0


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _machine_line(m: Machine) -> str:
    return f"{m.id}  {m.status.value}  ({m.status_reason})"


Cmd = Callable[[FleetClient, argparse.Namespace], Coroutine[Any, Any, int]]


async def _instances_create(c: FleetClient, a: argparse.Namespace) -> int:
    i = await c.create_instance(a.name)
    return _out(a, i, lambda: i.id)


async def _instances_list(c: FleetClient, a: argparse.Namespace) -> int:
    xs = await c.list_instances()
    rows = [[i.id, i.name, i.current_machine_id or "-", i.created_at.isoformat()] for i in xs]
    return _out(a, xs, lambda: _table(rows, ["ID", "NAME", "MACHINE", "CREATED"]))


async def _instances_get(c: FleetClient, a: argparse.Namespace) -> int:
    i = await c.get_instance(a.instance_id)
    return _out(a, i, lambda: f"{i.id}  {i.name}  machine={i.current_machine_id or '-'}")


async def _env_set(c: FleetClient, a: argparse.Namespace) -> int:
    v = await c.set_env(a.name, a.value, a.instance)
    return _out(a, v, lambda: f"set {v.name} ({v.scope})")


async def _env_unset(c: FleetClient, a: argparse.Namespace) -> int:
    removed = await c.unset_env(a.name, a.instance)
    return _out(a, {"removed": removed}, lambda: "removed" if removed else "was not set")


async def _env_list(c: FleetClient, a: argparse.Namespace) -> int:
    xs = await c.list_env(a.instance)
    return _out(
        a, xs, lambda: _table([[v.name, v.scope, v.value] for v in xs], ["NAME", "SCOPE", "VALUE"])
    )


async def _repos_add(c: FleetClient, a: argparse.Namespace) -> int:
    r = await c.add_repo(a.instance, a.repo_url, a.branch, a.path)
    return _out(a, r, lambda: f"added {r.url}@{r.branch} -> ~/{r.path}")


async def _repos_remove(c: FleetClient, a: argparse.Namespace) -> int:
    removed = await c.remove_repo(a.instance, a.path)
    return _out(a, {"removed": removed}, lambda: "removed" if removed else "no such repo")


async def _repos_list(c: FleetClient, a: argparse.Namespace) -> int:
    xs = await c.list_repos(a.instance)
    return _out(
        a, xs, lambda: _table([[r.path, r.url, r.branch] for r in xs], ["PATH", "URL", "BRANCH"])
    )


async def _machines_create(c: FleetClient, a: argparse.Namespace) -> int:
    m = await (
        c.create_machine(a.instance, a.provider)
        if a.sub == "create"
        else c.rebuild_machine(a.instance)
    )
    if not a.wait:
        return _out(a, m, lambda: _machine_line(m))
    return await _follow(c, a, m)


def _describe(event: Event) -> str:
    kind = kind_of(event).value
    if isinstance(event, MachineProvisioned):
        return f"{kind:<24} {event.provider} {event.external_id}"
    if isinstance(event, DaemonStatusReported):
        return f"{kind:<24} {event.status}, daemon {event.version}"
    if isinstance(event, SetupPushed):
        return f"{kind:<24} .env {event.env_bytes} B, {len(event.repo_paths)} repo(s)"
    if isinstance(event, MachineFailed):
        return f"{kind:<24} at {event.stage}: {event.reason}"
    return kind


async def _follow(c: FleetClient, a: argparse.Namespace, m: Machine) -> int:
    """Print each stage as its event arrives; exit 0 at ready, 1 at failed."""
    start = time.monotonic()
    if not a.json:
        print(f"machine {m.id} (instance {m.instance_id})", flush=True)
    async with asyncio.timeout(a.timeout):
        async for _, event in c.events(m.id):
            took = time.monotonic() - start
            if a.json:
                print(msgspec.json.encode(event).decode(), flush=True)
            else:
                mark = "x" if isinstance(event, MachineFailed) else "+"
                print(f"  {mark} {took:6.2f}s  {_describe(event)}", flush=True)
            machine = await c.get_machine(m.id)
            if machine.status is MachineStatus.READY:
                return 0
            if machine.status in (MachineStatus.FAILED, MachineStatus.ARCHIVED):
                if not a.json:
                    print(
                        f"machine {m.id} {machine.status.value}: {machine.status_reason}",
                        file=sys.stderr,
                    )
                return EXIT_FAILED
    return EXIT_TIMEOUT


async def _machines_get(c: FleetClient, a: argparse.Namespace) -> int:
    m = await c.get_machine(a.machine_id)
    return _out(a, m, lambda: _machine_line(m))


async def _machines_list(c: FleetClient, a: argparse.Namespace) -> int:
    xs = await c.list_machines(a.instance)
    rows = [[m.id, m.instance_id, m.status.value, m.status_reason] for m in xs]
    return _out(a, xs, lambda: _table(rows, ["ID", "INSTANCE", "STATUS", "REASON"]))


async def _machines_archive(c: FleetClient, a: argparse.Namespace) -> int:
    m = await c.archive_machine(a.machine_id)
    return _out(a, m, lambda: _machine_line(m))


async def _machines_exec(c: FleetClient, a: argparse.Namespace) -> int:
    argv = a.argv
    if not argv:
        print("fleet: machines exec needs a command after --", file=sys.stderr)
        return EXIT_USAGE
    r = await c.exec(a.machine_id, argv, timeout_s=a.timeout, cwd=a.cwd)
    if a.json:
        print(msgspec.json.encode(r).decode())
    else:
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr if r.stderr.endswith("\n") or not r.stderr else r.stderr + "\n")
        if r.timed_out:
            print("fleet: the command timed out and was killed", file=sys.stderr)
    return r.exit_code if 0 <= r.exit_code < 256 else EXIT_FAILED


async def _machines_write(c: FleetClient, a: argparse.Namespace) -> int:
    content = a.content if a.content is not None else sys.stdin.read()
    r = await c.write_file(a.machine_id, a.path, content, a.mode)
    return _out(a, r, lambda: f"wrote {r.bytes_written} bytes to {r.path}")


async def _tokens_create(c: FleetClient, a: argparse.Namespace) -> int:
    t = await c.create_token(a.name, a.instance)
    return _out(a, t, lambda: f"{t.id}\n{t.token}\n(the token is shown only this once)")


async def _tokens_list(c: FleetClient, a: argparse.Namespace) -> int:
    xs = await c.list_tokens()
    rows = [[t.id, t.name, t.instance_id or "(admin)", t.created_at.isoformat()] for t in xs]
    return _out(a, xs, lambda: _table(rows, ["ID", "NAME", "SCOPE", "CREATED"]))


async def _tokens_revoke(c: FleetClient, a: argparse.Namespace) -> int:
    revoked = await c.revoke_token(a.token_id)
    return _out(a, {"revoked": revoked}, lambda: "revoked" if revoked else "no such token")


async def _events(c: FleetClient, a: argparse.Namespace) -> int:
    async for seq, event in c.events(a.machine):
        if a.json:
            print(msgspec.json.encode(event).decode(), flush=True)
        else:
            stamp = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
            print(f"{seq:>6} {stamp} {event.machine_id}  {_describe(event)}", flush=True)
    return 0


COMMANDS: dict[tuple[str, str | None], Cmd] = {
    ("instances", "create"): _instances_create,
    ("instances", "list"): _instances_list,
    ("instances", "get"): _instances_get,
    ("env", "set"): _env_set,
    ("env", "unset"): _env_unset,
    ("env", "list"): _env_list,
    ("repos", "add"): _repos_add,
    ("repos", "remove"): _repos_remove,
    ("repos", "list"): _repos_list,
    ("machines", "create"): _machines_create,
    ("machines", "rebuild"): _machines_create,
    ("machines", "get"): _machines_get,
    ("machines", "list"): _machines_list,
    ("machines", "archive"): _machines_archive,
    ("machines", "exec"): _machines_exec,
    ("machines", "write"): _machines_write,
    ("tokens", "create"): _tokens_create,
    ("tokens", "list"): _tokens_list,
    ("tokens", "revoke"): _tokens_revoke,
    ("events", None): _events,
}
