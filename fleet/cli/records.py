"""`fleet instances|env|repos|tokens|cron`: the records a machine is built from."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from contracts.daemon.machine_files import CronJob, CronTable
from contracts.people import ALL_SCOPES
from fleet.cli import (
    instance_env as cli_instance_env,
    network as cli_network,
    ports as cli_ports,
    stop as cli_stop,
)
from fleet.cli.common import (
    COMMON_NO_URL,
    EXIT_FAILED,
    EXIT_OK,
    SubAction,
    UsageError,
    command,
    emit,
    group,
)
from fleet.cli.refs import same_name
from fleet.cli.render import cron_table, table

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(sub: SubAction) -> None:
    _instances(group(sub, "instances", "instances: one per developer or project"))
    _env(group(sub, "env", "env vars for the machines' ~/.fleet/.env"))
    _repos(group(sub, "repos", "git checkouts pushed to the instance's machine"))
    _tokens(group(sub, "tokens", "access tokens"))
    _cron(group(sub, "cron", "the instance's cron table (runs on its machine)"))


# --- instances ----------------------------------------------------------------------------------
def _instances(g: SubAction) -> None:
    command(g, "create", _instances_create, "create an instance; prints its ID").add_argument(
        "name"
    )
    command(g, "list", _instances_list, "every instance you may see")
    command(g, "get", _instances_get, "one instance").add_argument(
        "instance_id", help="its id, or its name when no other instance has it"
    )
    lim = command(g, "limits", _instances_limits, "show or set its machines' limits")
    lim.add_argument("instance_id")
    lim.add_argument("--memory-mb", type=int, help="each machine's memory (MiB)")
    lim.add_argument("--cpus", type=float, help="each machine's CPUs (e.g. 0.5)")
    lim.add_argument("--pids", type=int, help="each machine's processes and threads")
    lim.add_argument(
        "--max-running",
        type=int,
        dest="max_running_machines",
        help="how many of its machines may run at once (stopped ones do not count)",
    )
    lim.add_argument("--reset", action="store_true", help="back to the platform's defaults")
    cli_ports.register_ssh_keys(g)
    cli_network.register(g)
    cli_stop.instance_commands(g)
    cli_instance_env.instance_commands(g)


async def _instances_create(c: FleetClient, a: Args) -> int:
    i = await c.create_instance(a.name)
    others = same_name(i, await c.list_instances())
    if others:  # allowed: a name is a label; ids are what the API takes
        print(f"fleet: note: instance {i.id} shares its name {i.name!r} with {', '.join(others)}:"
              " give its id where a name would be ambiguous", file=sys.stderr)  # fmt: skip
    return emit(a, i, lambda: i.id)


async def _instances_list(c: FleetClient, a: Args) -> int:
    xs = await c.list_instances()
    rows = [[i.id, i.name, i.current_machine_id or "-", i.created_at.isoformat()] for i in xs]
    return emit(a, xs, lambda: table(rows, ["ID", "NAME", "MACHINE", "CREATED"]))


async def _instances_get(c: FleetClient, a: Args) -> int:
    i = await c.get_instance(a.instance_id)
    return emit(a, i, lambda: f"{i.id}  {i.name}  machine={i.current_machine_id or '-'}")


async def _instances_limits(c: FleetClient, a: Args) -> int:
    """The instance's own limits, each one given replacing its own (the others kept)."""
    wanted = {"memory_mb": a.memory_mb, "cpus": a.cpus, "pids": a.pids,
              "max_running_machines": a.max_running_machines}  # fmt: skip
    got = await c.get_limits(a.instance_id)
    if a.reset or any(v is not None for v in wanted.values()):
        kept = {} if a.reset else {
            name: getattr(got, name) for name, wire in
            (("memory_mb", "memoryMb"), ("cpus", "cpus"), ("pids", "pids"),
             ("max_running_machines", "maxRunningMachines")) if wire in got.own
        }  # fmt: skip
        mine = kept | {k: v for k, v in wanted.items() if v is not None}
        got = await c.set_limits(a.instance_id, **mine)
    own = ", ".join(got.own) or "none: the platform's defaults"
    running = (
        ""
        if got.max_running_machines is None
        else (f", at most {got.max_running_machines} running")
    )
    return emit(a, got, lambda: f"memory {got.memory_mb} MiB, {got.cpus:g} CPUs, "
                f"{got.pids} pids{running} (its own: {own})")  # fmt: skip


# --- env ----------------------------------------------------------------------------------------
def _env(g: SubAction) -> None:
    e_set = command(g, "set", _env_set, "set a var (without --instance: for every instance)")
    e_set.add_argument("name")
    e_set.add_argument("value")
    e_unset = command(g, "unset", _env_unset, "remove a var")
    e_unset.add_argument("name")
    e_list = command(g, "list", _env_list, "the vars of one scope")
    for p in (e_set, e_unset, e_list):
        p.add_argument("--instance", help="the instance's scope (default: the platform's)")


async def _env_set(c: FleetClient, a: Args) -> int:
    v = await c.set_env(a.name, a.value, a.instance)
    return emit(a, v, lambda: f"set {v.name} ({v.scope})")


async def _env_unset(c: FleetClient, a: Args) -> int:
    removed = await c.unset_env(a.name, a.instance)
    return emit(a, {"removed": removed}, lambda: "removed" if removed else "was not set")


async def _env_list(c: FleetClient, a: Args) -> int:
    xs = await c.list_env(a.instance)
    rows = [[v.name, v.scope, v.value] for v in xs]
    return emit(a, xs, lambda: table(rows, ["NAME", "SCOPE", "VALUE"]))


# --- repos --------------------------------------------------------------------------------------
def _repos(g: SubAction) -> None:
    r_add = command(
        g, "add", _repos_add, "add (or replace, by path) a checkout", flags=COMMON_NO_URL
    )
    for flag in ("--instance", "--branch", "--path"):
        r_add.add_argument(flag, required=True)
    r_add.add_argument("--url", dest="repo_url", required=True, help="the repository to clone")
    r_add.add_argument("--git-token", help="password or access token, for a private repo")
    r_add.add_argument("--git-username", help="its user name (default x-access-token)")
    r_rm = command(g, "remove", _repos_remove, "remove a checkout by path")
    r_rm.add_argument("--instance", required=True)
    r_rm.add_argument("--path", required=True)
    command(g, "list", _repos_list, "the instance's repos").add_argument(
        "--instance", required=True
    )


async def _repos_add(c: FleetClient, a: Args) -> int:
    r = await c.add_repo(
        a.instance, a.repo_url, a.branch, a.path, token=a.git_token, username=a.git_username
    )
    if r.warning is not None and not a.json:
        print(f"warning: {r.warning}", file=sys.stderr)
    return emit(a, r, lambda: f"added {r.url}@{r.branch} -> ~/{r.path}")


async def _repos_remove(c: FleetClient, a: Args) -> int:
    removed = await c.remove_repo(a.instance, a.path)
    return emit(a, {"removed": removed}, lambda: "removed" if removed else "no such repo")


async def _repos_list(c: FleetClient, a: Args) -> int:
    xs = await c.list_repos(a.instance)
    rows = [[r.path, r.url, r.branch, "yes" if r.has_credentials else ""] for r in xs]
    return emit(a, xs, lambda: table(rows, ["PATH", "URL", "BRANCH", "CREDENTIALS"]))


# --- tokens -------------------------------------------------------------------------------------
def _tokens(g: SubAction) -> None:
    t_create = command(g, "create", _tokens_create, "a new token; prints the secret once")
    t_create.add_argument("name")
    t_create.add_argument("--instance", action="append", dest="instances", metavar="INSTANCE",
                          help="an instance it may touch (repeat for more; default: every "
                          "instance its user may reach)")  # fmt: skip
    t_create.add_argument("--scope", action="append", dest="scopes", choices=sorted(ALL_SCOPES),
                          help="what it may do (repeat for more; default: everything its "
                          "user may)")  # fmt: skip
    t_create.add_argument(
        "--expires-in",
        type=int,
        metavar="SECONDS",
        help="its lifetime (default: the gateway's FLEET_TOKEN_DEFAULT_TTL_S)",
    )
    t_create.add_argument("--user", help="whose token (an id or email; admins only)")
    command(g, "list", _tokens_list, "tokens you may see")
    command(g, "revoke", _tokens_revoke, "revoke a token at once").add_argument("token_id")


async def _tokens_create(c: FleetClient, a: Args) -> int:
    t = await c.create_scoped_token(a.name, scopes=a.scopes, instance_ids=a.instances,
                                    expires_in_s=a.expires_in, user=a.user)  # fmt: skip
    return emit(a, t, lambda: f"{t.id}\n{t.token}\n(the token is shown only this once)")


async def _tokens_list(c: FleetClient, a: Args) -> int:
    xs = await c.list_tokens()
    rows = [
        [
            t.id,
            t.name,
            ",".join(t.instance_ids) if t.instance_ids is not None else "(every)",
            ",".join(t.scopes),
            t.expires_at.isoformat() if t.expires_at else "-",
            t.created_at.isoformat(),
            t.last_used_at.isoformat() if t.last_used_at else "never",
            t.revoked_at.isoformat() if t.revoked_at else "-",
        ]
        for t in xs
    ]
    # LAST USED is written at most once a minute (controlplane.security.tokens.LAST_USED_EVERY_S).
    heads = ["ID", "NAME", "INSTANCES", "SCOPES", "EXPIRES", "CREATED", "LAST USED", "REVOKED"]
    return emit(a, xs, lambda: table(rows, heads))


async def _tokens_revoke(c: FleetClient, a: Args) -> int:
    revoked = await c.revoke_token(a.token_id)
    return emit(a, {"revoked": revoked}, lambda: "revoked" if revoked else "already revoked")


# --- cron ---------------------------------------------------------------------------------------
_JOB_HELP = (
    "NAME|SCHEDULE|COMMAND, e.g. 'backup|0 3 * * *|pg_dump -f dump.sql' (the command is split "
    "like a shell would, then run without one); repeat for more jobs"
)


def _cron(g: SubAction) -> None:
    c_set = command(g, "set", _cron_set, "replace the whole table; pushed to the machine at once")
    c_set.add_argument("--instance", required=True)
    src = c_set.add_mutually_exclusive_group(required=True)
    src.add_argument("--job", action="append", help=_JOB_HELP)
    src.add_argument("--file", type=Path, help='JSON: {"jobs": [...]} or [...], as cron list')
    src.add_argument("--clear", action="store_true", help="remove every job")
    command(g, "list", _cron_list, "the instance's cron table").add_argument(
        "--instance", required=True
    )


def parse_job(spec: str) -> CronJob:
    """``NAME|SCHEDULE|COMMAND`` as a CronJob (validated as the gateway would)."""
    parts = spec.split("|", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise UsageError(f"--job {spec!r}: expected NAME|SCHEDULE|COMMAND")
    name, schedule, cmd = (p.strip() for p in parts)
    try:
        return msgspec.convert(
            {"name": name, "schedule": schedule, "command": shlex.split(cmd)}, CronJob
        )
    except (ValueError, msgspec.ValidationError) as exc:
        raise UsageError(f"--job {spec!r}: {exc}") from None


def read_jobs(path: Path) -> list[CronJob]:
    try:
        raw = json.loads(path.read_text())
        return msgspec.convert(raw if isinstance(raw, dict) else {"jobs": raw}, CronTable).jobs
    except (OSError, ValueError, msgspec.ValidationError) as exc:
        raise UsageError(f"--file {path}: {exc}") from None


async def _cron_set(c: FleetClient, a: Args) -> int:
    jobs = [] if a.clear else read_jobs(a.file) if a.file else [parse_job(j) for j in a.job]
    r = await c.set_cron(a.instance, jobs)

    def human() -> str:
        pushed = r.machines - len(r.failed)
        lines = [f"{len(r.jobs)} job(s) saved, pushed to {pushed} of {r.machines} machine(s)"]
        lines += [f"  failed {f.machine_id}: error {f.code}: {f.message}" for f in r.failed]
        return "\n".join(lines)

    emit(a, r, human)
    return EXIT_FAILED if r.failed else EXIT_OK


async def _cron_list(c: FleetClient, a: Args) -> int:
    jobs = await c.list_cron(a.instance)
    return emit(a, jobs, lambda: cron_table(jobs))
