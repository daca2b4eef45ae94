"""`redis_client` by URL: a server on TCP (``redis://``) or on a unix socket (``unix://``)."""

from __future__ import annotations

import redis.asyncio as aioredis

from controlplane.redis_client import redis_client


async def test_a_unix_socket_url_makes_connections_to_that_socket() -> None:
    r = redis_client("unix://:p%40ss@/run/fleet/valkey.sock?db=2")
    try:
        conn = r.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        assert isinstance(conn, aioredis.UnixDomainSocketConnection)
        assert conn.path == "/run/fleet/valkey.sock"
        assert (conn.db, conn.password) == (2, "p@ss")
    finally:
        await r.aclose()


async def test_a_tcp_url_makes_connections_kept_alive() -> None:
    r = redis_client("redis://:pw@127.0.0.1:6390/1")
    try:
        conn = r.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        assert isinstance(conn, aioredis.Connection)
        assert (conn.host, conn.port, conn.db, conn.socket_keepalive) == (
            "127.0.0.1",
            6390,
            1,
            True,
        )
    finally:
        await r.aclose()
