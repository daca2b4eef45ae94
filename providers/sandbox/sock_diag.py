"""One TCP socket of this host's network namespace by its four addresses, from the kernel
(netlink ``sock_diag``, an exact request): its inode and its owner's uid.

The kernel finds it in its connection hash, as it finds the socket of an arriving segment, so
the work is the same whether the host holds ten connections or a hundred thousand; reading
``/proc/net/tcp`` for it is a walk of every socket of the host, which a machine can make as
long as it likes by opening connections. The request is built here with ``struct``: pyroute2's
``DiagSocket`` asks only for whole tables (a dump), and an exact request sent through its
socket gets the kernel's "no such socket" answer decoded as a socket message.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

Endpoint = tuple[str, int]

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFF
_TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
#: inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid.
_REQUEST = struct.Struct("=BBBBI")
#: inet_diag_sockid: sport, dport (network order), src[16], dst[16], if, cookie[2].
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
#: inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue,
#: uid, inode.
_ANSWER_HEAD = struct.Struct("=BBBB")
_ANSWER_TAIL = struct.Struct("=IIIII")
_SOCKID_SIZE = _SOCKID.size + _SOCKID_TAIL.size


@dataclass(frozen=True)
class TcpSocket:
    inode: int
    #: The uid of the process that made it (its file's owner).
    uid: int


def _packed(host: str) -> tuple[int, bytes]:
    """The family and the 16 bytes sock_diag takes for ``host`` (an IPv4 address in the first
    four)."""
    addr = ipaddress.ip_address(host)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return socket.AF_INET, addr.packed + bytes(12)
    return socket.AF_INET6, addr.packed


class SockDiag:
    """A netlink socket for exact lookups (blocking: run it off the event loop); closed on
    exit."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
        self._seq = 0

    def __enter__(self) -> SockDiag:
        return self

    def __exit__(self, *_: object) -> None:
        self._sock.close()

    def tcp(self, local: Endpoint, remote: Endpoint) -> TcpSocket | None:
        """The socket of this namespace whose own end is ``local`` and whose peer is
        ``remote`` (established, not a listener that would take such a segment), if any."""
        family, src = _packed(local[0])
        dst_family, dst = _packed(remote[0])
        if family != dst_family:
            return None
        self._seq += 1
        sockid = _SOCKID.pack(local[1], remote[1], src, dst) + _SOCKID_TAIL.pack(
            0, _NO_COOKIE, _NO_COOKIE
        )
        body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES) + sockid
        head = _HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST,
                            self._seq, 0)  # fmt: skip
        self._sock.send(head + body)
        while True:
            answer = self._sock.recv(8192)
            length, kind, _, seq, _ = _HEADER.unpack_from(answer)
            if seq == self._seq:
                break
        if kind == _NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", answer, _HEADER.size)
            if -code in (errno.ENOENT, 0):
                return None
            raise OSError(-code, f"sock_diag: {errno.errorcode.get(-code, code)}")
        return _parsed(answer[_HEADER.size : length], (src, local[1]), (dst, remote[1]))


def _parsed(msg: bytes, local: tuple[bytes, int], remote: tuple[bytes, int]) -> TcpSocket | None:
    """The answer's socket, if it is the one asked for: the kernel answers for a listener on
    the local end when no connection has those addresses."""
    family, state, _, _ = _ANSWER_HEAD.unpack_from(msg)
    sport, dport, src, dst = _SOCKID.unpack_from(msg, _ANSWER_HEAD.size)
    *_, uid, inode = _ANSWER_TAIL.unpack_from(msg, _ANSWER_HEAD.size + _SOCKID_SIZE)
    if state == _TCP_LISTEN or not inode:
        return None
    if (_as_asked(family, src), sport) != local or (_as_asked(family, dst), dport) != remote:
        return None
    return TcpSocket(inode, uid)


def _as_asked(family: int, raw: bytes) -> bytes:
    """An answer's address as ``_packed`` gives it (an IPv6 socket's IPv4-mapped address as
    the IPv4 one)."""
    if family == socket.AF_INET:
        return raw[:4] + bytes(12)
    return _packed(str(ipaddress.IPv6Address(raw)))[1]
