"""A fleetd method called for an E2B request: through the gateway's one dispatcher, as
``POST /rpc`` calls it, so it is validated, its rights checked, its budget spent and it is
audited exactly as its JSON-RPC twin (the front translates, it never implements)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from contracts.jsonrpc import MethodSpec, Params, decode_result, encode_call
from services.gateway.auth import Caller

P = TypeVar("P", bound=Params)
R = TypeVar("R")
#: ``await dispatch(body, caller)``: the gateway dispatcher's answer to one request.
Dispatch = Callable[[bytes, Caller], Awaitable[bytes | None]]


class Calls:
    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    async def __call__(self, spec: MethodSpec[P, R], params: P, caller: Caller) -> R:
        """``spec``'s result for ``caller``, or the FleetError its answer carries."""
        answer = await self._dispatch(encode_call(spec, params, 1), caller)
        assert answer is not None  # a request with an id is always answered
        return decode_result(spec, answer)
