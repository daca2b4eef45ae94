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

from contracts.bus.subjects import codemode_tool
from contracts.errors import CodemodeUnavailable, InvalidParams, MethodNotFound
from contracts.gateway import files as gf, rpc as g
from contracts.rpc.jsonrpc import AnySpec, decode_response, encode_request
from services.codemode import stubs

#: What code may call as ``fleet.<method>``: every gateway method whose spec says ``in_code``
#: (a run starting runs, or describing itself, is a loop, not a tool).
FLEET_METHODS: dict[str, AnySpec] = {s.name: s for s in g.GATEWAY_METHODS if s.in_code}
#: ``machine.read_file`` answers the content alone: ``MachineProvider``'s own tool.
READ_FILE_TOOL = "read_file"


def machine_tools(specs: tuple[AnySpec, ...]) -> dict[str, AnySpec]:
    """Each spec's ``tool``; ValueError, at import, naming a tool two specs declare (one would
    silently hide the other) or one that is not a machine's method."""
    tools: dict[str, AnySpec] = {}
    for spec in specs:
        if spec.tool is None:
            continue
        if spec.tool in tools or spec.tool == READ_FILE_TOOL:
            raise ValueError(f"machine.{spec.tool} is declared twice (by {spec.name})")
        if "machine_id" not in spec.params.__struct_fields__:
            raise ValueError(f"machine.{spec.tool}: {spec.name} takes no machineId")
        tools[spec.tool] = spec
    return tools


#: ``machine.<tool>``: the gateway method whose spec names the tool, with ``machineId`` filled in.
MACHINE_TOOLS: dict[str, AnySpec] = machine_tools(g.GATEWAY_METHODS)
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
        if path == READ_FILE_TOOL:
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
        result = await self._gateway.call(
            spec.name, self._params(spec, READ_FILE_TOOL, args, kwargs)
        )
        return str(result.get("content", ""))

    async def describe(self) -> str:
        return stubs.machine_stubs(MACHINE_TOOLS)
