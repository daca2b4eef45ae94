"""The one place a service process picks its asyncio event loop (``FLEET_EVENT_LOOP``).

``uvloop`` (libuv under the asyncio API) is the default where it is importable: the services
are socket-bound (nats-py, redis-py, aiohttp), and its loop is C where the standard one runs
``selectors`` and ``Handle._run`` in Python (4-6 % less service CPU in benchmark 3 on a
loaded host, within its noise; docs/benchmarks.md). ``asyncio`` is the standard library's
loop, for debugging, A/B runs or a platform without uvloop. The machine daemon never comes
here: it stays on the standard loop, so it loads no extra native module (its idle RSS target,
benchmark 5).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
EventLoopName = Literal["asyncio", "uvloop"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(name: EventLoopName) -> tuple[LoopFactory | None, EventLoopName]:
    """The factory for ``name`` and the loop actually used: ``uvloop`` falls back to the
    standard loop (logged) where the package is missing, so a service always starts."""
    if name == "asyncio":
        return None, "asyncio"
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        log.warning("service.event_loop_fallback", wanted=name, error=str(exc))
        return None, "asyncio"
    factory: LoopFactory = uvloop.new_event_loop
    return factory, "uvloop"


def run(main: Coroutine[Any, Any, T], name: EventLoopName) -> T:
    """``asyncio.run(main)`` on the loop ``name`` names."""
    factory, used = loop_factory(name)
    with asyncio.Runner(loop_factory=factory) as runner:
        log.info("service.event_loop", loop=used)
        return runner.run(main)
