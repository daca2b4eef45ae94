"""What the CLI shows people: aligned tables, one-line event descriptions, and the live progress
of a machine's pipeline. Scripts use ``--json`` instead, so none of this is an interface."""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from contracts.bus.events import (
    DaemonStatusReported,
    EnvironmentBuildOutput,
    Event,
    LifecycleOutput,
    LifecycleRan,
    MachineArchived,
    MachineFailed,
    MachineProcessesEnded,
    MachineProvisioned,
    MachineReady,
    MachineStarted,
    MachineStopped,
    MachineUnresponsive,
    SetupPushed,
    kind_of,
)
from contracts.bus.subjects import EventKind
from contracts.daemon.machine_files import CronJob
from contracts.models import Machine
from fleet.cli.tables import (
    CELL_WIDTH as CELL_WIDTH,
    CODE_MARKS as CODE_MARKS,
    UPDATE_MARK as UPDATE_MARK,
    age as age,
    cell as cell,
    daemon_text,
    machines_table as machines_table,
    runtime_text,
    table as table,
)

if TYPE_CHECKING:
    from contracts.daemon.rpc import ProcessInfo

#: The stages a new machine goes through, in order.
PIPELINE = (
    EventKind.CREATED,
    EventKind.PROVISIONED,
    EventKind.DAEMON_STATUS_REPORTED,
    EventKind.SETUP_PUSHED,
    EventKind.READY,
)
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def machine_line(m: Machine) -> str:
    return f"{m.id}  {m.status.value}  ({m.status_reason})"


def machine_detail(m: Machine) -> str:
    daemon = daemon_text(m)
    if m.update_available:
        daemon += f"  (behind the platform: fleet machines refresh-code {m.id})"
    elif m.daemon_git_sha and m.code_status != "behind":
        daemon += f"  (code {m.code_status})"
    fields = [
        ("id", m.id),
        ("instance", m.instance_id),
        ("provider", f"{m.provider} ({m.external_id or 'not started'})"),
        ("runtime", runtime_text(m)),
        ("host", m.host_id or "- (no host took it yet)"),
        ("status", f"{m.status.value}: {m.status_reason}"),
        *([("warning", m.setup_warning)] if m.setup_warning else []),
        ("daemon", daemon),
        ("created", f"{m.created_at.isoformat()} ({age(m.created_at)} ago)"),
        ("updated", f"{m.updated_at.isoformat()} ({age(m.updated_at)} ago)"),
    ]
    # A reason of several lines keeps them, each under the first, not at the left margin.
    return "\n".join(f"{k:<9} {v}".replace("\n", "\n" + " " * 10) for k, v in fields)


def exit_text(code: int | None) -> str:
    """An exit code as people read it: ``-`` while running, ``SIGTERM`` for -15."""
    if code is None:
        return "-"
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return str(code)


def processes_table(processes: Sequence[ProcessInfo]) -> str:
    rows = [
        [
            str(p.pid),
            p.tag or "-",
            p.state,
            exit_text(p.exit_code),
            f"{p.restart} ({p.restarts})",
            " ".join(p.command),
        ]
        for p in processes
    ]
    return table(rows, ["PID", "TAG", "STATE", "EXIT", "RESTART (COUNT)", "COMMAND"])


def cron_table(jobs: Sequence[CronJob]) -> str:
    rows = [
        [j.name, j.schedule, " ".join(j.command), j.cwd or "~", f"{j.timeout_s:g}s"] for j in jobs
    ]
    return table(rows, ["NAME", "SCHEDULE", "COMMAND", "CWD", "TIMEOUT"])


def describe(event: Event) -> str:
    """The event's kind, then what it says, in a few words."""
    kind = kind_of(event).value
    detail = ""
    if isinstance(event, MachineProvisioned):
        detail = f"{event.provider} {event.external_id}"
        if (c := event.home_copy) is not None:
            detail += f", home {c.how} of {c.source} in {c.took_ms:g} ms (paused {c.pause_ms:g} ms)"
    elif isinstance(event, DaemonStatusReported):
        detail = f"{event.status}, daemon {event.version}"
    elif isinstance(event, SetupPushed):
        detail = f".env {event.env_bytes} B, {len(event.repo_paths)} repo(s)"
        detail += "".join(f"; not cloned: {r.path}: {r.reason}" for r in event.not_cloned)
    elif isinstance(event, MachineFailed):
        detail = f"at {event.stage}: {event.reason}"
    elif isinstance(event, LifecycleRan):
        how = "timed out" if event.timed_out else f"exited {event.exit_code}"
        detail = f"{event.stage} `{event.command}` {how}"
    elif isinstance(event, LifecycleOutput | EnvironmentBuildOutput):
        detail = output_summary(event) + (f": {event.lines[-1]}" if event.lines else "")
    elif isinstance(
        event,
        MachineArchived
        | MachineUnresponsive
        | MachineStopped
        | MachineProcessesEnded
        | MachineStarted,
    ):
        detail = event.reason
    return f"{kind:<24} {detail}".rstrip()


def output_summary(event: LifecycleOutput | EnvironmentBuildOutput) -> str:
    """Whose output, how many lines, how many a flood left out."""
    stage = f"{event.stage} " if isinstance(event, LifecycleOutput) else ""
    dropped = f" ({event.dropped} dropped before them)" if event.dropped else ""
    return f"{stage}{len(event.lines)} line(s){dropped}"


def event_line(seq: int, event: Event) -> str:
    """One line per event; an output event's lines follow it, indented (its one line would
    show only the last)."""
    stamp = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
    head = f"{seq:>6} {stamp} {event.machine_id}  "
    if isinstance(event, LifecycleOutput | EnvironmentBuildOutput):
        body = "".join(f"\n{'':>8}| {line}" for line in event.lines)
        return f"{head}{kind_of(event).value:<24} {output_summary(event)}{body}"
    return head + describe(event)


def final(event: Event) -> bool:
    """The machine's pipeline is over: ready, failed, archived, or stopped on its way."""
    return isinstance(event, MachineReady | MachineFailed | MachineArchived | MachineStopped)


def bad(event: Event) -> bool:
    return isinstance(event, MachineFailed | MachineArchived | MachineStopped)


class Progress:
    """A machine's pipeline as it happens.

    On a terminal, every stage has a line, redrawn in place: ``✓`` and the seconds since the
    start once done, a spinner and the running time on the current one, ``·`` for those to come.
    Elsewhere (a pipe, a log), one line per stage as it completes: ``  + 0.35s  setup-pushed ...``
    (``x`` instead of ``+`` for a failure).
    """

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.start = time.monotonic()
        self.done: list[tuple[float, Event]] = []
        self._drawn = 0
        self._frame = 0

    @property
    def finished(self) -> bool:
        return bool(self.done) and final(self.done[-1][1])

    def add(self, event: Event) -> None:
        took = time.monotonic() - self.start
        self.done.append((took, event))
        if self.tty:
            self.redraw()
        else:
            mark = "x" if bad(event) else "+"
            self.out.write(f"  {mark} {took:6.2f}s  {describe(event)}\n")
            self.out.flush()

    def lines(self) -> list[str]:
        shown = [f"  {'✗' if bad(e) else '✓'} {t:6.2f}s  {describe(e)}" for t, e in self.done]
        if self.finished:
            return shown
        seen = {kind_of(e) for _, e in self.done}
        pending = [k.value for k in PIPELINE if k not in seen]
        if pending:
            running = time.monotonic() - self.start
            spin = _SPINNER[self._frame % len(_SPINNER)]
            shown.append(f"  {spin} {running:6.2f}s  {pending[0]}")
            shown += [f"  ·          {k}" for k in pending[1:]]
        return shown

    def redraw(self) -> None:
        """Back up over the previous drawing, clear it, draw the current one."""
        width = shutil.get_terminal_size().columns - 1  # a wrapped line would break the count
        lines = [line[:width] for line in self.lines()]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "\x1b[J" + "".join(f"{line}\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)

    async def animate(self, every_s: float = 0.1) -> None:
        """Keep the running time and the spinner moving (terminal only); cancel to stop."""
        import asyncio  # here: the parser (`fleet --help`) does without it

        while not self.finished:
            self._frame += 1
            self.redraw()
            await asyncio.sleep(every_s)


def machine_path(resolved: str, given: str) -> str:
    """A path of a machine's home as its user writes it: ``~/...`` for one given relative to
    the home (``notes.txt``, ``~/notes.txt``), else the absolute path the daemon resolved
    (``resolved``), which is the machine's own (never where the home lies on the host, which
    the machine's user does not see as such and the CLI's user has no use for)."""
    if given.startswith("/"):
        return resolved
    rel = posixpath.normpath(given[1:].lstrip("/") if given.startswith("~") else given)
    if rel in ("", "."):
        return "~"
    return f"~/{rel}" if resolved.endswith(f"/{rel}") else resolved
