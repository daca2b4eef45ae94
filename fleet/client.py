"""A typed async client for the fleetd gateway (what the CLI and the tests use).

async with FleetClient("http://127.0.0.1:8080", token) as fleet:
    inst = await fleet.create_instance("demo")
    machine = await fleet.create_machine(inst.id)
    machine = await fleet.wait_for(machine.id, {"ready", "failed"})
    result = await fleet.exec(machine.id, ["git", "status"], cwd="src")
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Collection
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import msgspec

from contracts.daemon_rpc import DEFAULT_EXEC_TIMEOUT_S, ExecCommandResult, WriteFileResult
from contracts.errors import FleetError, Unauthorized
from contracts.events import Event, decode_event
from contracts.gateway_rpc import (
    CreatedToken,
    EnvList,
    InstanceList,
    MachineList,
    Removed,
    RepoList,
    Revoked,
    TokenList,
)
from contracts.jsonrpc import decode_response, encode_request
from contracts.models import AccessToken, EnvVar, Instance, Machine, Repo
from contracts.status import MachineStatus

R = TypeVar("R")
DEFAULT_URL = "http://127.0.0.1:8080"


class ConnectionFailed(Exception):
    """The gateway could not be reached at all."""


class FleetClient:
    def __init__(self, url: str = DEFAULT_URL, token: str = "", *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> FleetClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}"}, timeout=self._timeout
            )
        return self._session

    async def call(
        self,
        method: str,
        params: Any = None,
        result_type: type[R] = Any,  # type: ignore[assignment]
        *,
        timeout_s: float | None = None,
    ) -> R:
        body = encode_request(method, params or {}, next(self._ids))
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
                    raise Unauthorized("the gateway refused the access token (HTTP 401)")
                if resp.content_type != "application/json":
                    text = data[:300].decode(errors="replace")
                    raise FleetError(f"the gateway answered HTTP {resp.status}: {text}")
        except aiohttp.ClientConnectionError as exc:
            raise ConnectionFailed(
                f"cannot reach fleetd at {self.url} ({exc}); start it with `./run up`, "
                f"or set FLEET_URL"
            ) from None
        return decode_response(data, result_type)

    # --- typed methods ----------------------------------------------------------------------
    async def create_instance(self, name: str) -> Instance:
        return await self.call("instances.create", {"name": name}, Instance)

    async def get_instance(self, instance_id: str) -> Instance:
        return await self.call("instances.get", {"instanceId": instance_id}, Instance)

    async def list_instances(self) -> list[Instance]:
        return (await self.call("instances.list", {}, InstanceList)).instances

    async def set_env(self, name: str, value: str, instance_id: str | None = None) -> EnvVar:
        params = _drop_none({"instanceId": instance_id, "name": name, "value": value})
        return await self.call("env.set", params, EnvVar)

    async def unset_env(self, name: str, instance_id: str | None = None) -> bool:
        params = _drop_none({"instanceId": instance_id, "name": name})
        return (await self.call("env.unset", params, Removed)).removed

    async def list_env(self, instance_id: str | None = None) -> list[EnvVar]:
        return (await self.call("env.list", _drop_none({"instanceId": instance_id}), EnvList)).vars

    async def add_repo(self, instance_id: str, url: str, branch: str, path: str) -> Repo:
        params = {"instanceId": instance_id, "url": url, "branch": branch, "path": path}
        return await self.call("repos.add", params, Repo)

    async def remove_repo(self, instance_id: str, path: str) -> bool:
        params = {"instanceId": instance_id, "path": path}
        return (await self.call("repos.remove", params, Removed)).removed

    async def list_repos(self, instance_id: str) -> list[Repo]:
        return (await self.call("repos.list", {"instanceId": instance_id}, RepoList)).repos

    async def create_machine(self, instance_id: str, provider: str = "local") -> Machine:
        params = {"instanceId": instance_id, "provider": provider}
        return await self.call("machines.create", params, Machine)

    async def get_machine(self, machine_id: str) -> Machine:
        return await self.call("machines.get", {"machineId": machine_id}, Machine)

    async def list_machines(self, instance_id: str | None = None) -> list[Machine]:
        params = _drop_none({"instanceId": instance_id})
        return (await self.call("machines.list", params, MachineList)).machines

    async def archive_machine(self, machine_id: str) -> Machine:
        return await self.call("machines.archive", {"machineId": machine_id}, Machine)

    async def rebuild_machine(self, instance_id: str) -> Machine:
        return await self.call("machines.rebuild", {"instanceId": instance_id}, Machine)

    async def exec(
        self,
        machine_id: str,
        command: list[str],
        *,
        timeout_s: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecCommandResult:
        params = _drop_none(
            {
                "machineId": machine_id,
                "command": command,
                "timeoutS": timeout_s,
                "cwd": cwd,
                "env": env,
            }
        )
        # The command may legitimately run long: wait for its own timeout, plus a margin.
        wait = (timeout_s or DEFAULT_EXEC_TIMEOUT_S) + 15.0
        return await self.call("machines.exec", params, ExecCommandResult, timeout_s=wait)

    async def write_file(
        self, machine_id: str, path: str, content: str, mode: int | None = None
    ) -> WriteFileResult:
        params = _drop_none(
            {"machineId": machine_id, "path": path, "content": content, "mode": mode}
        )
        return await self.call("machines.writeFile", params, WriteFileResult)

    async def create_token(self, name: str, instance_id: str | None = None) -> CreatedToken:
        """A new access token; ``.token`` is the secret, shown this once."""
        params = _drop_none({"name": name, "instanceId": instance_id})
        return await self.call("tokens.create", params, CreatedToken)

    async def list_tokens(self) -> list[AccessToken]:
        return (await self.call("tokens.list", {}, TokenList)).tokens

    async def revoke_token(self, token_id: str) -> bool:
        return (await self.call("tokens.revoke", {"id": token_id}, Revoked)).revoked

    # --- events -----------------------------------------------------------------------------
    async def events(
        self, machine_id: str | None = None, since: int | None = None
    ) -> AsyncIterator[tuple[int, Event]]:
        """(stream sequence, event) pairs from GET /events, as they happen."""
        query = _drop_none({"machineId": machine_id, "since": since})
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with self.session.get(
                f"{self.url}/events", params=query, timeout=timeout
            ) as resp:
                if resp.status == 401:
                    raise Unauthorized("the gateway refused the access token (HTTP 401)")
                if resp.status != 200:
                    raise FleetError(f"GET /events answered {resp.status}: {await resp.text()}")
                seq = 0
                async for raw in resp.content:
                    line = raw.rstrip(b"\r\n")
                    if line.startswith(b"id: "):
                        seq = int(line[4:])
                    elif line.startswith(b"data: ") and seq:
                        yield seq, decode_event(line[6:])
        except aiohttp.ClientConnectionError as exc:
            raise ConnectionFailed(f"lost the event stream from {self.url}: {exc}") from None

    async def wait_for(
        self, machine_id: str, statuses: Collection[str], timeout_s: float = 120.0
    ) -> Machine:
        """Wait until the machine's status is one of ``statuses``; driven by its events."""
        wanted = {MachineStatus(s) for s in statuses}
        async with asyncio.timeout(timeout_s):
            machine = await self.get_machine(machine_id)
            if machine.status in wanted:
                return machine
            async for _ in self.events(machine_id):
                machine = await self.get_machine(machine_id)
                if machine.status in wanted:
                    return machine
        raise TimeoutError(f"machine {machine_id} never reached {sorted(wanted)}")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)
