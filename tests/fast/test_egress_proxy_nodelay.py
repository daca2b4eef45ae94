"""The egress proxy answers a machine without Nagle's delay (providers/egress/proxy.py): each
answer goes out as a head and a body, and with Nagle on the body waits for the machine's
delayed ACK of the head, about 40 ms a request (benchmark 31 measured it)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from typing import NoReturn

import pytest

from contracts.gateway.network import EgressPolicy
from providers.egress import EgressProxy, Platform


async def _here(pid: int, make: Callable[[], socket.socket]) -> socket.socket:
    return make()  # this process's own namespace stands for the machine's


async def _never(*_: object) -> NoReturn:
    raise AssertionError("no request is made")


async def _policy(_: str) -> EgressPolicy:
    return EgressPolicy()


async def test_a_machines_connection_to_the_proxy_has_nagle_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    platform = Platform(policy=_policy, secrets=_never, leaf=_never, open_value=str,
                        used=_never)  # fmt: skip
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    accept = EgressProxy.accept

    def spy(self: EgressProxy, m: object, r: asyncio.StreamReader,
            w: asyncio.StreamWriter) -> None:  # fmt: skip
        sock = w.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        accept(self, m, r, w)  # type: ignore[arg-type]

    monkeypatch.setattr(EgressProxy, "accept", spy)
    async with EgressProxy(platform, frozenset(), ssl.create_default_context(),
                           listen_at=("127.0.0.1", 0), socket_in=_here) as proxy:  # fmt: skip
        await proxy.attach("m-a", "inst-a", os.getpid())
        _, w = await asyncio.open_connection("127.0.0.1", proxy.port_of("m-a"))
        try:
            nodelay = await asyncio.wait_for(accepted, 10)
        finally:
            w.close()
    assert nodelay != 0
