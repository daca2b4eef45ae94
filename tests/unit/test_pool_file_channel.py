"""The docker pool's supervisor side (``daemon/pool.py``'s ``FileChannel``): the identity comes
from a file, exactly once, and nothing but an identity is accepted; a daemon that dies while
pooled ends the wait at once. A thread stands in for the daemon, on the real socketpair."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from core.poolwire import (
    POOL_FD_VAR,
    POOL_FILE_VAR,
    POOL_SLOT_VAR,
    UP,
    PoolClosed,
    identity_line,
    read_line,
)
from daemon.pool import FileChannel, pool_channel, relay_claim


class FakeDaemon:
    """Says ``up`` on the pool fd it is given, then reads its identity (or just ends)."""

    def __init__(self, *, dies: bool = False) -> None:
        self.dies = dies
        self.got: bytes | None = None
        self.thread: threading.Thread | None = None

    def spawn(self) -> None:
        sock = socket.socket(fileno=os.dup(int(os.environ[POOL_FD_VAR])))

        def run() -> None:
            with sock:
                sock.sendall(UP)
                if not self.dies:
                    with contextlib.suppress(PoolClosed):  # the relay refused: nothing came
                        self.got = read_line(sock)

        self.thread = threading.Thread(target=run)
        self.thread.start()


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    env = {POOL_FILE_VAR: str(tmp_path / "pool" / "identity"), POOL_SLOT_VAR: "p1"}
    monkeypatch.setattr(os, "environ", env)
    return env


def claim_later(path: Path, line: bytes) -> None:
    """What the provider's ``docker exec`` does: the line beside the file, then renamed."""

    def write() -> None:
        while not (path.parent / "up").exists():
            threading.Event().wait(0.001)
        (path.parent / "identity.w").write_bytes(line)
        (path.parent / "identity.w").rename(path)

    threading.Thread(target=write).start()


def test_the_identity_comes_from_the_file_and_the_file_goes(environ: dict[str, str]) -> None:
    path = Path(environ[POOL_FILE_VAR])
    channel = pool_channel(os.environ)
    assert isinstance(channel, FileChannel)
    assert POOL_FILE_VAR not in environ  # the daemon and what it runs never see it
    daemon = FakeDaemon()
    claim_later(path, identity_line("m-1", "tok-1"))
    assert relay_claim(channel, daemon.spawn)
    assert daemon.thread is not None
    daemon.thread.join(5)
    assert json.loads(daemon.got or b"{}") == {
        "FLEET_MACHINE_ID": "m-1",
        "FLEET_MACHINE_TOKEN": "tok-1",
    }
    assert (environ["FLEET_MACHINE_ID"], environ["FLEET_MACHINE_TOKEN"]) == ("m-1", "tok-1")
    assert POOL_SLOT_VAR not in environ
    assert not path.parent.exists()  # read and deleted, the up marker with it


def test_anything_but_an_identity_is_refused(environ: dict[str, str]) -> None:
    """A line that tries to set more than the machine id and token (say, NATS's address) ends
    the pooled machine instead of reaching the daemon."""
    path = Path(environ[POOL_FILE_VAR])
    channel = pool_channel(os.environ)
    assert channel is not None
    daemon = FakeDaemon()
    hostile = json.dumps({"FLEET_MACHINE_ID": "m", "FLEET_MACHINE_TOKEN": "t",
                          "FLEET_NATS_URL": "nats://evil:4222"}).encode() + b"\n"  # fmt: skip
    claim_later(path, hostile)
    assert not relay_claim(channel, daemon.spawn)
    assert "FLEET_NATS_URL" not in environ
    assert "FLEET_MACHINE_TOKEN" not in environ
    assert daemon.thread is not None
    daemon.thread.join(5)
    assert daemon.got is None  # the daemon never got it


def test_a_pooled_daemon_that_dies_ends_the_wait(environ: dict[str, str]) -> None:
    path = Path(environ[POOL_FILE_VAR])
    channel = pool_channel(os.environ)
    assert channel is not None
    daemon = FakeDaemon(dies=True)
    assert not relay_claim(channel, daemon.spawn)  # returns: no identity ever came
    assert not path.parent.exists()
