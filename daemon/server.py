"""The daemon's connection to the platform: connect as this machine, serve RPC, report status.
Its parts are made by ``daemon.compose.compose`` and handed to it (``DaemonParts``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base import natsconn
from base.lockfile import DaemonLock
from base.reply_server import ReplyServer
from base.ticker import Ticker
from base.version import git_sha, package_version
from contracts.bus import subjects
from contracts.bus.events import (
    DaemonStatus,
    DaemonStatusReported,
    Heartbeat,
    encode_event,
    subject_of,
)
from contracts.daemon.rpc import DAEMON_METHODS
from contracts.daemon.signing import H_ID, ReplayGuard, sign_reply, signing_key, verify
from contracts.daemon.watch import WatchEnd
from contracts.errors import FleetError, PayloadTooLarge
from contracts.ids import new_event_id
from contracts.rpc.jsonrpc import Dispatcher, encode_error, request_method
from daemon.byte_stream_hub import ByteStreamHub
from daemon.code.kernels import CodeKernels
from daemon.files.watches import Watches
from daemon.link import Link
from daemon.processes.sessions import Sessions
from daemon.settings import DaemonSettings
from daemon.supervision import nodump
from daemon.supervision.lifecycle import ExitMode, Lifecycle
from daemon.supervision.stops import Stops

log = structlog.get_logger(__name__)
_ENCODER = msgspec.json.Encoder()

#: A stop that cancels the start waits this long for its ``stopping`` report's ack.
_LATE_STOP_REPORT_S = 2.0
_UNSTORED = (natsconn.PublishRejected, natsconn.StreamUnavailable)


@dataclass(frozen=True)
class DaemonParts:
    """What a daemon is made with (``daemon.compose.compose``)."""

    #: Its connection to NATS, as its machine.
    link: Link
    #: Whether it was asked to go, why and how.
    stops: Stops
    #: Its full life on a machine (state file, control port, processes, cron, code updates);
    #: None for a swarm daemon (many to a process, for load tests), which holds only ``lock``.
    life: Lifecycle | None
    lock: DaemonLock
    #: Every open byte stream of the machine.
    hub: ByteStreamHub
    sessions: Sessions
    kernels: CodeKernels
    #: The machine's watches of its files (ended as it pauses or stops).
    watches: Watches
    #: Every daemon method's handler, of every part.
    dispatcher: Dispatcher[None]
    replays: ReplayGuard
    #: The machine's identity this process holds: its token (what a selfUpdate hands on), and
    #: the pipe where the supervisor tells a new one at a resume.
    held: nodump.HeldIdentity


class Daemon:
    """Async context manager: connected, serving and reported ready inside the block.

    ``stopped`` is set when something asks the daemon to go (a signal, the control port,
    selfUpdate, a handover); the caller then leaves the block, and looks at ``exit_mode``.
    A new identity the supervisor tells at a resume (daemon/supervision/nodump.py) is
    ``next_identity``,
    and the caller serves as it next (``exit_mode`` "identity").
    """

    def __init__(self, settings: DaemonSettings, parts: DaemonParts) -> None:
        self.settings = settings
        self._link = parts.link
        self._stops = parts.stops
        self._life = parts.life
        self._lock = parts.lock
        self.byte_streams = parts.hub
        self._sessions = parts.sessions
        self._kernels = parts.kernels
        self._watches = parts.watches
        self._dispatcher = parts.dispatcher
        self._replays = parts.replays
        self._held = parts.held
        self.next_identity: tuple[str, str] | None = None
        self.boot_id = uuid.uuid4().hex
        self._rpc: ReplyServer | None = None
        self._beats = itertools.count(1)
        self._heartbeat = Ticker(settings.heartbeat_s, tick=self._beat, name="heartbeat",
                                 failed_event="daemon.heartbeat_failed", at_once=True)  # fmt: skip
        self._key = signing_key(settings.machine_token)
        #: Connected and reported ready (until then a stop request cancels the start).
        self.serving = False
        #: The ready report went out (stored or not): from then on a stop is reported.
        self._ready_sent = False
        self._park_task: asyncio.Task[None] | None = None

    # --- why and how it goes ------------------------------------------------------------------
    @property
    def stopped(self) -> asyncio.Event:
        return self._stops.stopped

    @property
    def stop_reason(self) -> str:
        return self._stops.reason

    @property
    def exit_mode(self) -> ExitMode:
        return self._stops.mode

    @property
    def exit_target(self) -> Path | None:
        return self._stops.target

    def request_stop(
        self, reason: str, mode: ExitMode = "stop", target: Path | None = None
    ) -> None:
        """Ask the daemon to go (``Stops.request``)."""
        self._stops.request(reason, mode, target)

    # --- a pause ------------------------------------------------------------------------------
    def request_park(self, park: bool) -> None:
        """A pause's signal (park: let the NATS connection go) or a resume's (take it back at
        once); each after the one before (daemon/supervision/park.py)."""
        previous = self._park_task
        self._park_task = asyncio.get_running_loop().create_task(self._park(park, previous))

    async def _park(self, park: bool, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        nc = self._link.connected
        # A new identity taken (a fork's, woken by its restore mark and then by its provider's
        # signal too): this daemon's connection is never taken back.
        if nc is None or self.next_identity is not None:
            return
        if not park and self._take_identity():
            return
        control = self._life.control if self._life is not None else None
        parking = self._link.parking
        if park:  # a watch sees nothing while paused: its client is told, before the link goes
            await self._watches.end_all(WatchEnd.PAUSED)
        try:
            if park and control is not None:
                control.park()
            done = await (parking.park(nc) if park else parking.unpark())
            if not park and control is not None:
                await control.unpark()
        except (nats.errors.Error, OSError) as exc:  # the connection's own errors: logged
            log.warning("daemon.park_failed", park=park, error=repr(exc))
            return
        log.info("daemon.parked" if park else "daemon.unparked", changed=done)

    def _take_identity(self) -> bool:
        """A resume that brings a new identity: True when this daemon stops serving for it
        (a fork's own machine id and token), its connection never taken back, and the caller
        serves as the new one in this process (machine id, subjects, credential and signing
        key, all from settings). A renewed credential of this machine (the same token, so the
        same signing key: contracts/daemon/signing.py) is only the password of the reconnect that
        follows: False, and the connection, its subscriptions and sessions go on."""
        told = nodump.read_new_identity(self._held.identity_fd)
        if told is None:
            return False
        machine_id, credential = told
        if machine_id == self.settings.machine_id and signing_key(credential) == self._key:
            self.settings = msgspec.structs.replace(self.settings, machine_token=credential)
            self._link.renew(credential)
            self._held.keep_token(credential)  # what a selfUpdate hands on
            log.info("daemon.credential_renewed")
            return False
        self.next_identity = told
        self.request_stop(f"serving as {machine_id}, a new identity", "identity")
        return True

    # --- its life -----------------------------------------------------------------------------
    @property
    def nc(self) -> NATS:
        return self._link.nc

    async def __aenter__(self) -> Daemon:
        # The lock before anything else: never two daemons for one machine.
        if self._life is not None:
            await self._life.__aenter__()
        else:
            self._lock.acquire()
        try:
            nc = await self._link.connect()
            # Answers what was asked before it stops (10 s at most), then cancels the rest.
            self._rpc = await ReplyServer(
                nc, subjects.daemon_rpc(self.settings.machine_id), self._serve,
                drain_s=10.0, failed_event="daemon.request_failed", triage=self._triage,
                reply=self._reply,
            ).__aenter__()  # fmt: skip
            await self.byte_streams.serve(nc)
            await nc.flush()
            self._ready_sent = True
            await self.report("ready")
        except BaseException as exc:
            await self._abandon_start(exc)
            raise
        if self._life is not None:
            self._life.running(f"serving machine {self.settings.machine_id} on NATS")
        self.serving = True
        await self._heartbeat.__aenter__()
        log.info("daemon.ready", machine_id=self.settings.machine_id, boot_id=self.boot_id)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._heartbeat.__aexit__(None, None, None)
        if self._park_task is not None:
            self._park_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._park_task
        if self._life is not None:
            self._life.set_state("stopping", self.stop_reason or "stopping")
        if self._rpc is not None:  # first: a request under way may still open a stream
            await self._rpc.stop()  # what was asked before is answered (10 s at most)
        await self._sessions.close_all()
        await self._watches.end_all(WatchEnd.STOPPING)
        # A new identity is served next in this process: its kernels go on with it.
        await self._kernels.close_all(keep=self.exit_mode == "identity")
        await self.byte_streams.close()
        try:
            await self._disconnect()
        finally:
            await self._close_life(e if isinstance(e, Exception) else None)

    async def abandon(self) -> None:
        """Close a connection left behind by a start that was cancelled half-way (a swarm
        daemon's)."""
        nc = self._link.release()
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _abandon_start(self, exc: BaseException) -> None:
        """A start that failed or was cancelled: disconnect and let the lock go, whatever
        interrupts the goodbye (a second signal cancels again)."""
        nc = self._link.release()
        try:
            if nc is not None and not nc.is_closed:
                try:
                    if self._ready_sent:  # it may be stored (its ack on the way): say we go
                        await self._say_stopping(nc, timeout_s=_LATE_STOP_REPORT_S)
                finally:
                    with contextlib.suppress(nats.errors.Error, OSError):
                        await nc.close()
        finally:
            # Cancelled (a stop while starting) is a stop, not a crash.
            await self._close_life(exc if isinstance(exc, Exception) else None)

    async def _close_life(self, error: BaseException | None) -> None:
        if self._life is None:
            self._lock.release()
            return
        await self._life.close(mode=self.exit_mode, reason=self.stop_reason or "stopped",
                               error=error)  # fmt: skip

    async def _disconnect(self) -> None:
        nc = self._link.release()
        if nc is None or nc.is_closed:
            return
        if self.exit_mode == "identity":  # parked as the identity left: nothing more said as it
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.close()
            return
        if not await self._say_stopping(nc, timeout_s=5.0):
            # Unanswered: a drain would wait on the same server again, for NATS's drain and
            # flush timeouts (up to 40 s), past the provider's grace and its SIGKILL.
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.close()
            return
        try:
            await nc.drain()
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("daemon.shutdown_unclean", error=str(exc))
            await nc.close()

    async def _say_stopping(self, nc: NATS, *, timeout_s: float) -> bool:
        """The ``stopping`` report, one try: a stop does not wait for NATS to come back.
        Whether the stream took it."""
        try:
            await self._publish_status(nc, "stopping", attempts=1, timeout_s=timeout_s)
        except (nats.errors.Error, TimeoutError, OSError, *_UNSTORED) as exc:
            log.warning("daemon.stopping_unreported", error=repr(exc))
            return False
        return True

    # --- what it says -------------------------------------------------------------------------
    async def report(self, status: DaemonStatus) -> None:
        await self._publish_status(self.nc, status, attempts=0)

    async def _publish_status(
        self, nc: NATS, status: DaemonStatus, *, attempts: int, timeout_s: float = 5.0
    ) -> None:
        """Store a status report in the stream; ``attempts=0`` retries until it is stored."""
        event = DaemonStatusReported(
            event_id=new_event_id(),
            machine_id=self.settings.machine_id,
            status=status,
            version=package_version(),
            git_sha=git_sha(),
            boot_id=self.boot_id,
        )
        # ``attempts=0``: a ready report must reach the stream, however long NATS is away.
        await natsconn.publish_stored(
            nc, subject_of(event), encode_event(event), msg_id=event.event_id,
            attempts=attempts, timeout_s=timeout_s,
        )  # fmt: skip

    async def _beat(self) -> None:
        """A heartbeat (every heartbeat_s, the first at once). A plain publish: while NATS is
        away nats-py buffers it, and a missed beat is exactly what the prober should see."""
        beat = Heartbeat(machine_id=self.settings.machine_id, boot_id=self.boot_id,
                         seq=next(self._beats))  # fmt: skip
        try:
            await self.nc.publish(subjects.heartbeat(beat.machine_id), _ENCODER.encode(beat))
        except nats.errors.Error as exc:
            log.debug("daemon.heartbeat_failed", error=repr(exc))
        if self._life is not None and not self.stopped.is_set():
            self._life.beat()

    # --- requests -----------------------------------------------------------------------------
    async def _triage(self, msg: Msg) -> Awaitable[bytes | None] | None:
        try:  # authenticate the raw bytes before parsing anything
            verify(self._key, self.settings.machine_id, msg.data, msg.headers, self._replays)
        except FleetError as exc:
            log.warning("daemon.request_refused", code=exc.code, reason=exc.message)
            await self._reply(msg, encode_error(exc))
            return None
        # The envelope, its params not yet decoded (None: a batch or anything odd: handle()).
        call = self._dispatcher.prepare(msg.data) if len(msg.data) <= _AT_ONCE_MAX_BYTES else None
        if call is None:
            return self._serve(msg)
        # nats-py runs a subscription's callbacks one at a time; a long execCommand must not
        # hold up a health check, so a request that may wait gets its own task. One that never
        # waits is answered right here: a task per call added 8-12% to health's p50 (bench 1).
        if call.method in _AT_ONCE:
            await self._reply(msg, await self._dispatcher.run(call, None))
            return None
        return self._dispatcher.run(call, None)

    async def _serve(self, msg: Msg) -> bytes | None:
        return await self._dispatcher.handle(msg.data, None)

    async def _reply(self, msg: Msg, answer: bytes | None) -> None:
        limit = self._link.room()
        if answer is not None and len(answer) > limit:
            # Too big to send back: say so, rather than leave the caller waiting for nothing.
            answer = encode_error(_too_large(request_method(msg.data), len(answer), limit))
        if answer is not None and msg.reply:
            # MACed with the request's id: the platform believes no one else's answer.
            rid = (msg.headers or {}).get(H_ID, "")
            headers = sign_reply(self._key, self.settings.machine_id, rid, answer)
            try:
                await self.nc.publish(msg.reply, answer, headers=headers)
            except nats.errors.Error as exc:
                log.warning("daemon.reply_failed", error=str(exc), size=len(answer))


#: Methods whose handlers never wait on anything but a small local file.
_AT_ONCE = frozenset(s.name for s in DAEMON_METHODS if s.at_once)
#: Above this, tool.writeFile writes in a thread (``MachineTools``): not "at once".
_AT_ONCE_MAX_BYTES = 192 * 1024


def _too_large(method: str | None, size: int, limit: int) -> PayloadTooLarge:
    """What to say of an answer too big for one message: which method's, and how to ask for
    less (a command's output is capped by FLEET_EXEC_OUTPUT_CAP; other answers page or cut
    themselves to fit, so one over it is a bug worth reporting as such)."""
    what = method or "a batch"
    hint = ("lower FLEET_EXEC_OUTPUT_CAP or write the output to a file"
            if method and method.startswith("tool.exec") else "ask for less of it")  # fmt: skip
    return PayloadTooLarge(
        f"the answer to {what} is {size} bytes, over the {limit} byte limit of one message; "
        f"{hint}", data={"method": what, "size": size, "limit": limit},
    )  # fmt: skip
