"""``fleet-daemon``: run the daemon for one machine (settings from FLEET_* variables)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import structlog

from daemon.lock import AlreadyRunning
from daemon.settings import DaemonSettings
from services.common.logs import configure_logging

log = structlog.get_logger(__name__)


async def _run(settings: DaemonSettings) -> None:
    from daemon.server import Daemon  # after _lean_imports(): see there

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        daemon = Daemon(settings)
        async with daemon:
            await stop.wait()
    except AlreadyRunning as exc:
        log.warning("daemon.already_running", error=str(exc))
        raise SystemExit(3) from None
    log.info("daemon.stopped")


def _lean_imports(nats_url: str) -> None:
    """nats-py imports aiohttp for its WebSocket transport: half the daemon's start time and
    10 MB of its memory (bench 5). Unless the daemon connects over WebSocket, mark aiohttp as
    absent, which nats-py handles."""
    if not any(u.strip().startswith(("ws://", "wss://")) for u in nats_url.split(",")):
        sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fleet-daemon", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run"])
    parser.parse_args(argv)
    try:
        settings = DaemonSettings.from_env()
    except ValueError as exc:
        print(f"fleet-daemon: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _lean_imports(settings.nats_url)
    configure_logging(settings.env, settings.log_level, service="daemon")
    os.chdir(settings.home_path)  # never keep a platform directory busy, never depend on it
    structlog.contextvars.bind_contextvars(machine_id=settings.machine_id)
    asyncio.run(_run(settings))


if __name__ == "__main__":
    main()
