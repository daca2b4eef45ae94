"""The ``swarm`` provider: many real daemons per OS process, for load testing.

A machine is a ``daemon.server.Daemon`` instance inside a swarm host (``python -m
daemon.swarm_host``, see there), with its own NATS connection, identity and home
``<data-dir>/swarm/machines/<id>/home``. Hosts live in ``<data-dir>/swarm/hosts/host-<n>/``
(``host.pid``, ``host.log``, the control socket) and take up to ``FLEET_SWARM_HOST_SIZE`` machines
each (default 250); the provider starts one when the others are full. Like local daemons, hosts
outlive the provisioner; ``stop_all_swarm`` is what ``fleet up`` calls on shutdown (after the stage
services, before NATS).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import structlog

from base.atomic import replace_file
from base.retry import Backoff, retry_until
from base.unix_socket import short_socket_path
from base.wait import wait_until
from contracts.errors import NotSupported, ProviderError
from providers.local import INHERITED_ENV, pid_alive, spawn_detached

log = structlog.get_logger(__name__)

DEFAULT_HOST_SIZE = 250
HOST_SIZE_VAR = "FLEET_SWARM_HOST_SIZE"
_HOST_START_TIMEOUT_S = 30.0


def host_size_from(environ: Mapping[str, str]) -> int:
    raw = environ.get(HOST_SIZE_VAR, "")
    if not raw:
        return DEFAULT_HOST_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"{HOST_SIZE_VAR}: expected a positive integer, got {raw!r}")
    return size


def swarm_root(data_dir: Path) -> Path:
    return data_dir.resolve() / "swarm"


def socket_path(host_dir: Path) -> Path:
    try:
        return short_socket_path(host_dir, "control.sock", "fleet-swarm")
    except PermissionError as exc:
        raise ProviderError(str(exc)) from None


def running_host_pid(host_dir: Path) -> int | None:
    """The pid of the swarm host of ``host_dir`` if it is alive and really is that host."""
    try:
        pid = int((host_dir / "host.pid").read_text())
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError):
        return None
    if f"FLEET_SWARM_HOST={host_dir}".encode() not in environ.split(b"\0"):
        return None  # a reused pid
    return pid if pid_alive(pid) else None


class HostGone(Exception):
    pass


async def request(sock: Path, host: str, payload: dict[str, Any], timeout_s: float = 60.0) -> Any:
    """One request to a host's control socket; ``HostGone`` if nothing listens there."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(sock), limit=16 * 1024 * 1024)
            try:
                writer.write(msgspec.json.encode(payload) + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except (FileNotFoundError, ConnectionError) as exc:
        raise HostGone(f"swarm host {host} is not running ({exc})") from None
    except TimeoutError:
        raise ProviderError(f"swarm host {host} did not answer in {timeout_s:g}s") from None
    if not line:
        raise HostGone(f"swarm host {host} closed the connection")
    reply = msgspec.json.decode(line)
    if not reply.get("ok"):
        raise ProviderError(f"swarm host {host}: {reply.get('error')}")
    return reply


class SwarmProvider:
    name = "swarm"

    async def install_code(self, machine_id: str, target_ref: str) -> str:
        raise NotSupported(
            "swarm machines share one load-test process per host, so one machine's code "
            "cannot be refreshed on its own; rebuild the machine instead"
        )

    async def netns_pid(self, machine_id: str) -> int | None:
        raise NotSupported(
            "swarm machines share one load-test process per host and the host's network: "
            "an egress policy cannot be enforced on one of them"
        )

    async def restart(self, machine_id: str) -> bool:
        raise NotSupported(
            "swarm machines share one load-test process per host, so one machine's daemon "
            "cannot be restarted on its own; rebuild the machine instead"
        )

    def __init__(
        self,
        *,
        data_dir: Path,
        nats_url: str,
        environ: Mapping[str, str],
        host_size: int | None = None,
    ) -> None:
        self.root = swarm_root(data_dir)
        self._nats_url = nats_url
        self._environ = environ
        self.host_size = host_size or host_size_from(environ)
        self._lock = asyncio.Lock()
        # All in memory, so picking a host is O(1): a host that died is noticed when a
        # request to it fails (HostGone), not by looking at /proc on every start.
        self._hosts: dict[str, Path] = {}  # live host name -> its control socket
        self._where: dict[str, str] = {}  # machine id -> host name
        self._load: Counter[str] = Counter()  # host name -> machines on it
        self._discovered = False
        self._children: list[int] = []

    def host_dir(self, name: str) -> Path:
        return self.root / "hosts" / name

    def home(self, machine_id: str) -> Path:
        return self.root / "machines" / machine_id / "home"

    async def start(self, machine_id: str, token: str) -> str:
        payload = {
            "op": "start",
            "machineId": machine_id,
            "token": token,
            "home": str(self.home(machine_id)),
        }
        for _ in range(2):  # a host that died under us is replaced once
            async with self._lock:
                await self._discover()
                host = self._where.get(machine_id)
                if host is None or host not in self._hosts:
                    host = await self._pick_host()
                    self._assign(machine_id, host)
                sock = self._hosts[host]
            try:
                reply = await request(sock, host, payload)
            except HostGone as exc:
                log.warning("provider.swarm_host_gone", host=host, error=str(exc))
                self._forget(host)
                continue
            log.debug("provider.swarm_started", machine_id=machine_id, host=host)
            return str(reply["externalId"])
        raise ProviderError(f"no swarm host could start machine {machine_id}")

    async def stop(self, machine_id: str) -> bool:
        """A swarm machine is a load-test daemon with nothing of its own worth keeping: its
        home directory stays, its daemon ends."""
        running = machine_id in self._where
        await self.remove(machine_id)
        return running

    async def remove(self, machine_id: str) -> None:
        async with self._lock:
            await self._discover()
            host = self._unassign(machine_id)
            sock = self._hosts.get(host) if host else None
        if host is None or sock is None:
            return  # no live host runs it
        try:
            await request(sock, host, {"op": "stop", "machineId": machine_id})
        except HostGone:
            self._forget(host)
        log.info("provider.swarm_stopped", machine_id=machine_id, host=host)

    # --- hosts ------------------------------------------------------------------------------
    def live_hosts(self) -> list[str]:
        """Hosts running under this data dir, whoever started them (reads /proc)."""
        hosts = self.root / "hosts"
        if not hosts.is_dir():
            return []
        return sorted(
            (d.name for d in hosts.iterdir() if running_host_pid(d) is not None), key=_index
        )

    async def _discover(self) -> None:
        """Once: learn which machines the hosts left by an earlier provisioner are running."""
        if self._discovered:
            return
        for host in self.live_hosts():
            sock = socket_path(self.host_dir(host))
            with contextlib.suppress(HostGone):
                reply = await request(sock, host, {"op": "list"})
                self._hosts[host] = sock
                for mid in reply["machines"]:
                    self._assign(mid, host)
        self._discovered = True

    def _assign(self, machine_id: str, host: str) -> None:
        self._unassign(machine_id)
        self._where[machine_id] = host
        self._load[host] += 1

    def _unassign(self, machine_id: str) -> str | None:
        host = self._where.pop(machine_id, None)
        if host is not None:
            self._load[host] -= 1
        return host

    def _forget(self, host: str) -> None:
        """A host is gone: so are its machines (their next start picks another host)."""
        self._hosts.pop(host, None)
        for mid in [m for m, h in self._where.items() if h == host]:
            self._unassign(mid)
        self._load.pop(host, None)

    async def _pick_host(self) -> str:
        """A live host with room, else a new one (called with the lock held)."""
        for host in sorted(self._hosts, key=_index):
            if self._load[host] < self.host_size:
                return host
        self._reap()
        name, pid = await asyncio.to_thread(self._launch)
        self._hosts[name] = await self._listening(name, pid)
        return name

    def _launch(self) -> tuple[str, int]:
        """Start a host under the first free name; its name and pid. Another provisioner of
        this data dir (a replica on the same host) may be choosing at the same moment: the
        choice and the pid file are made under one lock of the data dir's, or both would
        start ``host-<n>`` and one host would run on, named by no pid file, stopped by no one."""
        hosts = self.root / "hosts"
        hosts.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = os.open(hosts / ".spawn.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            n = 0
            while f"host-{n}" in self._hosts or running_host_pid(self.host_dir(f"host-{n}")):
                n += 1
            name = f"host-{n}"
            return name, self._spawn(name)
        finally:
            os.close(lock)  # and with it the lock

    def _spawn(self, name: str) -> int:
        host_dir = self.host_dir(name)
        host_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sock = socket_path(host_dir)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        env = {k: v for k, v in self._environ.items() if k in INHERITED_ENV}
        env |= {
            "FLEET_NATS_URL": self._nats_url,
            "FLEET_SWARM_HOST": str(host_dir),
            "FLEET_SWARM_NAME": name,
            "FLEET_SWARM_SOCKET": str(sock),
        }
        pid = _spawn_host(host_argv(self._nats_url), env, host_dir / "host.log")
        self._children.append(pid)
        replace_file(host_dir / "host.pid", str(pid))
        return pid

    async def _listening(self, name: str, pid: int) -> Path:
        """The control socket of host ``name`` (``pid``) once it answers."""
        host_dir = self.host_dir(name)
        sock, log_path = socket_path(host_dir), host_dir / "host.log"

        async def answers() -> bool:
            if not pid_alive(pid):
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ProviderError(f"swarm host {name} exited at start:\n{tail}")
            with contextlib.suppress(HostGone):
                await request(sock, name, {"op": "list"}, timeout_s=5)
                return True
            return False

        if not await retry_until(answers, backoff=Backoff(0.02, 0.02, jitter=False),
                                 budget_s=_HOST_START_TIMEOUT_S):  # fmt: skip
            raise ProviderError(
                f"swarm host {name} did not listen within {_HOST_START_TIMEOUT_S:g}s"
            )
        log.info("provider.swarm_host_started", host=name, pid=pid)
        return sock

    def _reap(self) -> None:
        """Collect exit statuses of hosts this process started (no zombies)."""
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._children.remove(pid)


#: ``python -m daemon.swarm_host``, minus aiohttp: nats-py imports it for its WebSocket transport
#: when it can, which costs a host ~150 ms of start-up and ~10 MB, and a host never needs it
#: unless NATS is reached over ws://.
_HOST_MAIN = "import sys; sys.modules['aiohttp'] = None; from daemon.swarm_host import main; main()"


def host_argv(nats_url: str) -> list[str]:
    if "ws://" in nats_url or "wss://" in nats_url:
        return [sys.executable, "-I", "-m", "daemon.swarm_host"]
    return [sys.executable, "-I", "-c", _HOST_MAIN]


def _spawn_host(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    # Like a local daemon, the host outlives this provisioner.
    return spawn_detached(argv, env, log_path, "a swarm host")


def _index(name: str) -> int:
    _, _, n = name.rpartition("-")
    return int(n) if n.isdigit() else 1 << 30


def stop_all_swarm(data_dir: Path, grace_s: float = 20.0) -> int:
    """Stop every swarm host under ``data_dir`` (each stops its daemons cleanly first; SIGKILL
    after ``grace_s``). Returns how many hosts were running. Synchronous, like
    ``stop_all_local``: `fleet up` calls it on shutdown."""
    hosts = swarm_root(data_dir) / "hosts"
    if not hosts.is_dir():
        return 0
    pids = [p for d in hosts.iterdir() if (p := running_host_pid(d)) is not None]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    wait_until(lambda: not any(pid_alive(p) for p in pids), within_s=grace_s, every_s=0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # our own child (an in-process provisioner): no zombie
    if pids:
        log.info("provider.swarm_hosts_stopped", hosts=len(pids))
    return len(pids)
