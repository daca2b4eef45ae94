"""``tool.tunnelConnect``: a TCP connection to a port of the machine's own loopback, joined to a
byte stream both ways.

The daemon connects to ``127.0.0.1:<port>`` (then ``[::1]:<port>``, for a server that listens
on IPv6 only) before it answers, so a closed port is an error the caller sees at once, not a
stream that ends empty. Then two pumps run until both directions are done:

- socket -> stream: read at most a chunk, send it; ``send`` waits while the platform's credit
  is spent, and meanwhile the socket is not read, so the kernel's window pushes back on the
  program in the machine (back-pressure, end to end);
- stream -> socket: write each chunk and wait for the socket to drain before taking the next
  (which is when the platform gets new credit).

Half-close both ways: the program's EOF becomes our end frame, and the platform's end frame
becomes a ``shutdown(SHUT_WR)`` on the socket, so a client that says "no more input" and then
reads its answer (HTTP/1.0, ``nc -N``, a database dump) works. An abort from either side, or a
reset socket, tears both down.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from base.byte_stream import ByteStream
from base.relay import relay
from contracts.daemon.streams import StreamOpened
from contracts.errors import PortUnreachable, StreamAborted
from contracts.ports import TUNNEL_CONNECT, TunnelConnectParams
from contracts.rpc.jsonrpc import handles
from daemon.byte_stream_hub import ByteStreamHub

log = structlog.get_logger(__name__)

#: A port that takes longer than this to accept is reported unreachable.
CONNECT_TIMEOUT_S = 5.0
_LOOPBACKS = ("127.0.0.1", "::1")


async def connect_loopback(
    port: int, timeout_s: float = CONNECT_TIMEOUT_S
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``port`` on the loopback: IPv4 first, then IPv6."""
    errors = []
    for host in _LOOPBACKS:
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, TimeoutError) as exc:
            errors.append(f"{host}: {exc.strerror if isinstance(exc, OSError) else 'timed out'}")
    raise PortUnreachable(
        f"nothing accepts connections on port {port} in the machine ({'; '.join(errors)})",
        data={"port": port},
    )


class Tunnels:
    def __init__(self, hub: ByteStreamHub) -> None:
        self._hub = hub

    @handles(TUNNEL_CONNECT)
    async def tunnel_connect(self, params: TunnelConnectParams, _: None) -> StreamOpened:
        stream = self._hub.open(chunk_size=params.chunk_size, window=params.window)
        try:
            reader, writer = await connect_loopback(params.port)
        except BaseException:
            await stream.aclose()
            raise
        await stream.start()
        self._hub.spawn(self._run(stream, reader, writer, params), name=f"tunnel-{params.port}")
        log.info("tunnel.opened", port=params.port, stream_id=stream.stream_id)
        return StreamOpened(stream_id=stream.stream_id)

    async def _run(self, stream: ByteStream, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter, params: TunnelConnectParams) -> None:  # fmt: skip
        try:
            await relay(to_socket(stream, writer), from_socket(stream, reader, params.chunk_size),
                        until="both")  # fmt: skip
        except StreamAborted as exc:
            log.info("tunnel.aborted", stream_id=stream.stream_id, reason=exc.message)
        except OSError as exc:  # the program reset the connection
            await stream.abort(f"the connection to port {params.port} broke: {exc}")
        except Exception as exc:  # a task boundary: never leave the socket behind
            log.exception("tunnel.failed", stream_id=stream.stream_id, error=repr(exc))
            await stream.abort("the daemon failed")
        finally:
            writer.transport.abort()  # nothing is left to flush: both pumps are done
            await stream.aclose()
            log.info("tunnel.closed", port=params.port, stream_id=stream.stream_id)


async def to_socket(stream: ByteStream, writer: asyncio.StreamWriter) -> None:
    """The platform's bytes into the socket; its end frame half-closes the socket."""
    async for chunk in stream:
        writer.write(chunk)
        await writer.drain()  # credit is granted only once the socket took it
    if writer.can_write_eof():
        with contextlib.suppress(OSError):  # the program closed its side already
            writer.write_eof()


async def from_socket(stream: ByteStream, reader: asyncio.StreamReader, chunk: int) -> None:
    """The program's bytes onto the stream; its EOF is our end frame."""
    while data := await reader.read(chunk):
        await stream.send(data)  # waits for credit: the socket is not read meanwhile
    await stream.end()
