"""sudo's command line and the broker's reading of a request (daemon/supervision/sudo.py); the real
thing
on gVisor: tests/integration/test_gvisor_root.py."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest

from daemon.supervision.sudo import SECURE_PATH, Refused, _command, _run_session, parse
from providers.gvisor.fork import fork_spec
from providers.gvisor.root import FSTAB, STAGE, id_mappings, staged_bundle


def test_sudos_common_forms_are_read() -> None:
    assert parse(["id", "-u"])["argv"] == ["id", "-u"]
    assert parse(["-u", "nobody", "id"])["user"] == "nobody"
    assert parse(["-unobody", "id"])["user"] == "nobody"
    req = parse(["-nE", "--", "-weird"])
    assert (req["keepEnv"], req["argv"]) == (True, ["-weird"])
    assert parse(["-i"])["login"] is True
    assert parse(["-s", "sh", "-c", "x"])["argv"] == ["sh", "-c", "x"]


@pytest.mark.parametrize("args", [[], ["-u"], ["-x", "id"], ["--bogus", "id"]])
def test_a_bad_command_line_is_refused_with_the_usage(args: list[str]) -> None:
    with pytest.raises(Refused, match="usage"):
        parse(args)


def test_the_environment_is_reset_and_the_caller_comes_from_the_socket() -> None:
    req = parse(["env"]) | {
        "cwd": "/",
        "env": {"LD_PRELOAD": "/home/x.so", "PATH": "/home/bin", "TERM": "xterm"},
        "caller": [65534, 65534],
    }
    argv, user, env, cwd = _command(req)
    assert (argv, user.pw_uid, cwd) == (["env"], 0, "/")
    assert "LD_PRELOAD" not in env
    assert env["PATH"] == SECURE_PATH
    assert (env["TERM"], env["SUDO_UID"], env["SUDO_USER"]) == ("xterm", "65534", "nobody")


@pytest.mark.parametrize(
    "bad",
    [
        {"argv": "id"},
        {"argv": ["a\0b"]},
        {"argv": ["id"], "env": {"A": 1}},
        {"argv": ["id"], "user": "no-such-user"},
        {"argv": ["id"], "user": "#99999999999999999999"},  # past what a uid can hold
        {"argv": ["id"], "user": "#4294967295"},  # -1: "unchanged" to the kernel
    ],
)
def test_a_malformed_request_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(Refused):
        _command({"env": {}, "cwd": "/"} | bad)


def test_a_sandbox_with_its_own_root_is_given_its_sources_staged(tmp_path: Path) -> None:
    spec = {
        "root": {"path": "/data/m/gvisor/rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/home/m", "type": "bind", "source": "/data/m/home"},
        ],
        "linux": id_mappings(200001, 200000),
    }
    (tmp_path / "config.json").write_text(json.dumps(spec))
    given, words = staged_bundle(tmp_path)
    staged = json.loads((given / "config.json").read_text())
    # Neither source is a directory here: each mount point is made as a file's.
    assert words == [STAGE, str(given / FSTAB), "root", "1", "--"]
    assert (given / FSTAB).read_text().splitlines() == [
        f"/data/m/gvisor/rootfs {STAGE}/root none rbind 0 0",
        f"/data/m/home {STAGE}/1 none rbind 0 0",
    ]
    assert staged["root"]["path"] == f"{STAGE}/root"
    assert staged["mounts"][1] == {"destination": "/home/m", "type": "bind", "source": f"{STAGE}/1"}
    # The spec on disk keeps the real paths; one without a user namespace is given as is.
    assert json.loads((tmp_path / "config.json").read_text()) == spec
    del spec["linux"]
    (tmp_path / "config.json").write_text(json.dumps(spec))
    assert staged_bundle(tmp_path) == (tmp_path, [])


def test_a_fork_keeps_its_sources_root_uid_and_gets_a_sudo_of_its_own(tmp_path: Path) -> None:
    source, fork = tmp_path / "m-a", tmp_path / "m-b"
    for d in (source / "home", fork):
        d.mkdir(parents=True)
    spec = {
        "root": {"path": str(source / "gvisor" / "rootfs")},
        "process": {"env": ["FLEET_MACHINE_ID=m-a"]},
        "mounts": [
            {"destination": "/run/fleet-bin", "type": "bind", "source": str(source / "gvisor-bin")}
        ],
        "linux": id_mappings(os.getuid() + 1, os.getuid()),
    }
    got = fork_spec(spec, source, fork, "m-b")
    assert got["mounts"][0]["source"] == str(fork / "gvisor-bin")
    assert (fork / "gvisor-bin" / "sudo").stat().st_mode & 0o111
    rootfs = Path(got["root"]["path"])
    assert rootfs.is_relative_to(fork)
    assert rootfs.stat().st_uid == os.getuid() + 1


def _framed(request: dict[str, object]) -> bytes:
    data = json.dumps(request).encode()
    return struct.pack("!I", len(data)) + data


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x01",  # shorter than its length
        struct.pack("!I", 2000) + b"[" * 2000,  # nested past the parser's recursion
        struct.pack("!I", 3) + b"[1]",  # not an object
        _framed({"argv": ["true"], "env": {}, "cwd": "/", "group": "#" + "9" * 30}),
    ],
)
def test_a_malformed_session_is_answered_with_one_line_and_no_traceback(
    wire: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    """Whatever a caller sends, the broker answers one short refusal: nothing reaches the
    supervisor's stderr (the machine's log on the host's disk) and the descriptors are closed."""
    ours, theirs = socket.socketpair()
    with ours, open(os.devnull) as null:
        before = len(os.listdir("/proc/self/fd"))
        socket.send_fds(ours, [wire], [null.fileno()] * 3)
        _run_session(theirs)
        answer = ours.recv(4096).decode()
    assert answer.startswith("refused sudo: "), answer
    assert answer.count("\n") == 1
    assert capfd.readouterr().err == ""
    assert len(os.listdir("/proc/self/fd")) <= before
