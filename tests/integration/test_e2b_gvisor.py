"""E2B's pause, connect and timeouts on gvisor machines, driven by E2B's Python SDK, unmodified
(tests/e2b_sdk.py): a pause keeps the sandbox's memory and ``connect`` resumes it where it
was; a sandbox created to pause on its timeout is paused there, not killed, and comes back with
its memory; what the SDK paused, fleetd's own API shows paused.

One stack for the module (tests/gvisor_stack.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.models import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.e2b_sdk import python_sdk, sdk_env
from tests.gvisor_stack import gvisor_settings, module_stack

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("e2b-gvisor"), e2b_runtime="gvisor") as made:
        yield made


async def test_a_pause_keeps_memory_and_connect_resumes_it(
    stack: FleetClient, stack_settings: Settings
) -> None:
    got = await python_sdk(
        """
        import json
        from e2b import SandboxQuery, SandboxState
        from e2b_code_interpreter import Sandbox
        sbx = Sandbox.create()
        sbx.run_code("x = 41")
        out = {"id": sbx.sandbox_id, "paused": [sbx.pause(), sbx.pause()]}
        out["state"] = sbx.get_info().state.value
        out["running"] = sbx.is_running()
        out["listed"] = [s.sandbox_id for s in Sandbox.list(
            query=SandboxQuery(state=[SandboxState.PAUSED])).next_items()]
        print(json.dumps(out))
    """,
        sdk_env(stack_settings),
    )
    assert got["paused"] == [True, False]
    assert (got["state"], got["running"], got["listed"]) == ("paused", False, [got["id"]])
    assert (await stack.get_machine(got["id"])).status is MachineStatus.PAUSED
    back = await python_sdk(f"""
        import json
        from e2b_code_interpreter import Sandbox
        sbx = Sandbox.connect({got["id"]!r})
        print(json.dumps({{"x": sbx.run_code("x + 1").text,
                           "root": sbx.commands.run("id -u", user="root").stdout,
                           "state": sbx.get_info().state.value, "killed": sbx.kill()}}))
    """, sdk_env(stack_settings))  # fmt: skip
    assert back == {"x": "42", "root": "0\n", "state": "running", "killed": True}


@pytest.mark.timeout(300)  # a pause refused under load is asked again (e2b/ends.py)
async def test_a_sandbox_made_to_pause_on_its_timeout_is_paused_there(
    stack: FleetClient, stack_settings: Settings
) -> None:
    got = await python_sdk(
        """
        import json, time
        from e2b_code_interpreter import Sandbox
        sbx = Sandbox.create(timeout=120, lifecycle={"on_timeout": "pause"})
        sbx.run_code("kept = 'still here'")
        sbx.set_timeout(3)  # counted once the code ran: a loaded host may take 3 s to start it
        began = time.monotonic()
        while sbx.is_running() and time.monotonic() - began < 120:
            time.sleep(0.2)
        info = sbx.get_info()
        again = Sandbox.connect(sbx.sandbox_id, timeout=60)
        print(json.dumps({"state": info.state.value, "on_timeout": info.lifecycle["on_timeout"],
                          "kept": again.run_code("kept").text, "killed": again.kill()}))
    """,
        sdk_env(stack_settings),
        timeout=240,
    )
    assert got == {"state": "paused", "on_timeout": "pause", "kept": "'still here'",
                   "killed": True}  # fmt: skip


async def test_forks_and_a_memory_snapshot_go_on_from_the_sources_memory(
    stack: FleetClient, stack_settings: Settings
) -> None:
    got = await python_sdk(
        """
        import json
        from e2b_code_interpreter import Sandbox
        sbx = Sandbox.create()
        sbx.run_code("n = 20")
        forks = sbx.fork(count=2)
        seen = [f.run_code("n + 1").text for f in forks]
        forks[0].run_code("n = 99")
        snap = sbx.create_snapshot()
        made = Sandbox.create(snap.snapshot_id)
        out = {"seen": seen, "source": sbx.run_code("n").text,
               "other": forks[1].run_code("n").text, "made": made.run_code("n + 2").text,
               "listed": [s.snapshot_id for s in Sandbox.list_snapshots(
                   sandbox_id=sbx.sandbox_id).next_items()] == [snap.snapshot_id]}
        for s in [sbx, *forks, made]:
            s.kill()
        out["deleted"] = [Sandbox.delete_snapshot(snap.snapshot_id),
                          Sandbox.delete_snapshot(snap.snapshot_id)]
        print(json.dumps(out))
    """,
        sdk_env(stack_settings),
    )
    assert got == {"seen": ["21", "21"], "source": "20", "other": "20", "made": "22",
                   "listed": True, "deleted": [True, False]}  # fmt: skip
