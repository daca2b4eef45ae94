"""`fleet secrets set|list|delete`: an instance's secrets, which the platform's egress proxy adds
to its machines' requests on the way out (a machine's ``.env`` holds only a placeholder).

A value is read from stdin or a file, never from the command line: argv is visible to every
user of the host (``ps``, ``/proc/<pid>/cmdline``) and is kept in shell history.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.cli.common import SubAction, UsageError, command, emit
from fleet.cli.render import age, table

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace

VALUE_HELP = (
    "the value is read from stdin (prompted for, unechoed, on a terminal) or from --from-file, "
    "never from the command line, where other users of this host (ps) and your shell's "
    "history would see it; one trailing newline is dropped"
)


def register(sub: SubAction) -> None:
    g = sub.add_parser(
        "secrets",
        help="credentials added to machines' requests on the way out (never in the machine)",
        description="An instance's secrets: the egress proxy adds each one as a header to "
        "its machines' HTTPS requests to the secret's hosts; a machine's .env holds only the "
        "placeholder fleet-secret-NAME. Setting and deleting need an owner of the instance "
        "or a platform admin.",
    ).add_subparsers(dest="sub", required=True, metavar="COMMAND")
    s_set = command(g, "set", _set, "add or replace a secret")
    s_set.epilog = VALUE_HELP
    s_set.add_argument("name", help="the variable its placeholder is written to in .env")
    s_set.add_argument("--host", action="append", dest="hosts", required=True, metavar="HOST",
                       help="a host it is sent to: a name, *.domain (its subdomains) or an "
                       "address, optionally :PORT or :LOW-HIGH ([IPv6]:PORT); repeat "
                       "it")  # fmt: skip
    s_set.add_argument("--header", help="the header it is sent as (default: Authorization)")
    s_set.add_argument("--format", dest="fmt", metavar="FORMAT",
                       help="the header's value, {value} standing for the secret (default: "
                       "'Bearer {value}')")  # fmt: skip
    s_set.add_argument("--from-file", type=Path, metavar="PATH",
                       help="read the value from PATH rather than stdin")  # fmt: skip
    s_list = command(g, "list", _list, "an instance's secrets (never their values)")
    s_del = command(g, "delete", _delete, "delete a secret: machines stop getting it at once")
    s_del.add_argument("name")
    for p in (s_set, s_list, s_del):
        p.add_argument("--instance", required=True, help="the instance's id")


def read_value(path: Path | None) -> str:
    """The value from ``path``, else stdin (prompted for on a terminal), one newline dropped."""
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"--from-file {path}: {exc.strerror}") from None
    elif sys.stdin.isatty():
        text = getpass.getpass("value: ")
    else:
        text = sys.stdin.read()
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise UsageError("the value is empty (it is read from stdin or --from-file)")
    return text


async def _set(c: FleetClient, a: Args) -> int:
    value = read_value(a.from_file)
    given = {k: v for k, v in (("header", a.header), ("format", a.fmt)) if v is not None}
    s = await c.secrets_set(a.instance, a.name, value, a.hosts, **given)
    return emit(a, s, lambda: f"set {s.name} for {', '.join(s.hosts)} ({s.header}: {s.format})")


async def _list(c: FleetClient, a: Args) -> int:
    xs = (await c.secrets_list(a.instance)).secrets
    rows = [[s.name, " ".join(s.hosts), s.header, s.format, str(s.uses),
             f"{age(s.last_used_at)} ago" if s.last_used_at else "never"] for s in xs]  # fmt: skip
    return emit(a, xs, lambda: table(rows, ["NAME", "HOSTS", "HEADER", "FORMAT", "USES",
                                            "LAST USED"]))  # fmt: skip


async def _delete(c: FleetClient, a: Args) -> int:
    deleted = (await c.secrets_delete(a.instance, a.name)).deleted
    return emit(a, {"deleted": deleted}, lambda: "deleted" if deleted else "no such secret")
