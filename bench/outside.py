"""A host "outside" every machine, for egress tests and benchmarks: a network namespace made
for it (``ip netns add``), joined to this host by a veth pair on a /30 of its own, with a static
HTTP server in it (a page, a bare git repository over git's dumb HTTP protocol, a big file) on
its address, on a second IPv4 address (routed to it from this host) and on an IPv6 one.

Tests send traffic only to it (or to loopback): never to this host's LAN address or beyond.
Needs root and iproute2 (the suite runs as root: ./run test).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PORT = 8080


@dataclass(frozen=True)
class Outside:
    #: The namespace's address (where its server listens) and this host's end of the veth.
    address: str
    host_address: str
    netns: str
    root: Path
    #: Another address of the same server (a /32 this host routes to it), and its IPv6 one.
    address2: str = ""
    address6: str = ""

    def url(self, name: str, address: str = "") -> str:
        host = address or self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{PORT}/{name}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def outside_host(root: Path, repo: Path | None = None, big_mib: int = 0) -> Iterator[Outside]:
    """The namespace and its server, serving ``root`` (``page.txt`` made; ``repo.git``, a bare
    clone of ``repo``, if given; ``big.bin`` of ``big_mib`` MiB if not 0); removed after."""
    tag = secrets.token_hex(3)
    netns, veth_host, veth_ns = f"fleett-{tag}", f"ft{tag}h", f"ft{tag}n"
    # 10.213.x.y/30: private, and neither this host's LAN nor a Docker network.
    block = secrets.randbelow(1 << 14) * 4
    net = f"10.213.{block >> 8}.{block & 0xFF}"
    host_addr, ns_addr = f"10.213.{block >> 8}.{(block & 0xFF) + 1}", _next(net, 2)
    ns_addr2 = f"10.214.{block >> 8}.{(block & 0xFF) + 2}"
    v6 = f"fd21:3:{block:x}::"
    ns_addr6 = f"{v6}2"
    root.mkdir(parents=True, exist_ok=True)
    (root / "page.txt").write_text(f"outside {tag}\n")
    if repo is not None:
        bare = str(root / "repo.git")
        subprocess.run(["git", "clone", "-q", "--bare", str(repo), bare], check=True)
        subprocess.run(["git", "-C", str(root / "repo.git"), "update-server-info"], check=True)
    if big_mib:
        with (root / "big.bin").open("wb") as f:
            f.truncate(big_mib << 20)
    _ip("netns", "add", netns)
    server: subprocess.Popen[bytes] | None = None
    try:
        _ip("link", "add", veth_host, "type", "veth", "peer", "name", veth_ns, "netns", netns)
        _ip("addr", "add", f"{host_addr}/30", "dev", veth_host)
        _ip("link", "set", veth_host, "up")
        _ip("-n", netns, "addr", "add", f"{ns_addr}/30", "dev", veth_ns)
        _ip("-n", netns, "link", "set", veth_ns, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "route", "add", "default", "via", host_addr)
        _ip("-n", netns, "addr", "add", f"{ns_addr2}/32", "dev", "lo")
        _ip("route", "add", f"{ns_addr2}/32", "via", ns_addr, "dev", veth_host)
        _ip("addr", "add", f"{v6}1/64", "dev", veth_host, "nodad")
        _ip("-n", netns, "addr", "add", f"{ns_addr6}/64", "dev", veth_ns, "nodad")
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-m",
                "http.server",
                str(PORT),
                "--bind",
                "::",  # every address: IPv4 ones too (dual stack)
                "--directory",
                str(root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_listening(ns_addr, PORT)
        yield Outside(ns_addr, host_addr, netns, root, ns_addr2, ns_addr6)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", veth_host], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _next(net: str, n: int) -> str:
    a, b, c, d = (int(x) for x in net.split("."))
    return f"{a}.{b}.{c}.{d + n}"


def _wait_listening(host: str, port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
