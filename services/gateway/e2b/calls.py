"""A fleetd method called for an E2B request: through the gateway's one dispatcher, as
``POST /rpc`` calls it, so it is validated, its rights checked, its budget spent and it is
audited exactly as its JSON-RPC twin (the front translates, it never implements)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from base.first import first_of
from base.tasks import cancel_and_join
from contracts.rpc.jsonrpc import MethodSpec, Params, decode_result, encode_call
from services.gateway.auth import Caller
from services.gateway.streams import HeldParts

P = TypeVar("P", bound=Params)
R = TypeVar("R")
#: Parts a generator of ``Calls.parts`` holds ready for its reader.
_PARTS_WAITING = 64
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

    async def parts(
        self, spec: MethodSpec[P, R], params: P, caller: Caller
    ) -> AsyncIterator[bytes]:
        """A streamed call's parts as they come, until it ends (its error raised then), as a
        generator: closing it cancels the call. Its reader's pace holds the call back, as
        ``streamed``'s does (a few parts here, the rest bounded there)."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_PARTS_WAITING)
        call = asyncio.ensure_future(self.streamed(spec, params, caller, queue.put))
        try:
            while True:
                which, part = await first_of(queue.get(), asyncio.wait({call}))
                if which == 0:
                    yield part  # type: ignore[misc]
                    continue
                while not queue.empty():
                    yield queue.get_nowait()
                call.result()  # its error, if it ended with one
                return
        finally:
            await cancel_and_join(call)
