"""``machines.watch`` on real daemons through the whole stack (namespaces machines: the local
provider's bubblewrap sandbox): an exec's changes as they happen, a recursive watch that
follows the directories made under it, a path out of the home refused, a watch that ends
with its client, and a flood of tiny events to a client that reads nothing held within the
stream's bound. The same on docker and gvisor machines: test_watch_docker.py,
test_watch_gvisor.py (with a pause); the rules in memory: tests/fast/test_watch.py."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from contracts.errors import InvalidParams
from contracts.gateway.files import WatchEnded
from contracts.gateway.live import SSE_DROPPED
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, ReadyMachine
from tests.waiters import wait_until
from tests.watch_checks import (
    WAIT_S,
    sees_an_execs_changes,
    traced_streams,
    unread_stream,
    watching,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_watch_sees_an_execs_create_write_rename_and_remove(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("watch")
    await sees_an_execs_changes(shared_stack, mid)


async def test_a_recursive_watch_follows_the_directories_made_under_it(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("watch-tree")
    home = (await shared_stack.exec(mid, ["sh", "-c", "cd && pwd"])).stdout.strip()
    await shared_stack.exec(mid, ["mkdir", "-p", "t/old"])
    async with watching(shared_stack, mid, "t", marker="ready", recursive=True) as w:
        script = "cd t && mkdir -p new/deep && echo x > new/deep/f && mv old moved && touch moved/g"
        assert (await shared_stack.exec(mid, ["sh", "-c", script])).exit_code == 0
        t = f"{home}/t"
        await w.until({("create", f"{t}/new"), ("create", f"{t}/new/deep/f"),
                       ("rename", f"{t}/old"), ("create", f"{t}/moved"),
                       ("create", f"{t}/moved/g")})  # fmt: skip
        assert [e.is_dir for e in w.seen if e.path == f"{t}/new"] == [True]


async def test_a_path_out_of_the_home_is_refused(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("watch-out")
    await shared_stack.exec(mid, ["ln", "-s", "/etc", "etc-link"])
    for path in ("/etc", "../..", "etc-link"):
        with pytest.raises(InvalidParams):
            async for _ in shared_stack.machines_watch(mid, path):
                pass


async def test_a_watch_ends_with_its_client_and_with_its_path(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    """A client that leaves ends its watch on the machine (the daemon holds no stream for it);
    a watched directory removed ends its watch, which says so."""
    mid = await ready_machine("watch-end")
    await shared_stack.exec(mid, ["mkdir", "-p", "gone"])
    async with watching(shared_stack, mid, "gone", marker="ready") as w:
        assert (await shared_stack.exec(mid, ["rm", "-rf", "gone"])).exit_code == 0
        end = await w.ended()
    assert isinstance(end, WatchEnded)
    assert (end.reason, end.path.rsplit("/", 1)[-1]) == ("removed", "gone")
    await shared_stack.exec(mid, ["mkdir", "-p", "w2"])
    async with watching(shared_stack, mid, "w2", marker="ready"):
        pass  # the client leaves

    async def aborted() -> bool:
        return any("watch.aborted" in line and "/w2" in line
                   for line in await shared_stack.daemon_log(mid, 200))  # fmt: skip

    await wait_until(aborted, timeout=30)


#: Each round makes and removes one file: two tiny events, then the watched directory goes.
FLOOD = """
import os
os.chdir(os.path.expanduser("~/flood"))
for _ in range(40000):
    open("x", "w").close()
    os.unlink("x")
os.chdir("..")
os.rmdir("flood")
"""


async def test_a_flood_of_tiny_events_to_a_client_that_reads_nothing_is_held_within_the_bound(
    shared_stack: FleetClient, shared_settings: Settings, ready_machine: ReadyMachine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A machine's code makes events as fast as it can (a file made and removed, again and
    again) for a watch whose client reads nothing: what the gateway holds for that client, as
    tracemalloc traces it, stays within the stream's bound (lowered to 256 KiB here: the same
    rule, a shorter flood), and the client, reading at last, is told events were left out."""
    limit = 256 * 1024
    monkeypatch.setattr("services.gateway.streams.exec_stream.MAX_HELD_BYTES", limit)
    mid = await ready_machine("watch-flood")
    await shared_stack.exec(mid, ["mkdir", "-p", "flood"])
    params = {"machineId": mid, "path": "flood", "events": ["create", "remove"]}
    base = f"http://127.0.0.1:{shared_settings.port}"

    async def started() -> bool:
        return any("watch.started" in line and "/flood" in line
                   for line in await shared_stack.daemon_log(mid, 50))  # fmt: skip

    async with unread_stream(base, ADMIN_TOKEN, "machines.watch", params) as client:
        await wait_until(started, timeout=WAIT_S)
        with traced_streams() as held, capture_logs() as logs:
            made = await shared_stack.exec(mid, ["python3", "-c", FLOOD], timeout_s=120)
            assert made.exit_code == 0, made.stderr
            await wait_until(lambda: any(e["event"] == "watch.ended" for e in logs), WAIT_S)
            holds = held()
        answer = await client.read_all()
    assert b"event: " + SSE_DROPPED.encode() in answer
    assert holds <= limit, f"{holds} bytes held for a bound of {limit}"
