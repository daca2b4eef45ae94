"""The docker pool's supervisor side (``daemon/pool.py``'s ``StdinChannel``): the identity
comes on the supervisor's stdin (a pipe here, the container's in docker), and nothing but an
identity is accepted; afterwards fd 0 is ``/dev/null`` (no process of the machine inherits the
pipe); a daemon that dies while pooled, or a pipe closed without an identity, ends the wait.
A thread stands in for the daemon, on the real socketpair."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator

import pytest

from core.poolwire import (
    POOL_FD_VAR,
    POOL_SLOT_VAR,
    POOL_STDIN_VAR,
    UP,
    PoolClosed,
    identity_line,
    read_line,
)
from daemon.pool import StdinChannel, pool_channel, relay_claim


class FakeDaemon:
    """Says ``up`` on the pool fd it is given, then reads its identity (or just ends)."""

    def __init__(self, *, dies: bool = False) -> None:
        self.dies = dies
        self.got: bytes | None = None
        self.thread: threading.Thread | None = None
        self.stdin_was_devnull = False

    def spawn(self) -> None:
        self.stdin_was_devnull = fd0_is_devnull()  # what a spawned daemon would inherit
        sock = socket.socket(fileno=os.dup(int(os.environ[POOL_FD_VAR])))

        def run() -> None:
            with sock:
                sock.sendall(UP)
                if not self.dies:
                    with contextlib.suppress(PoolClosed):  # the relay refused: nothing came
                        self.got = read_line(sock)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(5)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {POOL_STDIN_VAR: "1", POOL_SLOT_VAR: "p1"}
    monkeypatch.setattr(os, "environ", env)
    return env


@pytest.fixture
def stdin() -> Iterator[int]:
    """A pipe on fd 0 (the container's stdin, as the provider's attach feeds it); the write end."""
    saved = os.dup(0)
    r, w = os.pipe()
    os.dup2(r, 0)
    os.close(r)
    try:
        yield w
    finally:
        with contextlib.suppress(OSError):
            os.close(w)
        os.dup2(saved, 0)
        os.close(saved)


def fd0_is_devnull() -> bool:
    return os.fstat(0).st_rdev == os.stat(os.devnull).st_rdev and stat.S_ISCHR(os.fstat(0).st_mode)


def test_the_identity_comes_on_stdin_and_stdin_is_gone(environ: dict[str, str], stdin: int) -> None:
    channel = pool_channel(os.environ)
    assert isinstance(channel, StdinChannel)
    assert POOL_STDIN_VAR not in environ  # the daemon and what it runs never see it
    daemon = FakeDaemon()
    os.write(stdin, identity_line("m-1", "tok-1"))
    assert relay_claim(channel, daemon.spawn)
    daemon.join()
    got = json.loads(daemon.got or b"{}")
    assert got == {"FLEET_MACHINE_ID": "m-1", "FLEET_MACHINE_TOKEN": "tok-1"}
    assert (environ["FLEET_MACHINE_ID"], environ["FLEET_MACHINE_TOKEN"]) == ("m-1", "tok-1")
    assert POOL_SLOT_VAR not in environ
    assert daemon.stdin_was_devnull  # the daemon (and what it runs) never gets the pipe
    assert fd0_is_devnull()


def test_anything_but_an_identity_is_refused(environ: dict[str, str], stdin: int) -> None:
    """A line that tries to set more than the machine id and token (say, NATS's address) ends
    the pooled machine instead of reaching the daemon."""
    channel = pool_channel(os.environ)
    assert channel is not None
    daemon = FakeDaemon()
    hostile = {"FLEET_MACHINE_ID": "m", "FLEET_MACHINE_TOKEN": "t", "FLEET_NATS_URL": "nats://x"}
    os.write(stdin, json.dumps(hostile).encode() + b"\n")
    assert not relay_claim(channel, daemon.spawn)
    daemon.join()
    assert daemon.got is None  # the daemon never got it
    assert "FLEET_NATS_URL" not in environ
    assert "FLEET_MACHINE_TOKEN" not in environ


def test_stdin_closed_without_an_identity_ends_the_wait(
    environ: dict[str, str], stdin: int
) -> None:
    channel = pool_channel(os.environ)
    assert channel is not None
    daemon = FakeDaemon()
    os.write(stdin, b'{"FLEET_MACHINE_ID": "half')
    os.close(stdin)  # the attach went away mid-line
    assert not relay_claim(channel, daemon.spawn)
    daemon.join()
    assert daemon.got is None


def test_a_pooled_daemon_that_dies_ends_the_wait(environ: dict[str, str], stdin: int) -> None:
    channel = pool_channel(os.environ)
    assert channel is not None
    assert not relay_claim(channel, FakeDaemon(dies=True).spawn)  # no identity ever came
