"""Whether the daemon was asked to go, why, and how it goes: made first, so that whatever may
ask (a signal, the control port, selfUpdate, a handover, a new identity, the platform's
daemon.stop) is given it at its construction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from daemon.supervision.lifecycle import ExitMode

log = structlog.get_logger(__name__)


class Stops:
    """``stopped`` is set when something asks the daemon to go; ``reason``, ``mode`` and
    ``target`` (the code a selfUpdate re-executes into) say why and how."""

    def __init__(self) -> None:
        self.stopped = asyncio.Event()
        self.reason = ""
        self.mode: ExitMode = "stop"
        self.target: Path | None = None

    def request(self, reason: str, mode: ExitMode = "stop", target: Path | None = None) -> None:
        """Ask the daemon to go; the first request wins, but a stop beats a restart asked
        before it (a selfUpdate's re-exec, a handover, a new identity): a SIGTERM that came
        during that restart's drain would be lost to it, and the machine would run on until
        its provider's grace ran out and it was SIGKILLed."""
        if self.stopped.is_set() and not (mode == "stop" and self.mode != "stop"):
            return
        self.reason, self.mode, self.target = reason, mode, target
        log.info("daemon.stop_requested", reason=reason, mode=mode)
        self.stopped.set()
