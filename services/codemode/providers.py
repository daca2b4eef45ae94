"""The built-in providers: ``fleet`` (the gateway's methods) and ``machine`` (one machine's tools).

Neither holds a credential. A call becomes a JSON-RPC request that the gateway which started the
run answers on ``codemode.<runId>.tool`` with its own dispatcher and the caller's rights, so a
run can do exactly what its token can, and the gateway's checks are the only checks.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from contracts import (
    gateway_code as gc,
    gateway_files as gf,
    gateway_fork as gfk,
    gateway_rpc as g,
)
from contracts.codemode import CODEMODE_METHODS
from contracts.errors import CodemodeUnavailable, InvalidParams, MethodNotFound
from contracts.jsonrpc import AnySpec, decode_response, encode_request
from contracts.subjects import codemode_tool
from services.codemode import stubs

#: Not offered to code: a run starting runs (or describing itself) is a loop, not a tool.
_HIDDEN = {s.name for s in CODEMODE_METHODS} | {g.RPC_DISCOVER.name}
FLEET_METHODS: dict[str, AnySpec] = {s.name: s for s in g.GATEWAY_METHODS if s.name not in _HIDDEN}
#: ``machine.<tool>``: the gateway method it is, with ``machineId`` filled in.
MACHINE_TOOLS: dict[str, AnySpec] = {
    "exec": g.MACHINES_EXEC,
    "write_file": g.MACHINES_WRITE_FILE,
    "list_dir": gf.MACHINES_LIST_DIR,
    "stat": gf.MACHINES_STAT,
    "remove_file": gf.MACHINES_REMOVE_FILE,
    "process_start": g.MACHINES_PROCESS_START,
    "process_list": g.MACHINES_PROCESS_LIST,
    "process_kill": g.MACHINES_PROCESS_KILL,
    "process_logs": g.MACHINES_PROCESS_LOGS,
    "fork": gfk.MACHINES_FORK,
    #: Code in the machine's stateful kernel (``machines.code.run``), not in codemode's sandbox.
    "code_run": gc.MACHINES_CODE_RUN,
}
_SNAKE = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    """``write_file`` -> ``writeFile`` (code may use either spelling)."""
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


class GatewayCaller:
    """Sends one run's JSON-RPC requests to the gateway that started it."""

    def __init__(self, nc: NATS, run_id: str, timeout_s: float) -> None:
        self._nc = nc
        self._subject = codemode_tool(run_id)
        self._timeout_s = timeout_s
        self._id = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self._id += 1
        body = encode_request(method, params, self._id)
        try:
            msg = await self._nc.request(self._subject, body, timeout=self._timeout_s)
        except NoRespondersError:
            raise CodemodeUnavailable("the gateway that started this run is gone") from None
        except NatsTimeout:
            raise CodemodeUnavailable(f"{method}: no answer in {self._timeout_s:g}s") from None
        return msgspec.json.decode(decode_response(msg.data, msgspec.Raw))


class FleetProvider:
    """``await fleet.machines.exec(machineId=..., command=[...])``: every gateway method."""

    name = "fleet"

    def __init__(self, gateway: GatewayCaller) -> None:
        self._gateway = gateway

    async def call(self, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        method = ".".join(camel(part) for part in path.split("."))
        if method not in FLEET_METHODS:
            raise MethodNotFound(f"fleet has no method {method!r}")
        if args:
            raise InvalidParams(f"fleet.{path} takes keyword arguments only", field="$")
        return await self._gateway.call(method, {camel(k): v for k, v in kwargs.items()})

    async def describe(self) -> str:
        return stubs.gateway_stubs(list(FLEET_METHODS.values()))


class MachineProvider:
    """``await machine.exec(["ls"])``: one machine's tools, positional or keyword arguments."""

    name = "machine"

    def __init__(self, gateway: GatewayCaller, machine_id: str) -> None:
        self._gateway = gateway
        self._machine_id = machine_id

    async def call(self, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if path == "read_file":
            return await self._read_file(args, kwargs)
        spec = MACHINE_TOOLS.get(path)
        if spec is None:
            raise MethodNotFound(f"machine has no tool {path!r}")
        return await self._gateway.call(spec.name, self._params(spec, path, args, kwargs))

    def _params(
        self, spec: AnySpec, path: str, args: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        names = [camel(f) for f in spec.params.__struct_fields__ if f != "machine_id"]
        if len(args) > len(names):
            raise InvalidParams(f"machine.{path} takes at most {len(names)} arguments", field="$")
        params = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if camel(key) in params:
                raise InvalidParams(f"machine.{path} got {key!r} twice", field=f"$.{key}")
            params[camel(key)] = value
        return {**params, "machineId": self._machine_id}

    async def _read_file(self, args: list[Any], kwargs: dict[str, Any]) -> str:
        """``machines.readFile``'s content alone: the text (or, with ``encoding="base64"``, the
        bytes in base64). A file too big for one message is FileTooLarge, as for the API."""
        spec = gf.MACHINES_READ_FILE
        result = await self._gateway.call(spec.name, self._params(spec, "read_file", args, kwargs))
        return str(result.get("content", ""))

    async def describe(self) -> str:
        return stubs.machine_stubs(MACHINE_TOOLS)
