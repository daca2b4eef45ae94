"""What the benchmarks share: figures, the machine they ran on, servers, `fleet up`, processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts.jsonrpc import MethodSpec, P, R
from contracts.signing import sign
from fleet.embedded import NatsServer, ValkeyServer, free_port
from services.common.crypto import SecretBox
from services.common.daemon_client import DaemonClient
from services.common.store import Store

REPO = Path(__file__).resolve().parent.parent
FLEET = str(Path(sys.executable).with_name("fleet"))
ADMIN_TOKEN = "bench-admin-token-0123456789"


# --- figures ----------------------------------------------------------------------------------
@dataclass
class Figure:
    """One measured figure, with the baseline measured in the same run and the target."""

    bench: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    #: "ratio" (value / baseline) or "" (no baseline for this figure).
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        print("   ", format_figure(fig), flush=True)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"    - {text}", flush=True)

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {
                "figures": [asdict(f) | {"ratio": f.ratio} for f in self.figures],
                "skipped": self.skipped,
                "notes": self.notes,
            }
        )


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s" and value < 1:
        return f"{value * 1000:.1f} ms" if value >= 0.01 else f"{value * 1e6:.0f} µs"
    if unit in ("calls/s", "machines/s"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.2f} {unit}"


def format_figure(f: Figure) -> str:
    parts = [f"{f.name:<46} {fmt(f.value, f.unit):>14}"]
    if f.baseline is not None:
        parts.append(f"  {f.baseline_name} {fmt(f.baseline, f.unit)}")
        if f.ratio is not None:
            parts.append(f"  = {f.ratio:.2f}x")
    if f.target:
        parts.append(f"  target {f.target}: {verdict(f.met)}")
    if f.note:
        parts.append(f"  ({f.note})")
    return "".join(parts)


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[met]


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# --- the machine ------------------------------------------------------------------------------
def machine_description() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    nats_version = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        nats_bin = Path(sys.executable).with_name("nats-server")
        out = subprocess.run([str(nats_bin), "--version"], capture_output=True, text=True)
        nats_version = out.stdout.strip() or out.stderr.strip()
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit = f"{head}{' (with local changes)' if dirty else ''}" if head else commit
    return {
        "commit": commit,
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": mem,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "nats-server": nats_version,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# --- daemon clients ---------------------------------------------------------------------------
#: Where a DaemonClient gets a machine's request-signing key.
KeySource = Callable[[str], Awaitable[bytes]]


def signing_key(token: str) -> bytes:
    """The key that signs requests to a machine (b"" before signed daemon RPC existed)."""
    try:
        from contracts.signing import signing_key as derive
    except ImportError:
        return b""
    return derive(token)


def token_keys(tokens: Mapping[str, str]) -> KeySource:
    """Keys of machines whose tokens this process knows (it started their daemons)."""
    keys = {mid: signing_key(t) for mid, t in tokens.items()}

    async def get(machine_id: str) -> bytes:
        return keys[machine_id]

    return get


@contextlib.asynccontextmanager
async def stored_keys(redis_url: str, secret_key: str) -> AsyncIterator[KeySource]:
    """Keys of the machines the provisioner minted tokens for, as the services get them."""
    async with Store(redis_url) as store:
        box = SecretBox(secret_key)
        cache: dict[str, bytes] = {}

        async def get(machine_id: str) -> bytes:
            if machine_id not in cache:
                sealed = await store.machine_secret(machine_id)
                cache[machine_id] = signing_key(box.decrypt(sealed or ""))
            return cache[machine_id]

        yield get


def daemon_client(nc: NATS, keys: KeySource, timeout_s: float = 10.0) -> DaemonClient:
    """The services' DaemonClient (it signs every request)."""
    return DaemonClient(nc, keys=keys, timeout_s=timeout_s)


def sign_headers(key: bytes, machine_id: str, body: bytes) -> dict[str, str]:
    """Headers as DaemonClient sends them with ``body`` (for a raw baseline of the same bytes)."""
    return sign(key, machine_id, body, ttl_s=15.0)


# --- processes --------------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _kb_field(pid: int, key: str) -> float | None:
    value = proc_status(pid).get(key)
    return int(value.split()[0]) / 1024 if value else None


def rss_mb(pid: int) -> float | None:
    return _kb_field(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float | None:
    """The high-water mark of the process's resident set (VmHWM)."""
    return _kb_field(pid, "VmHWM")


def uss_pss_mb(pid: int) -> tuple[float | None, float | None]:
    """(USS, PSS): memory only this process uses, and its fair share of shared pages."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None, None
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        with contextlib.suppress(ValueError, IndexError):
            fields[key] = int(value.split()[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return uss / 1024, fields.get("Pss", 0) / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def bench_token(machine_id: str) -> str:
    return f"bench-token-{machine_id}"


def daemon_env(nats_url: str, machine_id: str, home: Path) -> dict[str, str]:
    """The environment the local provider gives a daemon (see providers.LocalProvider)."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "FLEET_GIT_SHA")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env | {
        "HOME": str(home),
        "FLEET_HOME": str(home),
        "FLEET_NATS_URL": nats_url,
        "FLEET_MACHINE_ID": machine_id,
        "FLEET_MACHINE_TOKEN": bench_token(machine_id),
        "FLEET_LOG_LEVEL": "warning",
    }


def spawn(argv: list[str], env: dict[str, str], log: Path) -> int:
    """posix_spawn, as the local provider starts daemons (no fork of this big process)."""
    out = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return os.posix_spawn(
        argv[0],
        argv,
        env,
        setsid=True,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), out, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
    )


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@contextlib.contextmanager
def temp_dir(keep: bool = False, base: Path | None = None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir=base))
    try:
        yield path
    finally:
        if keep:
            print(f"    (kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def nats_server(data_dir: Path) -> Iterator[NatsServer]:
    """An embedded nats-server with JetStream (fleet/embedded.py), stopped on exit."""
    server = NatsServer(data_dir)
    with server:
        yield server


@contextlib.contextmanager
def servers(root: Path) -> Iterator[tuple[NatsServer, ValkeyServer]]:
    n, r = NatsServer(root / "nats"), ValkeyServer(root / "redis")
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
        self, root: Path, nats_url: str, redis_url: str, extra_env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = root / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "fleet-up.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env |= {"FLEET_ADMIN_TOKEN": ADMIN_TOKEN, **(extra_env or {})}
        self._argv = [
            FLEET,
            "up",
            "--nats-url",
            nats_url,
            "--redis-url",
            redis_url,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
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
            if "Ctrl-C stops everything" in self.log.read_text(errors="replace"):
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
            answers = msgspec.json.decode(await resp.read(), type=list[_Answer])
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

    async def start(self, nats_url: str) -> EventWatch:
        self._nc = await nats.connect(nats_url, name="bench-watch", pending_size=256 * 1024 * 1024)
        await self._nc.subscribe("machine.>", cb=self._on_msg, pending_msgs_limit=1_000_000)
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

    async def wait_all(self, kind: str, ids: Sequence[str], timeout_s: float) -> None:
        """Until each machine has ``kind`` (or failed); TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                missing = [m for m in ids if (kind, m) not in self.seen and m not in self.failed]
                if not missing:
                    return
                self._changed.clear()
                await self._changed.wait()
