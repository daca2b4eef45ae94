"""The gateway's relays (a terminal's, a tunnel's, a download's) over the in-memory wire, with
an in-memory client socket in place of aiohttp's WebSocket (the real ones, with a daemon and
NATS: tests/integration/test_sessions.py, test_tunnels.py, test_files.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import WSMessage, WSMsgType

from base.byte_stream import ByteStream
from contracts.daemon import sessions as ss
from contracts.errors import StreamAborted
from contracts.gateway import sessions as gs
from contracts.ports import EOF_FRAME
from services.gateway.streams.files import relay_download
from services.gateway.streams.sessions import relay_terminal
from services.gateway.streams.tunnels import CLOSE_BROKEN, CLOSE_DONE, relay_tunnel
from tests.unit.test_bytestream import Wire
from tests.waiters import wait_until

WINDOW = 4096
Ends = tuple[ByteStream, ByteStream]


class Client:
    """The client's end of a WebSocket: what it sends is queued for the relay to read (``None``
    closes it); what the relay sends is recorded; ``gone`` makes sends fail as on a reset."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[WSMessage | None] = asyncio.Queue()
        self.got: list[bytes | str] = []
        self.close_code: int | None = None
        self.close_message = b""
        self.gone = False
        self.news = asyncio.Event()

    def type(self, data: bytes) -> None:
        self.inbox.put_nowait(WSMessage(WSMsgType.BINARY, data, None))

    def text(self, data: str) -> None:
        self.inbox.put_nowait(WSMessage(WSMsgType.TEXT, data, None))

    def leave(self) -> None:
        self.inbox.put_nowait(None)

    async def send_bytes(self, data: bytes) -> None:
        self._check()
        self.got.append(data)
        self.news.set()

    async def send_str(self, data: str) -> None:
        self._check()
        self.got.append(data)
        self.news.set()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        if self.close_code is None:
            self.close_code, self.close_message = code, message
        return True

    def _check(self) -> None:
        if self.gone:
            raise ConnectionResetError("the client's connection was reset")

    def __aiter__(self) -> AsyncIterator[WSMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[WSMessage]:
        while (msg := await self.inbox.get()) is not None:
            yield msg


@pytest.fixture
async def ends() -> AsyncIterator[Ends]:
    """(the gateway's end, the daemon's end), started; closed after the test."""
    gateway, daemon = Wire().pair(window=WINDOW, chunk_size=1024)
    await daemon.start()
    await gateway.start()
    yield gateway, daemon
    for side in (gateway, daemon):
        await side.aclose()


async def _run(relay: Callable[[Client, ByteStream], Awaitable[object]],
               gateway: ByteStream) -> tuple[Client, asyncio.Task[Any]]:  # fmt: skip
    client = Client()
    return client, asyncio.create_task(relay(client, gateway))  # type: ignore[arg-type]


async def _records(daemon: ByteStream, reader: ss.RecordReader, n: int) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    while len(got) < n:
        got += reader.feed(await asyncio.wait_for(daemon.receive(), 5))
    return got


# --- a terminal -------------------------------------------------------------------------------
async def test_a_resize_reaches_the_session_between_the_keys_typed_around_it(ends: Ends) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_terminal, gateway)
    client.type(b"ls")
    client.text(msgspec.json.encode(gs.Resize(cols=120, rows=40)).decode())
    client.type(b"\r")
    got = await _records(daemon, ss.RecordReader(ss.FROM_PLATFORM), 3)
    assert got[0] == (ss.RecordKind.INPUT, b"ls")
    assert got[1][0] is ss.RecordKind.RESIZE
    assert ss.decode_resize(got[1][1]) == (120, 40)
    assert got[2] == (ss.RecordKind.INPUT, b"\r")
    await daemon.send(ss.encode_record(ss.RecordKind.OUTPUT, b"hi"))
    await daemon.end(3)
    await asyncio.wait_for(task, 5)
    assert client.got == [b"hi", '{"type":"exit","code":3}']
    assert client.close_code == 1000


async def test_a_bad_resize_is_refused_on_the_socket_and_the_terminal_goes_on(ends: Ends) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_terminal, gateway)
    client.text('{"type":"resize","cols":0,"rows":40}')
    client.type(b"x")
    got = await _records(daemon, ss.RecordReader(ss.FROM_PLATFORM), 1)
    assert got == [(ss.RecordKind.INPUT, b"x")]
    assert '"type":"error"' in str(client.got[0])
    client.leave()
    await asyncio.wait_for(task, 5)


async def test_a_stalled_session_stops_the_relay_reading_the_client(ends: Ends) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_terminal, gateway)
    for _ in range(8):  # 8 KiB of typing on a 4 KiB window the session never drains
        client.type(bytes(1024))
    await wait_until(lambda: gateway.credit < 1024 + ss.RECORD_HEADER)
    assert client.inbox.qsize() >= 3  # back-pressure: the rest is left in the client's socket
    got = await _records(daemon, ss.RecordReader(ss.FROM_PLATFORM), 8)  # the session drains
    assert sum(len(p) for _, p in got) == 8 * 1024
    assert client.inbox.empty()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_abort_from_the_machine_closes_the_socket_as_lost(ends: Ends) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_terminal, gateway)
    await daemon.abort("the session was closed")
    await asyncio.wait_for(task, 5)
    assert client.close_code == gs.CLOSE_ABORTED
    assert b"the session was closed" in client.close_message


async def test_an_abort_from_the_gateway_side_ends_the_relay_and_reaches_the_machine(
    ends: Ends,
) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_terminal, gateway)
    await gateway.abort("the token was revoked")  # the revocation round does this
    await asyncio.wait_for(task, 5)
    assert client.close_code == gs.CLOSE_ABORTED
    with pytest.raises(StreamAborted, match="revoked"):
        await daemon.receive()


async def test_a_client_that_leaves_mid_stream_detaches_and_the_session_sees_the_end(
    ends: Ends,
) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_terminal, gateway)
    await daemon.send(ss.encode_record(ss.RecordKind.OUTPUT, b"partial"))
    await asyncio.wait_for(client.news.wait(), 5)
    client.leave()
    await asyncio.wait_for(task, 5)
    assert await asyncio.wait_for(daemon.receive(), 5) == b""  # a detach, not an abort


async def test_a_client_reset_while_output_flows_ends_the_relay_quietly(ends: Ends) -> None:
    gateway, daemon = ends
    client = Client()
    client.gone = True
    task = asyncio.create_task(relay_terminal(client, gateway))
    await daemon.send(ss.encode_record(ss.RecordKind.OUTPUT, b"to nobody"))
    await asyncio.wait_for(task, 5)  # ConnectionError: logged, not raised


async def test_cancelling_the_terminal_relay_is_not_swallowed(ends: Ends) -> None:
    _, task = await _run(relay_terminal, ends[0])
    await asyncio.sleep(0)  # let both pumps start waiting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


# --- a tunnel ---------------------------------------------------------------------------------
async def test_a_tunnel_half_closes_each_way_and_ends_once_both_ended(ends: Ends) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_tunnel, gateway)
    client.type(b"GET / HTTP/1.0\r\n\r\n")
    client.text(EOF_FRAME)
    assert await asyncio.wait_for(daemon.receive(), 5) == b"GET / HTTP/1.0\r\n\r\n"
    assert await asyncio.wait_for(daemon.receive(), 5) == b""
    assert not task.done()  # the answer may still come
    await daemon.send(b"HTTP/1.0 200 OK\r\n\r\n")
    await daemon.end()
    assert await asyncio.wait_for(task, 5) == (CLOSE_DONE, "")
    assert client.got == [b"HTTP/1.0 200 OK\r\n\r\n", EOF_FRAME]


async def test_a_tunnel_aborted_by_the_machine_closes_broken(ends: Ends) -> None:
    gateway, daemon = ends
    _, task = await _run(relay_tunnel, gateway)
    await daemon.abort("the connection to port 3000 broke")
    code, reason = await asyncio.wait_for(task, 5)
    assert code == CLOSE_BROKEN
    assert "port 3000 broke" in reason


async def test_a_tunnel_client_that_leaves_mid_stream_aborts_it_for_the_machine(ends: Ends) -> None:
    gateway, daemon = ends
    client, task = await _run(relay_tunnel, gateway)
    client.type(b"half a request")
    assert await asyncio.wait_for(daemon.receive(), 5) == b"half a request"
    client.leave()  # closed without its end frame
    code, reason = await asyncio.wait_for(task, 5)
    assert code == CLOSE_BROKEN
    assert "before its end" in reason
    with pytest.raises(StreamAborted, match="the client left"):
        await daemon.receive()


async def test_a_stalled_tunnel_client_stops_the_machine_side_at_its_window(ends: Ends) -> None:
    gateway, daemon = ends
    client = Client()
    gate = asyncio.Event()
    sent = client.send_bytes

    async def slow_send(data: bytes) -> None:
        await gate.wait()  # the client does not read
        await sent(data)

    client.send_bytes = slow_send  # type: ignore[method-assign]
    task = asyncio.create_task(relay_tunnel(client, gateway))
    sending = asyncio.create_task(daemon.send(bytes(4 * WINDOW)))
    await wait_until(lambda: daemon.credit == 0)
    assert not sending.done()  # the machine waits for credit: nothing piles up in between
    assert gateway.buffered <= WINDOW
    gate.set()
    await asyncio.wait_for(sending, 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_cancelling_the_tunnel_relay_is_not_swallowed(ends: Ends) -> None:
    _, task = await _run(relay_tunnel, ends[0])
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


# --- a file download --------------------------------------------------------------------------
class Response:
    """An HTTP response being written: ``gate`` holds each write (a client not reading);
    ``reset_after`` writes, the client's connection resets."""

    def __init__(self, reset_after: int | None = None) -> None:
        self.body = bytearray()
        self.gate = asyncio.Event()
        self.gate.set()
        self._left = reset_after

    async def write(self, data: bytes) -> None:
        await self.gate.wait()
        if self._left is not None:
            if self._left == 0:
                raise ConnectionResetError("the client's connection was reset")
            self._left -= 1
        self.body += data


async def test_a_download_client_that_stalls_holds_the_machine_at_one_window(ends: Ends) -> None:
    gateway, daemon = ends
    resp = Response()
    resp.gate.clear()
    task = asyncio.create_task(relay_download(gateway, resp, 4 * WINDOW))  # type: ignore[arg-type]
    sending = asyncio.create_task(daemon.send(bytes(4 * WINDOW)))
    await wait_until(lambda: daemon.credit == 0)
    assert not sending.done()
    assert gateway.buffered <= WINDOW
    resp.gate.set()
    await asyncio.wait_for(sending, 5)
    await daemon.end()
    assert await asyncio.wait_for(task, 5) == 4 * WINDOW


async def test_a_download_client_that_leaves_mid_file_aborts_the_machine_side(ends: Ends) -> None:
    gateway, daemon = ends
    resp = Response(reset_after=1)
    sending = asyncio.create_task(daemon.send(bytes(2 * WINDOW)))

    async def download() -> None:
        async with gateway:  # as the download route holds it
            await relay_download(gateway, resp, 2 * WINDOW)  # type: ignore[arg-type]

    with pytest.raises(ConnectionResetError):
        await download()
    with pytest.raises(StreamAborted, match="ConnectionResetError"):
        await asyncio.wait_for(sending, 5)


async def test_a_download_aborted_by_the_machine_reports_a_short_file(ends: Ends) -> None:
    gateway, daemon = ends
    task = asyncio.create_task(relay_download(gateway, Response(), 100))  # type: ignore[arg-type]
    await daemon.send(b"x" * 10)
    await daemon.abort("the disk failed")
    assert await asyncio.wait_for(task, 5) == -1  # the route cuts the response short
