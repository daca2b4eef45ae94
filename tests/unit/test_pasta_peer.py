"""Which socket of the host a connection's other end is (providers/pasta_peer.py), on kernel
tables written here: an exact match; a host address the host rewrote, matched by its port only
when one socket has it; a connection from anywhere else (a container picking the port of a
pasta's connection) never matched by its port."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers import pasta_peer

HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  inode\n"
DOOR = ("172.17.0.1", 37931)


def _row(local: str, remote: str, inode: int) -> str:
    rest = "01 00000000:00000000 00:00000000 00000000 0 0"
    return f"   1: {local} {remote} {rest} {inode} 1 0 20 4 30 10 -1\n"


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tcp"
    monkeypatch.setattr(pasta_peer, "_TABLES", (path,))
    return path


def test_the_socket_from_the_peer_to_the_door_is_found(table: Path) -> None:
    # 172.17.0.1:43324 -> 172.17.0.1:37931 (a pasta's), and the door's own end the other way.
    table.write_text(HEAD + _row("010011AC:A93C", "010011AC:942B", 11)
                     + _row("010011AC:942B", "010011AC:A93C", 12))  # fmt: skip
    assert pasta_peer.socket_inode(("172.17.0.1", 43324), DOOR) == 11


def test_a_rewritten_host_address_is_matched_by_its_port_alone(table: Path) -> None:
    table.write_text(HEAD + _row("010011AC:A93C", "010011AC:942B", 11))
    assert pasta_peer.socket_inode(("192.0.2.2", 43324), DOOR, by_port=True) == 11
    # From anywhere but the host (a container that picked the pasta's port): nobody.
    assert pasta_peer.socket_inode(("172.17.0.9", 43324), DOOR) is None


def test_two_sockets_with_the_port_are_nobody(table: Path) -> None:
    table.write_text(HEAD + _row("010011AC:A93C", "010011AC:942B", 11)
                     + _row("0100007F:A93C", "010011AC:942B", 13))  # fmt: skip
    assert pasta_peer.socket_inode(("192.0.2.2", 43324), DOOR, by_port=True) is None
    assert pasta_peer.socket_inode(("127.0.0.1", 43324), DOOR, by_port=True) == 13
