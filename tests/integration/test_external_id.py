"""``externalId`` of a local machine is the host pid of the machine's root process: bwrap with
``FLEET_SANDBOX=bwrap``, the supervisor with ``none``. The daemon runs under it; a new daemon
(a new process, of the platform's newer code) starts under it, so the id stays true (alive,
this machine's, the current daemon among its descendants) while the daemon's own pid changes."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from base import procinfo
from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.code import install_code
from providers.local.processes import code_store
from tests.integration.test_refresh import code_repo, ready_machine
from tests.waiters import subscribed


@pytest.fixture(params=["bwrap", "none"])
def stack_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, sandbox=request.param)


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in map(int, children):
        out += [child, *descendants(child)]
    return out


def daemons_under(root: int) -> list[int]:
    """The fleet-daemon processes at or under ``root`` (not the supervisor, not bwrap, not the
    daemon's own children)."""
    found = []
    for pid in [root, *descendants(root)]:
        argv = procinfo.cmdline(pid)
        # `fleet-daemon`, or `[loader] python -I|-P -m daemon` (the supervisor's ends the same)
        run_module = argv[-2:] == ["-m", "daemon"] and "daemon.supervise" not in argv
        if any(a.endswith("fleet-daemon") for a in argv[:2]) or run_module:
            found.append(pid)
    return found


def root_of(external_id: str | None, machine_id: str) -> int:
    assert external_id is not None
    assert external_id.startswith("local:")
    pid = int(external_id.removeprefix("local:"))
    assert procinfo.state(pid) not in (None, "Z")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"FLEET_MACHINE_ID={machine_id}".encode() in environ  # this machine's, not a reused pid
    return pid


async def test_external_id_names_the_machine_across_a_daemon_restart_on_new_code(
    stack: FleetClient, stack_settings: Settings, bus: Bus, tmp_path: Path
) -> None:
    """The platform installs newer code and restarts the daemon (machines.restart): the
    supervisor starts a new daemon of that code, under the same root."""
    mid = await ready_machine(stack, "handover")
    before = await stack.get_machine(mid)
    root = root_of(before.external_id, mid)
    [old_daemon] = daemons_under(root)

    repo, sha = code_repo(tmp_path)
    install_code(repo, sha, code_store(stack_settings.data_path / "machines" / mid))
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, mid)
    async with subscribed(bus.nc, subject) as inbox:
        await stack.restart_machine(mid)
        going = await inbox.next_event(timeout=15)
        back = await inbox.next_event(timeout=30)
    assert isinstance(going, DaemonStatusReported)
    assert isinstance(back, DaemonStatusReported)
    assert (going.status, back.status, back.git_sha) == ("stopping", "ready", sha)

    after = await stack.get_machine(mid)
    assert root_of(after.external_id, mid) == root
    [new_daemon] = daemons_under(root)  # the new daemon runs under the same root...
    assert new_daemon != old_daemon  # ... as a new process
    assert procinfo.state(old_daemon) is None
