"""A resumed gvisor machine is `ready` only once its daemon answers, as a started one is: a call
sent the moment `ready` is reported is answered on its first try, never ``1502 no daemon is
serving machine``. On real runsc sandboxes with a real daemon, a machine serving a web server
on its loopback and a client of it holding a kept-alive connection (what a pause keeps), paused
and resumed 20 times in a row. The rule in memory: tests/fast/test_pause.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.bus.events import MachineResumed
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import ready_gvisor
from tests.integration.test_gvisor_pause import events_of
from tests.waiters import wait_until

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")

#: How many pause and resume rounds in a row must each answer at once.
ROUNDS = 20
#: The machine's web server's port, on its own loopback.
WEB = 8000

#: Asks the machine's own web server (argv[1]) for a page on one kept-alive loopback connection
#: every 0.1 s, and writes "<pid> <pages>" to argv[2] each time.
CLIENT = r"""
import http.client, os, socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
        break
    except OSError:
        time.sleep(0.1)
web = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
pages = 0
while True:
    web.request('GET', '/')
    web.getresponse().read()
    pages += 1
    with open(path + '.tmp', 'w') as f:
        f.write(f'{os.getpid()} {pages}')
    os.replace(path + '.tmp', path)
    time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-resume"), runtime="gvisor") as made:
        yield made


def pages(home: Path) -> tuple[int, int]:
    try:
        pid, n = (home / "pages").read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(pid), int(n)


@pytest.mark.timeout(1800)
async def test_a_resumed_machine_answers_the_moment_it_is_ready(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await ready_gvisor(stack, "gv-resume-ready")
    home = stack_settings.data_path.resolve() / "machines" / mid / "home"
    await stack.start_process(mid, ["python3", "-m", "http.server", str(WEB), "--bind",
                                    "127.0.0.1"], tag="web")  # fmt: skip
    await stack.write_file(mid, "client.py", CLIENT)
    await stack.start_process(mid, [sys.executable, "-I", "client.py", str(WEB), "pages"],
                              tag="client")  # fmt: skip
    await wait_until(lambda: pages(home)[1] >= 3, timeout=180)
    client_pid = pages(home)[0]
    for n in range(ROUNDS):
        await stack.pause_machine(mid)
        paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
        assert paused.status == "paused", (n, paused.status_reason)
        at_pause = pages(home)[1]
        await stack.resume_machine(mid)
        ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
        assert ready.status == "ready", (n, ready.status_reason)
        # At once, on the first try: ready means its daemon answers.
        done = await stack.exec(mid, ["true"], timeout_s=60)
        assert done.exit_code == 0, (n, done)
        # What the pause kept goes on: the same client, on its connection to the same server.
        await wait_until(lambda: pages(home)[1] > at_pause, timeout=120)  # noqa: B023
        assert pages(home)[0] == client_pid
    took = sorted(e.duration_ms for e in await events_of(stack, mid, MachineResumed)
                  if isinstance(e, MachineResumed))  # fmt: skip
    assert len(took) == ROUNDS
    print(
        f"resume to ready (its daemon answering), {ROUNDS} rounds: p50 {took[ROUNDS // 2]:.0f} "
        f"ms, max {took[-1]:.0f} ms"
    )
