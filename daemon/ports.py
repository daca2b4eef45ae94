"""The machine's listening ports, read from ``/proc/net/tcp`` and ``/proc/net/tcp6``.

Only sockets a tunnel can reach are listed: in LISTEN, bound to the loopback or to every
address. The daemon reads its own network namespace's tables, which (with a namespace per
machine) are exactly the machine's ports.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from contracts.errors import NotSupported
from contracts.jsonrpc import NoParams
from contracts.ports import Family, ListeningPort, PortList

#: ``st`` of a socket in LISTEN (include/net/tcp_states.h).
_LISTEN = "0A"
_TABLES: tuple[tuple[str, Family], ...] = (("tcp", "ipv4"), ("tcp6", "ipv6"))


def decode_address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The kernel prints each 32-bit word of the address in host byte order, as hex."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(
        int.from_bytes(raw[i : i + 4], "big").to_bytes(4, sys.byteorder)
        for i in range(0, len(raw), 4)
    )
    return ipaddress.ip_address(words)


def reachable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Bound where a connection to the loopback gets it: the loopback itself, or any address."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


def parse_table(text: str, family: Family) -> list[ListeningPort]:
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        hex_addr, _, hex_port = fields[1].partition(":")
        addr = decode_address(hex_addr)
        if reachable(addr):
            found.append(ListeningPort(port=int(hex_port, 16), address=str(addr), family=family))
    return found


def listening_ports(proc_net: Path = Path("/proc/net")) -> PortList:
    ports: dict[tuple[int, Family], ListeningPort] = {}
    read_any = False
    for name, family in _TABLES:
        try:
            text = (proc_net / name).read_text()
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
        read_any = True
        for p in parse_table(text, family):
            # Several sockets on one port (SO_REUSEPORT, 127.0.0.1 and 0.0.0.0): listed once.
            ports.setdefault((p.port, family), p)
    if not read_any:
        raise NotSupported(f"{proc_net} has no tcp table to read listening ports from")
    return PortList(ports=[ports[k] for k in sorted(ports)])


async def list_ports(_: NoParams, __: None) -> PortList:
    return listening_ports()
