"""A typed async client for the fleetd gateway (what the CLI and the tests use).

async with FleetClient("http://127.0.0.1:8080", token) as fleet:
    inst = await fleet.create_instance("demo")
    machine = await fleet.create_machine(inst.id)
    box = await fleet.machine(machine.id).wait_ready()      # or: await fleet.instance_machine(id)
    result = await fleet.exec(machine.id, ["git", "status"], cwd="src")

Every gateway method has a method: generated from its ``MethodSpec`` (``GatewayMethods``, in
``fleet/client_generated.py``, written by ``python -m codegen``), or hand-written
where the client does more than send its params (``fleet/client_calls.py``, streams in
``fleet/client_streams.py``, transfers in ``fleet/client_transfer.py``: functions bound here as
methods). ``call(spec, params)`` reaches any method, typed. Requests go through its
transport (``fleet/transport.py``): ``HttpTransport`` by default, ``MockTransport`` for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Collection
from types import TracebackType
from typing import TYPE_CHECKING

from contracts.errors import FleetError, NotFound, Unavailable
from contracts.events import Event, decode_machine_event, kind_of
from contracts.jsonrpc import MethodSpec, P, R, decode_result, encode_call
from contracts.models import Machine
from contracts.status import MachineStatus
from fleet import (
    client_calls as calls,
    client_retry as retry,
    client_streams as streams,
    client_transfer as transfer,
)
from fleet.cli_defaults import DEFAULT_URL
from fleet.client_generated import GatewayMethods
from fleet.client_retry import StreamResumes
from fleet.machine import MachineHandle, MachineNotReady
from fleet.sse_reader import check_stream, sse_messages
from fleet.transport import (
    ConnectionFailed,
    HttpTransport,
    StreamCut,
    Timeout,
    Transport,
    http_error,
    refused,
)
from fleet.transport_mock import MockTransport, Request, Response

if TYPE_CHECKING:
    import aiohttp

#: ``events(follow=False)``: the stored events are over once the stream is this quiet.
DEFAULT_IDLE_S = 5.0


class FleetClient(GatewayMethods):
    #: Tries per call while the gateway answers Unavailable (1: no retry).
    unavailable_tries: int = retry.UNAVAILABLE_TRIES
    #: How many times this client sent a call again after Unavailable or a cut answer (for
    #: tests and tools).
    unavailable_retries: int = 0

    # The hand-written methods: functions of fleet/client_*.py whose ``self`` is the client,
    # bound here, so that FleetClient is its generated methods and this one class.
    call = retry.call
    create_machine = calls.create_machine
    rebuild_machine = calls.rebuild_machine
    create_from_snapshot = calls.create_from_snapshot
    exec = calls.exec
    exec_via_stream_method = calls.exec_via_stream_method
    machines_code_run = calls.machines_code_run
    write_file = calls.write_file
    add_repo = calls.add_repo
    set_cron = calls.set_cron
    create_scoped_token = calls.create_scoped_token
    set_network_policy = calls.set_network_policy
    code_run = calls.code_run
    code_set_bridge = calls.code_set_bridge
    open_session = calls.open_session
    attach_session = calls.attach_session
    events_url = calls.events_url
    exec_stream = streams.exec_stream
    machines_code_run_stream = streams.machines_code_run_stream
    machines_watch = streams.machines_watch
    code_stream = streams.code_stream
    upload = transfer.upload
    download = transfer.download

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str = "",
        *,
        timeout_s: float = 60.0,
        transport: Transport | None = None,
    ) -> None:
        """``transport``: what the requests go through (``fleet.transport``); by default an
        ``HttpTransport`` to ``url`` whose calls wait ``timeout_s`` at most. The client closes
        it when it closes."""
        self.url = url.rstrip("/")
        self._token = token
        if transport is None:
            transport = HttpTransport(url, token, timeout_s=timeout_s)
        self.transport: Transport = transport
        #: What each request carries (a transport needs no credentials of its own).
        self.headers = {"Authorization": f"Bearer {token}"}
        self._ids = itertools.count(1)

    async def __aenter__(self) -> FleetClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.aclose()

    def _http(self, what: str) -> HttpTransport:
        if not isinstance(self.transport, HttpTransport):
            raise TypeError(f"{what} needs an HttpTransport, not {type(self.transport).__name__}")
        return self.transport

    async def websocket(
        self,
        path: str,
        *,
        heartbeat: float | None = None,
        max_msg_size: int = 4 * 1024 * 1024,
        close_timeout_s: float = 10.0,
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to the gateway's ``path`` (a terminal, a tunnel), closed with the
        client if its caller has not closed it; a refusal is the route's error. Over HTTP
        only: a socket is not a request and an answer (``HttpTransport.websocket``)."""
        return await self._http("a WebSocket").websocket(
            path, heartbeat=heartbeat, max_msg_size=max_msg_size, close_timeout_s=close_timeout_s
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The ``HttpTransport``'s aiohttp session (for a route the client has no method for)."""
        return self._http("session").session

    def http_error(self, status: int, body: bytes = b"", header: str | None = None) -> FleetError:
        """The error of any route's HTTP error answer (contracts.errors.error_from_http), in
        the same words whichever route it came from."""
        return http_error(self.url, status, body, header)

    async def _call_once(
        self, spec: MethodSpec[P, R], params: P, *, timeout_s: float | None = None
    ) -> R:
        """One request (``call``, ``fleet/client_retry.py``'s, retries Unavailable)."""
        body = encode_call(spec, params, next(self._ids))
        answer = await self.transport.rpc(body, headers=self.headers, timeout_s=timeout_s)
        return decode_result(spec, answer)

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
            except StreamCut:
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
            k: str(v) for k, v in {"machineId": machine_id, "since": since}.items() if v is not None
        }
        timeout = Timeout(total=None, read=None)
        async with self.transport.request(
            "GET", "/events", headers=self.headers, query=query, timeout=timeout
        ) as resp:
            if resp.status == 401:
                raise refused(self.url)
            await check_stream(resp)
            async for message in sse_messages(
                resp.content, idle_s, stop_caught_up=idle_s is not None
            ):
                yield message

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


__all__ = [
    "ConnectionFailed",
    "FleetClient",
    "HttpTransport",
    "MachineHandle",
    "MachineNotReady",
    "MockTransport",
    "Request",
    "Response",
    "StreamCut",
    "Transport",
]
