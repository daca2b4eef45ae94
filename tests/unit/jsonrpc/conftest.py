"""The dispatcher and context every test here gets."""

from __future__ import annotations

import pytest

from contracts.rpc.jsonrpc import Dispatcher
from tests.unit.jsonrpc.table import SPECS, Ctx, router


@pytest.fixture
def dispatcher() -> Dispatcher[Ctx]:
    return Dispatcher(SPECS, router())


@pytest.fixture
def ctx() -> Ctx:
    return Ctx()
