"""GET /events' own named events, besides the machine events (``id:`` + ``data:`` only).

Each is one ``event: <name>`` line and a ``data:`` line; the gateway spells them from here and
the client reads them by these names.
"""

from __future__ import annotations

import msgspec

from contracts.errors import FleetError

#: The stored events asked for are all sent; live ones follow. ``data: {}``.
CAUGHT_UP = "caught-up"
#: The client fell too far behind and the stream ends: resume after the last ``id`` read.
OVERFLOW = "overflow"
#: The stream ends on an error, whose JSON-RPC error object (``{code, message, data?}``) is the
#: ``data``. 1501 ``Unavailable``: the gateway lost its event bus mid-stream (a NATS node gone);
#: resume after the last ``id`` read, after ``data.retryAfterMs``. A browser's EventSource
#: calls its ``onerror`` for it, as for a dropped connection.
ERROR = "error"


def frame(name: str, data: bytes = b"{}") -> bytes:
    """One named event as sent on the wire."""
    return b"event: %s\ndata: %s\n\n" % (name.encode(), data)


def error_frame(error: FleetError) -> bytes:
    """The ``event: error`` that ends a stream with ``error``."""
    return frame(ERROR, msgspec.json.encode(error.to_wire()))
