"""A kernel is ready once it answered and its output channel is connected, not once that channel
went quiet: a kernel whose startup keeps printing (an IPython startup file of the machine's
user with a thread that logs) still starts and runs code."""

from __future__ import annotations

import asyncio

import pytest

from fleet.client import FleetClient
from tests.conftest import ReadyMachine

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Prints and flushes every 50 ms, for as long as the kernel lives: its IOPub is never quiet.
CHATTY = """\
import sys, threading, time

def _chatter():
    while True:
        print("tick", flush=True)
        time.sleep(0.05)

threading.Thread(target=_chatter, daemon=True).start()
CHATTY_STARTED = True
"""


async def test_a_kernel_whose_output_never_stops_still_starts(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("chatty-kernel")
    await shared_stack.write_file(mid, ".ipython/profile_default/startup/00-chatty.py", CHATTY)
    async with asyncio.timeout(45):  # a kernel start waited for a quiet IOPub: never, here
        ctx = await shared_stack.machines_code_create_context(mid)
        got = await shared_stack.machines_code_run(mid, "CHATTY_STARTED and 6 * 7",
                                                 context_id=ctx.id)  # fmt: skip
    assert got.error is None  # NameError: the startup file did not run (the test tests nothing)
    assert [r["text/plain"] for r in got.results if r.get("isMain")] == ["42"]
