"""One nats-server and one valkey per pytest process (each xdist worker), shared by its tests,
each test in a namespace of its own (docs/development.md, "Namespaces").

- valkey, on a unix socket only (no TCP port to find or to lose): a test's keys start with a
  prefix of its own (``FLEET_KEY_PREFIX``, which every
  ``Store`` builds its keys from). After the test, its keys are deleted by prefix (SCAN and
  UNLINK), and nothing may be left: no key outside a live test's prefix, no client of it still
  connected.
- NATS: the worker's server is lent to one test at a time (a worker runs its tests one after
  another), and emptied after it: every stream deleted (the events, the audit log, KV buckets
  and object stores are all streams, with their consumers), and no client of the test still
  connected (the server's monitoring ``/connz``). Not an account per test: a daemon connects
  with its own credentials (its machine id and token), which nats-py sends in preference to a
  URL's, so an account's user in the URL would not reach the daemons.

A server found not empty fails the test that left it so, naming what is left, and is replaced
before the next test takes it. The shared servers refuse ``stop``, ``kill`` and ``start``
while lent: a test that stops its server takes one of its own (``own_nats_server``,
``own_redis_server`` in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import secrets
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import redis.asyncio as aioredis
import redis.exceptions

from fleet.up import NatsServer, ValkeyServer

#: How long a test's clients may take to be gone once it ended (closed connections are seen
#: at once; a killed process's within its kernel's teardown).
GONE_WITHIN_S = 15.0

#: How long emptying a server may take, its wait for clients to be gone included.
EMPTY_WITHIN_S = GONE_WITHIN_S + 30.0

T = TypeVar("T")


#: A test stack's audit stream's size (``FLEET_AUDIT_MAX_BYTES``): JetStream reserves a file
#: stream's whole limit on disk when it makes the stream, and the production 10 GiB, on every
#: stack a test starts, had the suite fail for want of disk under about 16 GB free.
TEST_AUDIT_MAX_BYTES = 256 * 1024**2


class SharedServerError(RuntimeError):
    """A test tried to stop, kill or start a server it shares with the worker's other tests."""


class _Lent:
    """Refuses ``stop``, ``kill`` and ``start`` while a test holds the server."""

    name: str
    lent = False

    def _refuse(self, what: str) -> None:
        if self.lent:
            raise SharedServerError(
                f"the worker's {self.name} is shared by its tests: a test that must {what} it "
                f"takes own_{'nats' if self.name == 'nats' else 'redis'}_server (tests/conftest.py)"
            )

    def stop(self, timeout_s: float = 10.0) -> None:
        self._refuse("stop")
        super().stop(timeout_s)  # type: ignore[misc]

    def kill(self) -> None:
        self._refuse("kill")
        super().kill()  # type: ignore[misc]

    def start(self) -> None:
        self._refuse("start")
        super().start()  # type: ignore[misc]


class SharedNats(_Lent, NatsServer):
    pass


class SharedValkey(_Lent, ValkeyServer):
    pass


class WorkerServers:
    """The worker's two servers, started when a test first takes one, ended with ``close``."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._made = itertools.count(1)
        self._nats: SharedNats | None = None
        self._valkey: SharedValkey | None = None
        #: The prefixes of the tests holding a namespace now.
        self._live: set[str] = set()

    def new_prefix(self) -> str:
        return f"t{next(self._made)}:"

    @contextmanager
    def lend_nats(self) -> Iterator[NatsServer]:
        """The worker's nats-server, this test's alone until it ends; emptied after it."""
        server = self._nats
        if server is None:
            server = self._nats = self._new(SharedNats(self._root / f"nats-{next(self._made)}",
                                                       monitor=True))  # fmt: skip
        if server.lent:
            raise SharedServerError("the worker's nats-server is lent already")
        server.lent = True
        try:
            yield server
        finally:
            server.lent = False
            left = _emptied(_empty_nats(server))
            if left:
                self._nats = None  # the next test takes a new one
                self._end(server)
                raise AssertionError(f"the test left on the worker's nats-server: {left}")

    @contextmanager
    def valkey_namespace(self, prefix: str) -> Iterator[ValkeyServer]:
        """The worker's valkey, on which this test keeps to keys under ``prefix``; they are
        deleted after it, and nothing else of it may be left."""
        server = self._valkey
        if server is None:
            server = self._valkey = self._new(SharedValkey(
                self._root / f"valkey-{next(self._made)}", password=secrets.token_urlsafe(16),
                unix=True,
            ))  # fmt: skip
        if prefix in self._live:
            raise SharedServerError(f"key prefix {prefix!r} is in use")
        self._live.add(prefix)
        server.lent = True
        try:
            yield server
        finally:
            self._live.discard(prefix)
            server.lent = bool(self._live)
            left = _emptied(_empty_valkey(server.url, prefix, frozenset(self._live)))
            if left:
                if not self._live:
                    self._valkey = None
                    self._end(server)
                raise AssertionError(f"the test left on the worker's valkey: {left}")

    def _new(self, server: NatsServer | ValkeyServer) -> Any:
        try:
            server.start()
        except BaseException:  # one that never got ready may run all the same
            server.stop()
            raise
        return server

    def _end(self, server: SharedNats | SharedValkey) -> None:
        server.lent = False
        server.stop()

    def close(self) -> None:
        with ExitStack() as ends:
            for server in (self._nats, self._valkey):
                if server is not None:
                    ends.callback(self._end, server)
        self._nats = self._valkey = None

    def __enter__(self) -> WorkerServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _emptied(coro: Coroutine[Any, Any, list[str]]) -> list[str]:
    """What ``coro`` found left after emptying a server, or why it could not empty it (a
    server that died under the test, or does not answer: it is replaced all the same)."""
    try:
        return _run(_within(EMPTY_WITHIN_S, coro))
    except (OSError, TimeoutError, nats.errors.Error, redis.exceptions.RedisError) as exc:
        return [f"it could not be emptied: {exc!r}"]


async def _within(seconds: float, coro: Coroutine[Any, Any, T]) -> T:
    """``coro``, or TimeoutError after ``seconds`` (nats-py's connect to a server that is gone
    tries again for ever, whatever its options say)."""
    async with asyncio.timeout(seconds):
        return await coro


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` in an event loop of its own, in a thread: a fixture's teardown may run inside
    the test's loop or outside any."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _empty_nats(server: NatsServer) -> list[str]:
    """Delete every stream; what is still there (a client still connected, a stream that came
    back): empty if nothing."""
    nc = await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0,
                            connect_timeout=5, name="tests.shared_servers")  # fmt: skip
    try:
        jsm = nc.jsm()
        for stream in await jsm.streams_info():
            await jsm.delete_stream(stream.config.name or "")
        info = await jsm.account_info()
        left = [f"{info.streams} streams"] if info.streams else []
    finally:
        await nc.close()
    clients = await _until_none(lambda: _connections(server.monitor_port))
    return left + [f"a client connected: {name}" for name in clients]


def _connections(monitor_port: int) -> list[str]:
    url = f"http://127.0.0.1:{monitor_port}/connz"
    with urllib.request.urlopen(url, timeout=5) as answer:
        found = json.load(answer).get("connections") or []
    return [f"{c.get('name') or '(no name)'} from port {c.get('port')}" for c in found]


async def _empty_valkey(url: str, prefix: str, live: frozenset[str]) -> list[str]:
    """Delete the keys under ``prefix``; what is still there outside every live prefix (keys,
    a client still connected): empty if nothing."""
    r = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        batch: list[str] = []
        async for key in r.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await r.unlink(*batch)
                batch.clear()
        if batch:
            await r.unlink(*batch)
        stray = [k async for k in r.scan_iter(count=1000) if not k.startswith(tuple(live))]
        if stray:
            await r.unlink(*stray)  # the next test starts on an empty server all the same
        own = await r.client_id()

        async def others() -> list[str]:
            if live:  # another test's clients are its own business
                return []
            clients = await r.client_list()
            return [f"{c.get('name') or c['addr']}" for c in clients if int(c["id"]) != own]

        clients = await _until_none(others)
    finally:
        await r.aclose()
    left = [f"{len(stray)} keys outside its prefix, e.g. {sorted(stray)[:5]}"] if stray else []
    return left + [f"a client connected: {c}" for c in clients]


async def _until_none(find: Callable[[], Any]) -> list[str]:
    """What ``find()`` (sync or async) finds, until it finds nothing or ``GONE_WITHIN_S``
    passed; what it found last."""
    # A deadline, not a timeout that cancels: a redis command cancelled mid-reply can leave
    # its connection's close waiting, and the whole emptying then ran out of time instead of
    # naming the client (seen once on a loaded host).
    deadline = asyncio.get_running_loop().time() + GONE_WITHIN_S
    while True:
        got = find()
        last: list[str] = await got if asyncio.iscoroutine(got) else got
        if not last or asyncio.get_running_loop().time() >= deadline:
            return last
        await asyncio.sleep(0.05)
