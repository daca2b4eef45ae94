"""A sandboxed machine's own network: bwrap's ``--unshare-net`` and ``pasta`` (Debian's passt).

bwrap makes the machine's network namespace (only ``lo`` in it) and waits (``--block-fd``)
before it runs the machine's first process; the provider reads the namespace's init pid from
bwrap's ``--info-fd``, has ``pasta`` give the namespace a way out, then lets bwrap go on: the
daemon's first connection finds the network up. What pasta is told:

- ``-t none -u none``: no port of the machine is bound on the host (pasta's default, ``auto``,
  would publish every port a machine listens on);
- ``-T <port>`` for each NATS port on the host's loopback, ``-U none``: the machine's loopback
  forwards those ports, and only those, to the host's loopback (pasta's default would forward
  every port the host listens on there);
- ``--no-map-gw``: the gateway's address is the real gateway, not the host's loopback;
- ``--runas 0`` when run as root: pasta would become ``nobody``, who cannot enter a
  namespace root owns; the namespace is handed over as a descriptor, opened here, since pasta
  (without capabilities) may not open another process's namespace. It is pasta's stdin
  (``--netns /proc/self/fd/0``): pasta closes every other descriptor it inherits before it
  reads its options (Debian 13's does; Debian 12's did not).

Everything else leaves through pasta as the host's own sockets: the outside network, and
addresses of the host's other interfaces (a Docker bridge's gateway, where NATS listens for
containers). Nothing of the host's loopback and nothing of another machine is reachable:
each machine has its own loopback, so two machines both serve ``127.0.0.1:3000``.

pasta leaves itself in the background, marked by ``NETNS_OF`` in its environment (the
machine's id, or its pool slot), which is how a stop finds and ends it. A mark is no proof: any
local user can start a process with it. Where a pasta's identity decides something (the egress
proxy's door: providers/egress/proxy_door.py), what counts is its *record*: the background
pasta's pid, as pasta itself wrote it (``--pid``) into a directory of the platform's, and its
start time, kept beside it when the platform spawned it (``recorded_pasta``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

from base import procinfo
from base.atomic import replace_file
from base.fd_readable import Readable
from base.retry import Backoff, retry_until
from contracts.errors import ProviderError
from controlplane.host_addresses import nats_servers
from providers.sandbox.pasta_nodelay import no_delay
from providers.sandbox.seccomp import filter_fd
from providers.sandbox.userns import USERNS_FD, UserMap, owned

log = structlog.get_logger(__name__)

#: In the environment of a machine's pasta: which machine (or pool slot) it serves.
NETNS_OF = "FLEET_NETNS_OF"
#: In the environment of a stack's processes, pasta's too: the stack's data dir (the setting's
#: variable, passed on from the provisioner's environment), by which `fleet gc` and the test
#: suite find a pasta its stack left (fleet/up/gc.py).
STACK_VAR = "FLEET_DATA_DIR"
#: Under a stack's data dir: the pastas the platform spawned and recorded (``pasta_record``).
PASTA_RECORDS = "pasta"
#: bwrap's descriptors in a sandboxed machine's start: the info it writes (the namespace's
#: init pid), and the one it waits on before it runs the machine.
INFO_FD = 5
BLOCK_FD = 6
_SETUP_TIMEOUT_S = 30.0
#: pasta's niceness when run as root (a kernel network stack would not wait its turn either).
PASTA_NICE = -10


#: A machine's resolver: the host's DNS proxy listens there, in the machine's own namespace
#: (providers/egress/dns.py); a machine's /etc/resolv.conf names it.
RESOLVER = ("127.0.0.53", 53)
RESOLV_CONF = f"nameserver {RESOLVER[0]}\noptions timeout:2 attempts:2\n"


def resolv_conf(data_dir: Path) -> Path:
    """The file a sandboxed machine with its own network gets as /etc/resolv.conf."""
    path = data_dir / "sandbox" / "resolv.conf"
    if not path.is_file() or path.read_text() != RESOLV_CONF:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, RESOLV_CONF)
    return path


class NetworkUnavailable(ProviderError):
    """pasta is missing, or could not give a machine its network."""


def installed(name: str, missing: ProviderError) -> str:
    """The path of the program ``name``; ``missing`` when it is not installed."""
    found = shutil.which(name)
    if not found:
        raise missing
    return found


def pasta_binary() -> str:
    return installed("pasta", NetworkUnavailable(
        "pasta is not installed (a local machine's own network): `apt-get install passt`, "
        "or run local machines without isolation (fleet up --no-sandbox)"))  # fmt: skip


def loopback_ports(nats_url: str) -> list[int]:
    """The ports of the NATS servers in ``nats_url`` that listen on the host's loopback (the
    ones a machine's namespace must forward; other addresses are reached as the host would)."""
    return sorted({port for host, port in nats_servers(nats_url)
                   if host == "localhost" or _is_loopback(host)})  # fmt: skip


def _is_loopback(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def pasta_argv(forwarded: list[int], map_gateway: bool = False,
               pid_file: Path | None = None) -> list[str]:  # fmt: skip
    """pasta for the network namespace on its stdin; ``map_gateway``: the gateway's address is
    the host's loopback (a gvisor machine's way to NATS there: providers/gvisor/gateway.py,
    whose table narrows it to NATS's ports); ``pid_file``: where pasta writes the pid of its
    background half before its first half exits."""
    tcp_ns = ",".join(str(p) for p in forwarded) or "none"
    argv = [pasta_binary(), "--quiet", "--config-net", "-t", "none", "-u", "none",
            "-T", tcp_ns, "-U", "none"]  # fmt: skip
    if not map_gateway:
        argv.append("--no-map-gw")
    if pid_file is not None:
        argv += ["--pid", str(pid_file)]
    if os.geteuid() == 0:
        argv += ["--runas", "0"]
        # Every packet of the machine waits for pasta to be scheduled: on a loaded host, at
        # the default priority, that wait was most of a claimed machine's first NATS
        # exchanges (benchmark 12). Its work per packet is small, so it gets ahead.
        argv = ["nice", "-n", f"{PASTA_NICE}", *argv]
    # --no-netns-quit: a pasta given the namespace by path quits when that path is gone, and
    # its stdin's path is gone as soon as it is in the background (Debian 13's pasta then quit
    # within a second: every connection to NATS refused). A stop ends it (NETNS_OF).
    return [*argv, "--no-netns-quit", "--netns", "/proc/self/fd/0"]


async def read_child_pid(info_fd: int) -> int:
    """The namespace's init pid, from bwrap's info descriptor (JSON, ``child-pid``); closes it.

    Read by the descriptor's number, closed exactly once here: no file object for a transport,
    since one that a cancelled ``connect_read_pipe`` never took closed the number again when
    collected, by then another descriptor of the process (a machine's token pipe)."""
    os.set_blocking(info_fd, False)
    got = b""
    try:
        async with asyncio.timeout(_SETUP_TIMEOUT_S), Readable(info_fd) as readable:
            while b"}" not in got:
                await readable.wait()
                try:
                    chunk = os.read(info_fd, 4096)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                got += chunk
    finally:
        os.close(info_fd)
    try:
        return int(json.loads(got[: got.index(b"}") + 1])["child-pid"])
    except (ValueError, KeyError, TypeError):
        raise NetworkUnavailable(f"bwrap said {got[:80]!r}, not its child's pid") from None


def pasta_record(data_dir: Path, owner: str) -> Path:
    """Where the pasta of ``owner`` (a machine id, a pool slot) is recorded: under the stack's
    data dir, the platform's own (never a machine's)."""
    return data_dir / PASTA_RECORDS / owner


def recorded_pasta(data_dir: Path, owner: str) -> tuple[int, int] | None:
    """The pid and start time (clock ticks since boot) of the pasta the platform spawned for
    ``owner`` and recorded (``pasta_record``), while that very process runs; else None."""
    try:
        pid, ticks = (int(f) for f in pasta_record(data_dir, owner).read_text().split())
    except (OSError, ValueError):
        return None
    return (pid, ticks) if procinfo.is_alive(pid, ticks) else None


def forget_pastas(data_dir: Path, *owners: str) -> None:
    """The records of ``owners``' pastas gone (their pastas ended)."""
    for owner in owners:
        pasta_record(data_dir, owner).unlink(missing_ok=True)


def _record(record: Path, pid_file: Path) -> int:
    """The pid pasta wrote, kept with its start time (a pid that a later process takes is not
    it); that pid."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        raise NetworkUnavailable(f"pasta wrote no pid to {pid_file}") from None
    finally:
        pid_file.unlink(missing_ok=True)
    ticks = procinfo.start_ticks(pid)
    if ticks is None:
        raise NetworkUnavailable(f"pasta's background half ({pid}) is gone")
    replace_file(record, f"{pid} {ticks}\n")
    return pid


async def attach(child_pid: int, owner: str, forwarded: list[int],
                 map_gateway: bool = False, record: Path | None = None) -> None:  # fmt: skip
    """Give the network namespace of ``child_pid`` its way out (pasta, in the background once
    the namespace is configured, Nagle off on its sockets), marked as ``owner``'s;
    ``map_gateway``: as ``pasta_argv``; ``record``: where its background half's pid and start
    time are kept (``pasta_record``)."""
    pid_file = None
    if record is not None:
        record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        record.unlink(missing_ok=True)  # a former pasta's: never taken for this one
        pid_file = record.with_name(f"{record.name}.pid")
        pid_file.unlink(missing_ok=True)
    netns = os.open(f"/proc/{child_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    # Its messages in a memfd, not a pipe: pasta's background half may keep the descriptors it
    # was given (under fleet up's uvloop, communicate() on a pipe never returned).
    err = os.memfd_create("fleet-pasta-stderr", os.MFD_CLOEXEC)
    proc: asyncio.subprocess.Process | None = None
    try:
        proc = await asyncio.create_subprocess_exec(
            *pasta_argv(forwarded, map_gateway, pid_file),
            stdin=netns,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env={"PATH": "/usr/bin:/bin", NETNS_OF: owner, **_stack_mark()},
            start_new_session=True,
        )
        async with asyncio.timeout(_SETUP_TIMEOUT_S):
            code = await proc.wait()  # pasta's first half: it exits once the network is up
        said = os.pread(err, 4096, 0).decode(errors="replace").strip().splitlines()
    except TimeoutError:
        raise NetworkUnavailable(f"pasta did not set up {owner}'s network in time") from None
    finally:
        os.close(netns)
        os.close(err)
        if proc is not None and proc.returncode is None:  # timed out or cancelled: not left
            await _end(proc)
    if code != 0:
        raise NetworkUnavailable(
            f"pasta could not set up {owner}'s network: {(said or ['no message'])[-1][:200]}"
        )
    pids = None
    if record is not None and pid_file is not None:
        pids = [await asyncio.to_thread(_record, record, pid_file)]
    await asyncio.to_thread(_no_delay, owner, pids)


def _stack_mark() -> dict[str, str]:
    """The stack's data dir as this process was given it (none in a provider run alone)."""
    stack = os.environ.get(STACK_VAR, "")
    return {STACK_VAR: str(Path(stack).resolve())} if stack else {}


async def _loopback_configured(child_pid: int, timeout_s: float = 5.0) -> None:
    """Wait until bwrap's child has set up the namespace's loopback (127.0.0.1 in its routing
    table). bwrap reports the child's pid right after clone, while the child configures lo on
    its own: pasta, which brings lo up too, started before that end made bwrap fail now and
    then under load ("loopback: Failed RTM_NEWADDR"), and the machine never booted."""

    async def configured() -> bool:
        try:
            return "127.0.0.1" in Path(f"/proc/{child_pid}/net/fib_trie").read_text()
        except OSError:
            return True  # the child is gone: pasta's setup says why

    await retry_until(configured, backoff=Backoff(0.005, 0.005, jitter=False), budget_s=timeout_s)


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Kill a pasta that did not finish its setup (its whole session) and reap it, even when
    the caller is being cancelled: an unreaped one would be a zombie and a leaked transport."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.shield(proc.wait())  # cancelled: the wait goes on, and reaps it


async def connect(child: int, block_fd: int, owner: str, forwarded: list[int]) -> None:
    """The network of the sandbox bwrap is starting (``child``: its namespace's init;
    ``block_fd``: this side of its block descriptor, closed here), then the sandbox let go on."""
    try:
        await _loopback_configured(child)
        await attach(child, owner, forwarded)
        os.write(block_fd, b"1")
    finally:
        os.close(block_fd)
    log.info("provider.netns_up", owner=owner, forwarded=forwarded)


async def start_sandboxed(
    spawn: Callable[[dict[int, int]], int],
    *,
    owner: str,
    seccomp: bytes,
    seccomp_fd: int,
    forwarded: list[int] | None,
    user: UserMap | None = None,
) -> int:
    """Start a sandbox with ``spawn`` (given the descriptors bwrap expects: the syscall filter
    at ``seccomp_fd``; with ``user``, the user namespace made for it beforehand,
    providers/sandbox/userns.py; with ``forwarded``, not None, its network's block and info
    ends) and set up its network; its pid. On failure the sandbox and its pasta are ended."""
    theirs: dict[int, int] = {}
    try:
        if user is not None:
            theirs[USERNS_FD] = await asyncio.to_thread(owned, user)
        theirs[seccomp_fd] = filter_fd(seccomp)
    except BaseException:
        for fd in theirs.values():
            os.close(fd)
        raise
    ours: dict[int, int] = {}  # bwrap's descriptor number -> our end of its pipe
    wanted = [INFO_FD, BLOCK_FD] if forwarded is not None else []
    for target in wanted:
        read, write = os.pipe2(os.O_CLOEXEC)
        ours[target], theirs[target] = (read, write) if target == INFO_FD else (write, read)
    try:
        pid = spawn(theirs)
    except BaseException:
        for fd in ours.values():
            os.close(fd)
        raise
    finally:
        for fd in theirs.values():
            os.close(fd)
    if INFO_FD not in ours:
        return pid
    try:
        await _set_up(ours, owner, forwarded)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        stop_pasta(owner)
        raise
    return pid


async def _set_up(ours: dict[int, int], owner: str, forwarded: list[int] | None) -> None:
    """The network of the sandbox whose pipes ``ours`` holds (each closed here)."""
    try:
        child = await read_child_pid(ours.pop(INFO_FD))  # closes it
        if forwarded is not None:
            await connect(child, ours.pop(BLOCK_FD), owner, forwarded)  # closes it
    finally:
        for fd in ours.values():
            os.close(fd)


def _no_delay(owner: str, pids: list[int] | None) -> None:
    """Nagle off on the sockets of ``owner``'s pasta (providers/sandbox/pasta_nodelay.py: ``pids``,
    as recorded, else those marked as its), before its daemon connects; where that is refused the
    machine is only slower."""
    for pid in pids if pids is not None else procinfo.env_roots(NETNS_OF, owner):
        try:
            n = no_delay(pid)
        except OSError as exc:
            log.warning("provider.pasta_nodelay_failed", owner=owner, error=str(exc))
            continue
        log.debug("provider.pasta_nodelay", owner=owner, sockets=n)


def has_pasta(*owners: str) -> bool:
    """Whether a pasta runs for one of ``owners``: a sandbox with its own network and no pasta
    was cut off (its provisioner died before the hand-over; bwrap, its block pipe closed,
    went on without a way out)."""
    return any(procinfo.env_roots(NETNS_OF, owner) for owner in owners)


def stop_pasta(*owners: str) -> int:
    """End the pasta of each of ``owners`` (a machine id, a pool slot); how many there were."""
    ended = 0
    for owner in owners:
        for pid in procinfo.env_roots(NETNS_OF, owner):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                ended += 1
    return ended


def probe() -> str | None:
    """None if machines can have a network of their own here, else why not (one line)."""
    try:
        pasta_binary()
    except NetworkUnavailable as exc:
        return str(exc)
    return None
