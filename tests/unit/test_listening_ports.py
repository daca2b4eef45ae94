"""The daemon's reading of /proc/net/tcp and tcp6: LISTEN sockets on the loopback or every
address, each port once per family; others (established, bound to another address) left out."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.errors import NotSupported
from contracts.ports import ListeningPort
from daemon.ports.listening import (
    Holders,
    decode_address,
    listener_inodes,
    listening_ports,
    parse_table,
    started_with,
)

HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def v4(addr: str) -> str:
    """An IPv4 address as the kernel prints it (one 32-bit word in host byte order)."""
    return socket.inet_aton(addr)[:: -1 if sys.byteorder == "little" else 1].hex().upper()


def row(n: int, local: str, state: str, uid: int = 1000) -> str:
    """Row ``n``: its socket's inode is 100 + n."""
    return (f"   {n}: {local} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000"
            f"  {uid}        0 {100 + n} 1 0000000000000000 100 0 0 10 0\n")  # fmt: skip


def test_ipv4_listen_rows_on_loopback_or_any_only() -> None:
    table = HEAD + "".join([
        row(0, f"{v4('127.0.0.1')}:0BB8", "0A"),  # 3000 on the loopback
        row(1, f"{v4('0.0.0.0')}:0016", "0A"),  # 22 on every address
        row(2, f"{v4('10.1.2.3')}:1F90", "0A"),  # 8080 on another address: unreachable
        row(3, f"{v4('127.0.0.1')}:A000", "01"),  # established
        row(4, f"{v4('127.0.0.53')}:0035", "0A"),  # 53 on 127.0.0.53: still the loopback
    ])  # fmt: skip
    assert parse_table(table, "ipv4") == [
        ListeningPort(port=3000, address="127.0.0.1", family="ipv4"),
        ListeningPort(port=22, address="0.0.0.0", family="ipv4"),
        ListeningPort(port=53, address="127.0.0.53", family="ipv4"),
    ]


def test_ipv6_addresses_decode_word_by_word() -> None:
    def v6(addr: str) -> str:
        raw = socket.inet_pton(socket.AF_INET6, addr)
        return (
            b"".join(
                int.from_bytes(raw[i : i + 4], "big").to_bytes(4, sys.byteorder)
                for i in range(0, 16, 4)
            )
            .hex()
            .upper()
        )

    assert str(decode_address(v6("::1"))) == "::1"
    assert str(decode_address(v6("fe80::1:2"))) == "fe80::1:2"
    rows = [("::", "1F40"), ("::ffff:127.0.0.1", "0050"), ("fd00::5", "0051")]
    table = HEAD + "".join(row(n, f"{v6(a)}:{port}", "0A") for n, (a, port) in enumerate(rows))
    # An IPv4-mapped address as this Python writes it ("::ffff:127.0.0.1" from 3.13 on).
    mapped = str(ipaddress.IPv6Address("::ffff:7f00:1"))
    assert [(p.port, p.address) for p in parse_table(table, "ipv6")] == [
        (8000, "::"), (80, mapped)
    ]  # fmt: skip


def test_each_port_once_per_family_sorted(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(HEAD + row(0, f"{v4('0.0.0.0')}:1F90", "0A")
                                  + row(1, f"{v4('127.0.0.1')}:1F90", "0A")
                                  + row(2, f"{v4('127.0.0.1')}:0016", "0A"))  # fmt: skip
    ports = listening_ports(tmp_path, Holders(programs={100, 101, 102})).ports
    assert [(p.port, p.family) for p in ports] == [(22, "ipv4"), (8080, "ipv4")]


def test_only_the_machines_programs_sockets_are_listed(tmp_path: Path) -> None:
    """By who holds each socket: a program of the machine (listed); the platform's daemon, or
    nobody of the machine (the DNS proxy's resolver, the way to NATS: held from outside); one
    a process the daemon may not look into could hold (its owner's)."""
    (tmp_path / "tcp").write_text(HEAD + row(0, f"{v4('127.0.0.1')}:0BB8", "0A")  # 3000
                                  + row(1, f"{v4('127.0.0.53')}:0035", "0A", uid=0)  # resolver
                                  + row(2, f"{v4('127.0.0.1')}:9000", "0A")  # the daemon's
                                  + row(3, f"{v4('0.0.0.0')}:0016", "0A", uid=7))  # fmt: skip

    def listed(held: Holders) -> list[int]:
        return [p.port for p in listening_ports(tmp_path, held).ports]

    assert listed(Holders(programs={100}, platform={102})) == [3000]
    assert listed(Holders(programs={100}, platform={102}, unseen_uids={7})) == [22, 3000]
    # 3000 may be an unseen process's of its owner: listed; the daemon's of that owner is not.
    assert listed(Holders(platform={102}, unseen_uids={1000})) == [3000]


def test_no_table_at_all_is_not_supported(tmp_path: Path) -> None:
    with pytest.raises(NotSupported):
        listening_ports(tmp_path)


def test_a_real_listener_shows_up_unless_the_daemons_own() -> None:
    """Read from this host's /proc, this process in the daemon's place: a child's listener is
    a program's, this process's own is the platform's."""
    server = [sys.executable, "-c", LISTEN]
    with subprocess.Popen(server, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        assert port in {p.port for p in listening_ports().ports}
        child.kill()
    assert port not in {p.port for p in listening_ports().ports}
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        own.listen()
        assert own.getsockname()[1] not in {p.port for p in listening_ports().ports}


LISTEN = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


def test_a_kernels_own_sockets_are_those_it_opened_as_it_started(tmp_path: Path) -> None:
    """Read from this host's /proc: the listeners that appeared while a process started (the
    kernel in ``started_with``) are its own, unless another readable process holds one (a
    server of the machine's that started meanwhile); they are not listed, whoever holds them."""
    before = listener_inodes()
    server = [sys.executable, "-c", LISTEN]
    with subprocess.Popen(server, stdout=subprocess.PIPE, text=True) as kernel, \
            subprocess.Popen(server, stdout=subprocess.PIPE, text=True) as other:  # fmt: skip
        assert kernel.stdout is not None
        assert other.stdout is not None
        own, meanwhile = int(kernel.stdout.readline()), int(other.stdout.readline())
        started = started_with(before, kernel.pid)
        assert len(started) == 1
        listed = {p.port for p in listening_ports(started=started).ports}
        assert own not in listed
        assert meanwhile in listed
        kernel.kill()
        other.kill()
    (tmp_path / "tcp").write_text(HEAD + row(0, f"{v4('127.0.0.1')}:0BB8", "0A"))
    assert started_with({100}, None, tmp_path, tmp_path) == frozenset()  # nothing new
