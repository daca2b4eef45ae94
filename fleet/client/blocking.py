"""One request over one blocking HTTP/1.1 connection, framed by h11 over a socket: what a
command that makes one call and exits needs, without asyncio (whose import alone costs more
than the whole of a urllib call's, bench 30). ``fleet machines list`` and ``exec`` run on it
(fleet/cli/oneshot.py); everything else is ``FleetClient``'s.

Each read is bounded by the size asked for, h11 bounds the answer's head, a line of a streamed
answer is bounded by the caller's ``max_line``, and the whole exchange by one deadline (as the
async transport's ``Timeout(total=...)``): a gateway that trickles keepalives cannot hold it
longer.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.parse

import h11

from fleet.client.http_head import (
    HEAD_LIMIT,
    READ_SIZE,
    content_type,
    joined_headers,
    request_headers,
)

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


class Broken(Exception):
    """The connection could not be made, or broke; ``sent``: the request may have reached the
    gateway (so it may have run)."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class BlockingAnswer:
    """An answer's head, and its body as it comes."""

    def __init__(self, http: h11.Connection, sock: socket.socket, head: h11.Response,
                 deadline: float | None) -> None:  # fmt: skip
        self._http, self._sock, self._deadline = http, sock, deadline
        self.status = head.status_code
        self.headers = joined_headers(head)
        self.content_type = content_type(self.headers)
        self._buf = bytearray()
        self._done = False

    def _fill(self) -> bool:
        """More of the body into the buffer; False at its end."""
        if self._done:
            return False
        try:
            event = _next_event(self._http, self._sock, self._deadline)
        except TimeoutError:
            raise  # its own: the caller tells a slow answer from a broken one
        except (h11.ProtocolError, OSError) as exc:
            raise Broken(f"the answer broke off: {exc!r}", sent=True) from None
        if isinstance(event, h11.Data):
            self._buf += event.data
            return True
        self._done = True  # its end (EndOfMessage)
        return False

    def read(self, limit: int) -> bytes:
        """The whole body; ``Broken`` past ``limit`` bytes."""
        while self._fill():
            if len(self._buf) > limit:
                raise Broken(f"the answer is longer than {limit} bytes", sent=True)
        return bytes(self._buf)

    def lines(self, max_line: int) -> Iterator[bytes]:
        """The body's lines as they come (the last one without its end, if it has none);
        ``Broken`` at a line longer than ``max_line``."""
        start = 0
        while True:
            at = self._buf.find(b"\n", start)
            if at >= 0:
                line = bytes(self._buf[: at + 1])
                del self._buf[: at + 1]
                start = 0
                yield line
                continue
            if len(self._buf) > max_line:
                raise Broken(f"a line of the answer is longer than {max_line} bytes", sent=True)
            start = len(self._buf)
            if not self._fill():
                if self._buf:
                    yield bytes(self._buf)
                return


def _next_event(http: h11.Connection, sock: socket.socket, deadline: float | None) -> object:
    while (event := http.next_event()) is h11.NEED_DATA:
        if deadline is not None:
            if (left := deadline - time.monotonic()) <= 0:
                raise TimeoutError("the call's time ran out")
            sock.settimeout(left)
        http.receive_data(sock.recv(READ_SIZE))
    return event


def _connect(url: urllib.parse.SplitResult, timeout_s: float | None) -> socket.socket:
    tls = url.scheme == "https"
    sock = socket.create_connection((url.hostname, url.port or (443 if tls else 80)),
                                    timeout=timeout_s)  # fmt: skip
    if not tls:
        return sock
    import ssl  # here: a context loads the system's certificates, which http:// does without

    try:
        return ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname)
    except BaseException:
        sock.close()
        raise


@contextlib.contextmanager
def post(
    url: str, path: str, headers: Mapping[str, str], body: bytes, timeout_s: float | None
) -> Iterator[BlockingAnswer]:
    """POST ``body`` to ``path`` under ``url``; the answer once its head came. ``timeout_s``
    bounds the whole exchange, its connect and its answer's end included (None: no bound):
    past it a read raises ``TimeoutError``; a connection that cannot be made or breaks,
    ``Broken``."""
    split = urllib.parse.urlsplit(url)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        sock = _connect(split, timeout_s)
    except TimeoutError:
        raise
    except OSError as exc:
        raise Broken(str(exc), sent=False) from None
    with sock:
        http = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
        head = h11.Request(method="POST", target=(split.path or "") + path,
                           headers=request_headers(split, headers, body))  # fmt: skip
        request = b"".join(
            http.send(e) or b"" for e in (head, h11.Data(data=body), h11.EndOfMessage())
        )
        # A gateway that refuses a request answers, and closes, before it read it whole: its
        # answer is the request's, not the broken send.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        try:
            while not isinstance(answer := _next_event(http, sock, deadline), h11.Response):
                pass  # a 1xx
        except TimeoutError:
            raise
        except (h11.ProtocolError, OSError) as exc:
            raise Broken(f"no answer came: {exc!r}", sent=True) from None
        yield BlockingAnswer(http, sock, answer, deadline)
