"""What a failed test leaves unclosed fails that test, not a later one (tests/conftest.py takes
these hooks).

The suite turns warnings into errors, a ResourceWarning of a socket or transport never closed
included. Those are raised when the collector frees the object, which for a test that failed
before its own closes is whenever the collector next passes: in another test of the worker,
which then fails for what it did not do (a setup error of an unrelated test, once, in CI).

A subprocess transport left open once its test's event loop has closed is such a leak too,
and its warning names no program: each one made is tracked, and one left open fails the test
whose teardown closed its loop, naming its argv (the process is killed and reaped)."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import weakref
from asyncio import base_subprocess
from collections.abc import Generator
from contextlib import suppress
from typing import Any

import pytest

__all__ = ["pytest_runtest_makereport", "pytest_runtest_teardown", "track_subprocesses"]

_Transport = base_subprocess.BaseSubprocessTransport
#: Every subprocess transport made in this process (the tracking is test-only, so module state).
_MADE: weakref.WeakSet[Any] = weakref.WeakSet()


def track_subprocesses() -> None:
    """Each subprocess transport made from now on is tracked, with its argv."""
    made = _Transport.__init__

    def tracked(self: Any, loop: Any, protocol: Any, args: Any, *a: Any, **kw: Any) -> None:
        made(self, loop, protocol, args, *a, **kw)
        self._fleet_argv = args
        _MADE.add(self)

    _Transport.__init__ = tracked  # type: ignore[method-assign]


def _left_open() -> list[str]:
    """Subprocess transports left open on a closed loop: killed, reaped, closed, named."""
    said = []
    for t in list(_MADE):
        loop = t._loop  # None once its process ended and its pipes closed
        if t._closed or loop is None or not loop.is_closed():
            continue
        proc: subprocess.Popen[bytes] | None = t._proc
        if proc is not None and proc.returncode is None:
            with suppress(OSError):
                proc.send_signal(signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        t._closed = True  # its warning is this test's failure, not a later test's
        said.append(f"pid {t._pid}: {t._fleet_argv!r}")
    return said


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After the test's fixtures are torn down (its event loop closed with them): a subprocess
    it left open fails it."""
    _collect_after_failure(item)
    yield
    if left := _left_open():
        raise AssertionError(f"{item.nodeid} left subprocesses open (their transports never "
                             f"closed): {'; '.join(left)}")  # fmt: skip


def _collect_after_failure(item: pytest.Item) -> None:
    """After a failed test, collect now: what it leaked warns before its teardown ends (where
    pytest reports such warnings). The failure's traceback, kept for post-mortem debugging,
    holds the test's frames and through them what it leaked: dropped first."""
    if not getattr(item, "_fleet_call_failed", False):
        return
    sys.last_type = sys.last_value = sys.last_traceback = None  # type: ignore[assignment]
    if hasattr(sys, "last_exc"):  # Python 3.12 and later keep it there too
        sys.last_exc = None  # type: ignore[assignment]
    gc.collect()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item._fleet_call_failed = report.failed  # type: ignore[attr-defined]
    return report
