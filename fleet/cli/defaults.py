"""What ``fleet``'s parser needs and nothing heavier: ``fleet --help`` and ``fleet --version``
import this, never the client (aiohttp) nor the method specs (bench 30 measures the start-up).

``METHOD_GROUPS`` is a view of ``contracts.gateway.rpc.GATEWAY_METHODS`` (their names' first
parts) written out so that ``--help`` need not import every contract; a unit test
(tests/unit/test_cli_startup.py) fails when the two differ.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    import argparse
    from pathlib import Path

#: Exit codes scripts can rely on (documented in docs/cli.md). `machines exec` exits with the
#: remote command's own code instead when the command ran.
EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed: a machine failed/archived during --wait, a
#                  command was killed at its timeout, refresh-env could not write to a machine
EXIT_USAGE = 2  # bad arguments (argparse's own code too)
EXIT_UNREACHABLE = 3  # no gateway answered at the URL
EXIT_API = 4  # the gateway answered with an error (printed as `fleet: error CODE: message`)
EXIT_TIMEOUT = 5  # --timeout ran out
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout closed early (`fleet events | head`), as a shell reports SIGPIPE

#: The commands whose parsers are built only when one of them is given (common.py's
#: LazyCommands): each one's help as ``fleet --help`` lists it, and the module (in
#: ``fleet.cli``) whose ``register`` builds it, in ``fleet --help``'s order after up, image and
#: gc. A unit test (tests/unit/test_cli_startup.py) keeps the help texts equal to what the
#: modules register.
COMMANDS: dict[str, tuple[str, str]] = {
    "instances": ("records", "instances: one per developer or project"),
    "env": ("records", "env vars for the machines' ~/.fleet/.env"),
    "repos": ("records", "git checkouts pushed to the instance's machine"),
    "tokens": ("records", "access tokens"),
    "cron": ("records", "the instance's cron table (runs on its machine)"),
    "machines": ("machines", "machines: create, inspect, run commands, refresh"),
    "processes": ("machines", "background processes on a machine"),
    "events": ("machines", "machine events: stored ones, then live"),
    "code": ("code", "codemode: run Python against the fleet's tools in a sandbox"),
    "mcp": ("code", "serve codemode as an MCP server on stdio"),
    "hosts": ("hosts", "the hosts machines run on (admin)"),
    "environments": ("env_builds", "the cache of environment builds on a host"),
    "audit": ("audit", "audit log entries, newest first (admin)"),
    "login": (
        "people",
        "sign in with your identity provider (device flow); the token is kept in your config "
        "directory",
    ),
    "users": ("people", "people on the platform (admin)"),
    "members": ("people", "who may do what on an instance"),
    "secrets": (
        "secrets",
        "credentials added to machines' requests on the way out (never in the machine)",
    ),
    "webhooks": ("webhooks", "machine events POSTed to your endpoints (Standard Webhooks)"),
    "call": ("call", "call any API method by name (its params checked first)"),
}

#: What the user types to detach from a terminal, after a newline (as ssh's escape).
DETACH_HELP = "Enter ~ . detaches"

#: The gateway methods' groups, sorted: the first part of each name in GATEWAY_METHODS.
METHOD_GROUPS = (
    "audit",
    "codemode",
    "cron",
    "env",
    "environments",
    "events",
    "hosts",
    "instances",
    "machines",
    "repos",
    "rpc",
    "secrets",
    "sessions",
    "snapshots",
    "tokens",
    "users",
    "webhooks",
)


def version_line() -> str:
    """``fleet --version``: the package version and the git SHA, as base/version.py knows them."""
    from base.version import git_sha, package_version

    return f"fleet {package_version()} ({git_sha() or 'unknown sha'})"


def error_text(code: int, message: str) -> str:
    """How every command prints an error the gateway answered, whichever route it came by."""
    return f"fleet: error {code}: {message}"


def token_path() -> Path:
    """Where ``fleet login`` keeps its token: ``$XDG_CONFIG_HOME/fleet/token``."""
    from pathlib import Path

    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fleet" / "token"


def saved_token() -> str:
    path = token_path()
    return path.read_text().strip() if path.is_file() else ""


def default_token() -> str:
    """``FLEET_TOKEN``, else ``fleet login``'s, else the local quick start's (`fleet up`'s
    default data dir, here); empty when there is none."""
    if token := os.environ.get("FLEET_TOKEN") or saved_token():
        return token
    try:
        with open(".fleet-data/admin-token") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def timed_out_text(url: str) -> str:
    return f"fleet: timed out waiting for {url}"


def split_remote(argv: list[str]) -> tuple[list[str], list[str]]:
    """The command line before the first ``--``, and the remote command after it, verbatim
    (argparse would read options in it)."""
    split = argv.index("--") if "--" in argv else len(argv)
    return argv[:split], argv[split + 1 :]


def add_common_flags(p: argparse.ArgumentParser, *, url: bool = True) -> None:
    """The global flags, accepted after a command too (`fleet machines list --json`), on ``p``;
    their defaults are set once, on the top-level parser."""
    import argparse  # here: `fleet --version` does without it

    if url:
        p.add_argument("--url", default=argparse.SUPPRESS, help="gateway URL (FLEET_URL)")
    p.add_argument("--token", default=argparse.SUPPRESS, help="access token (FLEET_TOKEN)")
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the API's JSON result (one object per line for streams)",
    )
