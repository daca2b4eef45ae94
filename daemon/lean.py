"""What an idle daemon does not load (bench 5: its RSS is what every machine pays).

Called by ``fleet-daemon`` before anything imports structlog or nats-py."""

from __future__ import annotations

import sys

#: Optional extras structlog imports when they are installed: rich and better_exceptions
#: (the dev console renderer's pretty tracebacks; rich alone is 50 modules and 4 MB) and
#: greenlet (structlog.threadlocal's greenlet support). None is a fleetd dependency, so a
#: machine's daemon runs without them anyway; a developer's venv (rich comes with
#: import-linter) must not make the daemon it starts bigger, or its log look different.
_STRUCTLOG_EXTRAS = ("rich", "better_exceptions", "greenlet")


def lean_imports(nats_url: str) -> None:
    """Import structlog without its optional extras, and nats-py without aiohttp unless the
    daemon connects over WebSocket (aiohttp is nats-py's WebSocket transport: half the
    daemon's start time and 10 MB of its memory)."""
    if not any(u.strip().startswith(("ws://", "wss://")) for u in nats_url.split(",")):
        sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    blocked = [name for name in _STRUCTLOG_EXTRAS if name not in sys.modules]
    for name in blocked:  # None in sys.modules: "import rich" raises ImportError
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog.dev  # noqa: F401  (its optional imports happen now, and only now)
    finally:
        for name in blocked:  # whatever imports them later (a tool, a test) still can
            del sys.modules[name]
