"""What a new user does: `fleet up`, then the CLI, then Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dotenv
import pytest

from fleet.up import banner_ports
from fleet.up.embedded import PortHold
from providers.local import pid_alive
from tests.conftest import git, make_bare_repo
from tests.e2e import readme_quickstart
from tests.e2e.conftest import FLEET, FleetUp, read_until, start_fleet_up

# A value the .env carries byte for byte in sh and python-dotenv alike (a ' together with $ is
# refused at env.set: no quoting keeps both literal in both readers).
VALUE = 'two lines,\nwith "double" quotes, # and $HOME'
STAGES = ["created", "provisioned", "daemon-status-reported", "setup-pushed", "ready"]


def stage_lines(output: str) -> list[str]:
    return [line.split()[2] for line in output.splitlines() if line.startswith("  + ")]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's directory: the `fleet up` its tests share, and the repository its
    sandboxed machines may read (and nothing else of it)."""
    return tmp_path_factory.mktemp("quickstart")


@pytest.fixture(scope="module")
def repo(shared: Path) -> Path:
    """`bare_repo` (tests/conftest.py), once for the module, where its machines can read it."""
    return make_bare_repo(shared)


@pytest.fixture(scope="module")
def fleet_up(shared: Path, repo: Path) -> Iterator[FleetUp]:
    """One `fleet up` for the module's tests that only use it: each makes an instance of its
    own (no test reads another's), none stops or restarts it. Ctrl-C and the README's quick
    start start (and stop) their own, as a user does."""
    up = start_fleet_up(shared / "data", env={"FLEET_SANDBOX_SHARE": str(repo)})
    yield up
    assert up.stop() == 0


def test_banner_and_admin_token(fleet_up: FleetUp) -> None:
    assert fleet_up.url in fleet_up.banner
    assert fleet_up.token in fleet_up.banner
    token_file = fleet_up.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((fleet_up.data_dir / "secret-key").stat().st_mode) == 0o600


def test_create_a_machine_and_watch_it_become_ready(fleet_up: FleetUp, repo: Path) -> None:
    up = fleet_up
    inst = up.cli("instances", "create", "demo")
    assert inst.returncode == 0, inst.stderr
    iid = inst.stdout.strip()
    assert up.cli("env", "set", "GREETING", "platform").returncode == 0
    assert up.cli("env", "set", "GREETING", "instance wins", "--instance", iid).returncode == 0
    assert up.cli("env", "set", "MULTI", VALUE, "--instance", iid).returncode == 0
    added = up.cli(
        "repos",
        "add",
        "--instance",
        iid,
        "--url",
        str(repo),
        "--branch",
        "feature",
        "--path",
        "src/app",
    )
    assert added.returncode == 0, added.stderr

    created = up.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    assert created.returncode == 0, created.stdout + created.stderr
    assert stage_lines(created.stdout) == STAGES

    listed = up.cli("--json", "machines", "list", "--instance", iid)
    (machine,) = json.loads(listed.stdout)
    assert machine["status"] == "ready"
    home = up.data_dir / "machines" / machine["id"] / "home"
    env_file = home / ".fleet" / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    parsed = dotenv.dotenv_values(stream=io.StringIO(env_file.read_text()), interpolate=False)
    assert parsed == {"GREETING": "instance wins", "MULTI": VALUE}
    branch = up.cli(
        "machines",
        "exec",
        machine["id"],
        "--cwd",
        "src/app",
        "--",
        "git",
        "branch",
        "--show-current",
    )
    assert (branch.returncode, branch.stdout) == (0, "feature\n")
    assert git("-C", str(home / "src" / "app"), "rev-parse", "--abbrev-ref", "HEAD") == "feature"


def test_a_repo_that_does_not_exist_is_refused_when_added(
    fleet_up: FleetUp, tmp_path: Path
) -> None:
    """`repos add` asks the repo first: a path with no repository is refused by name (1630),
    nothing stored, and the instance's machine comes up without it."""
    up = fleet_up
    iid = up.cli("instances", "create", "bad").stdout.strip()
    added = up.cli(
        "repos", "add", "--instance", iid, "--url", str(tmp_path / "nope.git"),
        "--branch", "main", "--path", "app",
    )  # fmt: skip
    assert added.returncode != 0
    assert "1630" in added.stderr, added.stderr
    assert "nope.git" in added.stderr, added.stderr
    assert "nope.git" not in up.cli("repos", "list", "--instance", iid).stdout
    created = up.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    assert created.returncode == 0, created.stderr


def test_exit_codes_and_errors(fleet_up: FleetUp) -> None:
    up = fleet_up
    missing = up.cli("machines", "get", "m-0000000000000000")
    assert missing.returncode == 4
    assert "1004" in missing.stderr
    assert "not found" in missing.stderr
    bad = up.cli(
        "repos",
        "add",
        "--instance",
        "i-0000000000000000",
        "--url=--upload-pack=touch",
        "--branch",
        "main",
        "--path",
        "x",
    )
    assert bad.returncode == 4
    assert "-32602" in bad.stderr
    assert "`url`" in bad.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    with PortHold() as refusing:  # bound, never listening: a connection to it is refused
        refused = subprocess.run(
            [FLEET, "--url", f"http://127.0.0.1:{refusing.port}", "instances", "list"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    assert refused.returncode == 3
    assert "cannot reach fleetd" in refused.stderr
    assert "./run up" in refused.stderr


def test_ctrl_c_stops_everything_and_state_survives_a_restart(tmp_path: Path) -> None:
    up = start_fleet_up(tmp_path / "data")
    iid = up.cli("instances", "create", "keeper").stdout.strip()
    created = up.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    assert created.returncode == 0, created.stdout + created.stderr
    pid = int((next((up.data_dir / "machines").iterdir()) / "daemon.pid").read_text())

    assert up.stop() == 0
    assert not pid_alive(pid), "the machine's daemon outlived fleet up"
    url, previews = banner_ports(up.banner)
    for port in (int(url.rsplit(":", 1)[1]), previews):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"the gateway still listens on {port}"

    again = start_fleet_up(up.data_dir)
    try:
        listed = again.cli("instances", "list")
        assert iid in listed.stdout  # Redis kept its append-only file
        listed = again.cli("--json", "machines", "list", "--instance", iid)
        (machine,) = json.loads(listed.stdout)
        # The provisioner resumes the machine's daemon as it starts, beside the gateway: the
        # banner does not wait for it, so the daemon answers again shortly after (1502 before);
        # until then the machine is unresponsive, not ready (tests/e2e/test_up_ready_serves.py).
        assert machine["status"] in ("unresponsive", "ready")
        hello = answers_within(again, machine["id"], 60)
        assert (hello.returncode, hello.stdout) == (0, "back\n"), hello.stderr
    finally:
        assert again.stop() == 0


def answers_within(
    up: FleetUp, machine_id: str, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """`machines exec M -- echo back`, again while the daemon is not serving yet (1502, exit 4)."""
    deadline = time.monotonic() + timeout_s
    while True:
        hello = up.cli("machines", "exec", machine_id, "--", "echo", "back")
        if hello.returncode != 4 or "1502" not in hello.stderr or time.monotonic() > deadline:
            return hello
        time.sleep(0.2)  # a poll interval: the CLI is a separate process, there is no signal


async def test_embedded_nats_requires_authentication(fleet_up: FleetUp) -> None:
    """`fleet up` turns the auth callout on: strangers and wrong tokens are refused."""
    assert "auth callout" in fleet_up.banner
    host, port = next(w for w in fleet_up.banner.split() if w.startswith("nats://"))[7:].split(":")
    for creds in ({}, {"user": "m-0000000000000000", "pass": "guess"}):
        assert "Authorization Violation" in await nats_handshake(host, int(port), creds)
    iid = fleet_up.cli("instances", "create", "authed").stdout.strip()
    created = fleet_up.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    assert created.returncode == 0, created.stdout + created.stderr


async def nats_handshake(host: str, port: int, creds: dict[str, str]) -> str:
    """The server's answer to CONNECT + PING, spoken directly (a refused nats-py client leaks
    its socket)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await reader.readline()  # INFO
        connect = {"verbose": False, "pedantic": False, "protocol": 1, **creds}
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 10)).decode()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def test_a_second_fleet_up_on_the_same_data_dir_exits_1_naming_the_holder(
    fleet_up: FleetUp,
) -> None:
    """Issue 13: a second `fleet up` started a second NATS and valkey on the same files."""
    second = subprocess.run(
        [FLEET, "up", "--port", "0", "--data-dir", str(fleet_up.data_dir)],
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEET_")},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"another fleet up (pid {fleet_up.proc.pid}) holds" in second.stderr
    assert "nats" not in second.stdout  # it started nothing
    assert fleet_up.cli("instances", "list").returncode == 0  # the first one is unharmed


def test_the_embedded_nats_has_no_monitoring_port(fleet_up: FleetUp) -> None:
    """Issue 13: the monitoring port answered any local client and listed every machine id."""
    config = (fleet_up.data_dir / "nats" / "nats.conf").read_text()
    assert "listen: 127.0.0.1:" in config
    assert "http" not in config
    log = (fleet_up.data_dir / "nats" / "nats.log").read_text()
    assert "Server is ready" in log
    assert "monitor" not in log.lower()


@pytest.mark.parametrize("runtime", ["namespaces", "gvisor"])
def test_the_readme_quick_start_works_verbatim(tmp_path: Path, runtime: str) -> None:
    """README.md's quick start, run as written in a scratch directory (the README's lines, not a
    copy of them): its repository made, `./run up` started with the README's environment, then
    every CLI line; what each prints must be what the README shows, ids and timings aside.
    Only the port differs (8080 may be taken): `./run` here is `fleet up --port 0`, FLEET_URL
    the one its banner prints. ``gvisor``: the same, word for word, with `--runtime gvisor`
    added to its machine's create, on the same default stack (NATS on 127.0.0.1)."""
    work = tmp_path
    (work / ".venv").symlink_to(Path(FLEET).parent.parent)  # `alias fleet=.venv/bin/fleet`
    run = work / "run"
    launch = f'exec "{FLEET}" up --port 0 "$@"'
    run.write_text(f'#!/bin/sh\n[ "$1" = up ] && shift && {launch}\nexit 2\n')
    run.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    *prepare, start = readme_quickstart.commands("up")
    subprocess.run(["bash", "-ec", "\n".join(prepare)], cwd=work, env=env, check=True, timeout=60)
    up = subprocess.Popen(
        ["bash", "-c", start], cwd=work, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url, _ = banner_ports(read_until(up, "Ctrl-C stops everything"))
        all_steps = readme_quickstart.steps("cli") + readme_quickstart.steps("work")
        if runtime != "namespaces":
            create = "fleet machines create --instance $INST --wait"
            assert [s.command for s in all_steps].count(create) == 1
            for step in all_steps:
                step.command = step.command.replace(create, f"{create} --runtime {runtime}")
        marker = "@@quickstart"
        printed = subprocess.run(
            ["bash", "-c", readme_quickstart.script(all_steps, marker)],
            cwd=work, env=env | {"FLEET_URL": url},
            capture_output=True, text=True, timeout=300, check=False,
        ).stdout  # fmt: skip
        got = readme_quickstart.outputs(printed, marker)
        assert len(got) == len(all_steps), printed
        for step, (output, rc) in zip(all_steps, got, strict=True):
            assert (step.command, output, rc) == (step.command, step.expected, 0), printed
    finally:
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in its terminal
        assert up.wait(60) == 0
        if up.stdout is not None:
            up.stdout.close()
