"""Benchmark 27's steps, each under a bound of its own: a step that fails or runs out is named
with its reason, its figures are reported missing (value None, the reason in the note), and the
steps after it are still measured and printed.

Also: the provider's own timings of each restore, read from the stack's log
(``provider.gvisor_*`` lines: ``netns_ms``, ``runsc_ms``, ``state_ms``, ``park_ms``,
``checkpoint_ms``), reported as their p50s.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from bench.common import Figure, Report, percentile

T = TypeVar("T")


class Steps:
    """Each step's bound and, for one that did not finish, why (``missing``); ``budget_s``: all
    of them together (--quick's), each step's bound cut to what is left of it."""

    def __init__(self, budget_s: float | None = None) -> None:
        self.missing: dict[str, str] = {}
        self.ends = None if budget_s is None else time.monotonic() + budget_s

    def skip(self, name: str, why: str) -> None:
        self.missing[name] = why
        print(f"    [27] {name}: missing ({why})", flush=True)

    async def run(self, name: str, bound_s: float, step: Awaitable[T]) -> T | None:
        """``step`` within ``bound_s``; None (and its reason kept) if it fails or runs out."""
        if self.ends is not None and (left := self.ends - time.monotonic()) < bound_s:
            if left < 5:
                if asyncio.iscoroutine(step):
                    step.close()  # never started
                self.skip(name, "not run: no time left of --quick's budget")
                return None
            bound_s = left
        print(f"    [27] {name} (bound {bound_s:.0f} s)", flush=True)
        bound = asyncio.timeout(bound_s)
        try:
            async with bound:
                return await step
        except Exception as exc:  # noqa: BLE001 - a step's boundary: the rest go on
            why = f"ran out of its {bound_s:g} s bound" if bound.expired() else (
                f"{type(exc).__name__}: {str(exc)[:240]}".rstrip(": "))  # fmt: skip
            self.skip(name, why)
            return None

    def why(self, *names: str) -> str:
        """The reasons of those of ``names`` that are missing (else of every step that is), one
        line."""
        said = [f"{n}: {self.missing[n]}" for n in names if n in self.missing]
        said = said or [f"{n}: {why}" for n, why in self.missing.items()]
        return "missing (" + "; ".join(said) + ")" if said else "missing (no samples)"


def p50(times: dict[str, list[float]], key: str) -> float | None:
    values = times.get(key) or []
    return percentile(values, 50) if values else None


def figure(report: Report, steps: Steps, step: str, name: str, value: float | None, unit: str,
           baseline: float | None, baseline_name: str, target: str = "",
           met: bool | None = None, note: str = "") -> Figure:  # fmt: skip
    """One row; missing (value None, ``step``'s reason in the note) without its value or its
    baseline; ``met`` only where both are there."""
    if value is None or baseline is None:
        note = f"{steps.why(step)}; {note}" if note else steps.why(step)
        return report.add(Figure("27", name, value, unit, baseline, baseline_name,
                                 target=target, met=None, note=note))  # fmt: skip
    if step in steps.missing:  # cut short: from the samples it took
        note = f"{note}; its step cut short ({steps.missing[step]})"
    return report.add(Figure("27", name, value, unit, baseline, baseline_name, target=target,
                             met=met, note=note))  # fmt: skip


#: A provider timing in the stack's log: ``key=123`` after the event's name.
_TIMING = re.compile(r"\b(\w+_ms)=(\d+)")
_EVENTS = ("provider.gvisor_sandbox_started", "provider.gvisor_checkpointed",
           "provider.gvisor_memory_image", "provider.gvisor_resumed",
           "provider.gvisor_fork_restored",
           "resume.machine_resumed")  # fmt: skip


def provider_timings(logs: Path) -> str:
    """Each of the provider's timed gvisor events in the services' logs (``logs/*.log``), with
    the p50 of each timing."""
    got: dict[str, dict[str, list[float]]] = {}
    text = ""
    for log in sorted(logs.glob("*.log")):
        try:
            text += log.read_text(errors="replace")
        except OSError:
            continue
    for line in text.splitlines():
        event = next((e for e in _EVENTS if e in line), None)
        if event is None:
            continue
        verb = re.search(r"\bverb=(\w+)", line)
        name = event.removeprefix("provider.gvisor_").replace(".", " ")
        name += f" {verb[1]}" if verb else ""
        for key, ms in _TIMING.findall(line):
            got.setdefault(name, {}).setdefault(key, []).append(float(ms))
    return "; ".join(
        f"{name} ({len(next(iter(keys.values())))}): "
        + ", ".join(f"{k} {percentile(v, 50):.0f}" for k, v in keys.items())
        for name, keys in sorted(got.items())
    )
