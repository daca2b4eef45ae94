"""What "healthy" means for a machine that was just set up, as RPCs to its daemon."""

from __future__ import annotations

import asyncio

from contracts.errors import FleetError
from contracts.events import SetupPushed
from services.common.daemon_client import MachineClient


async def probe_once(mc: MachineClient, pushed: SetupPushed, timeout_s: float = 5.0) -> str | None:
    """None when every check passes, else what is wrong (for the machine's status reason)."""
    try:
        health = await mc.health(timeout_s=timeout_s)
    except FleetError as exc:
        return f"daemon health check failed: {exc.message}"
    if not health.ok:
        return "daemon reports it is not healthy"
    checks = [("test", "-f", pushed.env_path)] + [
        ("git", "-C", path, "rev-parse", "--git-dir") for path in pushed.repo_paths
    ]
    try:
        results = await asyncio.gather(*(mc.run(*argv, timeout_s=timeout_s) for argv in checks))
    except FleetError as exc:
        return f"probe command failed: {exc.message}"
    for argv, result in zip(checks, results, strict=True):
        if result.exit_code != 0:
            what = ".env" if argv[0] == "test" else f"checkout {argv[2]}"
            return f"{what} missing on the machine"
    return None
