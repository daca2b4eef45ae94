"""One stack for a whole module of gVisor tests (tests/integration/test_gvisor*.py), as
tests/attack_stack.py is for the attack modules: on ptrace a gvisor machine costs seconds to
start and a second or more to stop (``runsc delete``), so a module makes its servers and its
stack once, and its tests make their machines on it; the stack stops them all together when the
module ends (`stop_all_local`, on one shared deadline).

A module takes them as fixtures of its own, named ``stack_settings`` (``gvisor_settings`` with
its settings), ``stack`` (`module_stack`) and, if its tests read the store, ``store``
(`module_store`); its tests run in the module's event loop
(``pytestmark = pytest.mark.asyncio(loop_scope="module")``, and tests/conftest.py keeps the
module on one xdist worker). A test that pauses, stops, restarts or archives a machine, or kills
its daemon, makes a machine of its own on the module's stack; a test that changes the platform's
settings takes a stack of its own. Settings the whole module runs with are the module's.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from controlplane.policy import PlacementOf
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.gvisor.runsc import Runsc
from providers.local import LocalProvider
from tests.attack_stack import servers_on
from tests.conftest import running_stack


def host_address() -> str:
    """An address of this host on an interface other than its loopback and the one its
    default route leaves from (a Docker bridge's gateway, say): gVisor's network stack has a
    loopback of its own, and pasta gives the machine's namespace the default interface's
    address, so NATS must be on another."""
    route = json.loads(_ip("-4", "-j", "route", "get", "192.0.2.200"))[0]
    for link in json.loads(_ip("-4", "-j", "addr", "show")):
        if link["ifname"] in ("lo", route["dev"]):
            continue
        for addr in link.get("addr_info", []):
            return str(addr["local"])
    pytest.fail("this host has no IPv4 address apart from loopback and its default route's")


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


@contextmanager
def gvisor_settings(tmp: Path, host: str | None = None, **changes: Any) -> Iterator[Settings]:
    """Settings under ``tmp`` on a NATS and a valkey of their own, with ``changes``: NATS on
    ``host``, by default an address gVisor's network stack reaches (`host_address`; never the
    host's loopback, which the worker's shared server listens on), valkey on a unix socket."""
    with servers_on(tmp, host or host_address(), unix=True) as made:
        yield msgspec.structs.replace(made, **changes)


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="stack")
async def module_stack(stack_settings: Settings) -> AsyncIterator[FleetClient]:
    """The module's stack, on its ``stack_settings``: no test stops it, restarts a service or
    changes its settings."""
    async with running_stack(stack_settings) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="module", name="store")
async def module_store(stack_settings: Settings) -> AsyncIterator[Store]:
    """The store of the module's stack."""
    async with Store.of(stack_settings) as store:
        yield store


def local_provider(settings: Settings, nats_url: str, runsc: Runsc | None = None,
                   placement: PlacementOf | None = None) -> LocalProvider:  # fmt: skip
    """A provider of the stack's host, as a provisioner makes it (``runsc``: by default, one
    of the settings')."""
    runsc = runsc or Runsc(settings.runsc, settings.gvisor_platform, settings.data_path)
    return LocalProvider(data_dir=settings.data_path, nats_url=nats_url, environ=os.environ,
                         uids=settings.sandbox_uid_range, runsc=runsc,
                         placement=placement)  # fmt: skip
