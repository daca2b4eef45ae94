"""`fleet up`: the embedded stack on one machine.

Starts nats-server and valkey-server (unless --nats-url / --redis-url point at existing ones),
then each service as its own OS process, restarting any that dies (with backoff), and any
embedded server that dies (fleet.up.servers). Ctrl-C or
SIGTERM stops, in order: the gateway, the stage services (each drains its in-flight work), the
local machines' daemons, then the servers. However `fleet up` ends (SIGKILL included), the
servers and services end with it (base.lifeline), and so do the machines: its keeper
(fleet.up.keeper), a child the kernel signals when `fleet up` ends, stops them as a normal stop
does and ends what else names the stack (fleet.up.gc); a normal stop stands it down. Machines
still outlive a provisioner's restart, which never reaches the keeper. The next `fleet up` on
the data dir lets a dead one's keeper finish, ends whatever of its children still runs and
restarts the machines the dead one left.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import msgspec

from base.lifeline import Children, end_recorded
from base.lockfile import AlreadyRunning, PidLock
from base.wait import wait_until
from contracts.e2b.control import api_key_of
from controlplane.machines.unresponsive import daemons_ended
from controlplane.policy import runsc_binary, runtime_refusal, too_old
from controlplane.security.crypto import generate_secret_key
from controlplane.settings import Settings
from fleet.up.docker_setup import engine_runtime_refusal, network_gateway_sync, prepare_sync
from fleet.up.embedded import NatsAuth, NatsServer, ServerStartError, ValkeyServer, held_ports
from fleet.up.embedded_ha import HaServers
from fleet.up.gc import LOCK_NAME
from fleet.up.ha import ha_settings, host_data_dir, host_ids, service_plan, wait_hosts_announced
from fleet.up.keeper import Keeper, finish_left, stop_machines
from fleet.up.options import UpOptions
from fleet.up.servers import ServerSupervisor
from fleet.up.services import ServiceProcess, stop_services
from providers.sandbox import network_probe, sandbox_probe, unavailable as cgroup_unavailable

#: Started in this order; stopped in reverse (the gateway first, so no new work arrives). The
#: auth callout comes first: machines cannot connect without it.
#: In the data dir: the servers and services the running `fleet up` started (base.lifeline);
#: still there when it starts, the `fleet up` before it ended without stopping them.
CHILDREN_NAME = "fleet-up.children"
SERVICES = ("auth_callout", "provisioner", "setup_pusher", "prober", "webhooks", "codemode",
            "gateway")  # fmt: skip


#: `fleet up`'s warm pool when FLEET_WARM_POOL is not set (services' own default: none), by
#: its default provider: a docker machine held warm costs a container (about 30 MB).
DEFAULT_WARM_POOL = {"local": "local=2", "docker": "docker=1"}


#: ...and, beside a local pool, one gvisor machine for the E2B front's sandboxes (gvisor unless
#: FLEET_E2B_RUNTIME says otherwise): an SDK's create takes it in tens of milliseconds, where a
#: cold gvisor start takes about a second (docs/benchmarks.md, 27).
E2B_WARM_POOL = "local:gvisor=1"


def default_warm_pool(opts: UpOptions) -> str:
    """Machines of the default provider kept warm unless FLEET_WARM_POOL says otherwise (a
    local pool needs bwrap; the other provider's machines are the exception: none kept)."""
    if not opts.sandbox and opts.provider != "docker":
        return ""
    pool = DEFAULT_WARM_POOL[opts.provider]
    runtime = opts.runtime or Settings.from_env().runtime
    if (
        opts.provider == "local"
        and runtime != "gvisor"
        and Settings.from_env().e2b_runtime == "gvisor"
        and gvisor_refusal("local") is None
    ):
        pool += "," + E2B_WARM_POOL  # fmt: skip
    return pool


def read_or_create_secret(path: Path, env_var: str) -> str:
    """The value of ``env_var`` if set, else the one kept in ``path`` (created 0600 once)."""
    if value := os.environ.get(env_var):
        return value
    if path.exists():
        return path.read_text().strip()
    value = generate_secret_key() if env_var == "FLEET_SECRET_KEY" else secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _alive(procs: list[ServiceProcess]) -> None:
    """Raises, with its log's tail, if one of ``procs`` has exited while `fleet up` starts."""
    for p in procs:
        if p.proc is not None and p.proc.poll() is not None:
            tail = p.log_path.read_text(errors="replace")[-3000:]
            raise ServerStartError(f"{p.name} exited with {p.proc.returncode}:\n{tail}")


def _wait_healthy(url: str, procs: list[ServiceProcess], timeout_s: float = 60.0) -> None:
    def healthy() -> bool:
        _alive(procs)
        with suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=1) as r:  # noqa: S310
            return bool(r.status == 200)
        return False

    # Every 20 ms: a refused connection costs nothing, the held port is not listening.
    if not wait_until(healthy, within_s=timeout_s, every_s=0.02):
        raise ServerStartError(f"the gateway did not become healthy at {url} in {timeout_s:g}s")


def check_sandbox(opts: UpOptions) -> str | None:
    """Why fleet up must refuse to start (local machines cannot be isolated), else None."""
    if not opts.sandbox:
        print(
            "fleet up: WARNING: --no-sandbox: local machines are NOT isolated: each one can read "
            "the data dir's secrets, the other machines' homes and every process's environment",
            file=sys.stderr,
            flush=True,
        )
        return None
    if (why := sandbox_probe()) is not None:
        return f"{why}\nfleet up: local machines cannot be isolated here; refusing to start"
    if os.environ.get("FLEET_SANDBOX_NETWORK", "own") == "host":
        print(
            "fleet up: WARNING: FLEET_SANDBOX_NETWORK=host: local machines share the host's "
            "network: each one reaches every loopback port of the host and of the others",
            file=sys.stderr,
            flush=True,
        )
    elif (why := network_probe()) is not None:
        return f"{why}\nfleet up: local machines cannot have a network of their own; refusing"
    if (opts.runtime or Settings.from_env().runtime) == "gvisor" and (
        why := gvisor_refusal(opts.provider)
    ) is not None:
        return f"{why}\nfleet up: --runtime gvisor cannot run here; refusing to start"
    if (why := cgroup_unavailable()) is not None:
        print(
            f"fleet up: WARNING: {why}: local machines run WITHOUT memory, CPU or pids limits "
            "(one machine can exhaust the host)",
            file=sys.stderr,
            flush=True,
        )
    return None


def gvisor_refusal(provider: str) -> str | None:
    """Why the default provider cannot run gvisor machines here: no runsc on this host for
    ``local``; for ``docker``, none the engine registered as they need (docs/runtimes.md)."""
    settings = Settings.from_env()
    if provider == "docker":
        return engine_runtime_refusal(settings)
    why = runtime_refusal(provider, "gvisor", settings.runsc)
    if why is None and (path := runsc_binary(settings.runsc)) is not None:
        why = too_old(path)
    return why


def up(opts: UpOptions) -> int:
    """Runs until Ctrl-C or SIGTERM. A bad FLEET_* setting raises SettingsError before anything
    starts."""
    Settings.from_env()
    if opts.preview_port is None:  # beside the console's; a port of the kernel's beside 0
        opts.preview_port = opts.port + 1 if opts.port else 0
    if opts.e2b_port is None:
        opts.e2b_port = opts.port + 2 if opts.port else 0
    if opts.port and opts.preview_port == opts.port:
        refusal: str | None = f"--preview-port {opts.port} is --port's (previews have their own)"
    else:
        refusal = check_sandbox(opts)
    if refusal is not None:
        print(f"fleet up: {refusal}", file=sys.stderr, flush=True)
        return 2
    data_dir = opts.data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # One `fleet up` per data dir: a second would start another NATS and valkey on the same
    # files. Held before anything starts; released last.
    lock = PidLock(data_dir / LOCK_NAME, "fleet up", "stop it first, or use another --data-dir")
    try:
        lock.acquire(wait_s=0)
    except AlreadyRunning as exc:
        print(f"fleet up: {exc}", file=sys.stderr, flush=True)
        return 1
    with ExitStack() as stack:  # unwinds in reverse: services, machines, then the servers
        stack.callback(lock.release)
        started = _start(stack, opts, data_dir)
        if started is None:
            return 2
        while not stopping.is_set():
            for line in started.check(time.monotonic()):
                print(f"fleet up: {line}", flush=True)
            time.sleep(0.2)
        print("fleet up: stopping ...", flush=True)
    print("fleet up: stopped", flush=True)
    # All stopped: nothing for the exit's last collection (as controlplane.process.runner).
    gc.freeze()
    return 0


@dataclass(frozen=True)
class _Started:
    """What `fleet up` started and watches: its servers, its services, its machines' keeper."""

    servers: ServerSupervisor
    procs: list[ServiceProcess]
    keeper: Keeper

    def check(self, now: float) -> list[str]:
        """What to say of a restart or a stop since the last check."""
        lines = self.servers.check(now) + [line for p in self.procs if (line := p.check(now))]
        return lines + self.keeper.check()


def _start(stack: ExitStack, opts: UpOptions, data_dir: Path) -> _Started | None:
    """Everything `fleet up` runs, started on ``stack`` (stopped as it unwinds) and awaited
    until it serves; None, said, if the listeners are taken."""
    children = Children(data_dir / CHILDREN_NAME)
    stack.callback(children.forget)
    finish_left(data_dir)  # a dead stack's keeper, still stopping its machines
    left_by_dead_up = _end_dead_stack(children)
    # After the data dir's lock and a dead stack's end: its gateway may have held them.
    if (refusal := listeners_refusal(opts)) is not None:
        print(f"fleet up: {refusal}", file=sys.stderr, flush=True)
        return None
    # Held until the services stop: one that dies is restarted on its port. A port of 0
    # is one the kernel gives, held so: the banner prints it, a restart binds it again.
    hold = held_ports(stack)
    opts.port = opts.port or hold()
    opts.preview_port = opts.preview_port or hold()
    opts.e2b_port = opts.e2b_port or hold()
    # Restarts a server that dies, like a service; left after the servers stopped.
    servers = stack.enter_context(ServerSupervisor(children))
    settings, auth, seed = _servers(stack, opts, data_dir, servers)
    env = {**os.environ, **settings.to_env()}
    # Ends the machines if `fleet up` dies; stood down once they are stopped (unwinding).
    keeper = Keeper(_machine_dirs(settings, opts), env)
    stack.callback(keeper.stand_down)
    if left_by_dead_up:  # its machines know only its NATS: ended, the provisioner resumes them
        _end_machines(settings, opts, auth)
    stack.callback(_end_machines, settings, opts, auth)
    names = SERVICES if auth is not None else SERVICES[1:]  # an external NATS: its own auth
    plan = service_plan(names, opts, settings.sandbox_uid_range, hold=hold)
    # Each service serves /metrics on a port of its own (the gateway on its HTTP port).
    metrics = {n: hold() for n, module, _ in plan if module != "gateway"}
    procs = [ServiceProcess(name, service_env(module, env, auth, seed, metrics.get(name, 0))
                            | extra, data_dir / "logs", module, children=children)
             for name, module, extra in plan]  # fmt: skip
    stack.callback(stop_services, procs)
    for p in procs:
        p.start()
    urls = [f"http://{opts.host}:{x['FLEET_PORT']}" for _, m, x in plan if m == "gateway"]
    for url in urls:
        _wait_healthy(url, procs)
    if host_ids(opts):
        wait_hosts_announced(urls[0], settings.admin_token, host_ids(opts),
                             lambda: _alive(procs))  # fmt: skip
    _banner(urls, settings, data_dir, opts, auth, metrics)
    return _Started(servers, procs, keeper)


def _servers(
    stack: ExitStack, opts: UpOptions, data_dir: Path, watched: ServerSupervisor
) -> tuple[Settings, NatsAuth | None, str]:
    """Start what is embedded (NATS with auth, valkey), have ``watched`` restart it when it
    dies, and settle the services' settings."""
    nats_url, redis_url = opts.nats_url, opts.redis_url
    auth: NatsAuth | None = None
    seed = ""
    ha: dict[str, object] = {}
    if nats_url is None:  # embedded: machines authenticate through the callout
        auth, seed = NatsAuth.load_or_create(data_dir / "nats-auth.json")
    if opts.ha:
        password = read_or_create_secret(data_dir / "redis-password", "FLEET_REDIS_PASSWORD")
        servers = HaServers(data_dir, auth=auth, redis_password=password)
        watched.watch_all(servers.labelled())
        stack.enter_context(servers)
        nats_url, redis_url = servers.nats_url, servers.redis_url
        ha = ha_settings(servers)
    runtime = opts.runtime or Settings.from_env().runtime
    if nats_url is None:
        host = "127.0.0.1"
        # Containers reach NATS on their network's gateway; so does gVisor's network stack,
        # whose loopback is its own (docs/runtimes.md), without the machine image.
        here = msgspec.structs.replace(Settings.from_env(), data_dir=str(data_dir))
        if opts.provider == "docker":
            host, _ = prepare_sync(here, "fleet up")
        elif runtime == "gvisor":
            host = network_gateway_sync(here)
        nats = NatsServer(data_dir / "nats", auth=auth, host=host)
        watched.watch(nats, "nats-server")
        # Started, and awaited once valkey has started beside it: neither needs the other.
        nats.spawn()
        stack.push(nats)  # stopped after valkey, as if entered
    if redis_url is None:  # embedded: nothing of fleetd's state is served without this password
        password = read_or_create_secret(data_dir / "redis-password", "FLEET_REDIS_PASSWORD")
        valkey = ValkeyServer(data_dir / "redis", password=password)
        watched.watch(valkey, "valkey")
        redis_url = stack.enter_context(valkey).url
    if nats_url is None:
        nats.wait_ready()
        nats_url = nats.url
    settings = _settings(opts, data_dir, nats_url, redis_url, runtime, ha)
    return settings, auth, seed


def _settings(opts: UpOptions, data_dir: Path, nats_url: str, redis_url: str, runtime: str,
              ha: dict[str, object]) -> Settings:  # fmt: skip
    """The services' settings: every FLEET_* variable of the environment, flags winning."""
    return msgspec.structs.replace(
        Settings.from_env(),
        **ha,  # type: ignore[arg-type]
        nats_url=nats_url,
        redis_url=redis_url,
        data_dir=str(data_dir),
        env=opts.env,
        sandbox="bwrap" if opts.sandbox else "none",
        warm_pool=os.environ.get("FLEET_WARM_POOL", default_warm_pool(opts)),
        default_provider=opts.provider,
        runtime=runtime,
        host=opts.host,
        port=opts.port,
        preview_host=opts.host,
        preview_port=opts.preview_port or 0,  # set by up(): a port, held if it was 0
        e2b_host=opts.host,
        e2b_port=opts.e2b_port or 0,
        secret_key=read_or_create_secret(data_dir / "secret-key", "FLEET_SECRET_KEY"),
        admin_token=read_or_create_secret(data_dir / "admin-token", "FLEET_ADMIN_TOKEN"),
    )


def service_env(
    name: str, env: dict[str, str], auth: NatsAuth | None, seed: str, metrics_port: int = 0
) -> dict[str, str]:
    """Each process connects to NATS as its own user; only the callout holds the issuer seed."""
    env = env | {"FLEET_METRICS_PORT": str(metrics_port)}
    if auth is None:
        return env
    if name == "auth_callout":
        return env | {"FLEET_NATS_USER": auth.CALLOUT_USER,
                      "FLEET_NATS_PASSWORD": auth.callout_password,
                      "FLEET_CALLOUT_ISSUER_SEED": seed}  # fmt: skip
    if name == "gateway":  # the one process that writes and reads the audit log
        env = env | {"FLEET_AUDIT_NATS_USER": auth.AUDIT_USER,
                     "FLEET_AUDIT_NATS_PASSWORD": auth.audit_password}  # fmt: skip
    return env | {"FLEET_NATS_USER": auth.SERVICE_USER,
                  "FLEET_NATS_PASSWORD": auth.service_password,
                  "FLEET_CALLOUT_ISSUER_SEED": ""}  # fmt: skip


def redact_url(url: str) -> str:
    """The URL without its password (the banner is often copied into chats and tickets)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _end_dead_stack(children: Children) -> bool:
    """End what a `fleet up` that died on this data dir left running, and say so: True if
    one did (its record of children is still there)."""
    if not children.record.exists():
        return False
    ended = end_recorded(children.record)
    print(
        "fleet up: the last fleet up on this data dir ended without stopping; "
        + (f"ended what it left running: {', '.join(ended)}" if ended else
           "its servers and services had ended with it")
        + "; its machines are stopped and started again",
        flush=True,
    )  # fmt: skip
    return True


def _end_machines(settings: Settings, opts: UpOptions, auth: NatsAuth | None) -> None:
    """Stop this stack's machines, and have none read ``ready`` until a daemon serves it again
    (the provisioner that resumes it starts a new one)."""
    _stop_machines(settings, opts)
    hosts = {None, settings.host_id, *host_ids(opts)}
    if auth is not None:  # the embedded NATS: connect as the services do
        settings = msgspec.structs.replace(
            settings, nats_user=auth.SERVICE_USER, nats_password=auth.service_password
        )
    try:
        n = asyncio.run(daemons_ended(settings, hosts, "its daemon ended with fleet up"))
    except Exception as exc:  # noqa: BLE001 - the stop goes on; heartbeats will tell
        print(f"fleet up: could not record that the machines' daemons ended: {exc!r}", flush=True)
        return
    if n:
        print(f"fleet up: {n} machine(s) unresponsive until their daemons are back", flush=True)


def _machine_dirs(settings: Settings, opts: UpOptions) -> list[Path]:
    """The data dirs machines live in: the stack's, then each host's (--hosts)."""
    return [settings.data_path, *(host_data_dir(settings.data_path, h) for h in host_ids(opts))]


def _stop_machines(settings: Settings, opts: UpOptions) -> None:
    stop_machines(settings, _machine_dirs(settings, opts))


def _banner(
    urls: list[str],
    settings: Settings,
    data_dir: Path,
    opts: UpOptions,
    auth: NatsAuth | None,
    metrics: dict[str, int],
) -> None:
    token_src = (
        "FLEET_ADMIN_TOKEN" if os.environ.get("FLEET_ADMIN_TOKEN") else data_dir / "admin-token"
    )
    url = urls[0]
    print(
        f"fleetd is up{'   (--ha)' if opts.ha else ''}\n"
        + "".join(f"  gateway      {u}   (web console at {u}/)\n" for u in urls)
        + (
            f"  sentinels    {settings.redis_sentinels}   "
            f"(primary '{settings.redis_sentinel_master}')\n"
            if settings.redis_sentinels
            else ""
        )
        + (
            f"  hosts        {' '.join(host_ids(opts))}   (a provisioner each; data in "
            f"{data_dir / 'hosts'}/<host>; capacity {settings.host_capacity or 'unlimited'})\n"
            if opts.hosts
            else ""
        )
        + f"  previews     {settings.preview.template}   (machines' pages, not the console's; "
        f"listening on {settings.preview_host}:{settings.preview_port})\n"
        + f"  admin token  {settings.admin_token}   (from {token_src})\n"
        + f"  e2b          {' '.join(e2b_variables(settings))}   (E2B's SDKs: docs/e2b.md)\n"
        f"  nats         {settings.nats_url}{'' if opts.nats_url else '   (embedded)'}\n"
        + (
            f"               machines authenticate through the auth callout; to watch events:\n"
            f"               nats sub --server {settings.nats_url} --user {auth.MONITOR_USER} "
            f"--password <monitor_password in {data_dir / 'nats-auth.json'}> 'machine.>'\n"
            if auth
            else ""
        )
        + f"  metrics      {url}/metrics   "
        + " ".join(f"{n}=:{p}" for n, p in metrics.items())
        + "\n"
        + f"  redis        {redact_url(settings.redis_url)}"
        + ("\n" if opts.redis_url else f"   (embedded, password in {data_dir}/redis-password)\n")
        + f"  data         {data_dir}   (service logs in {data_dir / 'logs'})\n"
        f"try:  export FLEET_URL={url} FLEET_TOKEN={settings.admin_token}\n"
        f"      .venv/bin/fleet instances create demo\n"
        f"Ctrl-C stops everything.",
        flush=True,
    )


def e2b_variables(settings: Settings) -> list[str]:
    """The variables that point E2B's SDKs at this stack, as ``NAME=value`` words."""
    url = f"http://{settings.e2b_host}:{settings.e2b_port}"
    return [f"E2B_API_URL={url}", f"E2B_SANDBOX_URL={url}",
            f"E2B_DOMAIN={settings.e2b_domain or f'localhost:{settings.e2b_port}'}",
            f"E2B_API_KEY={api_key_of(settings.admin_token)}"]  # fmt: skip


def banner_ports(banner: str) -> tuple[str, int]:
    """The gateway's URL (the first, with --ha) and the previews' port that `_banner` printed
    in ``banner``: where a client or a test learns the ports of a ``--port 0``."""
    gateway = re.search(r"^  gateway +(http://\S+)", banner, re.M)
    previews = re.search(r"^  previews .* listening on \S+:(\d+)\)$", banner, re.M)
    if gateway is None or previews is None:
        raise ValueError(f"no gateway or previews in fleet up's banner:\n{banner}")
    return gateway[1], int(previews[1])


def listeners_refusal(opts: UpOptions) -> str | None:
    """Why the gateway's listeners cannot be had, said before anything starts (a port another
    program holds would otherwise end the gateway with a traceback)."""
    for flag, port in (("--port", opts.port), ("--preview-port", opts.preview_port),
                       ("--e2b-port", opts.e2b_port)):  # fmt: skip
        if not port:
            continue
        try:
            socket.create_server((opts.host, port)).close()
        except OSError as exc:
            return f"{flag} {port} on {opts.host} cannot be listened on: {exc.strerror}"
    return None
