"""The docker pool's supervisor side (``daemon/supervision/pool.py``'s ``StdinChannel``): the
identity
comes on the supervisor's stdin (a pipe here, the container's in docker), and nothing but an
identity is accepted; afterwards fd 0 is ``/dev/null`` (no process of the machine inherits the
pipe); a daemon that dies while pooled, or a pipe closed without an identity (the lifeline: the
provisioner's attach went away), ends the wait, and the supervisor says ``pool_orphaned``. A
thread stands in for the daemon, on the real socketpair; the last test runs the real
supervisor as a process, its stdin a pipe the test closes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from base import procinfo
from base.poolwire import (
    POOL_FD_VAR,
    POOL_ORPHANED_LOG,
    POOL_SLOT_VAR,
    POOL_STDIN_VAR,
    POOL_UP_LOG,
    UP,
    PoolClosed,
    identity_line,
    parse_identity,
    read_line,
)
from daemon.supervision import nodump
from daemon.supervision.pool import StdinChannel, pool_channel, relay_claim


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
    daemon, held = FakeDaemon(), nodump.HeldIdentity()
    os.write(stdin, identity_line("m-1", "tok-1"))
    assert relay_claim(channel, daemon.spawn, held)
    daemon.join()
    got = json.loads(daemon.got or b"{}")
    assert got == {"FLEET_MACHINE_ID": "m-1", "FLEET_MACHINE_TOKEN": "tok-1"}
    assert environ["FLEET_MACHINE_ID"] == "m-1"
    # The token is kept in memory for the daemons started later, never in an environment.
    assert "FLEET_MACHINE_TOKEN" not in environ
    assert held.token == "tok-1"
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
    assert not relay_claim(channel, daemon.spawn, nodump.HeldIdentity())
    daemon.join()
    assert daemon.got is None  # the daemon never got it
    assert "FLEET_NATS_URL" not in environ
    assert "FLEET_MACHINE_TOKEN" not in environ


def test_an_identity_may_name_the_machines_home_and_only_an_absolute_one(
    environ: dict[str, str], stdin: int
) -> None:
    """An adopted machine's claim (a stopped machine's start) names the home mounted at its
    own path: the supervisor's daemons get it as their home. A relative one is refused."""
    assert parse_identity(identity_line("m", "t", "/data/machines/m/home")) == {
        "FLEET_MACHINE_ID": "m", "FLEET_MACHINE_TOKEN": "t", "FLEET_HOME": "/data/machines/m/home",
    }  # fmt: skip
    with pytest.raises(PoolClosed):
        parse_identity(identity_line("m", "t", "machines/m/home"))
    channel = pool_channel(os.environ)
    assert channel is not None
    daemon = FakeDaemon()
    os.write(stdin, identity_line("m-1", "tok-1", "/data/machines/m-1/home"))
    assert relay_claim(channel, daemon.spawn, nodump.HeldIdentity())
    daemon.join()
    assert (environ["FLEET_HOME"], environ["HOME"]) == ("/data/machines/m-1/home",) * 2


def test_stdin_closed_without_an_identity_ends_the_wait(
    environ: dict[str, str], stdin: int, capfd: pytest.CaptureFixture[str]
) -> None:
    channel = pool_channel(os.environ)
    assert channel is not None
    daemon = FakeDaemon()
    os.write(stdin, b'{"FLEET_MACHINE_ID": "half')
    os.close(stdin)  # the attach went away mid-line
    assert not relay_claim(channel, daemon.spawn, nodump.HeldIdentity())
    daemon.join()
    assert daemon.got is None
    assert POOL_ORPHANED_LOG in capfd.readouterr().err


def test_stdin_closed_before_anything_is_the_owner_gone(
    environ: dict[str, str], stdin: int, capfd: pytest.CaptureFixture[str]
) -> None:
    """The lifeline: the provisioner's attach closes (it died) before any claim."""
    channel = pool_channel(os.environ)
    assert channel is not None
    daemon = FakeDaemon()
    os.close(stdin)
    assert not relay_claim(channel, daemon.spawn, nodump.HeldIdentity())
    daemon.join()
    assert daemon.got is None
    assert "FLEET_MACHINE_TOKEN" not in environ
    err = capfd.readouterr().err
    assert err.index(POOL_UP_LOG) < err.index(POOL_ORPHANED_LOG)


def test_a_refused_line_is_not_called_orphaned(
    environ: dict[str, str], stdin: int, capfd: pytest.CaptureFixture[str]
) -> None:
    channel = pool_channel(os.environ)
    assert channel is not None
    os.write(stdin, b"[1, 2]\n")
    assert not relay_claim(channel, FakeDaemon().spawn, nodump.HeldIdentity())
    err = capfd.readouterr().err
    assert "supervisor: pool_refused" in err
    assert POOL_ORPHANED_LOG not in err


def test_a_pooled_daemon_that_dies_ends_the_wait(environ: dict[str, str], stdin: int) -> None:
    channel = pool_channel(os.environ)
    assert channel is not None
    assert not relay_claim(
        channel, FakeDaemon(dies=True).spawn, nodump.HeldIdentity()
    )  # no identity ever came


#: A pooled daemon as the supervisor sees one: says ``up`` on its pool fd, then waits (for an
#: identity that never comes).
WAITING_DAEMON = """
import os, socket, sys
s = socket.socket(fileno=int(os.environ["FLEET_POOL_FD"]))
print(f"waiting-daemon pid={os.getpid()}", file=sys.stderr, flush=True)
s.sendall(b"up\\n")
s.recv(1)
"""


def stderr_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """The process's stderr up to and including the line with ``marker``."""
    assert proc.stderr is not None
    seen, deadline = "", time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {seen!r}"
        if select.select([proc.stderr], [], [], left)[0]:
            line = proc.stderr.readline().decode()
            assert line, f"stderr ended before {marker!r}: {seen!r}"
            seen += line
    return seen


def test_the_supervisor_ends_the_machine_when_its_owner_goes() -> None:
    """The real supervisor, pooled on its stdin: closing that pipe before an identity (what
    the engine does when the provisioner holding the attach dies) ends it and its daemon."""
    env = {**os.environ, POOL_STDIN_VAR: "1", POOL_SLOT_VAR: "p1"}
    argv = [sys.executable, "-m", "daemon.supervise", sys.executable, "-c", WAITING_DAEMON]
    # Unbuffered: a buffered reader could hold the next line where select() cannot see it.
    with subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    ) as proc:
        assert proc.stdin is not None
        said = stderr_until(proc, POOL_UP_LOG, timeout=20)
        daemon = int(said.split("waiting-daemon pid=")[1].split()[0])
        proc.stdin.close()  # the owner is gone
        assert proc.wait(timeout=10) == 0
        assert POOL_ORPHANED_LOG in stderr_until(proc, POOL_ORPHANED_LOG, timeout=1)
    deadline = time.monotonic() + 10
    while procinfo.state(daemon) not in (None, "Z"):  # SIGKILLed by the supervisor
        assert time.monotonic() < deadline, f"the pooled daemon {daemon} outlived its machine"
        time.sleep(0.02)
