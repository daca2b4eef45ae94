"""The embedded servers of `fleet up --ha`, on one host: a 3-node NATS cluster (routes on
loopback, JetStream on each node) and valkey with a primary, 2 replicas and 3 sentinels.

The same engines and the same layout as a deployment over several hosts (``deploy/``): only
the addresses are all 127.0.0.1. For trying failover and for the tests; one host is still one
host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from types import TracebackType

import redis

from base.wait import wait_until
from fleet.up.embedded import (
    NatsAuth,
    NatsServer,
    PortHold,
    ServerStartError,
    ValkeyServer,
    _Server,
    start_on_own_port,
    valkey_server_binary,
)

CLUSTER_NAME = "fleetd"
NATS_NODES = 3
VALKEY_REPLICAS = 2
SENTINELS = 3
#: The name sentinels know the primary by (``FLEET_REDIS_SENTINEL_MASTER``).
SENTINEL_MASTER = "fleetd"
#: Sentinels call the primary down after this much silence; a quorum of 2 agrees on a failover.
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 5000
#: How long a dead valkey node waits for the sentinels to name a primary other than itself
#: before it comes back as it was (the sentinels down, or without a quorum): their down-after
#: time and two elections (a sentinel tries again after twice the failover timeout).
FOLLOW_WAIT_S = (2 * DOWN_AFTER_MS + 2 * FAILOVER_TIMEOUT_MS) / 1000
READY_TIMEOUT_S = 30.0


def _until(check: Callable[[], bool], what: str) -> None:
    def checked() -> bool:
        with contextlib.suppress(redis.RedisError, OSError):
            return check()
        return False

    if not wait_until(checked, within_s=READY_TIMEOUT_S, every_s=0.1):
        raise ServerStartError(f"{what}: not within {READY_TIMEOUT_S:g}s")


class NatsNode(NatsServer):
    """One node of a NATS cluster: its own name, store and cluster port; routes to all."""

    def __init__(
        self, data_dir: Path, index: int, cluster_ports: list[int], *, auth: NatsAuth | None
    ) -> None:
        super().__init__(data_dir, auth=auth, monitor=True)
        self.index = index
        self.cluster_ports = cluster_ports
        self.server_name = f"fleetd-{index}"

    def cluster_config(self) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.cluster_ports)
        return (
            f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{self.cluster_ports[self.index]},"
            f" routes: [{routes}] }}\n"
        )


class ValkeyNode(ValkeyServer):
    """A valkey primary, or a replica of ``primary`` (authenticating with the password), started
    once the primary has bound its port.

    Restarted after it died, it follows the primary the sentinels name (``named_primary``), and
    waits until they name one other than itself. A primary that came back as a primary while
    the sentinels fail over would take writes from clients that reconnect to it, and lose them
    when the sentinels make it a replica of the new primary (a full resync)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        password: str,
        primary: ValkeyServer | None = None,
        named_primary: Callable[[], int | None] = lambda: None,
    ) -> None:
        super().__init__(data_dir, password=password)
        self.primary = primary
        self.named_primary = named_primary

    def may_start_again(self, down_s: float) -> bool:
        named = self.named_primary()
        return (named is not None and named != self.port) or down_s > FOLLOW_WAIT_S

    def _following(self) -> int | None:
        """The port of the primary it starts as a replica of; None: it starts as the primary."""
        named = self.named_primary()
        if named is not None:
            return None if named == self.port else named
        return self.primary.port if self.primary is not None else None

    def _config_file(self) -> list[str]:
        files = super()._config_file()
        following = self._following()
        # Every node may become the primary, or a replica of another after a failover.
        with open(self.config_path, "a") as f:
            f.write(f'masterauth "{self.password}"\n')
            # A replica that asks for a full sync gets it at once, not after valkey's default
            # 5 s wait for more replicas to share it: the layout's start, and a failed-over
            # primary coming back as a replica, each wait for that sync.
            f.write("repl-diskless-sync-delay 0\n")
            if following is not None:
                f.write(f"replicaof 127.0.0.1 {following}\n")
        return files


class Sentinel(_Server):
    """``valkey-server <conf> --sentinel``: the sentinel rewrites its own configuration file
    (what it learns of the replicas and of failovers), so the file is its, in its data dir."""

    name = "sentinel"
    #: Logged once it listens (a sentinel logs no "Ready to accept connections").
    ready_line = "Sentinel ID is"

    def __init__(self, data_dir: Path, *, primary: ValkeyServer, password: str) -> None:
        super().__init__(data_dir)
        self.primary = primary
        self.password = password
        self.config_path = data_dir / "sentinel.conf"
        self._configured = False

    def argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Restarted by `fleet up`, it keeps what it learnt (the file); started by another
        # `fleet up` on the same data dir, the ports of the file are no longer those used.
        if not self._configured:
            fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.config())
            self._configured = True
        # The port on the command line: a start on a port found taken is tried on another.
        return [valkey_server_binary(), str(self.config_path), "--sentinel",
                "--port", str(self.port)]  # fmt: skip

    def start(self) -> None:
        start_on_own_port(self)

    def config(self) -> str:
        m = SENTINEL_MASTER
        return (
            f"bind 127.0.0.1\ndir {self.data_dir.resolve()}\n"
            f'requirepass "{self.password}"\n'
            f"sentinel monitor {m} 127.0.0.1 {self.primary.port} 2\n"
            f'sentinel auth-pass {m} "{self.password}"\n'
            f"sentinel down-after-milliseconds {m} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {m} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {m} 1\n"
        )


class HaServers:
    """The whole HA layout; entered, every node runs and JetStream has a leader."""

    def __init__(self, data_dir: Path, *, auth: NatsAuth | None, redis_password: str) -> None:
        self.data_dir = data_dir
        self._stack = ExitStack()
        # Held (`PortHold`) while the layout runs: each node's routes name every node's cluster
        # port before any starts (a JetStream cluster refuses to start without routes), so
        # these cannot be ports the nodes report. Their client and monitoring ports are.
        cluster_ports = [self._stack.enter_context(PortHold()).port for _ in range(NATS_NODES)]
        self.nats = [
            NatsNode(data_dir / f"nats-{i}", i, cluster_ports, auth=auth) for i in range(NATS_NODES)
        ]
        node = partial(ValkeyNode, password=redis_password, named_primary=self.named_primary)
        self.primary = node(data_dir / "redis-0")
        self.replicas = [
            node(data_dir / f"redis-{i}", primary=self.primary)
            for i in range(1, VALKEY_REPLICAS + 1)
        ]
        self.sentinels = [
            Sentinel(data_dir / f"sentinel-{i}", primary=self.primary, password=redis_password)
            for i in range(SENTINELS)
        ]  # fmt: skip

    @property
    def nats_url(self) -> str:
        """Every node's URL: clients (services and daemons) fail over between them."""
        return ",".join(n.url for n in self.nats)

    @property
    def redis_url(self) -> str:
        """The primary's URL, for its password and database (clients find the primary through
        the sentinels, not through this address)."""
        return self.primary.url

    def labelled(self) -> list[tuple[_Server, str]]:
        """Every server with the name `fleet up` prints when it restarts one."""
        return [
            *((n, f"nats node {n.server_name}") for n in self.nats),
            *((v, f"valkey {v.data_dir.name}") for v in (self.primary, *self.replicas)),
            *((s, f"sentinel {s.data_dir.name}") for s in self.sentinels),
        ]

    @property
    def sentinel_addrs(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def __enter__(self) -> HaServers:
        try:
            for node in self.nats:
                self._stack.callback(node.stop)
                node.spawn()
            # valkey's replicas link while JetStream elects its leader: neither waits on the other.
            self._start(self.primary, *self.replicas)
            for node in self.nats:
                node.wait_ready()
            # Sentinels learn the replicas from the primary's INFO, then every 10 s: started
            # once the replicas are linked, they know them at once. Until every sentinel knows
            # both replicas and the other sentinels, a failover would find "no good replica".
            _until(self._replicas_linked, "valkey replicas linked to the primary")
            self._start(*self.sentinels)
            _until(self._sentinels_complete, "sentinels know every replica and each other")
        except (ServerStartError, OSError):
            self._stack.close()
            raise
        return self

    def _start(self, *servers: _Server) -> None:
        """One after the other: each binds a port of its own (the replicas and sentinels are
        configured with the primary's, once it has one)."""
        for server in servers:
            self._stack.callback(server.stop)
            server.start()

    def _replicas_linked(self) -> bool:
        for node in self.replicas:
            with redis.Redis(port=node.port, password=node.password, socket_timeout=2) as r:
                if r.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def named_primary(self) -> int | None:
        """The port of the primary the first sentinel that answers names; None before they
        started or while none answers."""
        for s in self.sentinels:
            if not s.port:
                return None
            with (
                contextlib.suppress(redis.RedisError, OSError),
                redis.Redis(port=s.port, password=s.password, socket_timeout=1) as r,
            ):
                reply = r.execute_command("SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER)
                if reply:
                    return int(reply[1])
        return None

    def _sentinels_complete(self) -> bool:
        for s in self.sentinels:
            with redis.Redis(port=s.port, password=s.password, socket_timeout=2) as r:
                replicas = r.execute_command("SENTINEL", "REPLICAS", SENTINEL_MASTER)
                peers = r.execute_command("SENTINEL", "SENTINELS", SENTINEL_MASTER)
                if len(replicas) < VALKEY_REPLICAS or len(peers) < SENTINELS - 1:
                    return False
        return True

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()  # sentinels, valkey, then the NATS nodes
