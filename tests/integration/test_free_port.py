"""`free_port` holds the port it hands out until the server binds it: two callers (parallel
test workers, or one `fleet up --ha` choosing fifteen ports) are never handed the same one, and
the real servers still bind it."""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

import pytest

from fleet.embedded import NatsServer, ValkeyServer, free_port


def test_a_port_handed_out_is_refused_to_a_plain_bind() -> None:
    port = free_port()
    with socket.socket() as other, pytest.raises(OSError, match="in use") as refused:
        other.bind(("127.0.0.1", port))
    assert refused.value.errno == errno.EADDRINUSE


def test_two_callers_drawing_the_same_number_get_two_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = random.randrange(20_000)  # every draw of both callers: this number
    monkeypatch.setattr(random, "randrange", lambda _n: drawn)
    first, second = free_port(), free_port()
    assert first != second


def test_the_servers_bind_the_port_they_were_handed(tmp_path: Path) -> None:
    with (
        NatsServer(tmp_path / "nats", port=free_port()) as nats_server,
        ValkeyServer(tmp_path / "valkey", port=free_port(), password="pw") as valkey,
        socket.create_server(("0.0.0.0", free_port())) as listener,  # asyncio's and aiohttp's bind
    ):
        for port in (nats_server.port, valkey.port, listener.getsockname()[1]):
            with socket.create_connection(("127.0.0.1", port), 2):
                pass
