"""The machine's environment on real servers (docs/machines.md, "What a process gets"): a
variable set with ``env.set`` is in the environment of a plain ``machines.exec``, a terminal
(``sessions.open``) and a streamed exec, with nothing sourced, and a change made while the
machine runs reaches the next command. The rule's order, in memory:
tests/fast/test_process_env.py."""

from __future__ import annotations

import pytest

from contracts.daemon.rpc import ExecCommandResult, OutputChunk
from fleet.client import FleetClient
from tests.integration.test_sessions import open_term
from tests.waiters import wait_until

PLATFORM_VAR, INSTANCE_VAR = "FLEET_TEST_PLATFORM_VAR", "FLEET_TEST_INSTANCE_VAR"


@pytest.mark.timeout(180)
async def test_env_set_reaches_exec_terminals_and_streams_with_nothing_sourced(
    stack: FleetClient,
) -> None:
    inst = await stack.create_instance("env-everywhere")
    await stack.set_env(INSTANCE_VAR, "set before the machine", inst.id)
    machine = await stack.create_machine(inst.id)
    await stack.wait_for(machine.id, ["ready"], timeout_s=60)
    mid = machine.id

    got = await stack.exec(mid, ["printenv", INSTANCE_VAR])
    assert (got.exit_code, got.stdout) == (0, "set before the machine\n"), got

    await stack.set_env(PLATFORM_VAR, "set while it runs")  # pushed to the running machine
    await stack.set_env(INSTANCE_VAR, "changed while it runs", inst.id)
    both = ["printenv", PLATFORM_VAR, INSTANCE_VAR]
    expected = "set while it runs\nchanged while it runs\n"

    async def exec_sees_both() -> bool:
        return (await stack.exec(mid, both)).stdout == expected

    await wait_until(exec_sees_both, timeout=30)

    opened = await stack.open_session(mid, both)
    term = await open_term(stack, mid, opened.session_id)
    try:
        await term.until(expected.replace("\n", "\r\n").encode())  # the terminal's line ends
    finally:
        await term.ws.close()

    items = [item async for item in stack.exec_stream(mid, both)]
    *chunks, result = items
    assert isinstance(result, ExecCommandResult)
    assert (result.exit_code, result.stdout) == (0, expected)
    assert "".join(c.data for c in chunks if isinstance(c, OutputChunk)) == expected
