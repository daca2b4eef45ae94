"""Server-sent events from their lines, one line at a time: the part of the format that every
reader of the gateway's streams shares (``GET /events``, a streamed method's answer, and the
blocking path's), with no I/O, so that each reads its lines as it must."""

from __future__ import annotations

#: The longest line of a server-sent event read (a machine's answer is at most a NATS message,
#: whose servers allow 64 MiB at most).
MAX_EVENT_LINE = 64 * 1024 * 1024 + 4096
#: On top of a streamed call's own time: the gateway's and the network's.
STREAM_MARGIN_S = 30.0


class EventTooLong(ValueError):
    """An event's data lines came to more than a reader takes."""


class EventLines:
    """Fed a stream's lines in order; says each event as the blank line that ends it comes.
    An event whose data comes to more than ``max_bytes`` raises ``EventTooLong``."""

    __slots__ = ("_data", "_kind", "_max", "_size", "id")

    def __init__(self, max_bytes: int = MAX_EVENT_LINE) -> None:
        #: The last ``id:`` field's value; an id holds for the events after it, as in the spec.
        self.id = b""
        self._kind, self._data, self._size, self._max = b"message", list[bytes](), 0, max_bytes

    def feed(self, raw: bytes) -> tuple[bytes, bytes | None] | None:
        """The event a blank line ends, as (its name, its data: None when it had no ``data:``
        field); None for a field or a comment (``: keepalive``), kept for its event."""
        line = raw.rstrip(b"\r\n")
        if line:
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"id":
                self.id = value
            elif name == b"event":
                self._kind = value
            elif name == b"data":
                self._size += len(value) + 1
                if self._size > self._max:
                    raise EventTooLong(f"an event of the answer is longer than {self._max} bytes")
                self._data.append(value)
            return None
        ended = self._kind, (b"\n".join(self._data) if self._data else None)
        self._kind, self._data, self._size = b"message", [], 0
        return ended
