"""The daemon as a real process: boot report, tools, errors, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import uuid
from pathlib import Path

import pytest

from base.lockfile import holder_pid
from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported
from contracts.daemon.rpc import ExecCommandParams
from contracts.daemon.signing import sign, signing_key
from contracts.errors import DaemonUnavailable, InvalidParams, PayloadTooLarge, ToolError
from contracts.ids import new_machine_id
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineClient, static_key
from controlplane.settings import Settings
from daemon.compose import compose
from daemon.server import Daemon
from daemon.settings import DaemonSettings
from daemon.supervision.state import load_state
from fleet.up.embedded import NatsServer, PortHold
from tests.conftest import MACHINE_TOKEN, DaemonProc, SpawnDaemon
from tests.waiters import subscribed, wait_until

KEY = static_key(MACHINE_TOKEN)


async def boot(
    bus: Bus, spawn_daemon: SpawnDaemon, machine_id: str | None = None, **env: str
) -> tuple[DaemonProc, MachineClient]:
    """Start a daemon and wait for its ready report (the stream must exist, so `bus` first)."""
    mid = machine_id or new_machine_id()
    async with subscribed(
        bus.nc, subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, mid)
    ) as inbox:
        d = spawn_daemon(mid, **env)
        event = await inbox.next_event(timeout=15)
    assert isinstance(event, DaemonStatusReported)
    assert event.status == "ready"
    return d, DaemonClient(bus.nc, keys=KEY).machine(mid)


async def test_daemon_reports_ready_once_with_version(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    mid = new_machine_id()
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, mid)
    async with subscribed(bus.nc, subject) as inbox:
        d = spawn_daemon(mid)
        event = await inbox.next_event(timeout=15)
        assert isinstance(event, DaemonStatusReported)
        assert (event.machine_id, event.status, event.version) == (mid, "ready", "0.1.0")
        assert event.boot_id
        # "Nothing else at boot": the report after `ready` is the one a stop causes.
        d.proc.send_signal(signal.SIGTERM)
        after = await inbox.next_event(timeout=15)
        assert isinstance(after, DaemonStatusReported)
        assert (after.status, after.boot_id) == ("stopping", event.boot_id)
    stored = await bus.js.get_last_msg(subjects.STREAM_NAME, subject)
    assert json.loads(stored.data)["bootId"] == event.boot_id


def acked_late(
    nats_server: NatsServer, tmp_path: Path, mp: pytest.MonkeyPatch
) -> tuple[Daemon, asyncio.Event]:
    """A daemon in this process whose ready report is stored, its ack never heard of: a stop
    in that moment cancels its start, as a signal does before the daemon serves."""
    home = tmp_path / "home"
    home.mkdir()
    settings = DaemonSettings(nats_url=nats_server.url, machine_id=new_machine_id(),
                              machine_token=MACHINE_TOKEN, home=str(home))  # fmt: skip
    daemon = compose(settings)
    report = daemon.report
    # Set once the real report is done: a cancel before that could be lost in nats-py's
    # request (Python 3.11's wait_for keeps a result that races a cancel), not in the daemon.
    stored = asyncio.Event()

    async def ack_late(status: str) -> None:
        await report(status)  # type: ignore[arg-type]
        stored.set()
        await asyncio.Event().wait()

    mp.setattr(daemon, "report", ack_late)
    return daemon, stored


async def test_a_stop_while_the_ready_report_awaits_its_ack_is_still_reported(
    bus: Bus, nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM before the daemon serves cancels its start (daemon/__main__.py). The ready
    report may be stored by then, its ack still on the way: the platform must hear the stop."""
    daemon, stored = acked_late(nats_server, tmp_path, monkeypatch)
    mid = daemon.settings.machine_id
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, mid)
    async with subscribed(bus.nc, subject) as inbox:
        start = asyncio.create_task(daemon.__aenter__())
        ready = await inbox.next_event(timeout=15)
        assert isinstance(ready, DaemonStatusReported)
        assert ready.status == "ready"
        await asyncio.wait_for(stored.wait(), 15)
        assert not daemon.serving
        start.cancel()  # what a signal does before the daemon serves
        with pytest.raises(asyncio.CancelledError):
            await start
        after = await inbox.next_event(timeout=5)
    assert isinstance(after, DaemonStatusReported)
    assert (after.status, after.boot_id) == ("stopping", ready.boot_id)


async def test_a_second_stop_during_the_goodbye_still_lets_the_machine_go(
    bus: Bus, nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second signal while the cancelled start says ``stopping`` cancels that too: the daemon
    still disconnects and gives up its lock, or no daemon could start in this home again."""
    daemon, stored = acked_late(nats_server, tmp_path, monkeypatch)
    mid, home = daemon.settings.machine_id, daemon.settings.home_path
    saying = asyncio.Event()

    async def say_slowly(nc: object, *, timeout_s: float) -> None:
        saying.set()
        await asyncio.Event().wait()  # NATS slow to answer

    monkeypatch.setattr(daemon, "_say_stopping", say_slowly)
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, mid)
    async with subscribed(bus.nc, subject) as inbox:
        start = asyncio.create_task(daemon.__aenter__())
        await inbox.next_event(timeout=15)
        await asyncio.wait_for(stored.wait(), 15)
        assert holder_pid(home) == os.getpid()
        start.cancel()
        await asyncio.wait_for(saying.wait(), 5)
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            await start
    assert holder_pid(home) is None
    assert daemon._link.connected is None


async def test_write_file_resolves_home_and_applies_mode(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    d, mc = await boot(bus, spawn_daemon)
    r = await mc.write_file("~/.fleet/.env", "A='1'\n", 0o600)
    target = d.home / ".fleet" / ".env"
    assert (r.path, r.bytes_written) == (str(target), 6)
    assert target.read_text() == "A='1'\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    r = await mc.write_file("notes/a b.txt", "héllo")
    assert Path(r.path) == d.home / "notes" / "a b.txt"
    assert r.bytes_written == len("héllo".encode())
    assert stat.S_IMODE(Path(r.path).stat().st_mode) == 0o644  # the default mode

    # Rewriting replaces the file whole, keeping the new mode.
    await mc.write_file("~/.fleet/.env", "B='2'\n", 0o640)
    assert target.read_text() == "B='2'\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []


async def test_write_file_errors_are_named(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, mc = await boot(bus, spawn_daemon)
    (d.home / "blocker").write_text("a file, not a directory")
    with pytest.raises(ToolError, match="cannot write"):
        await mc.write_file("blocker/child.txt", "x")
    with pytest.raises(InvalidParams) as exc:
        await mc.write_file("~root/x", "x")
    assert exc.value.field == "$.path"


async def test_exec_runs_argv_in_home_with_separate_streams(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    d, mc = await boot(bus, spawn_daemon)
    r = await mc.exec(
        ExecCommandParams(
            command=["sh", "-c", 'pwd; echo "to err $GREETING" >&2; exit 3'],
            env={"GREETING": "hi"},
        )
    )
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (
        3,
        f"{d.home}\n",
        "to err hi\n",
        False,
    )

    (d.home / "sub").mkdir()
    r = await mc.exec(ExecCommandParams(command=["pwd"], cwd="sub"))
    assert r.stdout.strip() == str(d.home / "sub")

    # argv, never a shell: metacharacters arrive verbatim.
    r = await mc.run("echo", "$(id)", ";", "rm -rf ~")
    assert r.stdout == "$(id) ; rm -rf ~\n"


async def test_exec_never_shows_the_machine_token(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    _, mc = await boot(bus, spawn_daemon)
    r = await mc.run("env")
    assert "FLEET_MACHINE_TOKEN" not in r.stdout
    assert "test-machine-token" not in r.stdout


async def test_exec_missing_program_and_cwd(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    _, mc = await boot(bus, spawn_daemon)
    r = await mc.run("definitely-not-a-program-xyz")
    assert r.exit_code == 127
    assert "not found" in r.stderr
    with pytest.raises(ToolError, match="not a directory"):
        await mc.exec(ExecCommandParams(command=["pwd"], cwd="missing-dir"))


def _processes_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def test_exec_timeout_kills_the_whole_tree(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    _, mc = await boot(bus, spawn_daemon)
    marker = f"300.{uuid.uuid4().int % 10**6}"
    r = await mc.exec(
        ExecCommandParams(
            command=["sh", "-c", f"echo started; sleep {marker} & sleep {marker}"],
            timeout_s=0.5,
        )
    )
    assert r.timed_out
    assert r.exit_code == -9
    assert r.stdout == "started\n"
    assert _processes_with(f"sleep {marker}") == []


async def test_exec_output_is_capped_and_flagged(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    _, mc = await boot(bus, spawn_daemon, FLEET_EXEC_OUTPUT_CAP="1000")
    r = await mc.run("sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x; echo done >&2")
    assert r.truncated
    assert r.stdout == "x" * 1000
    assert r.stderr == "done\n"


async def test_health_answers_while_a_long_command_runs(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    _, mc = await boot(bus, spawn_daemon)
    slow = asyncio.create_task(mc.run("sleep", "2"))
    health = await mc.health(timeout_s=1.0)
    assert health.ok
    assert health.uptime_s > 0
    assert not slow.done()
    assert (await slow).exit_code == 0
    version = await mc.get_version()
    assert version.version == "0.1.0"


async def test_health_names_the_files_that_are_missing(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    _, mc = await boot(bus, spawn_daemon)
    await mc.write_file("~/.fleet/.env", "A='1'\n")
    await mc.run("mkdir", "-p", "adir")
    health = await mc.health(files=["~/.fleet/.env", "nope", "adir", ".fleet/.env"])
    assert health.missing == ["nope", "adir"]  # a directory is not a file
    with pytest.raises(InvalidParams) as bad:
        await mc.health(files=[""])
    assert bad.value.field == "$.files[0]"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"{not json", -32700, None),
        (b'{"jsonrpc":"2.0","id":1}', -32600, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"tool.nope"}', -32601, None),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tool.writeFile","params":{"content":"x"}}',
            -32602,
            "$.path",
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tool.writeFile","params":{"path":"a","content":"x","mode":"rw"}}',
            -32602,
            "$.mode",
        ),
        *(  # setuid 0o4755, setgid 0o2755, sticky 0o1777: only the permission bits
            (
                b'{"jsonrpc":"2.0","id":1,"method":"tool.writeFile","params":{"path":"a",'
                b'"content":"x","mode":%d}}' % mode,
                -32602,
                "$.mode",
            )
            for mode in (0o4755, 0o2755, 0o1777, 0o7777)
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tool.execCommand","params":{"command":[]}}',
            -32602,
            "$.command",
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tool.execCommand","params":{"command":["ls"],"shell":true}}',
            -32602,
            "$.shell",
        ),
    ],
)
async def test_bad_requests_get_named_errors(
    bus: Bus, spawn_daemon: SpawnDaemon, body: bytes, code: int, field: str | None
) -> None:
    d, mc = await boot(bus, spawn_daemon)
    headers = sign(signing_key(MACHINE_TOKEN), d.machine_id, body)
    reply = await bus.nc.request(
        subjects.daemon_rpc(d.machine_id), body, timeout=5, headers=headers
    )
    error = json.loads(reply.data)["error"]
    assert error["code"] == code
    assert (error.get("data") or {}).get("field") == field
    assert (await mc.health()).ok  # and the daemon is still serving


async def test_sigterm_reports_stopping_and_exits_cleanly(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    d, mc = await boot(bus, spawn_daemon)
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, d.machine_id)
    async with subscribed(bus.nc, subject) as inbox:
        os.kill(d.proc.pid, signal.SIGTERM)
        event = await inbox.next_event(timeout=10)
    assert isinstance(event, DaemonStatusReported)
    assert event.status == "stopping"
    assert d.proc.wait(timeout=10) == 0
    with pytest.raises(DaemonUnavailable):
        await mc.health()


async def test_daemon_keeps_retrying_until_nats_is_up(
    tmp_path: Path, spawn_daemon: SpawnDaemon
) -> None:
    """A daemon started while NATS is unreachable retries (with backoff), then reports ready."""
    # Its port held (refused, and nobody else's) until the server binds it all the same.
    with PortHold() as held:
        late = NatsServer(tmp_path / "late-nats", port=held.port)
        d = spawn_daemon(FLEET_NATS_URL=late.url)
        await wait_until(lambda: d.output().count("Connect call failed") >= 2, timeout=15)
        with late:
            async with Bus(Settings(nats_url=late.url), name="late") as late_bus:
                subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, d.machine_id)
                async with subscribed(late_bus.nc, subject) as inbox:
                    event = await inbox.next_event(timeout=20)
                assert isinstance(event, DaemonStatusReported)
                assert event.status == "ready"
                health = await DaemonClient(late_bus.nc, keys=KEY).machine(d.machine_id).health()
                assert health.ok


async def test_sigterm_while_nats_is_away_stops_at_once(
    tmp_path: Path, spawn_daemon: SpawnDaemon
) -> None:
    """A daemon that cannot connect (or cannot store its ready report) still obeys SIGTERM."""
    with PortHold() as refusing:  # bound, never listening: every connection refused
        d = spawn_daemon(FLEET_NATS_URL=f"nats://127.0.0.1:{refusing.port}")
        await wait_until(lambda: "Connect call failed" in d.output(), timeout=15)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=10) == 0
    state = load_state(d.home)
    assert state is not None
    assert (state.state, state.state_reason) == ("stopped", "SIGTERM")


async def test_oversized_request_is_refused_before_nats(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    d, mc = await boot(bus, spawn_daemon)
    with pytest.raises(PayloadTooLarge) as exc:
        await mc.write_file("big.bin", "x" * bus.nc.max_payload)
    assert exc.value.data is not None
    assert exc.value.data["limit"] < bus.nc.max_payload
    assert not (d.home / "big.bin").exists()
    assert (await mc.health()).ok


async def test_oversized_answer_is_an_error_not_a_hang(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    _, mc = await boot(bus, spawn_daemon, FLEET_EXEC_OUTPUT_CAP=str(4 * 1024 * 1024))
    with pytest.raises(PayloadTooLarge, match="FLEET_EXEC_OUTPUT_CAP"):
        await mc.run("sh", "-c", "head -c 1500000 /dev/zero | tr '\\0' x")


async def test_a_second_daemon_for_the_same_machine_refuses_to_start(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    first, mc = await boot(bus, spawn_daemon)
    second = spawn_daemon(first.machine_id)
    assert await asyncio.to_thread(second.proc.wait, 30) == 3
    assert "daemon.already_running" in second.output()
    assert f"pid {first.proc.pid}" in second.output()
    assert (await mc.health()).ok  # the first one is untouched
    assert first.proc.poll() is None
