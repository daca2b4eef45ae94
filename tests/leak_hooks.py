"""What a failed test leaves unclosed fails that test, not a later one (tests/conftest.py takes
these hooks).

The suite turns warnings into errors, a ResourceWarning of a socket or transport never closed
included. Those are raised when the collector frees the object, which for a test that failed
before its own closes is whenever the collector next passes: in another test of the worker,
which then fails for what it did not do (a setup error of an unrelated test, once, in CI)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Generator

import pytest

__all__ = ["pytest_runtest_makereport", "pytest_runtest_teardown"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
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
