"""The platform under benchmark: embedded servers, `fleet up`, the gateway's JSON-RPC, events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bench.common import REPO
from bench.procstat import children, cmdline
from contracts.bus import subjects
from contracts.bus.subjects import EventKind
from contracts.rpc.jsonrpc import MethodSpec, P, R
from fleet.up import NatsServer, ValkeyServer, banner_ports

FLEET = str(Path(sys.executable).with_name("fleet"))
ADMIN_TOKEN = "bench-admin-token-0123456789"


# --- servers ----------------------------------------------------------------------------------
@contextlib.contextmanager
def nats_server(data_dir: Path) -> Iterator[NatsServer]:
    """An embedded nats-server with JetStream (fleet/up/embedded.py), stopped on exit."""
    server = NatsServer(data_dir, monitor=True)  # connz: the benchmarks count connections
    with server:
        yield server


@contextlib.contextmanager
def servers(root: Path, host: str = "127.0.0.1") -> Iterator[tuple[NatsServer, ValkeyServer]]:
    """NATS (on ``host``: the docker machines' gateway for benchmark 8) and valkey."""
    n, r = (
        NatsServer(root / "nats", monitor=True, host=host),
        ValkeyServer(root / "redis", password=secrets.token_urlsafe(16)),
    )
    with n, r:
        yield n, r


def connz(nats_server: NatsServer, **query: str) -> list[dict[str, Any]]:
    q = "&".join(f"{k}={v}" for k, v in ({"limit": "100000"} | query).items())
    url = f"http://127.0.0.1:{nats_server.monitor_port}/connz?{q}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        conns: list[dict[str, Any]] = msgspec.json.decode(resp.read())["connections"]
    return conns


def rfc3339_to_epoch(text: str) -> float:
    """NATS's nanosecond RFC 3339 timestamps, as seconds since the epoch."""
    head, _, frac = text.rstrip("Z").partition(".")
    frac, tz = (frac[:-6], frac[-6:]) if ("+" in frac or "-" in frac) else (frac, "+00:00")
    base = datetime.fromisoformat(head + tz).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


# --- fleet up ---------------------------------------------------------------------------------
class FleetUp:
    """`fleet up --nats-url --redis-url --port --data-dir`, as a user runs it, in a temp dir."""

    def __init__(
        self, root: Path, nats_url: str, redis_url: str, extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.data_dir = root / "data"
        #: The gateway, on a port the kernel gives (``--port 0``), read from the banner.
        self.url = ""
        #: The preview listener: machines' pages, by path here (``*.localhost`` needs a browser).
        self.previews = ""
        self.log = root / "fleet-up.log"
        # These pass through, so A/B runs of one benchmark can compare loops, batches, log
        # levels and formats, stage concurrency, and a local machine's own network or not.
        keep = ("FLEET_EVENT_LOOP", "FLEET_RPC_BATCH_CONCURRENCY", "FLEET_LOG_LEVEL", "FLEET_ENV",
                "FLEET_CONCURRENCY", "FLEET_SANDBOX_NETWORK")  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_") or k in keep}
        # No warm pool unless a benchmark asks (benchmark 12): the others measure cold starts.
        env |= {"FLEET_ADMIN_TOKEN": ADMIN_TOKEN, "FLEET_WARM_POOL": "local=0", **(extra_env or {})}
        self._argv = [
            FLEET,
            "up",
            "--nats-url",
            nats_url,
            "--redis-url",
            redis_url,
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            *extra_args,
        ]
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FleetUp:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self._argv, env=self._env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "Ctrl-C stops everything" in (said := self.log.read_text(errors="replace")):
                self.url, preview_port = banner_ports(said)
                self.previews = f"http://127.0.0.1:{preview_port}"
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"fleet up did not start:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *_: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # `fleet up` stops local machines itself; swarm hosts are stopped here until it does.
        from providers.swarm import stop_all_swarm

        stop_all_swarm(self.data_dir)

    def service_pids(self) -> dict[str, int]:
        assert self.proc is not None
        out: dict[str, int] = {}
        for pid in children(self.proc.pid):
            argv = cmdline(pid)
            if "-m" in argv and argv[argv.index("-m") + 1].startswith("services."):
                out[argv[argv.index("-m") + 1].removeprefix("services.")] = pid
        return out


class Gateway:
    """JSON-RPC 2.0 over HTTP to the gateway, with batches."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN) -> None:
        self.url = url
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=300),
        )
        self._ids = 0

    async def close(self) -> None:
        await self._session.close()

    async def batch(self, spec: MethodSpec[P, R], params: Sequence[P]) -> list[R]:
        """One JSON-RPC batch of calls to ``spec``: results in order; raises on the first error."""
        ids = list(range(self._ids + 1, self._ids + 1 + len(params)))
        self._ids += len(params)
        body = [
            {"jsonrpc": "2.0", "id": i, "method": spec.name, "params": p}
            for i, p in zip(ids, params, strict=True)
        ]
        data = msgspec.json.encode(body)
        headers = {"Content-Type": "application/json"}
        async with self._session.post(f"{self.url}/rpc", data=data, headers=headers) as resp:
            raw = await resp.read()
        refused = msgspec.json.decode(raw)
        if isinstance(refused, dict):  # the batch refused as a whole (failing over, too large)
            raise RpcError(refused.get("error") or {"message": f"HTTP {resp.status}"})
        answers = msgspec.json.decode(raw, type=list[_Answer])
        by_id = {a.id: a for a in answers}
        out = []
        for i in ids:
            a = by_id[i]
            if a.error is not None:
                raise RpcError(a.error)
            out.append(msgspec.json.decode(a.result, type=spec.result))
        return out

    async def call(self, spec: MethodSpec[P, R], params: P) -> R:
        return (await self.batch(spec, [params]))[0]


class _Answer(msgspec.Struct):
    """One answer of a batch, its result decoded later as the spec's result type."""

    id: int
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    error: dict[str, Any] | None = None


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = int(error.get("code", 0))


class EventWatch:
    """Every machine event as it arrives (core NATS, not the gateway): first arrival time of
    each (kind, machine id), and waiters for "all of these machines reached a kind"."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.counts: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._nc: NATS | None = None

    async def start(self, nats_url: str, kinds: Sequence[EventKind] = ()) -> EventWatch:
        """Watch ``kinds`` only (default: every machine subject). The watch shares the cores
        with what it measures: a run that needs only the last event should not pay for
        decoding every other."""
        self._nc = await nats.connect(nats_url, name="bench-watch", pending_size=256 * 1024 * 1024)
        for subject in [subjects.event_filter(k) for k in kinds] or ["machine.>"]:
            await self._nc.subscribe(subject, cb=self._on_msg, pending_msgs_limit=1_000_000)
        await self._nc.flush()
        return self

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()

    async def _on_msg(self, msg: Msg) -> None:
        t = time.perf_counter()
        _, kind, mid = msg.subject.split(".", 2)
        if (kind, mid) not in self.seen:
            self.seen[kind, mid] = t
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "failed":
                self.failed[mid] = msgspec.json.decode(msg.data).get("reason", "")
            self._changed.set()

    async def wait_count(self, kind: str, count: int, timeout_s: float) -> None:
        """Until ``count`` machines have reached ``kind``; TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self.counts.get(kind, 0) < count:
                self._changed.clear()
                await self._changed.wait()

    async def wait_all(self, kind: str, ids: Sequence[str], timeout_s: float) -> None:
        """Until each machine has ``kind`` (or failed); TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                missing = [m for m in ids if (kind, m) not in self.seen and m not in self.failed]
                if not missing:
                    return
                self._changed.clear()
                await self._changed.wait()
