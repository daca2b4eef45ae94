"""Benchmark 23: what deciding who a caller is costs a gateway call.

`fleet up` (its own gateway process); one instance, and a user who is a developer of it. The
same call (``machines.list`` of the instance: the gateway's work, no daemon) is timed
sequentially, p50 over ``n`` calls (the three take turns, in rounds), with:

- the admin token (the baseline: a constant-time compare, no store read for the caller);
- a scoped personal access token of that user (``machines:read`` on the instance: the token's
  record, its user and the user's instance roles, read in one round trip);
- the user's session cookie with its CSRF token (the session's record, the user and their
  roles). The session is made in the store as ``/auth/callback`` makes it (the provider's round
  trip is no part of a call).

The gateway keeps a caller it resolved for at most the revocation round (0.5 s,
``services.gateway.auth.caller_cache``), so at this rate the p50 call reads nothing for its caller;
one call in each half second still pays the round trip (profiled with py-spy before the cache:
the caller's own CPU was a few per cent of the gateway's, the cost was that round trip's wait).

Target: each at most 1.1x the admin token's p50.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.common import Figure, Report, median, temp_dir
from bench.stack import ADMIN_TOKEN, FleetUp, servers
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.console import COOKIE, WebSessions, session_id

TARGET = 1.1


#: The three callers take turns, this many rounds of n / ROUNDS calls each, so that a change in
#: the machine's load during the run falls on all three alike.
ROUNDS = 10


async def p50s_ms(calls: list[Callable[[], Awaitable[None]]], n: int) -> list[float]:
    """Each call's p50 over ``n`` sequential calls, interleaved by rounds."""
    times: list[list[float]] = [[] for _ in calls]
    for call in calls:
        for _ in range(20):  # warm up: connections, caches
            await call()
    for _ in range(ROUNDS):
        for call, out in zip(calls, times, strict=True):
            for _ in range(n // ROUNDS):
                t = time.perf_counter()
                await call()
                out.append((time.perf_counter() - t) * 1000)
    return [median(t) for t in times]


def caller(s: aiohttp.ClientSession, url: str, instance_id: str,
           headers: dict[str, str]) -> Callable[[], Awaitable[None]]:  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": "machines.list",
            "params": {"instanceId": instance_id}}  # fmt: skip

    async def call() -> None:
        async with s.post(f"{url}/rpc", json=body, headers=headers) as r:
            answer = await r.json()
            assert "result" in answer, answer

    return call


async def run(report: Report, quick: bool) -> None:
    n = 300 if quick else 2000
    print(f"[23] a gateway call by admin token, scoped token and session cookie ({n} calls each)")
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as s:
            inst = await _rpc(s, up.url, admin, "instances.create", {"name": "bench"})
            await _rpc(s, up.url, admin, "users.create", {"email": "dev@example.com"})
            member: dict[str, object] = {"instanceId": inst, "user": "dev@example.com",
                                         "role": "developer"}  # fmt: skip
            await _rpc(s, up.url, admin, "instances.setMember", member, key="members")
            made = await _rpc(s, up.url, admin, "tokens.create",
                              {"name": "bench", "user": "dev@example.com", "instanceIds": [inst],
                               "scopes": ["machines:read"]}, key="token")  # fmt: skip
            async with Store(valkey.url) as store:
                user_id = await store.users.id_by_email("dev@example.com")
                assert user_id is not None
                secret = await WebSessions(store, Settings()).start(user_id)
                record = await store.users.session(session_id(secret))
                assert record is not None
            cookie = {"Cookie": f"{COOKIE}={secret}", "X-CSRF-Token": record.csrf}
            base, token, session = await p50s_ms(
                [caller(s, up.url, inst, admin),
                 caller(s, up.url, inst, {"Authorization": f"Bearer {made}"}),
                 caller(s, up.url, inst, cookie)], n,
            )  # fmt: skip
    for name, value in (("scoped token", token), ("session cookie", session)):
        report.add(Figure("23", f"machines.list p50, {name}", value, "ms", base,
                          "admin token", f"<= {TARGET}x", value <= base * TARGET))  # fmt: skip


async def _rpc(s: aiohttp.ClientSession, url: str, headers: dict[str, str], method: str,
               params: dict[str, object], key: str = "id") -> str:  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with s.post(f"{url}/rpc", json=body, headers=headers) as r:
        answer = await r.json()
    assert "result" in answer, answer
    return str(answer["result"][key])
