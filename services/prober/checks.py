"""What "healthy" means for a machine that was just set up, as RPCs to its daemon."""

from __future__ import annotations

import asyncio
from typing import cast

from contracts.bus.events import SetupPushed
from contracts.daemon.rpc import (
    EXIT_NOT_FOUND,
    HEALTH_MAX_FILES,
    ExecCommandResult,
    HealthResult,
)
from contracts.errors import FleetError, InvalidParams
from controlplane.calls.daemon_client import MachineClient


async def probe_once(mc: MachineClient, pushed: SetupPushed, timeout_s: float = 5.0) -> str | None:
    """None when every check passes, else what is wrong (for the machine's status reason)."""
    checks: list[tuple[str, ...]] = [
        ("git", "-C", path, "rev-parse", "--git-dir") for path in pushed.repo_paths
    ]
    # The health call (which also checks the .env: no process spawned on the machine for it)
    # and the checkouts' commands at once: one wait for the daemon, not two in a row.
    outs: list[object] = await asyncio.gather(
        mc.health(files=[pushed.env_path], timeout_s=timeout_s),
        *(mc.run(*argv, timeout_s=timeout_s) for argv in checks),
        return_exceptions=True,
    )
    health = cast(HealthResult | BaseException, outs[0])
    if isinstance(health, InvalidParams):  # a daemon from before health's files: the command
        checks.insert(0, ("test", "-f", pushed.env_path))
        again = await asyncio.gather(
            mc.health(timeout_s=timeout_s), mc.run(*checks[0], timeout_s=timeout_s),
            return_exceptions=True,
        )  # fmt: skip
        outs = [again[0], again[1], *outs[1:]]
        health = cast(HealthResult | BaseException, outs[0])
    results = cast(list[ExecCommandResult | BaseException], outs[1:])
    if isinstance(health, FleetError):
        return f"daemon health check failed: {health.message}"
    if isinstance(health, BaseException):
        raise health
    if not health.ok:
        return "daemon reports it is not healthy"
    if health.missing:
        return ".env missing on the machine"
    return _verdict(checks, await _without_git(mc, checks, results, timeout_s))


async def _without_git(mc: MachineClient, checks: list[tuple[str, ...]],
                       results: list[ExecCommandResult | BaseException],
                       timeout_s: float) -> list[ExecCommandResult | BaseException]:  # fmt: skip
    """``results`` with each check the machine could not run (an image with no git: its repos
    were cloned by the daemon's runtime) made by the daemon instead: the checkout's
    ``.git/HEAD`` is a file."""
    blind = [i for i, (argv, r) in enumerate(zip(checks, results, strict=True))
             if argv[0] == "git" and isinstance(r, ExecCommandResult)
             and r.exit_code == EXIT_NOT_FOUND and not r.stdout]  # fmt: skip
    if not blind:
        return results
    heads = [f"{checks[i][2]}/.git/HEAD" for i in blind]
    missing: set[str] = set()
    for at in range(0, len(heads), HEALTH_MAX_FILES):  # as many as one health call takes
        got = await mc.health(files=heads[at : at + HEALTH_MAX_FILES], timeout_s=timeout_s)
        missing.update(got.missing)
    out = list(results)
    for i, head in zip(blind, heads, strict=True):
        out[i] = ExecCommandResult(exit_code=int(head in missing), stdout="", stderr="")
    return out


def _verdict(
    checks: list[tuple[str, ...]], results: list[ExecCommandResult | BaseException]
) -> str | None:
    for argv, result in zip(checks, results, strict=True):
        if isinstance(result, FleetError):
            return f"probe command failed: {result.message}"
        if isinstance(result, BaseException):
            raise result
        if result.exit_code != 0:
            what = ".env" if argv[0] == "test" else f"checkout {argv[2]}"
            return f"{what} missing on the machine"
    return None
