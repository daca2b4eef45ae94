"""Two pumps run as one: the two directions of a byte stream (a terminal, a tunnel, a pipe,
a preview's upgraded connection), each a coroutine that copies one way.

    await relay(to_client(ws, stream), from_client(ws, stream), until="either")

``until`` says when the relay is done:

- ``"either"``: as soon as one pump returns (a terminal: its output ended, or its client left);
- ``"both"``: once both returned (a tunnel, with a half close each way);
- ``"first"``: once the first pump returns; the second returning does not end it (a pipe: the
  command's input ended, its output goes on until it exits).

Either way a pump that raises ends the relay at once: the other is cancelled and awaited, and
the first error is raised again. The pumps are always both finished when ``relay`` returns or
raises, and a cancellation of the caller is never swallowed: it cancels both pumps and
propagates. A pump cancelled by someone else counts as returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal

Until = Literal["either", "both", "first"]
Pump = Coroutine[Any, Any, object]


async def relay(first: Pump, second: Pump, *, until: Until = "either") -> None:
    """Run ``first`` and ``second`` until ``until`` says the relay is done (see the module)."""
    a, b = asyncio.ensure_future(first), asyncio.ensure_future(second)
    pending: set[asyncio.Future[object]] = {a, b}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for pump in (a, b):  # in order: the first pump's error wins a tie
                error = pump.exception() if pump in done and not pump.cancelled() else None
                if error is not None:
                    raise error
            if until == "either" or (until == "first" and a in done):
                return
    finally:
        for pump in (a, b):
            pump.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
