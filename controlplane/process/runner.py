"""Run a service process: settings, logging, resources composed with AsyncExitStack, signals.

A service's ``__main__`` hands ``run_service`` a coroutine that enters its resources into the
stack; SIGTERM or SIGINT unwinds the stack in reverse, so consumers drain before connections
close.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import structlog

from base.logs import configure_logging
from controlplane.process import event_loop
from controlplane.settings import Settings, SettingsError

log = structlog.get_logger(__name__)

Build = Callable[[Settings, AsyncExitStack], Awaitable[None]]


def run_service(name: str, build: Build) -> None:
    """A bad or missing setting (read here, or found by ``build``) is one line on stderr naming
    the variable, and exit code 2: a usage error, not a traceback."""
    try:
        settings = Settings.from_env()
        configure_logging(settings.env, settings.log_level, service=name)
        with contextlib.suppress(KeyboardInterrupt):
            event_loop.run(_serve(name, settings, build), settings.event_loop)
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Stopped, its resources closed: frozen, the heap is no work for the interpreter's last
    # collection (a CPU-bound 0.3-0.7 s for the gateway), which `fleet up`'s stop waits out
    # service by service, and a stack of the tests on each of its services.
    gc.freeze()


async def _serve(name: str, settings: Settings, build: Build) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        await build(settings, stack)
        log.info("service.started", service=name)
        await stop.wait()
        log.info("service.stopping", service=name)
    log.info("service.stopped", service=name)
