"""Benchmark 1: daemon RPC through DaemonClient, against raw nats-py request/reply.

The client is this process; the server is one daemon process (``bench.rpc_host``: the real
``Daemon``, plus a raw responder on the same NATS connection). The raw baseline sends the very
bytes DaemonClient sends and gets back the very bytes the daemon answered, so the ratio isolates
what fleetd adds on both ends: JSON-RPC encoding and decoding, param validation, dispatch, a task
per request, and the work itself (for tool.writeFile, an atomic 1 KiB file write). A second
baseline for tool.writeFile, "raw+write", has the raw responder do the same atomic write with
the fewest system calls (open a temp file with its final mode, write, close, rename over): the
floor of a writeFile RPC on this file system. It is the daemon's write less the daemon's own
rules: neither fsyncs, both create the temp file in the target's directory with mode 0644 and
rename it over the same target; the daemon adds the confinement's lstat per path component and
an fchmod only when the umask would change the mode (not at 0644 under umask 022). The raw
responder answers with nats-py's ``Msg.respond``, which sends the request's four signature
headers back with the answer: a heavier reply than the daemon's one MAC header, never a lighter.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.aio.client import Client as NATS

from bench.common import REPO, Figure, Report, median, percentile, temp_dir
from bench.daemons import (
    bench_token,
    daemon_client,
    daemon_env,
    kill_group,
    sign_headers,
    signing_key,
    spawn,
    token_keys,
)
from bench.procstat import cpu_seconds
from bench.stack import nats_server
from contracts.bus import subjects
from contracts.daemon.rpc import HEALTH, WRITE_FILE, HealthResult, WriteFileParams
from contracts.ids import new_machine_id
from contracts.rpc.jsonrpc import NoParams, decode_response, encode_request
from controlplane.bus import ensure_stream
from controlplane.settings import Settings

Call = Callable[[], Awaitable[object]]
CONTENT = "x" * 1024
INFLIGHT = 64


async def sequential(call: Call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def throughput(call: Call, n: int, inflight: int = INFLIGHT) -> float:
    per_worker = max(1, n // inflight)

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return per_worker * inflight / (time.perf_counter() - t)


async def run(report: Report, quick: bool) -> None:
    rounds, seq_n, conc_n = (2, 300, INFLIGHT * 20) if quick else (5, 1000, INFLIGHT * 60)
    print(f"[1] daemon RPC: DaemonClient vs raw nats-py request/reply ({rounds} rounds)")
    with temp_dir() as root, nats_server(root / "nats") as ns:
        nc = await nats.connect(ns.url, name="bench-client")
        try:
            # The daemon's ready report goes to the stream.
            await ensure_stream(nc.jetstream(), Settings())
            await _with_daemon(report, nc, ns.url, root, root / "home", rounds, seq_n, conc_n, "")
            shm = Path("/dev/shm")
            if not quick and shm.is_dir() and os.access(shm, os.W_OK):
                # The same, with the machine's home on tmpfs: what is left without the disk.
                with temp_dir(base=shm) as tmpfs_home:
                    await _with_daemon(
                        report, nc, ns.url, root, tmpfs_home, 3, seq_n, conc_n, " (home on tmpfs)"
                    )
        finally:
            await nc.close()
    await _components(report, quick)


async def _with_daemon(
    report: Report,
    nc: NATS,
    nats_url: str,
    root: Path,
    home: Path,
    rounds: int,
    seq_n: int,
    conc_n: int,
    variant: str,
) -> None:
    mid = new_machine_id()
    home.mkdir(exist_ok=True)
    env = daemon_env(nats_url, mid, home) | {"PYTHONPATH": str(REPO)}
    pid = spawn([sys.executable, "-m", "bench.rpc_host"], env, root / f"{mid}.log")
    try:
        await _measure(report, nc, mid, rounds, seq_n, conc_n, variant, pid)
    finally:
        kill_group(pid)


async def _measure(
    report: Report,
    nc: NATS,
    mid: str,
    rounds: int,
    seq_n: int,
    conc_n: int,
    variant: str = "",
    pid: int = 0,
) -> None:
    key = signing_key(bench_token(mid))
    mc = daemon_client(nc, token_keys({mid: bench_token(mid)})).machine(mid)
    async with asyncio.timeout(30):
        while True:
            try:
                await mc.health(timeout_s=1)
                break
            except Exception:  # noqa: BLE001 - not up yet
                await asyncio.sleep(0.05)
    write_params = WriteFileParams(path="bench/1k.txt", content=CONTENT, mode=0o644)
    write_req = encode_request(WRITE_FILE.name, write_params, 1)
    health_req = encode_request(HEALTH.name, NoParams(), 1)
    # The raw requests carry the same headers as DaemonClient's (a signature, once there is
    # one); the raw responder does not check them, the daemon does: that is part of its cost.
    write_h = sign_headers(key, mid, write_req)
    health_h = sign_headers(key, mid, health_req)
    prefix = f"bench.raw.{mid}"
    sizes = []
    for name, req, h in (("write", write_req, write_h), ("health", health_req, health_h)):
        answer = await nc.request(subjects.daemon_rpc(mid), req, timeout=10, headers=h)
        await nc.request(f"{prefix}.{name}.set", answer.data, timeout=10)
        sizes.append(f"{name} {len(req)}/{len(answer.data)} B")
    if not variant:
        print(f"    request/reply sizes: {', '.join(sizes)}", flush=True)

    async def raw_write() -> object:
        return await nc.request(f"{prefix}.write", write_req, timeout=10, headers=write_h)

    async def raw_write_floor() -> object:
        return await nc.request(f"{prefix}.writefs", write_req, timeout=10, headers=write_h)

    async def raw_health() -> object:
        return await nc.request(f"{prefix}.health", health_req, timeout=10, headers=health_h)

    async def client_write() -> object:
        return await mc.write_file("bench/1k.txt", CONTENT, 0o644)

    async def client_health() -> object:
        return await mc.health()

    Modes = dict[str, Call]
    methods: dict[str, Modes] = {
        f"{WRITE_FILE.name} 1 KiB": {
            "client": client_write,
            "raw": raw_write,
            "raw+write": raw_write_floor,
        },
        HEALTH.name: {"client": client_health, "raw": raw_health},
    }
    for modes in methods.values():  # warm up every path
        for call in modes.values():
            await sequential(call, 200)
    if variant:  # only the file write depends on where the home is
        del methods[HEALTH.name]
    for label, modes in methods.items():
        label += variant
        lat: dict[str, list[float]] = {who: [] for who in modes}
        tput: dict[str, list[float]] = {who: [] for who in modes}
        #: The daemon process's CPU per call at 64 in flight (from /proc): what the daemon
        #: itself spends, far steadier than throughput on a shared machine.
        cpu: dict[str, float] = dict.fromkeys(modes, 0.0)
        order = list(modes.items())
        for r in range(rounds):  # interleaved, rotating who goes first: noise hits all alike
            turn = order[r % len(order) :] + order[: r % len(order)]
            for who, call in turn:
                lat[who] += await sequential(call, seq_n)
            for who, call in turn[::-1]:
                cpu0 = cpu_seconds(pid) or 0.0
                tput[who].append(await throughput(call, conc_n))
                cpu[who] += ((cpu_seconds(pid) or 0.0) - cpu0) / (conc_n * rounds)
        p50, raw50 = percentile(lat["client"], 50), percentile(lat["raw"], 50)
        p99, raw99 = percentile(lat["client"], 99), percentile(lat["raw"], 99)
        calls, raw_calls = median(tput["client"]), median(tput["raw"])
        report.add(
            Figure(
                "1",
                f"{label}: sequential p50",
                p50,
                "s",
                raw50,
                "raw",
                "<= 1.5x raw",
                p50 <= 1.5 * raw50,
            )
        )
        report.add(Figure("1", f"{label}: sequential p99", p99, "s", raw99, "raw"))
        report.add(
            Figure(
                "1",
                f"{label}: {INFLIGHT} in flight",
                calls,
                "calls/s",
                raw_calls,
                "raw",
                ">= 0.7x raw",
                calls >= 0.7 * raw_calls,
            )
        )
        per_round = sorted(c / r for c, r in zip(tput["client"], tput["raw"], strict=True))
        report.note(
            f"{label}: {INFLIGHT}-in-flight ratio per round (each next to its raw run): "
            + ", ".join(f"{x:.2f}" for x in per_round)
        )
        floor = "raw+write" if "raw+write" in modes else "raw"
        report.add(
            Figure("1", f"{label}: daemon CPU per call, {INFLIGHT} in flight", cpu["client"],
                   "s", cpu[floor], floor, note="the daemon process's own CPU time")
        )  # fmt: skip
        if "raw+write" in modes:
            f50, f_calls = percentile(lat["raw+write"], 50), median(tput["raw+write"])
            report.add(
                Figure(
                    "1",
                    f"{label}: p50 vs raw + the same write",
                    p50,
                    "s",
                    f50,
                    "raw+write",
                    note="floor incl. the file system",
                )
            )
            report.add(
                Figure(
                    "1",
                    f"{label}: {INFLIGHT} in flight vs raw + the same write",
                    calls,
                    "calls/s",
                    f_calls,
                    "raw+write",
                    note="floor incl. the file system",
                )
            )


def _builtin_sha256() -> Callable[[bytes], object]:
    """Python's own SHA-256 (``_sha256`` to 3.11, ``_sha2`` from 3.12), not OpenSSL's."""
    import importlib

    try:
        return importlib.import_module("_sha256").sha256  # type: ignore[no-any-return]
    except ImportError:
        return importlib.import_module("_sha2").sha256  # type: ignore[no-any-return]


async def _components(report: Report, quick: bool) -> None:
    """In-process cost of each piece of one call, to explain the ratio (no NATS, no I/O wait)."""
    from contracts.daemon.rpc import WriteFileResult
    from daemon.compose import compose
    from daemon.processes import tools
    from daemon.settings import DaemonSettings

    n = 2000 if quick else 10000
    with temp_dir() as home:
        d = compose(
            DaemonSettings(nats_url="nats://x", machine_id="m-0", machine_token="t", home=str(home))
        )
        params = WriteFileParams(path="bench/1k.txt", content=CONTENT, mode=0o644)
        write_req = encode_request(WRITE_FILE.name, params, 1)
        health_req = encode_request(HEALTH.name, NoParams(), 1)
        write_answer = b'{"jsonrpc":"2.0","id":1,"result":{"path":"/x","bytesWritten":1024}}'
        health_answer = b'{"jsonrpc":"2.0","id":1,"result":{"ok":true,"uptimeS":1.0}}'

        def per_call(fn: Callable[[], object]) -> float:
            t = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - t) / n

        async def dispatch(body: bytes) -> float:
            dispatcher = d._dispatcher
            t = time.perf_counter()
            for _ in range(n):
                await dispatcher.handle(body, None)
            return (time.perf_counter() - t) / n

        async def task_hop() -> float:
            async def nothing() -> None:
                return None

            t = time.perf_counter()
            for _ in range(n):
                await asyncio.create_task(nothing())
            return (time.perf_counter() - t) / n

        home_path = Path(home)

        def codec_write() -> None:
            encode_request(WRITE_FILE.name, params, 1)
            decode_response(write_answer, WriteFileResult)

        def codec_health() -> None:
            encode_request(HEALTH.name, {}, 1)
            decode_response(health_answer, HealthResult)

        costs = {
            "client encode_request + decode_response (writeFile)": per_call(codec_write),
            "client encode_request + decode_response (health)": per_call(codec_health),
            "daemon dispatch, tool.writeFile incl. the write": await dispatch(write_req),
            "daemon dispatch, daemon.health": await dispatch(health_req),
            "tools.write_file alone (mkdir, open, fchmod, write, rename)": per_call(
                lambda: tools.write_file(home_path, params)
            ),
            "asyncio task per request (create + await)": await task_hop(),
        }
    try:
        from contracts.daemon.signing import MacKey, ReplayGuard, sign, verify
    except ImportError:  # before signed daemon RPC
        pass
    else:
        key = signing_key("component-token")
        guard = ReplayGuard()
        signed = [(b, sign(key, "m-0", b)) for b in [write_req] * n]
        costs["client sign (HMAC-SHA256 headers), writeFile body"] = per_call(
            lambda: sign(key, "m-0", write_req)
        )
        it = iter(signed)

        def verify_next() -> None:
            body, headers = next(it)
            verify(key, "m-0", body, headers, guard)

        costs[f"verify + replay guard, writeFile body ({n} requests in a row)"] = per_call(
            verify_next
        )
        # The daemon's MACs run on the builtin SHA-256 (daemon/lean.py keeps OpenSSL out).
        builtin = MacKey(bytes(key), sha256=_builtin_sha256())
        costs["HMAC of a writeFile body: OpenSSL SHA-256 (platform)"] = per_call(
            lambda: key.hexmac(write_req)
        )
        costs["HMAC of a writeFile body: builtin SHA-256 (daemon)"] = per_call(
            lambda: builtin.hexmac(write_req)
        )
    for name, cost in costs.items():
        report.note(f"component: {name}: {cost * 1e6:.1f} µs per call")
