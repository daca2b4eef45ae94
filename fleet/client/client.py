"""A typed async client for the fleetd gateway (what the CLI and the tests use).

async with FleetClient("http://127.0.0.1:8080", token) as fleet:
    inst = await fleet.create_instance("demo")
    machine = await fleet.create_machine(inst.id)
    box = await fleet.machine(machine.id).wait_ready()      # or: await fleet.instance_machine(id)
    result = await fleet.exec(machine.id, ["git", "status"], cwd="src")

Every gateway method has a method: generated from its ``MethodSpec`` (``GatewayMethods``, in
``generated.py``, written by ``python -m codegen``), or hand-written where the client does more
than send its params (``calls.py``, streams in ``streams.py``, transfers in ``transfer.py``:
functions of a ``ClientCore`` bound here as methods). ``call(spec, params)`` reaches any method,
typed (``core.py``: sent again while the gateway answers Unavailable). Requests go through its
transport (``transport.py``): ``HttpTransport`` by default, ``MockTransport`` for tests.
``MachineHandle`` is the client bound to one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass

from contracts.bus.events import Event, decode_machine_event, kind_of
from contracts.daemon.rpc import (
    ExecCommandResult,
    ProcessInfo,
    ProcessLogs,
    RestartPolicy,
    WriteFileResult,
)
from contracts.errors import NotFound, Unavailable
from contracts.gateway.rpc import RefreshCodeResult
from contracts.models import Machine
from contracts.status import READY_OR_NEVER, MachineStatus
from fleet.client import calls, streams, transfer
from fleet.client.core import ClientCore, StreamResumes
from fleet.client.sse_reader import check_stream, sse_messages
from fleet.client.transport import StreamCut, Timeout, refused

#: ``events(follow=False)``: the stored events are over once the stream is this quiet.
DEFAULT_IDLE_S = 5.0


class FleetClient(ClientCore):
    # The hand-written methods: functions of calls.py, streams.py and transfer.py whose
    # ``self`` is a ClientCore, bound here, so that FleetClient is its generated methods, its
    # plumbing and this one class.
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


class MachineNotReady(Exception):
    """``wait_ready``: the machine ended ``failed`` or ``archived`` instead."""

    def __init__(self, machine: Machine) -> None:
        super().__init__(f"machine {machine.id} is {machine.status.value}: {machine.status_reason}")
        self.machine = machine


@dataclass(frozen=True)
class MachineHandle:
    """A client bound to one machine: ``fleet.machine(id)`` or
    ``await fleet.instance_machine(instance_id)``."""

    client: FleetClient
    id: str

    async def get(self) -> Machine:
        return await self.client.get_machine(self.id)

    async def wait_ready(self, timeout_s: float = 300.0) -> Machine:
        """The machine once ``ready``; MachineNotReady if it failed or was archived."""
        machine = await self.client.wait_for(self.id, READY_OR_NEVER, timeout_s)
        if machine.status is not MachineStatus.READY:
            raise MachineNotReady(machine)
        return machine

    async def exec(
        self,
        command: list[str],
        *,
        timeout_s: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecCommandResult:
        return await self.client.exec(self.id, command, timeout_s=timeout_s, cwd=cwd, env=env)

    async def write_file(self, path: str, content: str, mode: int | None = None) -> WriteFileResult:
        return await self.client.write_file(self.id, path, content, mode)

    async def start_process(
        self,
        command: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        tag: str | None = None,
        restart: RestartPolicy = "never",
    ) -> ProcessInfo:
        return await self.client.start_process(
            self.id, command, cwd=cwd, env=env, tag=tag, restart=restart
        )

    async def processes(self) -> list[ProcessInfo]:
        return await self.client.list_processes(self.id)

    async def kill_process(self, *, pid: int | None = None, tag: str | None = None) -> ProcessInfo:
        return await self.client.kill_process(self.id, pid=pid, tag=tag)

    async def process_logs(
        self, *, pid: int | None = None, tag: str | None = None, tail: int = 100
    ) -> ProcessLogs:
        return await self.client.process_logs(self.id, pid=pid, tag=tag, tail=tail)

    async def refresh_code(self) -> RefreshCodeResult:
        return await self.client.refresh_code(self.id)

    async def archive(self) -> Machine:
        return await self.client.archive_machine(self.id)

    def events(
        self, since: int | None = None, kinds: Collection[str] | None = None, *, follow: bool = True
    ) -> AsyncGenerator[tuple[int, Event], None]:
        return self.client.events(self.id, since, kinds, follow=follow)


__all__ = ["FleetClient", "MachineHandle", "MachineNotReady"]
