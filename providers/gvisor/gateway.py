"""How a gvisor machine reaches NATS on the host's loopback (``fleet up``'s default: NATS on
127.0.0.1), with no flag to set.

gVisor's network stack has a loopback of its own, so the host's loopback is not reached as a
bwrap machine reaches it (pasta's ``-T``, which forwards the namespace's loopback). It is
reached at the namespace's gateway address instead: pasta, without ``--no-map-gw``, maps
connections to the gateway to the host's loopback. That opens every port of the host's
loopback (valkey, the gateway, metrics), so before anything of the machine runs in the
namespace a ``netdev`` table of the platform's (``fleet_gateway``) drops every frame to the
gateway's addresses but TCP to the NATS ports; it is root's on the host, outside the reach of
the machine (gVisor's own kernel answers its netlink). The daemon is told NATS is at the
gateway's IPv4 address (``machine_nats_url``), and the instance's egress policy counts that
address and those ports as the platform's (``gateway_endpoints``).

The gateway is the host's default route's (pasta gives the namespace the host's routes).
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from contracts.errors import NotSupported
from controlplane.host_addresses import nats_servers
from controlplane.settings import Settings
from providers.egress import nft, run_nft
from providers.sandbox import loopback_ports

TABLE = "netdev fleet_gateway"


def _gateway4() -> str | None:
    """The host's IPv4 default gateway (``/proc/net/route``: little-endian hex)."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) > 2 and f[1] == "00000000" and f[2] != "00000000":
            return str(ipaddress.IPv4Address(bytes.fromhex(f[2])[::-1]))
    return None


def _gateway6() -> str | None:
    """The host's IPv6 default gateway (``/proc/net/ipv6_route``), if it has one."""
    try:
        lines = Path("/proc/net/ipv6_route").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) > 9 and f[0] == "0" * 32 and f[1] == "00" and f[4] != "0" * 32:
            return str(ipaddress.IPv6Address(bytes.fromhex(f[4])))
    return None


def maps_gateway(nats_url: str) -> bool:
    """A NATS server of ``nats_url`` is on the host's loopback: gvisor machines reach it at
    the gateway."""
    return bool(loopback_ports(nats_url))


def gateway() -> str:
    """The address a gvisor machine reaches the host's loopback at; NotSupported without one."""
    found = _gateway4()
    if found is None:
        raise NotSupported(
            "a gvisor machine reaches NATS on the host's loopback at the address of the "
            "host's default gateway, and this host has no IPv4 default route: run NATS on "
            "another address of this host (docs/runtimes.md)",
            data={"runtime": "gvisor"},
        )
    return found


def machine_nats_url(nats_url: str) -> str:
    """``nats_url`` as a gvisor machine reaches it: a loopback host becomes the gateway."""
    if not maps_gateway(nats_url):
        return nats_url
    via = gateway()
    parts = []
    for part in nats_url.split(","):
        url = urlsplit(part.strip() if "://" in part else f"nats://{part.strip()}")
        if url.hostname == "localhost" or _loopback(url.hostname):
            netloc = url.netloc.rpartition("@")
            host = f"{via}:{url.port or 4222}"
            url = url._replace(netloc=f"{netloc[0]}{netloc[1]}{host}")
        parts.append(urlunsplit(url))
    return ",".join(parts)


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gateway_endpoints(nats_url: str, proxy_port: int = 0) -> list[tuple[str, int]]:
    """The platform's endpoints a gvisor machine's policy must leave open: NATS's loopback
    ports at the gateway (none if NATS is elsewhere), and the egress proxy's."""
    proxy = [proxy_endpoint(nats_url, proxy_port)] if proxy_port else []
    if not maps_gateway(nats_url):
        return proxy
    return [(gateway(), port) for port in loopback_ports(nats_url)] + proxy


def proxy_endpoint(nats_url: str, port: int) -> tuple[str, int]:
    """Where a gvisor machine reaches the egress proxy: at its gateway when NATS is on the
    host's loopback (the proxy listens there too), else at NATS's own host."""
    if maps_gateway(nats_url):
        return gateway(), port
    return nats_servers(nats_url)[0][0], port


def proxy_listen(nats_url: str, port: int) -> tuple[str, int]:
    """Where the egress proxy listens for this host's gvisor machines (``proxy_endpoint`` as
    the host sees it)."""
    return ("127.0.0.1", port) if maps_gateway(nats_url) else proxy_endpoint(nats_url, port)


def gvisor_proxy_url(settings: Settings) -> str:
    """This platform's gvisor machines' ``HTTPS_PROXY`` (empty: none)."""
    return machine_proxy_url(settings.nats_url, settings.secrets_proxy_port)


def machine_proxy_url(nats_url: str, port: int) -> str:
    """A gvisor machine's ``HTTPS_PROXY`` (empty: none, or no gateway to reach it at)."""
    if not port:
        return ""
    try:
        host, port = proxy_endpoint(nats_url, port)
    except NotSupported:
        return ""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def guard_script(gw4: str, gw6: str | None, ports: list[int], devices: list[str]) -> str:
    """The ``fleet_gateway`` table: on each of ``devices``, frames to the gateway's IPv4
    address pass only as TCP to ``ports``, and none to its IPv6 address."""
    allowed = ", ".join(str(p) for p in ports)
    rules = [f"ip daddr {gw4} tcp dport {{ {allowed} }} accept", f"ip daddr {gw4} drop"]
    if gw6 is not None:
        rules.append(f"ip6 daddr {gw6} drop")
    hooks = "".join(
        f'  chain out_{i} {{ type filter hook egress device "{d}" priority -10; policy accept; }}\n'
        for i, d in enumerate(devices)
    )
    return (
        f"table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n  chain check {{ }}\n{hooks}}}\n"
        + "".join(f"add rule {TABLE} check {r}\n" for r in rules)
        + "".join(f"add rule {TABLE} out_{i} jump check\n" for i, _ in enumerate(devices))
    )


def _load(gw4: str, gw6: str | None, ports: list[int]) -> subprocess.CompletedProcess[bytes]:
    devices = sorted(name for _, name in socket.if_nameindex() if name != "lo")
    return nft(guard_script(gw4, gw6, ports, devices))


async def guard(netns_pid: int, owner: str, nats_url: str, proxy_port: int = 0) -> None:
    """The ``fleet_gateway`` table written in the namespace of ``netns_pid`` (pasta attached,
    nothing of the machine running there yet): NATS's ports, and the egress proxy's."""
    ports = loopback_ports(nats_url) + ([proxy_port] if proxy_port else [])
    await run_nft(netns_pid, partial(_load, gateway(), _gateway6(), ports), owner)
