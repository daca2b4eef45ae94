"""What a user sees when `fleet up`, `fleet image` or a service cannot run: one line naming
the problem and exit code 2 for a bad setting, never a traceback; and a stop that does not
trip over a host without a Docker engine. Real processes throughout."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.up.embedded import PortHold
from tests.e2e.conftest import FLEET, read_until

#: (variable, bad value, what the line must say it takes)
BAD_SETTINGS = [
    ("FLEET_WARM_POOL", "4", "provider=count"),
    ("FLEET_PROBE_TIMEOUT_S", "abc", "a number"),
    ("FLEET_ENV", "staging", "one of dev, prod"),
    ("FLEET_SANDBOX_UIDS", "x", "FIRST-LAST"),
    ("FLEET_DOCKER_KEEP_VOLUMES", "maybe", "true or false"),
    ("FLEET_RPC_BATCH_CONCURRENCY", "0", ">= 1"),
]


def clean_env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")} | extra


def assert_one_line(result: subprocess.CompletedProcess[str], var: str, takes: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert var in lines[0], lines[0]
    assert takes in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(("var", "value", "takes"), BAD_SETTINGS)
def test_fleet_up_with_a_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, var: str, value: str, takes: str
) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [
            FLEET,
            "up",
            "--port",
            "0",
            "--data-dir",
            str(data),
        ],
        env=clean_env(**{var: value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line(result, var, takes)
    assert result.stdout == ""
    assert not (data / "nats").exists(), "a server started before the settings were checked"


def test_fleet_image_with_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [FLEET, "image", "build"],
        env=clean_env(FLEET_DATA_DIR=str(tmp_path), FLEET_DOCKER_KEEP_VOLUMES="maybe"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line(result, "FLEET_DOCKER_KEEP_VOLUMES", "true or false")


SERVICES = ["auth_callout", "provisioner", "setup_pusher", "prober", "codemode", "gateway"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_with_a_bad_setting_is_one_line_and_exit_2(service: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env=clean_env(FLEET_ENV="staging"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line(result, "FLEET_ENV", "one of dev, prod")
    assert result.stderr.startswith(f"{service}: ")


def test_the_daemon_with_a_bad_setting_is_one_line_naming_it_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon"],
        env=clean_env(FLEET_HEARTBEAT_S="abc", FLEET_MACHINE_ID="m-0000000000000000",
                      FLEET_NATS_URL="nats://127.0.0.1:1", FLEET_MACHINE_TOKEN="t"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert_one_line(result, "FLEET_HEARTBEAT_S", "a number")


@pytest.mark.parametrize(
    ("service", "var"),
    [("gateway", "FLEET_ADMIN_TOKEN"), ("auth_callout", "FLEET_CALLOUT_ISSUER_SEED")],
)
def test_a_service_missing_a_required_setting_is_one_line_and_exit_2(
    service: str, var: str
) -> None:
    """Found by the service as it builds (after the settings parsed): the same one line."""
    # Nothing listens on these (bound, never listening): the check comes before any
    # connection. Warnings only: the service's start-up log lines (info) are not what this
    # is about.
    with PortHold() as nats, PortHold() as redis:
        result = subprocess.run(
            [sys.executable, "-m", f"services.{service}"],
            env=clean_env(
                FLEET_LOG_LEVEL="warning",
                FLEET_NATS_URL=f"nats://127.0.0.1:{nats.port}",
                FLEET_REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert_one_line(result, var, "required")


def up_and_interrupt(tmp_path: Path, argv_prefix: list[str], env: dict[str, str]) -> str:
    """`fleet up` (the local default: no docker machine), Ctrl-C once it is up; its output."""
    argv = [
        FLEET,
        "up",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    proc = subprocess.Popen(
        [*argv_prefix, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        text = read_until(proc, "Ctrl-C stops everything")
    finally:
        proc.send_signal(2)  # SIGINT: what Ctrl-C does
        rest, _ = proc.communicate(timeout=60)
    out = text + rest.decode(errors="replace")
    assert proc.returncode == 0, out
    return out


def assert_quiet_stop(out: str) -> None:
    tail = out.split("fleet up: stopping ...", 1)[1]
    assert "Traceback" not in tail, out
    assert "docker" not in tail.lower(), out
    assert tail.strip().endswith("fleet up: stopped"), out


def test_stop_with_docker_host_at_a_dead_socket_says_nothing_of_docker(tmp_path: Path) -> None:
    sock_path = tmp_path / "nobody.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))  # bound, never listening: connections are refused
        env = clean_env(DOCKER_HOST=f"unix://{sock_path}")
        assert_quiet_stop(up_and_interrupt(tmp_path, [], env))


def test_stop_on_a_host_with_no_docker_engine_at_all_says_nothing_of_docker(
    tmp_path: Path,
) -> None:
    """No DOCKER_HOST, no docker context, no engine socket (aiodocker then fails an assertion
    as it is made): the engine's sockets are hidden by /dev/null in a mount namespace."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "the test needs util-linux's unshare"
    user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
    hide = " && ".join(
        f"mount --bind /dev/null {p}"
        for p in ("/run/docker.sock", "/var/run/docker.sock")
        if Path(p).is_socket()
    )
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(HOME=str(home))
    env.pop("DOCKER_HOST", None)
    env.pop("DOCKER_CONTEXT", None)
    prefix = [unshare, "--mount", *user_ns, "sh", "-c", f'{hide or "true"} && exec "$@"', "-"]
    assert_quiet_stop(up_and_interrupt(tmp_path, prefix, env))


def test_fleet_up_refuses_the_gvisor_runtime_on_a_runsc_too_old_naming_it(tmp_path: Path) -> None:
    """A runsc from before 0.0~20240729 cannot keep a listener across a pause: `fleet up
    --runtime gvisor` says which runsc it found and how to get a newer one, and starts nothing."""
    old = tmp_path / "runsc"
    old.write_text("#!/bin/sh\necho 'runsc version 0.0~20221219.0'\necho 'spec: 1.0.2-dev'\n")
    old.chmod(0o755)
    data = tmp_path / "data"
    result = subprocess.run(
        [FLEET, "up", "--port", "0", "--data-dir", str(data), "--runtime", "gvisor"],
        env=clean_env(FLEET_RUNSC=str(old)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result
    assert "0.0~20221219" in result.stderr, result.stderr
    assert "bookworm-backports" in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (data / "nats").exists(), "a server started before the runsc was checked"
