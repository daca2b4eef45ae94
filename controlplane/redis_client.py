"""The one way a service gets its Redis client: one server by URL (``redis://``, ``rediss://``,
or ``unix://:password@/path/to/socket?db=0``), or the primary that Redis Sentinel names
(``FLEET_REDIS_SENTINELS``), followed across failovers.

With sentinels, ``redis-py`` asks them for the primary at every new connection; a command on a
connection to a server that died or became a replica (``READONLY``) fails with a connection
error, and the retry below reconnects through the sentinels to the new primary. The URL then
only gives the password and the database number.
"""

from __future__ import annotations

import urllib.parse

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

from controlplane.redis_autopipe import AutoPipelineRedis

#: Redis connections per process; more concurrent commands queue for one.
MAX_CONNECTIONS = 64
#: A failover takes the sentinels' down-after time plus an election: a few seconds. Commands
#: retry through it (about 15 s in all) rather than fail the handler that sent them.
_FAILOVER_RETRY = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=20)
_FAILOVER_ERRORS = [ConnectionError, TimeoutError, ReadOnlyError]


#: How long a command waits for a free connection of a full pool before "No connection
#: available." (a ConnectionError, which the gateway answers as Unavailable).
POOL_WAIT_S = 30.0


class FollowingSentinelConnection(SentinelManagedConnection):
    """redis-py's sentinel connection asks the sentinels for the primary only in ``connect``; a
    command's retry reconnects through ``connect_check_health``, to the address it had: the dead
    primary's, until the retries run out, or the old primary's again once it is back as a
    replica (every write READONLY). redis/redis-py#3874. This one asks the sentinels again."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        # ``connect_to`` (the sentinels' answer) calls back without the socket retry.
        if retry_socket_connect and not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
            return
        await super().connect_check_health(check_health, retry_socket_connect)


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (connections to the primary the sentinels name) with the blocking pool's
    bound: at ``max_connections``, a command waits for a connection to come back instead of
    failing with "Too many connections". redis-py has no such class: the MRO puts Sentinel's
    address lookup over ``BlockingConnectionPool.get_connection``/``release``."""


def sentinel_addrs(csv: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` -> [(host, port), ...]."""
    out = []
    for item in (part.strip() for part in csv.split(",")):
        if item:
            host, _, port = item.rpartition(":")
            out.append((host or "127.0.0.1", int(port)))
    return out


def redis_client(
    url: str, *, sentinels: str = "", master: str = "fleetd", max_connections: int = MAX_CONNECTIONS
) -> aioredis.Redis:
    """A client that decodes responses, on a pool of at most ``max_connections`` where a burst
    waits for a free connection; the caller closes it (``aclose``)."""
    common: dict[str, bool | int] = {"decode_responses": True, "health_check_interval": 10}
    if urllib.parse.urlsplit(url).scheme != "unix":  # a unix socket has no keepalive to set
        common["socket_keepalive"] = True
    if not sentinels:
        # A blocking pool: a burst of concurrent commands (a refreshEnv across 1,000 machines)
        # waits for a free connection instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=POOL_WAIT_S, retry_on_timeout=True,
            **common,
        )  # fmt: skip
        return AutoPipelineRedis.from_pool(pool)  # owns the pool: aclose() closes it
    parts = urllib.parse.urlsplit(url)
    password = urllib.parse.unquote(parts.password) if parts.password else None
    db = int(parts.path.lstrip("/") or 0)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addrs(sentinels),
        sentinel_kwargs={"password": password, "socket_timeout": 2.0},
        password=password,
        db=db,
        socket_timeout=10.0,
        retry=_FAILOVER_RETRY,
        retry_on_error=_FAILOVER_ERRORS,
        **common,
    )
    client: aioredis.Redis = sentinel.master_for(
        master,
        redis_class=AutoPipelineRedis,
        connection_pool_class=BlockingSentinelPool,
        connection_class=FollowingSentinelConnection,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
    )
    return client


async def close_client(client: aioredis.Redis) -> None:
    """Close ``client``, its pool and, for Sentinel, its connections to the sentinels (a client
    from ``master_for`` does not own its pool)."""
    await client.aclose(close_connection_pool=True)
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()
