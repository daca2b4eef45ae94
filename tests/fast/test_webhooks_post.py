"""A webhook's POST (services/webhooks/post.py) against a server on this host's loopback: it
goes to the checked address with the URL's name as Host (nothing resolved again), reads no
more of an answer than it keeps, follows no redirect, gives up at its timeout, and uses a
kept connection again only for the same checked address."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from controlplane.policy import Target
from services.webhooks.post import EXCERPT, IDLE_S, Connections, PostFailed, post
from tests.fakes.clock import ManualClock

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serving(handler: Serve) -> AsyncIterator[tuple[int, list[bytes]]]:
    heads: list[bytes] = []

    async def on(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        heads.append(await r.readuntil(b"\r\n\r\n"))
        await handler(r, w)
        w.close()

    server = await asyncio.start_server(on, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


def target(port: int) -> Target:
    return Target(ipaddress.ip_address("127.0.0.1"), port, "hooks.example.com", False, "/in?x=1")


def answering(raw: bytes) -> Serve:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(raw)
        await w.drain()

    return handle


async def test_the_post_goes_to_the_checked_address_with_the_urls_name() -> None:
    async for port, heads in serving(answering(b"HTTP/1.1 204 No Content\r\n\r\n")):
        answer = await post(target(port), {"webhook-id": "abc"}, b'{"a":1}', 5.0, None)
        assert answer.status == 204
        head = heads[0].decode()
        assert head.startswith("POST /in?x=1 HTTP/1.1\r\n")
        assert f"host: hooks.example.com:{port}\r\n" in head.lower()
        assert "webhook-id: abc\r\n" in head
        assert "content-type: application/json" in head


async def test_an_answers_body_is_read_no_further_than_its_excerpt() -> None:
    big = b"HTTP/1.1 500 Oops\r\nContent-Length: 100000000\r\nRetry-After: 120\r\n\r\n"
    big += b"x" * 65536
    async for port, _ in serving(answering(big)):
        answer = await post(target(port), {}, b"{}", 5.0, None)
        assert (answer.status, answer.retry_after_s) == (500, 120.0)
        assert answer.excerpt == "x" * EXCERPT


async def test_a_redirect_is_an_answer_never_followed() -> None:
    moved = b"HTTP/1.1 307 Moved\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n"
    async for port, heads in serving(answering(moved)):
        assert (await post(target(port), {}, b"{}", 5.0, None)).status == 307
        assert len(heads) == 1


async def test_no_answer_in_time_is_a_timeout_and_no_server_a_failure() -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()  # until the client gives up and closes

    async for port, _ in serving(silent):
        with pytest.raises(TimeoutError):
            await post(target(port), {}, b"{}", 0.2, None)
    async for port, _ in serving(answering(b"")):
        with pytest.raises(PostFailed, match="no answer"):
            await post(target(port), {}, b"{}", 5.0, None)
    with pytest.raises(PostFailed, match="cannot connect"):
        await post(target(1), {}, b"{}", 5.0, None)


async def test_a_kept_connection_is_used_again_for_the_same_checked_address_only() -> None:
    peers: list[tuple[str, int]] = []

    async def keep(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        peers.append(w.get_extra_info("peername"))
        while await r.readuntil(b"\r\n\r\n"):
            await r.readexactly(2)  # the body: {}
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await w.drain()

    ended: list[bool] = []
    all_ended = asyncio.Event()

    async def on(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await keep(r, w)
        w.close()
        await w.wait_closed()
        ended.append(True)
        if len(ended) == 2:
            all_ended.set()

    server = await asyncio.start_server(on, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Connections() as kept:
            for _ in range(3):
                assert (await post(target(port), {}, b"{}", 5.0, None, kept)).status == 200
            assert len(peers) == 1  # one connection, three requests
            other = Target(ipaddress.ip_address("127.0.0.1"), port, "other.example.com", False,
                           "/")  # fmt: skip
            assert (await post(other, {}, b"{}", 5.0, None, kept)).status == 200
            assert len(peers) == 2  # another destination: never the first one's connection
        await asyncio.wait_for(all_ended.wait(), 5)  # closing them closed both
    finally:
        server.close()


async def test_a_kept_connection_the_endpoint_closed_is_replaced_at_once() -> None:
    served = 0

    async def once(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal served
        await r.readuntil(b"\r\n\r\n")
        await r.readexactly(2)
        served += 1
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # keep-alive, then closed while idle
        await w.drain()
        w.close()
        await w.wait_closed()

    server = await asyncio.start_server(once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Connections() as kept:
            for _ in range(3):
                assert (await post(target(port), {}, b"{}", 5.0, None, kept)).status == 204
        assert served == 3
    finally:
        server.close()


async def test_idle_connections_are_closed_in_time_and_bounded_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoint made, tested and deleted with a new address each time leaves no socket."""
    ends = asyncio.Queue[None]()

    async def on(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await r.readuntil(b"\r\n\r\n"):
                await r.readexactly(2)
                w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await w.drain()
        w.close()
        ends.put_nowait(None)

    async def ended(n: int) -> None:
        for _ in range(n):
            await asyncio.wait_for(ends.get(), 5)

    monkeypatch.setattr("services.webhooks.post.MAX_IDLE", 4)
    server = await asyncio.start_server(on, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = ManualClock()
    try:
        async with Connections(clock) as kept:
            for n in range(6):  # six destinations: the two idle longest are closed
                to = Target(ipaddress.ip_address("127.0.0.1"), port, f"h{n}.example.com", False,
                            "/")  # fmt: skip
                assert (await post(to, {}, b"{}", 5.0, None, kept)).status == 204
            await ended(2)
            assert kept.idle == 4
            await clock.advance(IDLE_S)  # none used since: each closed by the sweep
            await ended(4)
            assert kept.idle == 0
    finally:
        server.close()
