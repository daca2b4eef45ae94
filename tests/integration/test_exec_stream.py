"""Streamed exec on real daemons through the whole stack: output arrives while the command
runs, and leaving the stream (a Ctrl-C) ends the remote process group with nothing left. The
CLI's blocking path (`fleet machines list` and `exec`, fleet/cli/oneshot.py) prints what its
full way prints, against the real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from contracts.daemon.rpc import ExecCommandResult, OutputChunk
from controlplane.settings import Settings
from fleet.cli.common import EXIT_INTERRUPTED
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, ReadyMachine
from tests.stop_checks import host_pids_running, unique_sleep
from tests.waiters import wait_until

# Each test takes a ready machine of its own on the module's stack, and acts only inside it.
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_first_line_arrives_while_the_command_runs_and_leaving_kills_it(
    shared_stack: FleetClient,
    ready_machine: ReadyMachine,
) -> None:
    mid = await ready_machine("stream")
    sleep = unique_sleep()
    stream = shared_stack.exec_stream(
        mid, ["sh", "-c", f"echo first; echo oops >&2; exec {' '.join(sleep)}"]
    )
    seen: list[OutputChunk] = []
    async for item in stream:
        assert isinstance(item, OutputChunk)
        seen.append(item)
        if {c.stream for c in seen} == {"stdout", "stderr"}:
            break
    assert "".join(c.data for c in seen if c.stream == "stdout") == "first\n"
    assert "".join(c.data for c in seen if c.stream == "stderr") == "oops\n"
    await wait_until(lambda: bool(host_pids_running(sleep)))  # still running: output came first
    await stream.aclose()  # the user leaves
    await wait_until(lambda: not host_pids_running(sleep), timeout=15)


async def test_a_streamed_result_matches_exec_and_keeps_the_cap(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("stream-result")
    argv = ["sh", "-c", "for i in 1 2 3; do echo line $i; done; exit 3"]
    items = [item async for item in shared_stack.exec_stream(mid, argv)]
    *chunks, result = items
    assert isinstance(result, ExecCommandResult)
    assert "".join(c.data for c in chunks if isinstance(c, OutputChunk)) == result.stdout
    plain = await shared_stack.exec(mid, argv)
    assert (result.exit_code, result.stdout, result.truncated) == (3, plain.stdout, False)
    big = [
        item async for item in shared_stack.exec_stream(mid, ["sh", "-c", "yes | head -c 600000"])
    ]
    last = big[-1]
    assert isinstance(last, ExecCommandResult)
    assert last.truncated
    streamed = sum(len(c.data) for c in big if isinstance(c, OutputChunk))
    assert streamed == len(last.stdout) < 600_000  # the stream is cut where the result is


async def test_ctrl_c_in_fleet_machines_exec_ends_the_remote_group(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    mid = await ready_machine("ctrl-c")
    inner, outer = unique_sleep(), unique_sleep()
    script = f"{' '.join(inner)} & echo started; {' '.join(outer)}"  # a child in the background
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{shared_settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    # As from a terminal: SIGINT unblocked and at its default, whatever the test runner's state
    # (a blocked or ignored signal would be inherited across exec).
    launch = ("import signal; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
              "signal.signal(signal.SIGINT, signal.default_int_handler); "
              "from fleet.cli.entry import main; main()")  # fmt: skip
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", launch,
        "machines", "exec", mid, "--", "sh", "-c", script,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert cli.stdout is not None
        line = await asyncio.wait_for(cli.stdout.readline(), 30)
        assert line == b"started\n"  # printed live, while the command runs
        await wait_until(lambda: bool(host_pids_running(inner)) and bool(host_pids_running(outer)))
        cli.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(cli.wait(), 20)
        except TimeoutError:
            cli.kill()
            _, err = await cli.communicate()
            raise AssertionError(f"fleet did not exit on SIGINT; stderr: {err[-2000:]!r}") from None
        assert code == EXIT_INTERRUPTED
        await wait_until(lambda: not host_pids_running(inner) and not host_pids_running(outer), 15)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()


async def test_the_daemon_log_is_read_from_the_platform(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("daemon-log")
    lines = await shared_stack.daemon_log(mid, 50)
    assert any("daemon.ready" in line and mid in line for line in lines)
    assert len(await shared_stack.daemon_log(mid, 1)) == 1


FULL_WAY = ("import asyncio, sys; from fleet.cli.entry import _run_client, parse; "
            "sys.exit(asyncio.run(_run_client(parse(sys.argv[1:]))))")  # fmt: skip
BLOCKING = "import sys; from fleet.cli.entry import main; main()"


async def _fleet(launch: str, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", launch, *argv, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _without_samples(run: tuple[int, str, str]) -> tuple[int, list[dict[str, object]], str]:
    """A `--json machines list` run, its machines' usage samples (``metrics``) left out: they are
    taken every few seconds whoever asks, so two reads a moment apart may differ in them. That
    both ways spell the same JSON alike is tests/unit/test_cli_oneshot.py's, on fixed answers."""
    code, out, err = run
    machines = json.loads(out)
    for machine in machines:
        machine.pop("metrics")
    return code, machines, err


async def test_the_clis_blocking_path_prints_what_its_full_way_prints(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    mid = await ready_machine("oneshot")
    instance = (await shared_stack.get_machine(mid)).instance_id
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{shared_settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    listing = ("--json", "machines", "list", "--instance", instance)
    lists = [_without_samples(await _fleet(way, env, *listing)) for way in (BLOCKING, FULL_WAY)]
    assert lists[0] == lists[1]
    assert [m["id"] for m in lists[0][1]] == [mid]
    script = "echo out; echo err >&2; printf 'no end'; exit 7"
    for argv in (["machines", "exec", mid, "--cwd", ".", "--", "sh", "-c", script],
                 ["machines", "exec", "m-0000000000000000", "--", "true"]):  # fmt: skip
        blocking = await _fleet(BLOCKING, env, *argv)
        full = await _fleet(FULL_WAY, env, *argv)
        assert blocking == full, argv
    assert blocking[0] == 4  # the unknown machine: the API's error, as the full way says it
    code, out, err = await _fleet(BLOCKING, env, "machines", "exec", mid, "--", "sh", "-c", script)
    assert (code, out, err) == (7, "out\nno end", "err\n")
    table = (await _fleet(BLOCKING, env, "machines", "list"))[1]
    assert any(line.startswith(mid) and " ready " in line for line in table.splitlines())
