"""The daemon's one composition root (``compose``): its parts, each made once with its
collaborators, handed to the ``Daemon``. Imported only once ``daemon.lean.lean_imports`` has
decided what asyncio, structlog and nats-py load (``fleet-daemon``'s ``_serve``, a pooled
machine's prewarm, a swarm host)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

import structlog

from base.lockfile import DaemonLock
from contracts.daemon.rpc import DAEMON_METHODS
from contracts.daemon.signing import ReplayGuard
from contracts.rpc.jsonrpc import Dispatcher, Router
from daemon.byte_stream_hub import ByteStreamHub, Pipes
from daemon.code.kernels import CodeKernels, KeptKernels
from daemon.desktop.tools import Desktop
from daemon.files.tools import FileTools
from daemon.files.transfers import FileTransfers
from daemon.files.watches import Watches
from daemon.link import Link
from daemon.machine_tools import MachineTools
from daemon.ports.tunnel import Tunnels
from daemon.processes import tools
from daemon.processes.env import ProcessEnv
from daemon.processes.exec_streams import ExecStreams
from daemon.processes.sessions import Sessions
from daemon.server import Daemon, DaemonParts
from daemon.settings import DaemonSettings
from daemon.supervision.lifecycle import Lifecycle
from daemon.supervision.nodump import HeldIdentity
from daemon.supervision.park import Parking
from daemon.supervision.stops import Stops

log = structlog.get_logger(__name__)


def compose(
    settings: DaemonSettings,
    *,
    held: HeldIdentity | None = None,
    kept: KeptKernels | None = None,
    environ: Mapping[str, str] = os.environ,
    lifecycle: bool = True,
) -> Daemon:
    """The daemon's one composition root: its parts, each made once with its collaborators,
    handed to the ``Daemon``. ``held``: the machine's identity this process holds (its token,
    its identity pipe: daemon/supervision/nodump.py; none by default); ``kept``: the code kernels a
    daemon before this one in the process left running (none by default); ``environ``: the
    environment the machine's processes start from (the daemon's own; a swarm daemon's
    machine's); ``lifecycle`` False: no state file, control port, background processes or
    cron (a swarm daemon, many to a process)."""
    s, home = settings, settings.home_path
    stops = Stops()
    # nats-py has no jitter knob: the wait between reconnect attempts is drawn per daemon.
    parking = Parking(random.uniform(*_RECONNECT_WAIT_S), _on_nats_error)
    link = Link(s.nats_url, s.machine_id, s.machine_token, parking)
    env = ProcessEnv(home, environ)  # the one environment of every process started here
    life = Lifecycle(s, env=env, request_stop=stops.request) if lifecycle else None
    hub = ByteStreamHub(s.machine_id)
    sessions = Sessions(hub=hub, home=home, env=env)
    kernels = CodeKernels(home=home, env=env, contexts_max=s.code_contexts_max,
                          room=link.room, machine_id=s.machine_id,
                          publish=link.publish_chunk, kept=kept)  # fmt: skip
    watches = Watches(hub=hub, home=str(home))
    parts = DaemonParts(
        link=link, stops=stops, life=life, lock=DaemonLock(home), hub=hub, sessions=sessions,
        kernels=kernels, watches=watches, replays=ReplayGuard(skew_s=s.boot_skew_s),
        held=held or HeldIdentity(),
        dispatcher=_dispatcher(s, env, link, life, stops, hub, sessions, kernels, watches),
    )  # fmt: skip
    return Daemon(s, parts)


def _dispatcher(
    s: DaemonSettings, env: ProcessEnv, link: Link, life: Lifecycle | None, stops: Stops,
    hub: ByteStreamHub, sessions: Sessions, kernels: CodeKernels, watches: Watches,
) -> Dispatcher[None]:  # fmt: skip
    """Every daemon method's handler: the methods of the daemon's parts, the ones made here
    and those given."""
    home = s.home_path
    router = Router[None]()
    router.collect(
        MachineTools(home=home, env=env, output_cap=s.exec_output_cap, life=life, stops=stops,
                     kernels=kernels),
        FileTools(home, link.room),
        ExecStreams(home=home, machine_id=s.machine_id, env=env, output_cap=s.exec_output_cap,
                    publish=link.publish_chunk, procs=life.procs if life is not None else None),
        Pipes(hub=hub, home=home, env=env), sessions, Tunnels(hub),
        FileTransfers(hub=hub, home=str(home)), kernels, watches,
        Desktop(home=home, env=env, max_pixels=s.desktop_max_pixels),
    )  # fmt: skip
    return Dispatcher(DAEMON_METHODS, router, translate=tools.at_thread_limit)


#: The bounds of a daemon's wait between reconnect attempts (drawn once per daemon).
_RECONNECT_WAIT_S = (0.5, 2.0)


async def _on_nats_error(exc: Exception) -> None:
    log.warning("daemon.nats_error", error=str(exc))
