"""Which machine's pasta a TCP connection on this host comes from.

A gvisor machine's stack has a loopback of its own, so the egress proxy cannot listen inside
its namespace as it does for the others (providers/egress_proxy.py): it listens on the host, at
the address the machine reaches NATS at. Every connection a local machine makes leaves through
its pasta, as a socket pasta holds on the host; the platform started that pasta and marked it
with the machine's name (``NETNS_OF``), so the socket's holder says which machine connected.
Nothing the machine sends is trusted for that, and a connection no pasta holds (a container on
a bridge, a process of the host) is nobody's.

The kernel's table of TCP sockets (``/proc/net/tcp``, ``tcp6``) gives the inode of the socket
whose local and remote ends are the connection's, seen from the other side; the pasta whose
descriptors hold that inode is the machine's.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from base import procinfo

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
Endpoint = tuple[str, int]


def _hex_endpoint(field: str) -> Endpoint:
    """``/proc/net/tcp``'s ``ADDR:PORT`` (the address in the kernel's byte order) as text."""
    addr, port = field.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four 32-bit words, each in host byte order
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        host = socket.inet_ntop(socket.AF_INET6, words)
        mapped = ipaddress.IPv6Address(host).ipv4_mapped
        host = str(mapped) if mapped is not None else host
    return host, int(port, 16)


def socket_inode(local: Endpoint, remote: Endpoint, *, by_port: bool = False) -> int | None:
    """The inode of this host's TCP socket from ``local`` to ``remote``, if there is one.

    ``by_port``: ``local`` is an address of this host, which the host may have rewritten (a
    pasta socket bound to a bridge's address is seen from another of the host's), so a socket
    of the host to ``remote`` from ``local``'s port is the one, if it is the only such. Only
    for a host address: a connection from anywhere else (a container) could pick the port of
    a pasta's connection, but never complete a handshake from an address of the host's."""
    exact, same_port = None, set()
    for table in _TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) <= 9 or _hex_endpoint(f[2]) != remote or not int(f[9]):
                continue
            mine = _hex_endpoint(f[1])
            if mine == local:
                exact = int(f[9])
            elif mine[1] == local[1]:
                same_port.add(int(f[9]))
    if exact is not None:
        return exact
    return same_port.pop() if by_port and len(same_port) == 1 else None


def holder(inode: int, pids: dict[str, list[int]]) -> str | None:
    """Which of ``pids`` (name -> the pids of its pasta) holds socket ``inode``."""
    link = f"socket:[{inode}]"
    for name, found in pids.items():
        for pid in found:
            try:
                if link in procinfo.fd_links(pid).values():
                    return name
            except OSError:
                continue
    return None
