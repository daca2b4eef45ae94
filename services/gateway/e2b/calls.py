"""A fleetd method called for an E2B request: through the gateway's one dispatcher, as
``POST /rpc`` calls it, so it is validated, its rights checked, its budget spent and it is
audited exactly as its JSON-RPC twin (the front translates, it never implements)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from base.first import first_of
from contracts.jsonrpc import MethodSpec, Params, decode_result, encode_call
from services.gateway.auth import Caller
from services.gateway.streams import HeldParts

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

    async def streamed(self, spec: MethodSpec[P, R], params: P, caller: Caller,
                       on_part: Callable[[bytes], Awaitable[None]]) -> R:  # fmt: skip
        """``spec``'s result, each part of its output given to ``on_part`` as it comes (what a
        slow ``on_part`` keeps waiting is bounded as ``POST /rpc/stream`` bounds it). When
        this is cancelled (its client went away), so is the call."""
        parts = HeldParts()
        body = encode_call(spec, params, 1)
        call: asyncio.Future[bytes | None] = asyncio.ensure_future(
            self._dispatch(body, caller.streaming(parts.offer, "")))  # fmt: skip
        try:
            while True:
                which, part = await first_of(parts.get(), asyncio.wait({call}))
                if which == 0:
                    await on_part(part)  # type: ignore[arg-type]
                    continue
                while not parts.empty():  # it drained its output before it answered
                    await on_part(parts.get_nowait())
                answer = call.result()
                assert answer is not None
                return decode_result(spec, answer)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
