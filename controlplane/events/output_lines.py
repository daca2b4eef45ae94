"""A build's or a command's output as events while it runs, never faster than a machine's event
stream can bear.

``LineSplitter`` cuts pieces of text (as a pipe gives them) into lines; ``LineBatcher`` holds
lines until a batch may go: at most one per ``interval_s``, each at most ``max_bytes`` of lines
(the oldest past that are dropped and counted, so a chatty build costs memory and events of a
fixed size, and a batch shows where the output is now). Both are pure: the time is given.
``OutputTrickle`` drives them: ``write`` and ``line`` never wait, one task sends the batches in
order, and leaving its context sends what is left before anything that follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import structlog

from contracts.bus.events import OUTPUT_INTERVAL_S, OUTPUT_LINES_MAX_BYTES

log = structlog.get_logger(__name__)

#: A line longer than this many characters is cut (a minified file printed, a progress bar).
MAX_LINE = 1000
_BREAK = re.compile(r"\r\n|\r|\n")
#: Sends one batch: its lines, and how many lines before them were dropped.
Send = Callable[[list[str], int], Awaitable[None]]


def cut(line: str, max_line: int = MAX_LINE) -> str:
    return line if len(line) <= max_line else line[: max_line - 1] + "…"


class LineSplitter:
    """Lines out of pieces of text: ``\\n``, ``\\r\\n`` and a lone ``\\r`` (a progress bar
    redrawing itself) each end one; an unended line longer than ``max_line`` goes out in pieces,
    so what is held stays small."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max = max_line
        self._rest = ""

    def feed(self, text: str) -> list[str]:
        buf = self._rest + text
        # A ``\r`` at the end may be half of a ``\r\n`` the next piece ends.
        held = "\r" if buf.endswith("\r") else ""
        *lines, rest = _BREAK.split(buf[: len(buf) - len(held)])
        while len(rest) > self._max:
            lines.append(rest[: self._max])
            rest = rest[self._max :]
        self._rest = rest + held
        return lines

    def end(self) -> list[str]:
        """The last line, if the text did not end with a line break."""
        rest, self._rest = self._rest.rstrip("\r"), ""
        return [rest] if rest else []


@dataclass(frozen=True)
class Batch:
    lines: list[str]
    #: Lines dropped before these (over ``max_bytes`` within one interval).
    dropped: int


class LineBatcher:
    """Lines in, batches out: at most one batch per ``interval_s`` (the first at once), each of
    at most ``max_bytes`` (UTF-8, a line break each); ``take(force=True)`` at the end."""

    def __init__(
        self,
        interval_s: float = OUTPUT_INTERVAL_S,
        max_bytes: int = OUTPUT_LINES_MAX_BYTES,
        max_line: int = MAX_LINE,
    ) -> None:
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self.max_line = max_line
        self._lines: deque[tuple[str, int]] = deque()
        self._bytes = 0
        self._dropped = 0
        self._last: float | None = None

    @property
    def empty(self) -> bool:
        return not self._lines

    def add(self, line: str) -> None:
        line = cut(line, self.max_line)
        size = len(line.encode()) + 1
        self._lines.append((line, size))
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._lines) > 1:
            self._bytes -= self._lines.popleft()[1]
            self._dropped += 1

    def wait_s(self, now: float) -> float | None:
        """Seconds until a batch may go (0: now); None: nothing to send."""
        if not self._lines:
            return None
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval_s - now)

    def take(self, now: float, *, force: bool = False) -> Batch | None:
        """The batch, if there is one and it may go at ``now`` (``force``: the output ended)."""
        wait = self.wait_s(now)
        if wait is None or (wait > 0 and not force):
            return None
        batch = Batch([line for line, _ in self._lines], self._dropped)
        self._lines.clear()
        self._bytes = self._dropped = 0
        self._last = now
        return batch


class OutputTrickle:
    """One build's or command's output sent through ``send`` as ``LineBatcher`` batches.
    ``what`` names it in the log. A batch that cannot be sent is logged and skipped: the output
    is a view of the work, never a reason for it to fail."""

    def __init__(self, send: Send, *, what: str, interval_s: float = OUTPUT_INTERVAL_S,
                 max_bytes: int = OUTPUT_LINES_MAX_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._send = send
        self._what = what
        #: One per stream (stdout, stderr): a line one began is not ended by the other's text.
        self._split: dict[str, LineSplitter] = {}
        self._batches = LineBatcher(interval_s, max_bytes)
        self._clock = clock
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def write(self, text: str, stream: str = "stdout") -> None:
        """A piece of ``stream``'s output, as it was read (lines may end in a later piece)."""
        self._add(self._split.setdefault(stream, LineSplitter()).feed(text))

    def line(self, line: str) -> None:
        """One whole line (a build log's)."""
        self._add([line])

    def _add(self, lines: list[str]) -> None:
        if not lines:
            return
        idle = self._batches.empty
        for line in lines:
            self._batches.add(line)
        if idle:  # the task waits for lines, not for the interval: wake it
            self._wake.set()

    async def __aenter__(self) -> OutputTrickle:
        self._task = asyncio.create_task(self._run(), name=f"output:{self._what}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        for split in self._split.values():
            self._add(split.end())
        self._closing = True
        self._wake.set()
        if et is not None and issubclass(et, asyncio.CancelledError):
            self._task.cancel()
        try:
            await self._task  # cancelled with us, if we are
        except asyncio.CancelledError:
            if et is None:
                raise

    async def _run(self) -> None:
        while True:
            wait = self._batches.wait_s(self._clock())
            if wait is None and self._closing:
                return
            if wait == 0 or (wait is not None and self._closing):
                batch = self._batches.take(self._clock(), force=self._closing)
                if batch is not None:
                    await self._deliver(batch)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # the interval is over
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _deliver(self, batch: Batch) -> None:
        try:
            await self._send(batch.lines, batch.dropped)
        except Exception as exc:  # noqa: BLE001 - task boundary: the work goes on without it
            log.warning("output.event_failed", what=self._what, lines=len(batch.lines),
                        error=repr(exc))  # fmt: skip
