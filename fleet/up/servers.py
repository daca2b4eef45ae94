"""`fleet up` restarts an embedded server that dies (a NATS node, valkey, a sentinel) the way it
restarts a service: with backoff, on the same port and data dir, so that clients reconnect to
the address they know and the server finds its own state again.

A NATS node comes back with its JetStream store and catches up with the cluster (its peers
send it what it missed); the single NATS server keeps its stream on disk. A valkey node comes
back with its append-only file; a node of an `--ha` layout comes back as a replica of the
primary the sentinels name, once they name one other than itself (a dead primary waits for
their failover: fleet.up.embedded_ha.ValkeyNode says why). A sentinel
keeps what it learnt in its own configuration file.

A server's ports are the kernel's choice (fleet.up.embedded), so from the ephemeral range: while it
is down, its ports are held (`PortHold`), lest an outgoing connection take one first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from base.backoff import backoff_s
from base.lifeline import Children
from fleet.up.embedded import PortHold, _Server

#: A server up this long has its restart backoff reset.
_HEALTHY_AFTER_S = 30.0
_MAX_BACKOFF_S = 30.0


class ServerWatch:
    """One embedded server, restarted when its process has exited."""

    def __init__(self, server: _Server, label: str) -> None:
        self.server = server
        self.label = label
        self.restarts = 0
        self.started_at = 0.0
        self.next_start = 0.0
        self.died_at = 0.0
        self._down = False
        #: Taken once it first died (none can be while it listens) and kept: the restarted
        #: server binds through it (SO_REUSEADDR), and it holds the ports at each death after.
        self.holds: list[PortHold] = []

    def check(self, now: float) -> str | None:
        """Notice a dead server, or restart it once its backoff is over: a line to print."""
        proc = self.server.proc
        if self._down:
            if now < self.next_start or not self.server.may_start_again(now - self.died_at):
                return None
            self.server.spawn()  # not waited for: a cluster node is ready only with its peers
            self._down = False
            self.started_at = now
            return f"restarted {self.label} on port {self.server.port} (restart #{self.restarts})"
        if proc is None or proc.poll() is None:
            return None
        self.server.proc = None
        self._down = True
        self.died_at = now
        if not self.holds:
            for port in filter(None, self.server.ports()):
                with contextlib.suppress(OSError):  # taken already: its restart will say so
                    self.holds.append(PortHold(port))
        if self.started_at and now - self.started_at > _HEALTHY_AFTER_S:
            self.restarts = 0
        self.restarts += 1
        delay = backoff_s(self.restarts, base=0.5, cap=_MAX_BACKOFF_S, jitter=False)
        self.next_start = now + delay
        return (
            f"{self.label} exited with {proc.returncode}; restarting in {delay:g}s "
            f"(log: {self.server.log_path})"
        )


class ServerSupervisor:
    """Every embedded server of one `fleet up`, checked from its supervision loop; with
    ``children``, each is started as one of them (it ends with `fleet up`, however that ends)."""

    def __init__(self, children: Children | None = None) -> None:
        self.watches: list[ServerWatch] = []
        self.children = children

    def watch(self, server: _Server, label: str) -> None:
        """Before the server starts: its first start is a child too."""
        if self.children is not None:
            server.bind(self.children, label)
        self.watches.append(ServerWatch(server, label))

    def watch_all(self, servers: Iterable[tuple[_Server, str]]) -> None:
        for server, label in servers:
            self.watch(server, label)

    def check(self, now: float) -> list[str]:
        return [line for w in self.watches if (line := w.check(now))]

    def __enter__(self) -> ServerSupervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the ports held for servers that died (once every server has stopped)."""
        for w in self.watches:
            for hold in w.holds:
                hold.close()
            w.holds.clear()
