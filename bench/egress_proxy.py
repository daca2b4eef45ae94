"""Benchmark 31: a request through the egress proxy with a secret added
(providers/egress/proxy.py), against a direct connection to the same upstream in the same run.

Three processes, as on a host: an HTTPS upstream (a bare asyncio server with a CA of its own,
HTTP/1.1 keep-alive), the proxy (an ``EgressProxy`` listening on 127.0.0.1 in its own namespace,
a machine attached per path), and the client (aiohttp, keep-alive on, one session per path).
The paths: direct; *secret added* (the machine's instance has a secret naming the upstream, so
its TLS is ended at the proxy, the header added and the request sent on over TLS); the same
with each use counted in a real Valkey (``Store.secrets.used``, which the provisioner's proxy
awaits on every request); *tunnel* (no secret: a plain ``CONNECT``). Each path is warmed up
first (the ``CONNECT``, both handshakes, the leaf).

- latency: N small GETs in a row on each path (the upstream answers with the Authorization
  header it got, checked), one of each per round so that load on the shared host hits all
  paths alike; p50 and p90, against the direct connection; the proxy's CPU a request beside;
- throughput: a large download (64 MiB with ``--quick``, else 256 MiB) on each path in turn,
  the median of the rounds, against the direct one; the proxy's CPU per GiB beside, and all
  three processes' CPU per GiB against the direct path's (what a host pays for a byte).

Targets: p50 latency at most 1.3x the direct one, throughput at least 0.7x. With ``--profile
DIR`` the proxy runs under cProfile and its top functions go to DIR/egress-proxy.txt.
"""

from __future__ import annotations

import asyncio
import json
import os
import pstats
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from secrets import token_urlsafe

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec

from base.logs import configure_logging
from bench.common import Figure, Report, median, percentile, temp_dir
from bench.procstat import cpu_seconds
from contracts.gateway.network import EgressPolicy
from controlplane.security.crypto import SecretBox, generate_secret_key
from controlplane.security.secret_ca import LeafContexts, leaf, make_ca, server_context
from controlplane.store import Store, StoredSecret
from fleet.up import ValkeyServer
from providers.egress import EgressProxy, Platform

MiB = 1024 * 1024
VALUE = "sk-bench-value"
#: Each path's note; the proxy's port for each machine is printed under the path's key.
PATHS = {
    "direct": "",
    "secret added": "TLS ended at the proxy, header added",
    "secret added, use stored": "as above, and each use counted in Valkey, as the provisioner does",
    "tunnel": "CONNECT, no secret",
}
#: The paths a large download is timed on (one count in Valkey more is nothing to one of them).
BIG = ("direct", "secret added", "tunnel")
_BLOCK = bytes(MiB)
Ports = dict[str, int]


# --- the upstream (a child process) ------------------------------------------------------------
async def _upstream(root: Path) -> None:
    """HTTPS on 127.0.0.1: ``/small`` answers the Authorization header it got (or ``none``),
    ``/big/N`` N bytes, ``/conns`` how many connections it accepted. Prints its port."""
    box = SecretBox(generate_secret_key())
    ca, key = make_ca("upstream", box), ec.generate_private_key(ec.SECP256R1())
    (root / "upstream-ca.pem").write_text(ca.cert_pem)
    accepted = 0
    open_: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        open_[w] = asyncio.current_task()  # type: ignore[assignment]
        try:
            while head := await r.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                auth = next((ln.split(":", 1)[1].strip() for ln in lines[1:]
                             if ln.lower().startswith("authorization:")), "none")  # fmt: skip
                body = (str(accepted) if path == "/conns" else auth).encode()
                size = int(path.rsplit("/", 1)[1]) if path.startswith("/big/") else len(body)
                top = (b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                       b"content-length: %d\r\n\r\n" % size)  # fmt: skip
                await _answer(w, top, body, size if path.startswith("/big/") else 0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()
            open_.pop(w, None)

    ctx = server_context(leaf(ca, box, "127.0.0.1", key), key)
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await _until_stdin_closes()
    server.close()
    for w in list(open_):  # each connection's task ends on its own (closed), none cancelled
        w.close()
    await asyncio.gather(*open_.values(), return_exceptions=True)


async def _answer(w: asyncio.StreamWriter, head: bytes, small: bytes, big: int) -> None:
    """``head`` and ``small`` in one write (as a web server answers), or ``head`` and then
    ``big`` zero bytes a MiB at a time."""
    w.write(head if big else head + small)
    for sent in range(0, big, MiB):
        w.write(_BLOCK[: min(MiB, big - sent)])
        await w.drain()
    await w.drain()


# --- the proxy (a child process) ---------------------------------------------------------------
async def _proxy(root: Path, upstream_port: int, redis_url: str) -> None:
    """An EgressProxy with a machine per path: the instance of ``secret added`` and of ``secret
    added, use stored`` has a secret naming the upstream (the second's uses are counted in the
    store at ``redis_url``), the one of ``tunnel`` none. Writes the instances' CA (one for
    both); prints the ports."""
    box = SecretBox(generate_secret_key())
    ca = make_ca("bench", box)
    (root / "instance-ca.pem").write_text(ca.cert_pem)
    secret = StoredSecret(name="API_KEY", hosts=[f"127.0.0.1:{upstream_port}"],
                          header="Authorization", format="Bearer {value}",
                          sealed=box.encrypt(VALUE))  # fmt: skip
    leaves = LeafContexts(box)

    async def policy(_: str) -> EgressPolicy:
        return EgressPolicy(allow=["127.0.0.1"])

    async def secrets(iid: str, host: str, port: int) -> list[StoredSecret]:
        return [] if iid == "tunnel" else [secret]

    async def leaf_of(iid: str, host: str) -> ssl.SSLContext:
        return leaves.context(iid, ca, host)

    async def used(iid: str, name: str, mid: str, *_: str) -> None:
        if iid == "secret added, use stored":
            await store.secrets.used(iid, name, mid)

    async def here(pid: int, make: Callable[[], socket.socket]) -> socket.socket:
        return make()  # this process's own namespace stands for the machine's

    platform = Platform(policy=policy, secrets=secrets, leaf=leaf_of, open_value=box.decrypt,
                        used=used)  # fmt: skip
    trust = ssl.create_default_context(cafile=str(root / "upstream-ca.pem"))
    async with (
        Store(redis_url) as store,
        EgressProxy(
            platform, frozenset(), trust, listen_at=("127.0.0.1", 0), socket_in=here
        ) as proxy,
    ):
        for path in list(PATHS)[1:]:  # a machine of an instance of its own for each path
            await proxy.attach(path, path, os.getpid())
        print(json.dumps({path: proxy.port_of(path) for path in list(PATHS)[1:]}), flush=True)
        await _until_stdin_closes()


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _spawn(args: list[str], profile: Path | None = None) -> tuple[subprocess.Popen[str], Ports]:
    """A child of this module (``upstream`` or ``proxy``) and the ports it printed."""
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    proc = subprocess.Popen([sys.executable, *prefix, "-m", "bench.egress_proxy", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()  # the child ends on its own (and cProfile writes its figures)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the client (this process) -----------------------------------------------------------------
Get = Callable[[str], Awaitable[bytes]]


def _getter(session: aiohttp.ClientSession, proxy: str | None, trust: ssl.SSLContext) -> Get:
    async def get(url: str) -> bytes:
        async with session.get(url, proxy=proxy, ssl=trust) as r:
            r.raise_for_status()
            if "/big/" in url:
                got = 0
                async for data in r.content.iter_any():
                    got += len(data)
                return str(got).encode()
            return await r.read()

    return get


async def _latencies(
    gets: dict[str, Get], url: str, n: int, proxy_pid: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each request's seconds by path, and the proxy's mean CPU seconds a request on each."""
    out: dict[str, list[float]] = {k: [] for k in gets}
    cpu = dict.fromkeys(gets, 0.0)
    for _ in range(n):
        for key, get in gets.items():  # one of each per round: the same load on all
            c0 = _run_ns(proxy_pid)
            t0 = time.perf_counter()
            await get(url)
            out[key].append(time.perf_counter() - t0)
            cpu[key] += (_run_ns(proxy_pid) - c0) / 1e9 / n
    return out, cpu


def _run_ns(pid: int) -> int:
    """Nanoseconds ``pid``'s main thread has run (/proc's schedstat: finer than stat's ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


async def _throughputs(
    gets: dict[str, Get], url: str, size: int, rounds: int, proxy: int, upstream: int
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Median MiB/s of each path; the proxy's CPU seconds per GiB on each, and all three
    processes' (the client's, the proxy's, the upstream's)."""
    speeds: dict[str, list[float]] = {k: [] for k in gets}
    cpu: dict[str, list[float]] = {k: [] for k in gets}
    total: dict[str, list[float]] = {k: [] for k in gets}
    per_gib = 1024 * MiB / size

    def used() -> tuple[float, float]:
        by_proxy = cpu_seconds(proxy) or 0.0
        return by_proxy, by_proxy + (cpu_seconds(upstream) or 0.0) + time.process_time()

    for _ in range(rounds):
        for key, get in gets.items():
            (p0, all0), t0 = used(), time.perf_counter()
            assert int(await get(url)) == size
            speeds[key].append(size / MiB / (time.perf_counter() - t0))
            p1, all1 = used()
            cpu[key].append((p1 - p0) * per_gib)
            total[key].append((all1 - all0) * per_gib)
    return _medians(speeds), _medians(cpu), _medians(total)


def _medians(got: dict[str, list[float]]) -> dict[str, float]:
    return {k: median(v) for k, v in got.items()}


async def _measure(root: Path, up: int, ports: dict[str, int], pids: tuple[int, int],
                   quick: bool, report: Report) -> None:  # fmt: skip
    """The figures, measured through the proxy and the upstream of ``pids``."""
    proxy_pid = pids[0]
    upstream_ca = ssl.create_default_context(cafile=str(root / "upstream-ca.pem"))
    instance_ca = ssl.create_default_context(cafile=str(root / "instance-ca.pem"))
    base = f"https://127.0.0.1:{up}"
    sessions = {path: aiohttp.ClientSession(trust_env=False, read_bufsize=MiB,
                                            timeout=aiohttp.ClientTimeout(total=600))
                for path in PATHS}  # fmt: skip
    try:
        gets = {
            path: _getter(s, f"http://127.0.0.1:{ports[path]}" if path in ports else None,
                          instance_ca if path.startswith("secret") else upstream_ca)
            for path, s in sessions.items()
        }  # fmt: skip
        seen = {k: (await _latencies({k: g}, f"{base}/small", 5, proxy_pid)
                    and await g(f"{base}/small"))
                for k, g in gets.items()}  # warm: connected, both handshakes done  # fmt: skip
        assert seen == {p: f"Bearer {VALUE}".encode() if p.startswith("secret") else b"none"
                        for p in PATHS}, seen  # fmt: skip
        n, size, rounds = (300, 64 * MiB, 5) if quick else (1000, 256 * MiB, 7)
        load0 = os.getloadavg()[0]
        lat, per_request = await _latencies(gets, f"{base}/small", n, proxy_pid)
        big = {k: g for k, g in gets.items() if k in BIG}
        speed, cpu, total = await _throughputs(big, f"{base}/big/{size}", size, rounds, *pids)
        conns = int(await gets["direct"](f"{base}/conns"))
        load1 = os.getloadavg()[0]
    finally:
        for s in sessions.values():
            await s.close()
    _figures(report, lat, speed)
    for path in BIG[1:]:
        report.add(Figure("31", f"CPU per GiB downloaded, all 3 processes, {path}", total[path],
                          "s", total["direct"], "direct (client and upstream)"))  # fmt: skip
    report.note(f"egress proxy: {n} requests a path, {rounds} downloads of {size // MiB} MiB "
                f"a path; the proxy's CPU per GiB: " + ", ".join(
                    f"{k} {v:.2f} s" for k, v in cpu.items() if k != "direct")
                + "; its CPU a small GET: " + ", ".join(
                    f"{k} {v * 1e6:.0f} µs" for k, v in per_request.items() if k != "direct")
                + f"; the upstream accepted {conns} connections in all (keep-alive); load "
                f"average (1 min) {load0:.2f} at the start, {load1:.2f} at the end")  # fmt: skip


def _figures(report: Report, lat: dict[str, list[float]], speed: dict[str, float]) -> None:
    p50 = {k: percentile(v, 50) for k, v in lat.items()}
    p90 = {k: percentile(v, 90) for k, v in lat.items()}
    for path, how in list(PATHS.items())[1:]:
        report.add(Figure("31", f"small GET via proxy, {path}, p50", p50[path], "s",
                          p50["direct"], "direct", "<= 1.3x", p50[path] <= 1.3 * p50["direct"],
                          note=how))  # fmt: skip
        report.add(Figure("31", f"small GET via proxy, {path}, p90", p90[path], "s",
                          p90["direct"], "direct"))  # fmt: skip
        if path in speed:
            report.add(Figure("31", f"download via proxy, {path}", speed[path], "MiB/s",
                              speed["direct"], "direct", ">= 0.7x",
                              speed[path] >= 0.7 * speed["direct"]))  # fmt: skip


async def run(report: Report, quick: bool, profile: Path | None = None) -> None:
    print(f"[31] egress proxy: small GETs and a large download, {' / '.join(PATHS)}")
    with temp_dir() as root, ValkeyServer(root / "valkey", password=token_urlsafe(16)) as valkey:
        prof = profile / "egress-proxy.prof" if profile else None
        upstream, up = _spawn(["upstream", str(root)])
        proxy = None
        try:
            proxy, ports = _spawn(["proxy", str(root), str(up["port"]), valkey.url], prof)
            await _measure(root, up["port"], ports, (proxy.pid, upstream.pid), quick, report)
        finally:
            for p in (proxy, upstream):
                if p is not None:
                    _stop(p)
        if prof is not None and prof.exists():
            with prof.with_suffix(".txt").open("w") as out:
                pstats.Stats(str(prof), stream=out).sort_stats("tottime").print_stats(30)
            print(f"    (the proxy's profile: {prof.with_suffix('.txt')})")


if __name__ == "__main__":
    configure_logging("dev", "warning")  # stdout carries the ports
    _role, _root = sys.argv[1], Path(sys.argv[2])
    if _role == "upstream":
        asyncio.run(_upstream(_root))
    else:
        asyncio.run(_proxy(_root, int(sys.argv[3]), sys.argv[4]))
