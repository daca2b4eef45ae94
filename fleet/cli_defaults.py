"""What ``fleet``'s parser needs and nothing heavier: ``fleet --help`` and ``fleet --version``
import this, never the client (aiohttp) nor the method specs (bench 30 measures the start-up).

``METHOD_GROUPS`` is a view of ``contracts.gateway_rpc.GATEWAY_METHODS`` (their names' first
parts) written out so that ``--help`` need not import every contract; a unit test
(tests/unit/test_cli_startup.py) fails when the two differ.
"""

from __future__ import annotations

DEFAULT_URL = "http://127.0.0.1:8080"

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
)


def version_line() -> str:
    """``fleet --version``: the package version and the git SHA, as base/version.py knows them."""
    from base.version import git_sha, package_version

    return f"fleet {package_version()} ({git_sha() or 'unknown sha'})"
