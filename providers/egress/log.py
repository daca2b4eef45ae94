"""What a machine's ruleset refused, read on the host: the ``refuse`` chain logs each refused
packet (at most ``RATE`` a second) to NFLOG group ``GROUP`` of the machine's own namespace,
and the host reads that group through a netlink socket made inside the namespace (as the
resolver's socket is: providers/egress/dns.py). Binding an NFLOG group takes CAP_NET_ADMIN in
the namespace, which the machine does not have: it can neither read nor silence its log.

Only the first bytes of each packet are copied (``SNAPLEN``): its destination and port."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator

GROUP = 7
SNAPLEN = 80
#: The kernel logs at most this many refused packets a second per machine (then a burst).
RATE = "limit rate 20/second burst 40 packets"
LOG_RULE = f"{RATE} log group {GROUP} snaplen {SNAPLEN}"

_NETLINK_NETFILTER = 12
_SUBSYS_ULOG = 4
_MSG_PACKET, _MSG_CONFIG = 0, 1
_CFG_CMD, _CFG_MODE = 1, 2
_CMD_BIND = 1
_COPY_PACKET = 2
_ATTR_PAYLOAD = 9
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_HDR = struct.Struct("=IHHII")
_GEN = struct.Struct("=BBH")
Refused = tuple[str, int]


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def open_log() -> socket.socket:
    """A netlink socket bound to NFLOG group ``GROUP`` of the calling thread's namespace,
    copying ``SNAPLEN`` bytes of each packet; non-blocking."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    try:
        s.bind((0, 0))
        body = _GEN.pack(socket.AF_UNSPEC, 0, socket.htons(GROUP))
        body += _attr(_CFG_CMD, bytes([_CMD_BIND]))
        body += _attr(_CFG_MODE, struct.pack("!IBB", SNAPLEN, _COPY_PACKET, 0))
        kind = (_SUBSYS_ULOG << 8) | _MSG_CONFIG
        s.send(_HDR.pack(_HDR.size + len(body), kind, _NLM_F_REQUEST | _NLM_F_ACK, 1, 0) + body)
        ack = s.recv(4096)
        _, ack_kind, _, _, _ = _HDR.unpack_from(ack)
        error = struct.unpack_from("=i", ack, _HDR.size)[0] if ack_kind == _NLMSG_ERROR else 0
        if error != 0:
            raise OSError(-error, f"NFLOG group {GROUP} refused the bind")
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def read_refused(s: socket.socket) -> list[Refused]:
    """Every refused (destination, port) waiting on the log socket."""
    out: list[Refused] = []
    while True:
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return out
        out += [r for payload, family in _packets(data) if (r := _destination(payload, family))]


def _packets(data: bytes) -> Iterator[tuple[bytes, int]]:
    at = 0
    while at + _HDR.size <= len(data):
        length, kind, _, _, _ = _HDR.unpack_from(data, at)
        if length < _HDR.size:
            return
        if kind == (_SUBSYS_ULOG << 8) | _MSG_PACKET:
            family = data[at + _HDR.size]
            attrs = at + _HDR.size + _GEN.size
            while attrs + 4 <= at + length:
                alen, akind = struct.unpack_from("=HH", data, attrs)
                if alen < 4:
                    break
                if akind & 0x7FFF == _ATTR_PAYLOAD:
                    yield data[attrs + 4 : attrs + alen], family
                attrs += alen + (-alen % 4)
        at += length + (-length % 4)


def _destination(packet: bytes, family: int) -> Refused | None:
    """The destination address and (TCP, UDP) port of an IP packet's first bytes."""
    if family == socket.AF_INET and len(packet) >= 20:
        header, proto = (packet[0] & 0x0F) * 4, packet[9]
        dst = str(ipaddress.IPv4Address(packet[16:20]))
    elif family == socket.AF_INET6 and len(packet) >= 40:
        header, proto = 40, packet[6]
        dst = str(ipaddress.IPv6Address(packet[24:40]))
    else:
        return None
    port = 0
    if proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP) and len(packet) >= header + 4:
        port = struct.unpack_from("!H", packet, header + 2)[0]
    return dst, port
