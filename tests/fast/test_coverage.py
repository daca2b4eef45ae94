"""The fast layer covers every gateway method: each name in ``GATEWAY_METHODS`` is named by a
``@pytest.mark.gateway_method`` of some test in tests/fast (and no mark names a method that
does not exist)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest

from contracts.gateway.rpc import GATEWAY_METHODS
from tests import fast


def _marked() -> Iterator[tuple[str, str]]:
    """(test, method) for every gateway_method mark in tests/fast."""
    for info in pkgutil.iter_modules(fast.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{fast.__name__}.{info.name}")
        for name, obj in vars(module).items():
            for mark in getattr(obj, "pytestmark", []):
                if name.startswith("test_") and mark.name == "gateway_method":
                    for method in mark.args:
                        yield f"{info.name}::{name}", method


def test_every_gateway_method_has_a_fast_test() -> None:
    covered = {method for _, method in _marked()}
    missing = sorted({spec.name for spec in GATEWAY_METHODS} - covered)
    assert not missing, f"gateway methods without a test in tests/fast: {missing}"


def test_marks_name_real_methods() -> None:
    names = {spec.name for spec in GATEWAY_METHODS}
    unknown = [(test, m) for test, m in _marked() if m not in names]
    if unknown:
        pytest.fail(f"gateway_method marks naming no gateway method: {unknown}")
