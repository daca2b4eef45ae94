"""``MachineHandle``: the client bound to one machine (``fleet.machine(id)``, or
``await fleet.instance_machine(instance_id)`` for an instance's current machine)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contracts.daemon_rpc import (
    ExecCommandResult,
    ProcessInfo,
    ProcessLogs,
    RestartPolicy,
    WriteFileResult,
)
from contracts.events import Event
from contracts.gateway_rpc import RefreshCodeResult
from contracts.models import Machine
from contracts.status import READY_OR_NEVER, MachineStatus

if TYPE_CHECKING:  # the client imports this module
    from fleet.client import FleetClient


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
