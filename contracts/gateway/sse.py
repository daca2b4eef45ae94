"""The gateway's server-sent events on the wire (GET /events, POST /rpc/stream, POST
/codemode/run), and GET /events' own named events, besides the machine events (``id:`` +
``data:`` only).

A frame is an ``event: <name>`` line (none for a machine event), an ``id: <seq>`` line where
it has one, and its data, one ``data:`` line per line of it; the gateway spells every frame
with ``frame`` and the client reads the named ones by these names.
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


def frame(name: str | None, data: bytes = b"{}", *, seq: int | None = None) -> bytes:
    """One event as sent on the wire: named ``name`` (None: unnamed, a machine event), with
    the id ``seq`` (None: none)."""
    head = b"event: %s\n" % name.encode() if name is not None else b""
    if seq is not None:
        head += b"id: %d\n" % seq
    return head + b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"


def comment(text: str) -> bytes:
    """A comment line (a keepalive, a greeting): every client skips it."""
    return b": %s\n\n" % text.encode()


def error_frame(error: FleetError) -> bytes:
    """The ``event: error`` that ends a stream with ``error``."""
    return frame(ERROR, msgspec.json.encode(error.to_wire()))
