"""A typed async client for the fleetd gateway (what the CLI and the tests use).

async with FleetClient("http://127.0.0.1:8080", token) as fleet:
    inst = await fleet.create_instance("demo")
    machine = await fleet.create_machine(inst.id)
    box = await fleet.machine(machine.id).wait_ready()      # or: await fleet.instance_machine(id)
    result = await fleet.exec(machine.id, ["git", "status"], cwd="src")

Every gateway method has a method here or in a mixin (``fleet/client_<area>.py``; the test
``tests/unit/test_client_methods.py`` keeps it so); ``call(spec, params)`` reaches any, typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import AsyncGenerator, Collection, Sequence
from types import TracebackType
from typing import Literal

import aiohttp

from contracts import gateway_rpc as g
from contracts.daemon_rpc import (
    DEFAULT_EXEC_TIMEOUT_S,
    DEFAULT_FILE_MODE,
    ExecCommandResult,
    ProcessInfo,
    ProcessLogs,
    RestartPolicy,
    WriteFileResult,
)
from contracts.errors import (
    ERROR_HEADER,
    FleetError,
    NotFound,
    Unauthorized,
    Unavailable,
    error_from_http,
)
from contracts.events import Event, decode_machine_event, kind_of
from contracts.gateway_rpc import CreatedToken, CronSetResult, RefreshCodeResult, RefreshEnvResult
from contracts.jsonrpc import MethodSpec, NoParams, P, R, decode_result, encode_call, new_params
from contracts.machine_files import CronJob
from contracts.models import AccessToken, EnvVar, Instance, Machine, Repo
from contracts.openrpc import OpenRpcDocument
from contracts.status import MachineStatus
from fleet.client_audit import AuditClient
from fleet.client_codemode import CodemodeMethods
from fleet.client_env_builds import EnvBuildsClient
from fleet.client_events import EventsClient
from fleet.client_files import FilesClient
from fleet.client_instance_env import InstanceEnvironmentClient
from fleet.client_limits import LimitsClient
from fleet.client_live import LiveClient
from fleet.client_machines import MachinesClient
from fleet.client_network import NetworkClient
from fleet.client_people import PeopleClient
from fleet.client_ports import PortsClient
from fleet.client_retry import ConnectionFailed, RetryingCalls, StreamResumes
from fleet.client_sessions import SessionsClient
from fleet.client_stop import StopClient
from fleet.client_transfer import TransferClient
from fleet.machine import MachineHandle, MachineNotReady
from fleet.sse import check_stream, sse_messages

DEFAULT_URL = "http://127.0.0.1:8080"
#: ``events(follow=False)``: the stored events are over once the stream is this quiet.
DEFAULT_IDLE_S = 5.0


class FleetClient(
    RetryingCalls,
    EventsClient,
    LiveClient,
    CodemodeMethods,
    MachinesClient,
    LimitsClient,
    NetworkClient,
    SessionsClient,
    PortsClient,
    FilesClient,
    TransferClient,
    StopClient,
    InstanceEnvironmentClient,
    EnvBuildsClient,
    AuditClient,
    PeopleClient,
):
    def __init__(self, url: str = DEFAULT_URL, token: str = "", *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        #: Terminals and tunnels still open: closed with the client (their connections are
        #: the session's, and a socket left to the garbage collector is a ResourceWarning).
        self._websockets: weakref.WeakSet[aiohttp.ClientWebSocketResponse] = weakref.WeakSet()

    async def __aenter__(self) -> FleetClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for ws in list(self._websockets):
            await ws.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def websocket(
        self,
        path: str,
        *,
        heartbeat: float | None = None,
        max_msg_size: int = 4 * 1024 * 1024,
        close_timeout_s: float = 10.0,
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to the gateway's ``path`` (a terminal, a tunnel), closed with the
        client if its caller has not closed it; a refusal is the route's error."""
        timeout = aiohttp.ClientWSTimeout(ws_close=close_timeout_s)
        try:
            ws = await self.session.ws_connect(
                self.url + path, heartbeat=heartbeat, max_msg_size=max_msg_size, timeout=timeout
            )
        except aiohttp.WSServerHandshakeError as exc:  # refused: the error is in a header
            header = exc.headers.get(ERROR_HEADER) if exc.headers else None
            raise self.http_error(exc.status, b"", header) from None
        except aiohttp.ClientConnectionError as exc:
            raise self._unreachable(exc) from None
        self._websockets.add(ws)
        return ws

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}"}, timeout=self._timeout
            )
        return self._session

    def _unreachable(self, exc: Exception) -> ConnectionFailed:
        return ConnectionFailed(
            f"cannot reach fleetd at {self.url} ({exc}); start fleetd with `./run up` "
            "(or `fleet up`), or point FLEET_URL / --url at a running gateway",
            sent=not isinstance(exc, aiohttp.ClientConnectorError),
        )

    def _refused(self) -> Unauthorized:
        return Unauthorized(
            f"the gateway at {self.url} refused the access token (HTTP 401); "
            "set FLEET_TOKEN or pass --token"
        )

    def http_error(self, status: int, body: bytes = b"", header: str | None = None) -> FleetError:
        """The error of any route's HTTP error answer (contracts.errors.error_from_http), in
        the same words whichever route it came from."""
        return self._refused() if status == 401 else error_from_http(status, body, header)

    async def _call_once(
        self, spec: MethodSpec[P, R], params: P, *, timeout_s: float | None = None
    ) -> R:
        """One request (``call``, in ``fleet/client_retry.py``, retries Unavailable)."""
        body = encode_call(spec, params, next(self._ids))
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._timeout
        try:
            async with self.session.post(
                f"{self.url}/rpc",
                data=body,
                timeout=timeout,
                headers={"Content-Type": "application/json"},
            ) as resp:
                data = await resp.read()
                if resp.status == 401:
                    raise self._refused()
                if resp.content_type != "application/json":
                    raise self.http_error(resp.status, b"", resp.headers.get(ERROR_HEADER))
        except aiohttp.ClientConnectionError as exc:
            raise self._unreachable(exc) from None
        return decode_result(spec, data)

    # Params via new_params: a server-side __post_init__ check fails here too, as InvalidParams.

    # --- instances, env, repos, tokens --------------------------------------------------------
    async def create_instance(self, name: str) -> Instance:
        return await self.call(g.INSTANCES_CREATE, new_params(g.CreateInstanceParams, name=name))

    async def get_instance(self, instance_id: str) -> Instance:
        return await self.call(g.INSTANCES_GET, new_params(g.InstanceRef, instance_id=instance_id))

    async def list_instances(self) -> list[Instance]:
        return (await self.call(g.INSTANCES_LIST, NoParams())).instances

    async def set_env(self, name: str, value: str, instance_id: str | None = None) -> EnvVar:
        params = new_params(g.SetEnvParams, instance_id=instance_id, name=name, value=value)
        return await self.call(g.ENV_SET, params)

    async def unset_env(self, name: str, instance_id: str | None = None) -> bool:
        params = new_params(g.UnsetEnvParams, instance_id=instance_id, name=name)
        return (await self.call(g.ENV_UNSET, params)).removed

    async def list_env(self, instance_id: str | None = None) -> list[EnvVar]:
        params = new_params(g.ListEnvParams, instance_id=instance_id)
        return (await self.call(g.ENV_LIST, params)).vars

    async def add_repo(
        self,
        instance_id: str,
        url: str,
        branch: str,
        path: str,
        *,
        token: str | None = None,
        username: str | None = None,
    ) -> Repo:
        """``token`` (and ``username``, default ``x-access-token``): for a private repo."""
        params = new_params(
            g.AddRepoParams,
            instance_id=instance_id,
            url=url,
            branch=branch,
            path=path,
            token=token,
            username=g.DEFAULT_GIT_USERNAME if username is None else username,
        )
        return await self.call(g.REPOS_ADD, params)

    async def remove_repo(self, instance_id: str, path: str) -> bool:
        params = new_params(g.RemoveRepoParams, instance_id=instance_id, path=path)
        return (await self.call(g.REPOS_REMOVE, params)).removed

    async def list_repos(self, instance_id: str) -> list[Repo]:
        params = new_params(g.InstanceRef, instance_id=instance_id)
        return (await self.call(g.REPOS_LIST, params)).repos

    async def create_token(self, name: str, instance_id: str | None = None) -> CreatedToken:
        """A new access token; ``.token`` is the secret, shown this once."""
        params = new_params(g.CreateTokenParams, name=name, instance_id=instance_id)
        return await self.call(g.TOKENS_CREATE, params)

    async def list_tokens(self) -> list[AccessToken]:
        return (await self.call(g.TOKENS_LIST, NoParams())).tokens

    async def revoke_token(self, token_id: str) -> bool:
        return (await self.call(g.TOKENS_REVOKE, new_params(g.TokenRef, id=token_id))).revoked

    async def set_cron(self, instance_id: str, jobs: Sequence[CronJob]) -> CronSetResult:
        """Replace the instance's whole cron table; it is pushed to its running machine at
        once (``.machines``, ``.failed``) and to new machines at setup."""
        params = new_params(g.SetCronParams, instance_id=instance_id, jobs=list(jobs))
        return await self.call(g.CRON_SET, params)

    async def list_cron(self, instance_id: str) -> list[CronJob]:
        params = new_params(g.InstanceRef, instance_id=instance_id)
        return (await self.call(g.CRON_LIST, params)).jobs

    async def discover(self) -> OpenRpcDocument:
        """This API as an OpenRPC document."""
        return await self.call(g.RPC_DISCOVER, NoParams())

    # --- machines -----------------------------------------------------------------------------
    async def get_machine(self, machine_id: str) -> Machine:
        return await self.call(g.MACHINES_GET, new_params(g.MachineRef, machine_id=machine_id))

    async def list_machines(self, instance_id: str | None = None) -> list[Machine]:
        params = new_params(g.ListMachinesParams, instance_id=instance_id)
        return (await self.call(g.MACHINES_LIST, params)).machines

    async def archive_machine(self, machine_id: str) -> Machine:
        params = new_params(g.MachineRef, machine_id=machine_id)
        return await self.call(g.MACHINES_ARCHIVE, params)

    async def exec(
        self,
        machine_id: str,
        command: list[str],
        *,
        timeout_s: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: Literal["root"] | None = None,
    ) -> ExecCommandResult:
        """Run ``command`` on the machine as its user, or as root (``user="root"``: gvisor
        machines only)."""
        timeout = DEFAULT_EXEC_TIMEOUT_S if timeout_s is None else timeout_s
        params = new_params(
            g.MachineExecParams,
            machine_id=machine_id,
            command=command,
            timeout_s=timeout,
            cwd=cwd,
            env=env,
            user=user,
        )
        # The command may legitimately run long: wait for its own timeout, plus a margin.
        return await self.call(g.MACHINES_EXEC, params, timeout_s=timeout + 15.0)

    async def write_file(
        self, machine_id: str, path: str, content: str, mode: int | None = None
    ) -> WriteFileResult:
        params = new_params(
            g.MachineWriteFileParams,
            machine_id=machine_id,
            path=path,
            content=content,
            mode=DEFAULT_FILE_MODE if mode is None else mode,
        )
        return await self.call(g.MACHINES_WRITE_FILE, params)

    async def refresh_env(self, instance_id: str | None = None) -> RefreshEnvResult:
        """Rebuild the .env and push it to running machines (None: of every instance the token
        may touch)."""
        params = new_params(g.RefreshEnvParams, instance_id=instance_id)
        return await self.call(g.MACHINES_REFRESH_ENV, params)

    async def refresh_code(self, machine_id: str) -> RefreshCodeResult:
        """Install the platform's code on the machine; its daemon restarts with it."""
        params = new_params(g.MachineRef, machine_id=machine_id)
        return await self.call(g.MACHINES_REFRESH_CODE, params)

    async def start_process(
        self,
        machine_id: str,
        command: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        tag: str | None = None,
        restart: RestartPolicy = "never",
    ) -> ProcessInfo:
        params = new_params(
            g.MachineProcessStartParams,
            machine_id=machine_id,
            command=command,
            cwd=cwd,
            env=env,
            tag=tag,
            restart=restart,
        )
        return await self.call(g.MACHINES_PROCESS_START, params)

    async def list_processes(self, machine_id: str) -> list[ProcessInfo]:
        params = new_params(g.MachineRef, machine_id=machine_id)
        return (await self.call(g.MACHINES_PROCESS_LIST, params)).processes

    async def kill_process(
        self, machine_id: str, *, pid: int | None = None, tag: str | None = None
    ) -> ProcessInfo:
        """Exactly one of ``pid`` and ``tag``."""
        params = new_params(g.MachineProcessRef, machine_id=machine_id, pid=pid, tag=tag)
        return await self.call(g.MACHINES_PROCESS_KILL, params)

    async def process_logs(
        self, machine_id: str, *, pid: int | None = None, tag: str | None = None, tail: int = 100
    ) -> ProcessLogs:
        params = new_params(
            g.MachineProcessLogsParams, machine_id=machine_id, pid=pid, tag=tag, tail=tail
        )
        return await self.call(g.MACHINES_PROCESS_LOGS, params)

    def machine(self, machine_id: str) -> MachineHandle:
        """This client, bound to one machine."""
        return MachineHandle(self, machine_id)

    async def instance_machine(self, instance_id: str) -> MachineHandle:
        """The instance's current machine (NotFound if it has none)."""
        instance = await self.get_instance(instance_id)
        if instance.current_machine_id is None:
            raise NotFound(f"instance {instance_id} has no machine")
        return self.machine(instance.current_machine_id)

    # --- events -------------------------------------------------------------------------------
    async def events(
        self,
        machine_id: str | None = None,
        since: int | None = None,
        kinds: Collection[str] | None = None,
        *,
        follow: bool = True,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> AsyncGenerator[tuple[int, Event], None]:
        """(stream sequence, event) pairs from GET /events.

        With ``machine_id`` the stream starts at that machine's first event, else at new events
        (``since``: after that sequence; 0 replays everything stored). ``kinds`` keeps only those
        event types. ``follow=False`` ends with the last stored event (the gateway marks it
        with ``event: caught-up``), or, from a gateway that does not, once no event arrived for
        ``idle_s`` seconds. A stream cut off for falling behind, cut mid-stream, or ended or
        refused with 1501 (the gateway's bus failing over) is resumed after the last event
        read. Close the iterator (``contextlib.aclosing``) when leaving it early.
        """
        wanted = set(kinds) if kinds is not None else None
        last, resumes = since, StreamResumes(self)
        while True:
            resume = False
            stream = self._stream(machine_id, last, None if follow else idle_s)
            try:
                async with contextlib.aclosing(stream):
                    async for seq, data in stream:
                        if data is None:  # cut off for falling behind: resume after `last`
                            resume = True
                            break
                        last = seq
                        resumes.reset()
                        event = decode_machine_event(data)
                        if wanted is None or kind_of(event).value in wanted:
                            yield seq, event
            except aiohttp.ClientPayloadError:
                # The gateway's side ended mid-stream (it died behind a balancer): resume
                # after `last`, as for an overflow, a bounded number of times in a row.
                await resumes.cut()
                resume = True
            except Unavailable as exc:  # `event: error` 1501, or a 503 answer: the same
                await resumes.unavailable(exc)
                resume = True
            if not resume:
                return

    async def _stream(
        self, machine_id: str | None, since: int | None, idle_s: float | None
    ) -> AsyncGenerator[tuple[int, bytes | None], None]:
        """One GET /events: (sequence, event JSON), or (sequence, None) for an overflow."""
        query = {
            k: v for k, v in {"machineId": machine_id, "since": since}.items() if v is not None
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with self.session.get(
                f"{self.url}/events", params=query, timeout=timeout
            ) as resp:
                if resp.status == 401:
                    raise self._refused()
                await check_stream(resp)
                async for message in sse_messages(
                    resp.content, idle_s, stop_caught_up=idle_s is not None
                ):
                    yield message
        except aiohttp.ClientConnectionError as exc:
            raise self._unreachable(exc) from None

    async def wait_for(
        self, machine_id: str, statuses: Collection[str], timeout_s: float = 120.0
    ) -> Machine:
        """Wait until the machine's status is one of ``statuses``; driven by its events."""
        wanted = {MachineStatus(s) for s in statuses}
        async with asyncio.timeout(timeout_s):
            machine = await self.get_machine(machine_id)
            if machine.status in wanted:
                return machine
            async with contextlib.aclosing(self.events(machine_id)) as stream:
                async for _ in stream:
                    machine = await self.get_machine(machine_id)
                    if machine.status in wanted:
                        return machine
        raise TimeoutError(f"machine {machine_id} never reached {sorted(wanted)}")


__all__ = ["ConnectionFailed", "FleetClient", "MachineHandle", "MachineNotReady"]
