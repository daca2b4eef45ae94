"""The daemon's connection to the platform: connect as this machine, serve RPC, report status."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Awaitable, Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base import natsconn
from base.lockfile import DaemonLock
from base.reply_server import ReplyServer
from base.retry import Backoff, retry
from base.ticker import Ticker
from base.version import git_sha, package_version
from contracts import daemon_rpc as d, subjects
from contracts.daemon_rpc import (
    DAEMON_METHODS,
    ExecCommandParams,
    ExecCommandResult,
    GetVersionResult,
    GitCloneParams,
    HealthResult,
    ProcessInfo,
    ProcessList,
    ProcessLogs,
    ProcessLogsParams,
    ProcessRef,
    ProcessStartParams,
    SelfUpdateParams,
    SelfUpdateResult,
    WriteFileParams,
    WriteFileResult,
)
from contracts.errors import FleetError, NotSupported, PayloadTooLarge
from contracts.events import (
    DaemonStatus,
    DaemonStatusReported,
    Heartbeat,
    encode_event,
    subject_of,
)
from contracts.ids import new_event_id
from contracts.jsonrpc import Dispatcher, NoParams, Router, encode_error, handles, request_method
from contracts.ports import LIST_PORTS, PortList
from contracts.signing import H_ID, ReplayGuard, sign_reply, signing_key, verify
from daemon import gitclone, nodump, tools, update
from daemon.byte_stream_hub import ByteStreamHub, Pipes
from daemon.code_kernels import CodeKernels
from daemon.exec_streams import ExecStreams, daemon_log
from daemon.files import FileTools
from daemon.lifecycle import ExitMode, Lifecycle
from daemon.listening_ports import list_ports
from daemon.park import Parking
from daemon.procenv import ProcessEnv
from daemon.session_methods import Sessions
from daemon.settings import DaemonSettings
from daemon.transfers import FileTransfers
from daemon.tunnel_connect import Tunnels

log = structlog.get_logger(__name__)
_ENCODER = msgspec.json.Encoder()

_CONNECT_BACKOFF_CAP_S = 10.0
#: The one rule from 0.25 s, one step on: 0.5 s, 1 s, 2 s, ... up to the cap.
_CONNECT_BACKOFF = Backoff(base=0.5, cap=_CONNECT_BACKOFF_CAP_S)
#: Room left in an answer's NATS message for its headers (the reply MAC).
_REPLY_HEADROOM = 256
#: A stop that cancels the start waits this long for its ``stopping`` report's ack.
_LATE_STOP_REPORT_S = 2.0
_UNSTORED = (natsconn.PublishRejected, natsconn.StreamUnavailable)


class Daemon:
    """Async context manager: connected, serving and reported ready inside the block.

    ``stopped`` is set when something asks the daemon to go (a signal, the control port,
    selfUpdate, a handover); the caller then leaves the block, and looks at ``exit_mode``.
    """

    #: The full life on a machine (state file, control port, processes, cron, code updates).
    #: Swarm daemons, many to a process for load tests, run without it.
    lifecycle: ClassVar[bool] = True

    def __init__(
        self,
        settings: DaemonSettings,
        *,
        identity_fd: int | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        """``environ``: the environment the machine's processes start from (the daemon's own;
        a swarm daemon's machine's)."""
        self.settings = settings
        #: Where the supervisor tells a new identity at a resume (daemon/nodump.py), and the
        #: one told: the caller serves as it next (``exit_mode`` "identity").
        self._identity_fd = identity_fd
        self.next_identity: tuple[str, str] | None = None
        self.boot_id = uuid.uuid4().hex
        self._started = time.monotonic()
        self._nc: NATS | None = None
        self._rpc: ReplyServer | None = None
        self._beats = itertools.count(1)
        self._heartbeat = Ticker(settings.heartbeat_s, tick=self._beat, name="heartbeat",
                                 failed_event="daemon.heartbeat_failed", at_once=True)  # fmt: skip
        self._key = signing_key(settings.machine_token)
        #: settings.home_path builds a new Path per call (4% of a small write's time, bench 1).
        self._home = settings.home_path
        self._lock = DaemonLock(settings.home_path)
        #: The one environment of every process started here (daemon/procenv.py).
        self._env = ProcessEnv(self._home, environ)
        self._life = (Lifecycle(settings, env=self._env, request_stop=self.request_stop)
                      if self.lifecycle else None)  # fmt: skip
        self._replays = ReplayGuard(skew_s=settings.boot_skew_s)
        self._umask = tools.current_umask()
        self._exec_streams = ExecStreams(
            home=settings.home_path, machine_id=settings.machine_id, env=self._env,
            output_cap=settings.exec_output_cap, publish=self._publish_chunk,
            procs=self._life.procs if self._life is not None else None,
        )  # fmt: skip
        self.byte_streams = ByteStreamHub(settings.machine_id)
        self._pipes = Pipes(hub=self.byte_streams, home=settings.home_path, env=self._env)
        self._sessions = Sessions(hub=self.byte_streams, home=settings.home_path, env=self._env)
        self._tunnels = Tunnels(self.byte_streams)
        self._transfers = FileTransfers(hub=self.byte_streams, home=str(self._home))
        self._kernels = CodeKernels(home=settings.home_path, env=self._env,
                                    contexts_max=settings.code_contexts_max,
                                    room=self._reply_room, machine_id=settings.machine_id,
                                    publish=self._publish_chunk)  # fmt: skip
        self.stopped = asyncio.Event()
        #: Connected and reported ready (until then a stop request cancels the start).
        self.serving = False
        #: The ready report went out (stored or not): from then on a stop is reported.
        self._ready_sent = False
        self.stop_reason = ""
        self.exit_mode: ExitMode = "stop"
        self.exit_target: Path | None = None
        self._dispatcher = Dispatcher(
            DAEMON_METHODS, self._routes(), translate=tools.at_thread_limit
        )
        self._parking = Parking()
        self._park_task: asyncio.Task[None] | None = None

    def request_park(self, park: bool) -> None:
        """A pause's signal (park: let the NATS connection go) or a resume's (take it back at
        once); each after the one before (daemon/park.py)."""
        previous = self._park_task
        self._park_task = asyncio.get_running_loop().create_task(self._park(park, previous))

    async def _park(self, park: bool, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        nc = self._nc
        # A new identity taken (a fork's, woken by its restore mark and then by its provider's
        # signal too): this daemon's connection is never taken back.
        if nc is None or self.next_identity is not None:
            return
        if not park and self._take_identity():
            return
        control = self._life.control if self._life is not None else None
        try:
            if park and control is not None:
                control.park()
            done = await (self._parking.park(nc) if park else self._parking.unpark(nc))
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
        same signing key: contracts/signing.py) is only the password of the reconnect that
        follows: False, and the connection, its subscriptions and sessions go on."""
        told = nodump.read_new_identity(self._identity_fd)
        if told is None:
            return False
        machine_id, credential = told
        if machine_id == self.settings.machine_id and signing_key(credential) == self._key:
            self.settings = msgspec.structs.replace(self.settings, machine_token=credential)
            if self._nc is not None:
                self._nc.options["password"] = credential
            nodump.keep_token(credential)  # what a selfUpdate hands on
            log.info("daemon.credential_renewed")
            return False
        self.next_identity = told
        self.request_stop(f"serving as {machine_id}, a new identity", "identity")
        return True

    def request_stop(
        self, reason: str, mode: ExitMode = "stop", target: Path | None = None
    ) -> None:
        """Ask the daemon to go; the first request wins, but a stop beats a restart asked
        before it (a selfUpdate's re-exec, a handover, a new identity): a SIGTERM that came
        during that restart's drain would be lost to it, and the machine would run on until
        its provider's grace ran out and it was SIGKILLed."""
        if self.stopped.is_set() and not (mode == "stop" and self.exit_mode != "stop"):
            return
        self.stop_reason, self.exit_mode, self.exit_target = reason, mode, target
        log.info("daemon.stop_requested", reason=reason, mode=mode)
        self.stopped.set()

    @property
    def nc(self) -> NATS:
        assert self._nc is not None
        return self._nc

    async def __aenter__(self) -> Daemon:
        # The lock before anything else: never two daemons for one machine.
        if self._life is not None:
            await self._life.__aenter__()
        else:
            self._lock.acquire()
        try:
            self._nc = await self._connect()
            # Answers what was asked before it stops (10 s at most), then cancels the rest.
            self._rpc = await ReplyServer(
                self.nc, subjects.daemon_rpc(self.settings.machine_id), self._serve,
                drain_s=10.0, failed_event="daemon.request_failed", triage=self._triage,
                reply=self._reply,
            ).__aenter__()  # fmt: skip
            await self.byte_streams.serve(self.nc)
            await self.nc.flush()
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
        # A new identity is served next in this process: its kernels go on with it.
        await self._kernels.close_all(keep=self.exit_mode == "identity")
        await self.byte_streams.close()
        try:
            await self._disconnect()
        finally:
            await self._close_life(e if isinstance(e, Exception) else None)

    async def _abandon_start(self, exc: BaseException) -> None:
        """A start that failed or was cancelled: disconnect and let the lock go, whatever
        interrupts the goodbye (a second signal cancels again)."""
        nc, self._nc = self._nc, None
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
        nc, self._nc = self._nc, None
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

    async def _connect(self) -> NATS:
        """Connect, retrying forever with jittered backoff: a machine outlives NATS outages."""
        return await retry(self._connect_once, on=(nats.errors.Error, OSError, TimeoutError),
                           backoff=_CONNECT_BACKOFF, on_retry=_connect_failed)  # fmt: skip

    async def _connect_once(self) -> NATS:
        s = self.settings
        nc = await natsconn.connect(
            s.nats_url,
            name=f"daemon:{s.machine_id}",
            user=s.machine_id,
            password=s.machine_token,
            inbox_prefix=subjects.machine_inbox_prefix(s.machine_id),
            wait_s=(0.5, 2.0),
            connect_timeout=5,
            error_cb=_on_error,
            reconnect_to_server_handler=self._parking.choose,
        )
        self._parking.wait_s = float(nc.options["reconnect_time_wait"])
        return nc

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
        limit = self.nc.max_payload - _REPLY_HEADROOM
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

    # --- methods ----------------------------------------------------------------------------
    def _routes(self) -> Router[None]:
        """Every daemon method's handler, marked ``@handles`` where it is written."""
        r = Router[None]()
        files = FileTools(self._home, self._reply_room)
        owners = (self._exec_streams, self._pipes, self._sessions, self._tunnels, self._transfers,
                  self._kernels)  # fmt: skip
        r.collect(self, files, *owners)
        return r

    def _reply_room(self) -> int:
        return self.nc.max_payload - _REPLY_HEADROOM

    @handles(d.DAEMON_LOG)
    async def _daemon_log(self, params: d.DaemonLogParams, _: None) -> d.DaemonLogResult:
        return await daemon_log(params, None)

    @handles(LIST_PORTS)
    async def _list_ports(self, params: NoParams, _: None) -> PortList:
        return await list_ports(params, None)

    async def _publish_chunk(self, subject: str, data: bytes) -> None:
        await self.nc.publish(subject, data)  # buffered: flushed by the client, never awaited

    @handles(d.WRITE_FILE)
    async def _write_file(self, params: WriteFileParams, _: None) -> WriteFileResult:
        if len(params.content) < 256 * 1024:
            return tools.write_file(self._home, params, self._umask)
        return await asyncio.to_thread(tools.write_file, self._home, params, self._umask)

    @handles(d.EXEC_COMMAND)
    async def _exec_command(self, params: ExecCommandParams, _: None) -> ExecCommandResult:
        if self._life is None:
            return await tools.exec_command(
                self._home, params, self._env, self.settings.exec_output_cap
            )
        procs = self._life.procs  # tracked while it runs: doctor finds it if we die mid-way
        home = self._home
        cwd = str(tools.resolve_path(home, params.cwd, "$.cwd")) if params.cwd else str(home)
        return await tools.exec_command(
            home, params, self._env, self.settings.exec_output_cap,
            on_spawn=lambda pid: procs.track_exec(pid, params.command, cwd),
            on_exit=procs.untrack_exec,
        )  # fmt: skip

    @handles(d.GIT_CLONE)
    async def _git_clone(self, params: GitCloneParams, _: None) -> ExecCommandResult:
        return await self._exec_command(gitclone.clone_command(params), None)

    @handles(d.GET_VERSION)
    async def _get_version(self, _: NoParams, __: None) -> GetVersionResult:
        return GetVersionResult(version=package_version(), git_sha=git_sha())

    @handles(d.HEALTH)
    async def _health(self, params: d.HealthParams, _: None) -> HealthResult:
        missing = [
            f for i, f in enumerate(params.files)
            if not tools.resolve_path(self._home, f, f"$.files[{i}]").is_file()
        ]  # fmt: skip
        return HealthResult(
            ok=True, uptime_s=round(time.monotonic() - self._started, 3), missing=missing
        )

    def _lifecycle(self) -> Lifecycle:
        if self._life is None:
            raise NotSupported("this daemon runs without background processes (swarm daemon)")
        return self._life

    @handles(d.PROCESS_START)
    async def _process_start(self, params: ProcessStartParams, _: None) -> ProcessInfo:
        return await self._lifecycle().procs.start(params)

    @handles(d.PROCESS_LIST)
    async def _process_list(self, _: NoParams, __: None) -> ProcessList:
        return self._lifecycle().procs.list()

    @handles(d.PROCESS_KILL)
    async def _process_kill(self, params: ProcessRef, _: None) -> ProcessInfo:
        return await self._lifecycle().procs.kill(params)

    @handles(d.PROCESS_LOGS)
    async def _process_logs(self, params: ProcessLogsParams, _: None) -> ProcessLogs:
        return self._lifecycle().procs.logs(params)

    @handles(d.SELF_UPDATE)
    async def _self_update(self, params: SelfUpdateParams, _: None) -> SelfUpdateResult:
        """Switch to the installed code at targetRef and re-execute in place after answering
        (same pid: background processes stay our children and keep running)."""
        self._lifecycle()
        code_dir, sha = await asyncio.to_thread(update.installed_code, params.target_ref)
        running = git_sha()
        if sha == running:
            return SelfUpdateResult(restarting=False, from_git_sha=running, to_git_sha=sha)
        # Stopping waits for in-flight requests, this one included: the answer goes out first.
        self.request_stop(f"self-update from {running} to {sha}", "exec", code_dir)
        return SelfUpdateResult(restarting=True, from_git_sha=running, to_git_sha=sha)

    @handles(d.STOP)
    async def _stop(self, _: NoParams, __: None) -> d.StopResult:
        """Archive: the platform asks before it revokes our access, so that the ``stopping``
        report still gets out. Stopping waits for in-flight requests: this answer goes first."""
        self.request_stop("asked to stop by the platform")
        return d.StopResult(stopping=True)


#: Methods whose handlers never wait on anything but a small local file.
_AT_ONCE = frozenset(s.name for s in DAEMON_METHODS if s.at_once)
#: Above this, tool.writeFile writes in a thread (see _write_file): not "at once".
_AT_ONCE_MAX_BYTES = 192 * 1024


async def _on_error(exc: Exception) -> None:
    log.warning("daemon.nats_error", error=str(exc))


def _connect_failed(attempt: int, delay: float, exc: BaseException | None) -> None:
    log.warning("daemon.connect_failed", attempt=attempt, retry_in_s=round(delay, 2),
                error=repr(exc))  # fmt: skip


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
