"""daemon.processes.procs.ProcessManager with real processes: start, supervise, restart, adopt,
kill."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from base import procinfo
from base.dotenv import render
from contracts.daemon.rpc import (
    ExecCommandParams,
    ProcessInfo,
    ProcessLogsParams,
    ProcessRef,
    ProcessStartParams,
    RestartPolicy,
    WriteFileParams,
)
from contracts.errors import Conflict, NotFound, ToolError
from daemon.processes import tools
from daemon.processes.env import ProcessEnv
from daemon.processes.procs import KEEP_EXITED, ProcessManager
from daemon.supervision.state import TrackedProcess
from tests.waiters import wait_until

ENVIRON = {"PATH": os.environ["PATH"], "FLEET_MACHINE_TOKEN": "never-shown", "KEPT": "daemon"}
MakeManager = Callable[[], ProcessManager]


@pytest.fixture
async def make_manager(home: Path) -> AsyncIterator[MakeManager]:
    """Managers on one home; at teardown every process any of them started is ended."""
    made: list[ProcessManager] = []

    def make() -> ProcessManager:
        manager = ProcessManager(home, env=ProcessEnv(home, ENVIRON), on_change=lambda: None,
                                 env_poll_s=0.05)  # fmt: skip
        made.append(manager)
        return manager

    yield make
    for manager in reversed(made):
        await manager.__aexit__(None, None, None)
        await manager.stop_all(grace_s=2)


def write_env(home: Path, env: dict[str, str]) -> None:
    """As the setup pusher does: render(), then the daemon's atomic writeFile."""
    tools.write_file(home, WriteFileParams(path="~/.fleet/.env", content=render(env), mode=0o600))


def start_params(
    *command: str,
    tag: str | None = None,
    restart: RestartPolicy = "never",
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> ProcessStartParams:
    return ProcessStartParams(command=list(command), tag=tag, restart=restart, cwd=cwd, env=env)


def by_tag(manager: ProcessManager, tag: str) -> ProcessInfo:
    return next(p for p in manager.list().processes if p.tag == tag)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in the group: what a kill must leave empty."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry))
    return members


async def test_start_list_logs_kill_by_tag_and_pid(home: Path, make_manager: MakeManager) -> None:
    async with make_manager() as m:
        script = "echo hello; echo oops >&2; exec sleep 300"
        web = await m.start(start_params("sh", "-c", script, tag="web"))
        assert (web.state, web.tag, web.log_path) == ("running", "web", ".fleet/logs/web.log")
        assert web.cwd == str(home)
        await wait_until(lambda: len(m.logs(ProcessLogsParams(tag="web")).lines) == 2)
        assert m.logs(ProcessLogsParams(pid=web.pid, tail=1)).lines == ["oops"]

        plain = await m.start(start_params("sleep", "300"))
        assert plain.log_path == f".fleet/logs/{plain.pid}.log"
        assert (home / plain.log_path).exists()
        assert [(p.pid, p.state) for p in m.list().processes] == [
            (web.pid, "running"),
            (plain.pid, "running"),
        ]

        killed = await m.kill(ProcessRef(tag="web"), grace_s=5)
        assert (killed.pid, killed.state, killed.exit_code) == (web.pid, "exited", -signal.SIGTERM)
        assert not procinfo.is_alive(web.pid, None)
        killed = await m.kill(ProcessRef(pid=plain.pid), grace_s=5)
        assert (killed.state, killed.exit_code) == ("exited", -signal.SIGTERM)
        assert {p.state for p in m.list().processes} == {"exited"}
        # Still there to ask about after it ended.
        assert m.logs(ProcessLogsParams(tag="web")).lines == ["hello", "oops"]


async def test_environment_cwd_and_secrets(home: Path, make_manager: MakeManager) -> None:
    write_env(home, {"FOO": "from .env", "BAR": "from .env", "KEPT": "overridden by .env"})
    (home / "work").mkdir()
    script = (
        'printf "%s|%s|%s|%s|%s\\n" "$FOO" "$BAR" "$KEPT" "${FLEET_MACHINE_TOKEN-unset}" "$PWD"'
    )
    async with make_manager() as m:
        info = await m.start(
            start_params("sh", "-c", script, tag="env", cwd="work", env={"BAR": "param"})
        )
        await wait_until(lambda: by_tag(m, "env").state == "exited")
        assert by_tag(m, "env").exit_code == 0
        assert m.logs(ProcessLogsParams(pid=info.pid)).lines == [
            f"from .env|param|overridden by .env|unset|{home / 'work'}"
        ]


async def test_kill_ends_the_whole_group_and_escalates(make_manager: MakeManager) -> None:
    async with make_manager() as m:
        both = await m.start(start_params("sh", "-c", "sleep 300 & sleep 300", tag="both"))
        await wait_until(lambda: len(group_members(both.pid)) >= 2)
        await m.kill(ProcessRef(tag="both"), grace_s=5)
        await wait_until(lambda: group_members(both.pid) == [], timeout=5)

        # Ignores SIGTERM (the ignore is inherited by sleep): SIGKILL after the grace period.
        stubborn = await m.start(start_params("sh", "-c", "trap '' TERM; sleep 300 & wait"))
        await wait_until(lambda: len(group_members(stubborn.pid)) >= 2)
        killed = await m.kill(ProcessRef(pid=stubborn.pid), grace_s=0.2)
        assert killed.exit_code == -signal.SIGKILL
        await wait_until(lambda: group_members(stubborn.pid) == [], timeout=5)


async def test_conflict_not_found_and_bad_starts(make_manager: MakeManager) -> None:
    async with make_manager() as m:
        await m.start(start_params("sleep", "300", tag="one"))
        with pytest.raises(Conflict):
            await m.start(start_params("sleep", "300", tag="one"))
        with pytest.raises(NotFound):
            await m.kill(ProcessRef(tag="nope"))
        with pytest.raises(NotFound):
            m.logs(ProcessLogsParams(pid=2**22 + 12345))
        with pytest.raises(ToolError, match="not a directory"):
            await m.start(start_params("true", cwd="missing"))
        with pytest.raises(ToolError, match="cannot start"):
            await m.start(start_params("/nonexistent/program", tag="ghost"))
        assert [p.tag for p in m.list().processes] == ["one"]
        await m.kill(ProcessRef(tag="one"))
        await m.start(start_params("sleep", "300", tag="one"))  # free again once it ended


async def test_always_restarts_with_a_new_pid_until_killed(make_manager: MakeManager) -> None:
    async with make_manager() as m:
        first = await m.start(
            start_params("sh", "-c", "echo run; exit 3", tag="flaky", restart="always")
        )
        await wait_until(lambda: by_tag(m, "flaky").restarts >= 2, timeout=10)
        assert by_tag(m, "flaky").pid != first.pid
        assert m.logs(ProcessLogsParams(tag="flaky")).lines[:3] == ["run"] * 3  # one log
        killed = await m.kill(ProcessRef(tag="flaky"))
        assert killed.state == "exited"
        # No longer managed: the tag is free and nothing restarts it behind our back.
        await m.start(start_params("sleep", "300", tag="flaky"))
        assert [p.state for p in m.list().processes if p.tag == "flaky"] == ["running", "exited"]


async def test_on_env_change_restarts_with_the_new_env(
    home: Path, make_manager: MakeManager
) -> None:
    write_env(home, {"FOO": "one"})
    seen = home / "seen.txt"
    script = f'echo "$FOO" >> {seen}; exec sleep 300'
    async with make_manager() as m:
        app = await m.start(start_params("sh", "-c", script, tag="app", restart="on-env-change"))
        other = await m.start(start_params("sleep", "300", tag="other"))
        await wait_until(lambda: seen.exists() and seen.read_text() == "one\n")
        write_env(home, {"FOO": "two"})
        await wait_until(lambda: seen.read_text() == "one\ntwo\n")
        now = by_tag(m, "app")
        assert (now.state, now.restarts) == ("running", 1)
        assert now.pid != app.pid
        assert not procinfo.is_alive(app.pid, None)
        assert by_tag(m, "other").pid == other.pid  # policy "never": left alone


async def test_records_round_trip_and_stay_bounded(home: Path, make_manager: MakeManager) -> None:
    async with make_manager() as m:
        live = await m.start(start_params("sleep", "300", tag="live", env={"A": "1"}))
        for _ in range(KEEP_EXITED + 5):
            await m.start(start_params("true"))
        await wait_until(lambda: [p.state for p in m.list().processes].count("running") == 1)
        records = m.records()
        raw = msgspec.json.encode(records)
        assert msgspec.json.decode(raw, type=list[TrackedProcess]) == records
        first = records[0]
        assert (first.pid, first.tag, first.kind, first.env) == (
            live.pid,
            "live",
            "process",
            {"A": "1"},
        )
        assert first.start_ticks == procinfo.start_ticks(live.pid)
        assert len(records) == 1 + KEEP_EXITED


async def test_exec_children_are_tracked_while_they_run(
    home: Path, make_manager: MakeManager
) -> None:
    async with make_manager() as m:
        during: list[list[str]] = []

        command = ["sh", "-c", "while [ ! -e go ]; do sleep 0.01; done; exit 4"]

        def spawned(pid: int) -> None:
            m.track_exec(pid, command, str(home))
            during.append([r.kind for r in m.records()])
            (home / "go").touch()  # now it may end

        result = await tools.exec_command(
            home,
            ExecCommandParams(command=command),
            ProcessEnv(home, ENVIRON),
            1024,
            on_spawn=spawned,
            on_exit=m.untrack_exec,
        )
        assert result.exit_code == 4
        assert during == [["exec"]]
        assert m.records() == []


async def test_adopt_reports_kills_and_watches(home: Path, make_manager: MakeManager) -> None:
    first = make_manager()
    async with first:
        keep = await first.start(start_params("sleep", "300", tag="keep"))
        dies = await first.start(start_params("sleep", "300", tag="dies"))
        phoenix = await first.start(start_params("sleep", "300", tag="phoenix", restart="always"))
        gone = await first.start(start_params("sleep", "300", tag="gone"))
    # The first daemon is gone; its processes run on. One dies while nobody watches.
    os.kill(gone.pid, signal.SIGKILL)
    await wait_until(lambda: procinfo.state(gone.pid) is None)  # reaped, not a zombie
    saved = msgspec.json.encode(first.records())

    second = make_manager()
    second.adopt(msgspec.json.decode(saved, type=list[TrackedProcess]))
    async with second:
        states = {p.tag: (p.pid, p.state) for p in second.list().processes}
        assert states == {
            "keep": (keep.pid, "running"),
            "dies": (dies.pid, "running"),
            "phoenix": (phoenix.pid, "running"),
            "gone": (gone.pid, "lost"),
        }
        killed = await second.kill(ProcessRef(tag="keep"), grace_s=5)
        assert killed.state == "exited"
        assert not procinfo.is_alive(keep.pid, None)

        os.kill(dies.pid, signal.SIGKILL)
        await wait_until(lambda: by_tag(second, "dies").state == "exited")

        os.kill(phoenix.pid, signal.SIGKILL)
        await wait_until(lambda: by_tag(second, "phoenix").restarts == 1)
        reborn = by_tag(second, "phoenix")
        assert reborn.state == "running"
        assert reborn.pid != phoenix.pid


async def test_stop_all_ends_everything(home: Path, make_manager: MakeManager) -> None:
    async with make_manager() as m:
        infos = [
            await m.start(start_params("sleep", "300", tag=f"p-{policy}", restart=policy))
            for policy in ("never", "always", "on-env-change")
        ]
        exec_task = asyncio.create_task(
            tools.exec_command(
                home,
                ExecCommandParams(command=["sleep", "300"]),
                ProcessEnv(home, ENVIRON),
                1024,
                on_spawn=lambda pid: m.track_exec(pid, ["sleep", "300"], str(home)),
                on_exit=m.untrack_exec,
            )
        )
        await wait_until(lambda: any(r.kind == "exec" for r in m.records()))
        await m.stop_all(grace_s=2)
        assert {p.state for p in m.list().processes} == {"exited"}
        assert all(not procinfo.is_alive(i.pid, None) for i in infos)
        assert (await exec_task).exit_code == -signal.SIGTERM
