"""The pure parts of a fork with memory: the fork's OCI spec (its own directories at its
source's paths), the image's count of forks still to restore, the source's renewed credential
(the same signing key), the supervisor's second reading of its identity and its telling it to
the daemon at a resume. On real runsc sandboxes: tests/integration/test_gvisor_fork_memory.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from base.tokenfd import TOKEN_FD
from contracts.daemon.signing import signing_key
from controlplane.security.crypto import mint_machine_token, renew_connect_secret
from daemon.compose import compose
from daemon.server import Daemon
from daemon.settings import DaemonSettings
from daemon.supervision import nodump
from providers.gvisor.fork import LEFT_FILE, fork_spec, one_fork_less


def test_a_forks_spec_mounts_its_own_directories_where_its_source_had_its_own(
    tmp_path: Path,
) -> None:
    source, fork = tmp_path / "machines" / "m-a", tmp_path / "machines" / "m-b"
    for d in (source / "home", fork / "home", fork / "code", fork / "gvisor-token"):
        d.mkdir(parents=True)
    spec = {
        "root": {"path": str(source / "gvisor" / "rootfs")},
        "process": {"env": ["HOME=/x", "FLEET_MACHINE_ID=m-a"]},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/usr", "type": "bind", "source": "/usr"},
            {"destination": str(source / "home"), "type": "bind",
             "source": str(source / "home")},
            {"destination": "/code", "type": "bind", "source": str(source / "code")},
            {"destination": "/run/fleet-token", "type": "bind",
             "source": str(source / "gvisor-token")},
        ],
    }  # fmt: skip
    got = fork_spec(spec, source, fork, "m-b")
    assert [(m["destination"], m["source"]) for m in got["mounts"]] == [
        ("/proc", "proc"),
        ("/usr", "/usr"),
        (str(source / "home"), str(fork / "home")),  # seen where its processes had it
        ("/code", str(fork / "code")),
        ("/run/fleet-token", str(fork / "gvisor-token")),
    ]
    assert got["root"]["path"] == str(fork / "gvisor" / "rootfs")
    assert (fork / "gvisor" / "rootfs" / str(source / "home").lstrip("/")).is_dir()
    assert got["process"]["env"] == ["HOME=/x", "FLEET_MACHINE_ID=m-b"]


def test_the_last_fork_restored_is_told_so_once(tmp_path: Path) -> None:
    (tmp_path / LEFT_FILE).write_text("3")
    assert [one_fork_less(tmp_path) for _ in range(3)] == [False, False, True]


def test_a_renewed_credential_is_another_password_with_the_same_signing_key() -> None:
    token = mint_machine_token()
    once = renew_connect_secret(token)
    twice = renew_connect_secret(once)
    assert len({token, once, twice}) == 3
    assert once.startswith(token + ".")
    assert twice.startswith(token + ".")  # the token is kept, never nested
    assert signing_key(token) == signing_key(once) == signing_key(twice)


def test_the_supervisor_reads_its_token_and_machine_id_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("fork-token\n")
    (tmp_path / "machine-id").write_text("m-0123456789abcdef")
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # the supervisor that reads it is root
    held = nodump.HeldIdentity(token="source-token", token_file=str(tmp_path / "token"))
    assert held.reread_identity() == "m-0123456789abcdef"
    assert held.token == "fork-token"
    (tmp_path / "machine-id").write_text("../../etc")  # never taken for an id
    assert held.reread_identity() is None
    unread = nodump.HeldIdentity(token="fork-token")  # a supervisor that is not root's
    (tmp_path / "token").write_text("other")
    assert unread.reread_identity() is None
    assert unread.token == "fork-token"


def _told(read: int) -> tuple[str, str] | None:
    os.set_blocking(read, False)
    return nodump.read_new_identity(read)


def test_a_resume_tells_the_daemon_its_new_identity_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("fork-token")
    (tmp_path / "machine-id").write_text("m-0123456789abcdef")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    held = nodump.HeldIdentity(token="source-token", token_file=str(tmp_path / "token"))
    monkeypatch.setenv("FLEET_MACHINE_ID", "m-aaaaaaaaaaaaaaaa")
    read, write = nodump.identity_pipe()
    try:
        assert read not in (TOKEN_FD, nodump.IDENTITY_FD)
        assert held.tell_new_identity(write)
        assert _told(read) == ("m-0123456789abcdef", "fork-token")
        assert os.environ["FLEET_MACHINE_ID"] == "m-0123456789abcdef"  # a next daemon's too
        assert not held.tell_new_identity(write)  # nothing new: a plain resume
        assert _told(read) is None
        # The source's renewed credential: the same machine id, another password.
        (tmp_path / "token").write_text("fork-token.renewed")
        assert held.tell_new_identity(write)
        assert _told(read) == ("m-0123456789abcdef", "fork-token.renewed")
    finally:
        os.close(read)
        os.close(write)


def test_a_supervisor_that_is_not_roots_tells_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("fork-token")
    (tmp_path / "machine-id").write_text("m-0123456789abcdef")
    held = nodump.HeldIdentity(token="source-token")  # no token file it reads again
    read, write = nodump.identity_pipe()
    try:
        assert not held.tell_new_identity(write)
        assert not held.tell_new_identity(None)
        assert _told(read) is None
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize(
    "told",
    [
        b"../../etc fork-token\n",
        b"m-0123456789abcdef\n",
        b"m-0123456789abcdef tok\x1ben\n",
        b"M-0123456789ABCDEF token\n",
        b"",
    ],
)
def test_the_daemon_takes_no_identity_that_is_not_well_formed(told: bytes) -> None:
    read, write = os.pipe()
    try:
        os.write(write, told)
        assert _told(read) is None
    finally:
        os.close(read)
        os.close(write)


def test_the_daemon_takes_the_last_identity_told() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"m-0123456789abcdef one\nm-fedcba9876543210 two\n")
        assert _told(read) == ("m-fedcba9876543210", "two")
        assert _told(read) is None  # read once
        assert nodump.read_new_identity(None) is None
    finally:
        os.close(read)
        os.close(write)


def _daemon(tmp_path: Path, held: nodump.HeldIdentity) -> Daemon:
    settings = DaemonSettings(nats_url="nats://127.0.0.1:1", machine_id="m-0123456789abcdef",
                              machine_token="tok.secret-1", home=str(tmp_path))  # fmt: skip
    return compose(settings, held=held, lifecycle=False)


def test_a_daemon_told_its_renewed_credential_keeps_serving_with_it(tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        os.set_blocking(read, False)
        held = nodump.HeldIdentity(identity_fd=read)
        daemon = _daemon(tmp_path, held)
        key = daemon._key
        os.write(write, b"m-0123456789abcdef tok.secret-2\n")
        assert not daemon._take_identity()  # the same machine: its reconnect's password only
        assert daemon.settings.machine_token == "tok.secret-2"
        assert daemon._key == key
        assert held.token == "tok.secret-2"
        assert not daemon.stopped.is_set()
        assert not daemon._take_identity()  # nothing more told
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize(
    "told",
    [b"m-fedcba9876543210 fork-token\n", b"m-0123456789abcdef other-token.secret\n"],
)
def test_a_daemon_told_another_identity_stops_serving_for_it(tmp_path: Path, told: bytes) -> None:
    read, write = os.pipe()
    try:
        os.set_blocking(read, False)
        daemon = _daemon(tmp_path, nodump.HeldIdentity(identity_fd=read))
        os.write(write, told)
        assert daemon._take_identity()
        assert daemon.stopped.is_set()
        assert daemon.exit_mode == "identity"
        machine_id, token = told.decode().split()
        assert daemon.next_identity == (machine_id, token)
        assert daemon.settings.machine_token == "tok.secret-1"  # the next daemon's, not this
    finally:
        os.close(read)
        os.close(write)
