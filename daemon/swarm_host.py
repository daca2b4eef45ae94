"""``python -m daemon.swarm_host``: many daemons in one OS process, for load testing.

A swarm host runs any number of real ``daemon.server.Daemon`` instances, each with its own NATS
connection, machine id, token and home, so the platform sees exactly what N separate
``fleet-daemon`` processes would show it, at a fraction of the memory and start-up cost. The
``swarm`` provider (``providers/swarm.py``) starts hosts and drives them over a Unix
socket, one JSON object per line each way:

    {"op": "start", "machineId": ID, "token": T, "home": DIR}  -> {"ok": true, "externalId": X}
    {"op": "stop", "machineId": ID}                           -> {"ok": true, "wasRunning": B}
    {"op": "list"}                                            -> {"ok": true, "pid": P,
                                                                  "machines": [ID, ...]}
    {"op": "shutdown"}                                        -> {"ok": true}, then it exits
    anything wrong                                            -> {"ok": false, "error": TEXT}

``start`` is idempotent (a running machine keeps its daemon and its external id). SIGTERM or
SIGINT stops every daemon (each reports ``stopping``, answers what it was asked, drains) and
exits. Unlike ``fleet-daemon``, an instance never installs signal handlers or changes the
working directory: those belong to the host.

Environment: ``FLEET_SWARM_SOCKET`` (required), ``FLEET_SWARM_NAME``, ``FLEET_NATS_URL``
(required), and the daemon's own settings (``FLEET_HEARTBEAT_S``, ``FLEET_EXEC_OUTPUT_CAP``,
``FLEET_ENV``, ``FLEET_LOG_LEVEL``; see ``daemon/settings.py``). The processes an instance
starts (commands, terminals) see the host's environment plus their machine's ``HOME``,
``FLEET_HOME``, ``FLEET_MACHINE_ID`` and ``FLEET_NATS_URL``, never a token, under the rule of
every machine (daemon/processes/env.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import structlog

from base.first import first_of
from base.logs import configure_logging
from contracts.ids import MACHINE_ID_RE
from daemon.compose import compose
from daemon.server import Daemon
from daemon.settings import DaemonSettings

log = structlog.get_logger(__name__)

#: How long one instance may take to answer its in-flight calls and drain when stopped.
STOP_GRACE_S = 15.0
#: Host variables an instance's commands must not see (they describe the host, not a machine).
_HOST_ONLY = ("FLEET_SWARM_SOCKET", "FLEET_SWARM_NAME", "FLEET_SWARM_HOST")


class Request(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    op: Literal["start", "stop", "list", "shutdown"]
    machine_id: str = ""
    token: str = ""
    home: str = ""


class Instance:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.stop = asyncio.Event()
        self.serving = False
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(machine_id=self.daemon.settings.machine_id)
        try:
            async with self.daemon:
                self.serving = True
                # The host's stop, or the daemon's own (``daemon.stop``, from an archive).
                await first_of(self.stop.wait(), self.daemon.stopped.wait())
        except asyncio.CancelledError:
            await self.daemon.abandon()
            raise
        except Exception:  # task boundary: one instance's crash must not touch the others
            log.exception("swarm.daemon_crashed")
            await self.daemon.abandon()
        finally:
            self.serving = False
        log.info("swarm.daemon_stopped")

    async def shutdown(self) -> None:
        task = self.task
        if task is None or task.done():
            return
        # Set first: an instance that is still starting leaves cleanly as soon as it serves,
        # even if it swallows the cancellation below (nats-py's connect can).
        self.stop.set()
        if not self.serving:
            task.cancel()
        _, pending = await asyncio.wait({task}, timeout=STOP_GRACE_S)
        if pending:  # stuck: give up on a clean stop
            task.cancel()
            await asyncio.wait({task}, timeout=5)


class SwarmHost:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.name = environ.get("FLEET_SWARM_NAME", "swarm")
        self.socket_path = Path(environ["FLEET_SWARM_SOCKET"])
        self.nats_url = environ["FLEET_NATS_URL"]
        self.env = environ.get("FLEET_ENV", "dev")
        self.log_level = environ.get("FLEET_LOG_LEVEL", "info")
        self.base_env = {k: v for k, v in environ.items() if k not in _HOST_ONLY}
        self.instances: dict[str, Instance] = {}
        self.done = asyncio.Event()
        self.external_id = f"swarm:{self.name}:{os.getpid()}"

    # --- instances --------------------------------------------------------------------------
    def start(self, machine_id: str, token: str, home: str) -> str:
        if not MACHINE_ID_RE.match(machine_id) or len(machine_id) != 18:
            raise ValueError(f"not a machine id: {machine_id!r}")
        if not token or not Path(home).is_absolute():
            raise ValueError("start needs a token and an absolute home")
        current = self.instances.get(machine_id)
        if current is not None and current.task is not None and not current.task.done():
            return self.external_id
        Path(home).mkdir(parents=True, exist_ok=True)
        environ = self.base_env | {
            "HOME": home,
            "FLEET_HOME": home,
            "FLEET_MACHINE_ID": machine_id,
            "FLEET_NATS_URL": self.nats_url,
        }
        # Every other daemon setting (heartbeat, output cap, logging) comes from the host's
        # FLEET_* variables, exactly as a local daemon reads them from its environment.
        settings = DaemonSettings.from_env(environ | {"FLEET_MACHINE_TOKEN": token})
        # Its commands get their own machine's environment, not the host's; hundreds share a
        # process: no state file, control port or background processes.
        inst = Instance(compose(settings, environ=dict(environ), lifecycle=False))
        # A fresh context per instance: its log lines carry its machine id and nothing else.
        inst.task = asyncio.create_task(inst.run(), name=f"daemon:{machine_id}")
        self.instances[machine_id] = inst
        log.info("swarm.daemon_started", machine_id=machine_id, count=len(self.instances))
        return self.external_id

    async def stop(self, machine_id: str) -> bool:
        inst = self.instances.pop(machine_id, None)
        if inst is None:
            return False
        await inst.shutdown()
        return True

    async def stop_all(self) -> None:
        instances, self.instances = self.instances, {}
        log.info("swarm.stopping", count=len(instances))
        await asyncio.gather(*(i.shutdown() for i in instances.values()))

    def running(self) -> list[str]:
        return sorted(m for m, i in self.instances.items() if i.task and not i.task.done())

    # --- control channel --------------------------------------------------------------------
    async def answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = msgspec.json.decode(line, type=Request)
            if req.op == "start":
                return {"ok": True, "externalId": self.start(req.machine_id, req.token, req.home)}
            if req.op == "stop":
                return {"ok": True, "wasRunning": await self.stop(req.machine_id)}
            if req.op == "list":
                return {"ok": True, "pid": os.getpid(), "machines": self.running()}
            self.done.set()
            return {"ok": True}
        except (msgspec.DecodeError, ValueError, OSError) as exc:
            return {"ok": False, "error": str(exc)}

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(msgspec.json.encode(await self.answer(line)) + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.done.set)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left behind by a host that was killed
        server = await asyncio.start_unix_server(
            self.on_client, path=str(self.socket_path), limit=1024 * 1024
        )
        os.chmod(self.socket_path, 0o600)
        log.info("swarm.serving", socket=str(self.socket_path), pid=os.getpid())
        try:
            await self.done.wait()
        finally:
            server.close()
            await self.stop_all()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        log.info("swarm.stopped")


def _raise_fd_limit() -> None:
    """Every instance holds a socket: allow as many open files as the hard limit permits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    missing = [n for n in ("FLEET_SWARM_SOCKET", "FLEET_NATS_URL") if not os.environ.get(n)]
    if missing:
        print(f"daemon.swarm_host: needs {', '.join(missing)} in its environment", file=sys.stderr)
        raise SystemExit(2)
    host = SwarmHost(os.environ)
    configure_logging(host.env, host.log_level, service="swarm")
    structlog.contextvars.bind_contextvars(swarm=host.name)
    os.chdir("/")  # never keep a platform directory busy; instances resolve against their homes
    _raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(host.serve())


if __name__ == "__main__":
    main()
