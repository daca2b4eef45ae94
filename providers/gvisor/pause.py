"""Pause and resume of a gvisor machine (docs/stop-start.md): runsc's checkpoint and restore.

A pause asks the machine's daemon to let its NATS connection go (SIGUSR1 through its
supervisor: daemon/supervision/park.py), waits until that connection is gone, then checkpoints the
sandbox
(memory, processes, filesystem changes outside the home) to an image beside the home and
deletes the sandbox (its host memory is freed then). Its network namespace is kept, with its
pasta and its tables in it, by a sleeping process of its own (``NETNS_HOLDER``): the resume
restores the image there at once, with nothing to set up first (a namespace that is gone, after
a host's restart, is made anew as a start makes it). Before the restore the machine's restore
mark is written anew: its parked supervisor sees it and wakes the daemon the moment it is
restored (daemon/supervise.py); the resume's SIGUSR2 is sent only if that is not seen.

Every pause and resume is the machine's own: nothing is held across machines, and the waits
(the daemon letting go, runsc's checkpoint) are the event loop's, not a worker thread's.

What the machine's own processes hold is kept: listeners, and connections between them
(loopback). What crosses its edge (an outbound client, a connection to the outside) is reset
by the checkpoint (runsc's ``--net-disconnect-ok``), as a laptop's sleep does: each side sees a
reset after the resume, and a program that reconnects goes on. A checkpoint that fails leaves
the sandbox running: the machine runs on as it was, its daemon woken, and the pause is refused
with runsc's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import NoReturn

import structlog

from base import procinfo
from base.atomic import replace_file
from base.retry import Backoff, retry_until
from contracts.errors import Conflict, ProviderError
from contracts.host.rpc import RESTART_WAIT_S
from providers.gvisor.netns import has_netns_config
from providers.gvisor.runsc import (
    BUNDLE,
    IMAGE_DIR,
    PARKED_FILE,
    PID_FILE,
    NetnsReady,
    Runsc,
    _clean_env,
    container_id,
    find_sandbox,
    forget_sandbox,
    running_container,
    sandbox_pid,
    start_sandbox,
    started_as,
    stop_sandbox,
    write_restore_mark,
)
from providers.sandbox import NETNS_OF, recorded_pasta, stop_pasta, tcp_sockets
from providers.scratch import remove_tree

log = structlog.get_logger(__name__)

_CHECKPOINT_TIMEOUT_S = 600.0
#: Of runsc's error, what goes into the machine's status reason.
_ERROR_CAP = 600
#: runsc's checkpoint flags: uncompressed (flate costs seconds of CPU per 256 MiB each way, and
#: the image is the machine's own file on its host, counted in its instance's disk budget).
#: Not ``--exclude-committed-zero-pages``: this runsc's image was the same size with it (an
#: idle machine's 53 MB, 256 MiB of random data's 326 MB, 64 MiB written and zeroed again
#: beside 32 MiB of random data: 37 MB), and its restore the same.
CHECKPOINT_FLAGS = ("--compression", "none")
#: After a restore, how long the daemon's own reconnect is looked for before the resume's
#: signal is sent instead (its supervisor looks for the restore mark every 20 ms): short, as
#: the signal costs a runsc process and the wait is on the resume's way.
WOKEN_WAIT_S = 0.05
#: A sandbox younger than this whose daemon holds no NATS connection may have a supervisor
#: without its signal handlers yet (``restart_daemon``): its start traps every syscall.
SUPERVISOR_START_S = RESTART_WAIT_S
_SUPERVISOR_LOOK = Backoff(base=0.1, cap=0.1, jitter=False)
#: In a paused machine's bundle: the host pid of the process that keeps its network namespace
#: (pasta and tables in it) until its resume; marked as its pasta is (``NETNS_OF``), so that
#: what ends its pasta ends it too.
NETNS_HOLDER = "netns-holder.pid"


def nats_held(data_dir: Path, owners: Iterable[str], nats_ports: set[int]) -> int:
    """How many TCP connections to NATS's ports the machine's pasta holds on the host (the
    daemon's, until it lets go): read on the host, of pasta's own sockets (pasta relays each
    of the machine's connections on one of its own), so nothing runs in the machine and
    nothing of the machine's is read (a pooled machine's pasta runs under its slot's name).
    Only the pasta the platform recorded counts (providers/sandbox/netns.py ``recorded_pasta``): a
    process of the host that marks itself as a machine's pasta holds no pause up."""
    return held_by(pasta_pids(data_dir, owners), nats_ports)


def pasta_pids(data_dir: Path, owners: Iterable[str]) -> list[int]:
    """The machine's pasta processes, as the platform recorded them (their start times
    checked: a record and a look at each process, no scan of the host's processes)."""
    return [rec[0] for owner in owners if (rec := recorded_pasta(data_dir, owner)) is not None]


def held_by(pids: Iterable[int], nats_ports: set[int]) -> int:
    """``nats_held`` of the pasta processes ``pids``: one look at their sockets."""
    held = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile: it holds nothing
            for sock in tcp_sockets(pid):
                with sock, contextlib.suppress(OSError):  # not connected: not one
                    held += sock.getpeername()[1] in nats_ports
    return held


def signal_daemon(runsc: Runsc, machine_id: str, pid: int, sig: str,
                  cid: str | None = None) -> None:  # fmt: skip
    got = runsc.run("kill", cid or container_id(machine_id), sig, inside=pid, timeout_s=30)
    if got.returncode != 0:
        raise ProviderError(f"cannot signal machine {machine_id}'s supervisor: "
                            f"{got.stderr.strip()[-_ERROR_CAP:]}")  # fmt: skip


async def restart_daemon(runsc: Runsc, machine_dir: Path, machine_id: str,
                         owners: list[str], nats_ports: set[int]) -> bool:  # fmt: skip
    """SIGHUP to the machine's supervisor (its container's first process): it restarts the
    daemon, which leaves the machine's processes running. False if the sandbox is not up.
    A sandbox started moments ago (a provisioner's restart, a start) has a supervisor that may
    not have its signal handlers yet, and gVisor ends an init on a signal it does not handle:
    the machine would end. The signal waits until its daemon holds NATS (the supervisor sets
    its handlers before it starts the daemon) or the sandbox is ``SUPERVISOR_START_S`` old
    (a daemon that never connects is what a restart is for)."""
    pid = await asyncio.to_thread(sandbox_pid, machine_dir)
    if pid is None:
        return False
    age = procinfo.age_s(pid)
    if age is not None and age < SUPERVISOR_START_S:
        held = partial(asyncio.to_thread, nats_held, runsc.data_dir, owners, nats_ports)
        await retry_until(held, backoff=_SUPERVISOR_LOOK, budget_s=SUPERVISOR_START_S - age,
                          clip=True)  # fmt: skip
    cid = running_container(machine_dir, machine_id)
    return (await runsc.run_async("kill", cid, "HUP", inside=pid, timeout_s=30)).returncode == 0


def unpark(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int, cid: str) -> None:
    """The running sandbox's parked daemon told to take its NATS connection back (the
    resume's SIGUSR2), and its parking forgotten."""
    signal_daemon(runsc, machine_id, pid, "USR2", cid)
    (machine_dir / BUNDLE / PARKED_FILE).unlink(missing_ok=True)


def unpark_if_parked(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int,
                     cid: str) -> bool:  # fmt: skip
    """``unpark`` the running sandbox's daemon if the provider parked it (a pause or a take
    whose provisioner ended before it let the daemon go on); whether it was. Never a sandbox
    that was not parked: one just started has a supervisor without its signal handlers yet,
    which SIGUSR2 ends (and the machine with it, before it printed a word)."""
    if not (machine_dir / BUNDLE / PARKED_FILE).is_file():
        return False
    unpark(runsc, machine_dir, machine_id, pid, cid)
    return True


async def park_daemon(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int, cid: str,
                      nats_ports: set[int]) -> None:  # fmt: skip
    """The daemon lets its NATS connection go (the only one the platform lets go itself: the
    machine's own are kept, or reset, by the checkpoint); Conflict (the daemon woken again) if
    it is still up after ``runsc.park_wait_s`` (FLEET_GVISOR_PARK_WAIT_S). Its pasta is the
    recorded one (``nats_held``): each look reads its record and its sockets, no scan."""
    bundle = started_as(machine_dir, machine_id)[1]
    owners = {machine_id, bundle.parent.name}
    (machine_dir / BUNDLE / PARKED_FILE).touch()  # before the signal: a start after sees it
    await asyncio.to_thread(signal_daemon, runsc, machine_id, pid, "USR1", cid)
    deadline = time.monotonic() + runsc.park_wait_s
    while held := await asyncio.to_thread(nats_held, runsc.data_dir, owners, nats_ports):
        if time.monotonic() > deadline:
            await asyncio.to_thread(unpark, runsc, machine_dir, machine_id, pid, cid)
            raise Conflict(
                f"machine {machine_id}'s daemon did not let its NATS connection go within "
                f"{runsc.park_wait_s:g}s ({held} still open): it runs on; pause again",
                data={"connections": held},
            )
        await asyncio.sleep(0.01)


async def pause_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str,
                        nats_ports: set[int]) -> int:  # fmt: skip
    """Checkpoint the machine and end its sandbox, its network namespace kept for its resume
    (``NETNS_HOLDER``); the image's size in bytes. A pause done again after its provisioner
    died once the checkpoint had run finds the machine saved: that is its pause."""
    image = machine_dir / IMAGE_DIR
    if await asyncio.to_thread(saved_already, runsc, machine_dir, machine_id, image):
        log.warning("provider.gvisor_pause_found_saved", machine_id=machine_id)
    else:
        await checkpoint_sandbox(runsc, machine_dir, machine_id, nats_ports, image)
    return await asyncio.to_thread(image_size, image)


def saved_already(runsc: Runsc, machine_dir: Path, machine_id: str, image: Path) -> bool:
    """The machine was checkpointed by a pause whose provisioner died before it recorded it:
    no sandbox runs (a sandbox ends once saved, and one that could not be saved runs on) and
    an image is there (each pause makes it anew, each resume deletes it, a failed checkpoint
    deletes its own). runsc's records of the ended sandbox are forgotten, as the pause would."""
    if sandbox_pid(machine_dir) is not None:
        return False
    if not image.is_dir() or not any(image.iterdir()):
        return False
    _end_sandbox(runsc, machine_dir, running_container(machine_dir, machine_id), None)
    return True


def image_size(image: Path) -> int:
    return sum(f.stat().st_size for f in image.rglob("*") if f.is_file())


async def checkpoint_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str,
                             nats_ports: set[int], image: Path) -> None:  # fmt: skip
    """The machine's daemon lets NATS go, its sandbox is checkpointed to ``image`` (made
    anew), and the sandbox ended; its network namespace is kept (``NETNS_HOLDER``) where its
    pasta is the machine's own (a pooled sandbox's, under its slot's name, is left to the
    caller). Whatever the machine's own processes hold (listeners, connections between them,
    to the outside) goes into the image. A checkpoint that fails leaves the machine running
    as it was (its daemon woken): Conflict, saying why; ProviderError only if the sandbox did
    not survive it."""
    pid = await asyncio.to_thread(sandbox_pid, machine_dir)
    if pid is None:
        raise ProviderError(f"machine {machine_id}'s sandbox is not running")
    cid = running_container(machine_dir, machine_id)
    own_network = started_as(machine_dir, machine_id)[1].parent.name == machine_id
    began = time.monotonic()
    await park_daemon(runsc, machine_dir, machine_id, pid, cid, nats_ports)
    parked = time.monotonic()
    await asyncio.to_thread(remove_tree, image)
    image.mkdir(mode=0o700)
    if own_network:  # before the checkpoint: a saved sandbox ends, and its namespace with it
        await hold_netns(machine_dir, machine_id, pid)
    got = await runsc.run_async("checkpoint", "--image-path", str(image), *CHECKPOINT_FLAGS,
                                cid, inside=pid, timeout_s=_CHECKPOINT_TIMEOUT_S)  # fmt: skip
    checkpointed = time.monotonic()
    if got.returncode != 0:
        log.warning("provider.gvisor_checkpoint_failed", machine_id=machine_id,
                    stderr=got.stderr[:20000])  # fmt: skip
        await asyncio.to_thread(remove_tree, image)
        await asyncio.to_thread(let_netns_go, machine_dir, machine_id)
        await asyncio.to_thread(_checkpoint_failed, runsc, machine_dir, machine_id, pid, cid,
                                _runsc_error(got.stderr))  # fmt: skip
    await asyncio.to_thread(_end_sandbox, runsc, machine_dir, cid, pid)
    log.info("provider.gvisor_checkpointed", machine_id=machine_id, ok=got.returncode == 0,
             park_ms=round((parked - began) * 1000),
             checkpoint_ms=round((checkpointed - parked) * 1000),
             end_ms=round((time.monotonic() - checkpointed) * 1000))  # fmt: skip


#: Started detached (``setsid -f``: never a child to reap here), it writes its pid, then becomes
#: a ``sleep`` in the namespace (nsenter execs it: the same pid).
_HOLD_SCRIPT = 'echo $$ > "$1" && exec nsenter --net="$2" sleep infinity'


async def hold_netns(machine_dir: Path, machine_id: str, pid: int) -> None:
    """A process that keeps the network namespace of the sandbox ``pid`` (its pasta, its
    tables) once the sandbox is gone: a ``sleep`` there, marked as the machine's pasta is; its
    pid and start time in ``NETNS_HOLDER``. Nothing if it cannot be had (the resume makes one
    anew)."""
    netns, pid_file = f"/proc/{pid}/ns/net", machine_dir / BUNDLE / NETNS_HOLDER
    pid_file.unlink(missing_ok=True)
    try:
        want = os.stat(netns).st_ino
        proc = await asyncio.create_subprocess_exec(
            "setsid", "-f", "/bin/sh", "-c", _HOLD_SCRIPT, "fleet-netns", str(pid_file), netns,
            env={**_clean_env(), NETNS_OF: machine_id}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        async with asyncio.timeout(10):
            await retry_until(partial(_holds, machine_dir, machine_id, want),
                              backoff=Backoff(0.002, 0.01, jitter=False))  # fmt: skip
        await asyncio.to_thread(_record_holder, pid_file)
    except (OSError, TimeoutError) as exc:
        await asyncio.to_thread(let_netns_go, machine_dir, machine_id)  # a half made one
        log.warning("provider.gvisor_netns_not_held", machine_id=machine_id, error=repr(exc))


def _record_holder(pid_file: Path) -> None:
    """The pid the holder wrote, kept with its start time: a process that has that pid later
    is not it."""
    pid = int(pid_file.read_text().split()[0])
    ticks = procinfo.start_ticks(pid)
    if ticks is None:
        raise OSError(f"the holder of a kept network namespace ({pid}) is gone")
    replace_file(pid_file, f"{pid} {ticks}\n")


async def _holds(machine_dir: Path, machine_id: str, want: int) -> bool:
    """The holder named in ``NETNS_HOLDER`` is in the namespace ``want`` (an inode) and is its
    ``sleep`` at last: while it still execs (sh, nsenter, sleep) its environment, its mark,
    can read as empty, and the holder as nobody's."""
    pid = _marked_holder(machine_dir, machine_id)
    try:
        return (pid is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == want
                and Path(f"/proc/{pid}/comm").read_text().strip() == "sleep")  # fmt: skip
    except OSError:
        return False


def let_netns_go(machine_dir: Path, machine_id: str) -> None:
    """The holder of the machine's namespace ended (its pasta and its sandbox, if any, go
    on)."""
    pid = _marked_holder(machine_dir, machine_id)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    (machine_dir / BUNDLE / NETNS_HOLDER).unlink(missing_ok=True)


def held_netns(machine_dir: Path, machine_id: str) -> int | None:
    """The live process that keeps the paused machine's network namespace: the very one its
    pause started (its recorded start time), marked as the machine's; None if there is none.
    The restore goes into its namespace, so no later process with its pid will do."""
    try:
        ticks = int((machine_dir / BUNDLE / NETNS_HOLDER).read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    pid = _marked_holder(machine_dir, machine_id)
    return pid if pid is not None and procinfo.is_alive(pid, ticks) else None


def _marked_holder(machine_dir: Path, machine_id: str) -> int | None:
    """The process named in ``NETNS_HOLDER`` (its first field) if it is marked as the
    machine's; None if there is none."""
    try:
        pid = int((machine_dir / BUNDLE / NETNS_HOLDER).read_text().split()[0])
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if f"{NETNS_OF}={machine_id}".encode() in env else None


def _checkpoint_failed(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int, cid: str,
                       why: str) -> NoReturn:  # fmt: skip
    """After a failed checkpoint: Conflict if the sandbox runs on (its daemon woken: the
    machine is as it was), else ProviderError (it is gone; its state cleaned up)."""
    if runsc.status(cid, pid) == "running":
        unpark(runsc, machine_dir, machine_id, pid, cid)
        raise Conflict(f"runsc could not checkpoint machine {machine_id}, which runs on as it "
                       f"was: {why}", data={"checkpoint": "failed"})  # fmt: skip
    stop_sandbox(runsc, machine_dir, machine_id, 0.0)
    stop_pasta(machine_id)
    raise ProviderError(f"runsc could not checkpoint machine {machine_id}, whose processes "
                        f"are gone: {why}")  # fmt: skip


def _runsc_error(stderr: str) -> str:
    """runsc's own error line (its Go stack trace follows it), capped."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if "error" in line.lower() or "cannot" in line.lower()]
    return (said or lines or ["no message"])[0][:_ERROR_CAP]


def _end_sandbox(runsc: Runsc, machine_dir: Path, cid: str, pid: int | None) -> None:
    """After its checkpoint: nothing of the sandbox left running (its sandbox and gofer
    processes end once it is saved; killed if not), and its state forgotten."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
    forget_state(runsc, cid)
    forget_sandbox(machine_dir / BUNDLE)


def forget_state(runsc: Runsc, cid: str) -> None:
    """runsc's records of container ``cid``, whose processes are all gone: its state, lock
    and control socket files. What ``runsc delete --force`` does for a dead sandbox without
    cgroups (``--ignore-cgroups``), where it spent 0.7 to 1.8 s here trying to reach it."""
    for pattern in (f"{cid}_sandbox:*", f"runsc-{cid}.sock"):
        for path in runsc.state.glob(pattern):
            path.unlink(missing_ok=True)


def wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    """Until ``pid`` is gone (a zombie counts: the sandbox is not our child)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    return
        except OSError:
            return
        time.sleep(0.005)


async def wake_daemon(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int,
                      nats_ports: set[int]) -> bool:  # fmt: skip
    """After a restore: the daemon's supervisor woke it on its restore mark, and it reconnects
    to NATS; seen on its pasta's sockets within ``WOKEN_WAIT_S``, nothing more is done, else
    the resume's signal is sent (a supervisor that watches no mark: an image older than it).
    Whether the signal was sent."""
    pastas = await asyncio.to_thread(pasta_pids, runsc.data_dir, [machine_id])
    deadline = time.monotonic() + WOKEN_WAIT_S
    while pastas and time.monotonic() < deadline:
        if await asyncio.to_thread(held_by, pastas, nats_ports):
            return False
        await asyncio.sleep(0.005)
    await asyncio.to_thread(signal_daemon, runsc, machine_id, pid, "USR2")
    return True


async def resume_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str,
                         enter: list[str], ready: NetnsReady | None = None, *,
                         nats_ports: set[int]) -> int:  # fmt: skip
    """Restore the machine from its image, in the network namespace its pause kept (else one
    made as at its start), readied by ``ready`` (its egress policy), its restore mark written
    anew (its daemon reconnects the moment it is restored: ``wake_daemon``); the sandbox's
    host pid. The image is deleted once restored. A sandbox already restored from it (by a
    provisioner killed before it saw its restore through) is the machine: a second one from
    the same image would run every process of it twice, on the same files."""
    image = machine_dir / IMAGE_DIR
    cid = container_id(machine_id)
    began = time.monotonic()
    restored = await asyncio.to_thread(find_sandbox, machine_dir / BUNDLE)
    if restored is not None and await asyncio.to_thread(runsc.status, cid, restored) == "running":
        (machine_dir / BUNDLE / PID_FILE).write_text(str(restored))
        log.warning("provider.gvisor_restore_adopted", machine_id=machine_id, pid=restored)
        await asyncio.to_thread(signal_daemon, runsc, machine_id, restored, "USR2")
        await asyncio.to_thread(remove_tree, image)
        return restored
    if restored is not None:  # half made: ended, and made again
        with contextlib.suppress(ProcessLookupError):
            os.kill(restored, signal.SIGKILL)
        await asyncio.to_thread(wait_gone, restored)
    if not image.is_dir() or not any(image.iterdir()):
        raise ProviderError(f"machine {machine_id} has no pause image to resume from")
    try:
        pid, held, prepared, started = await _restore(runsc, machine_dir, machine_id, enter, ready)
    except TimeoutError:
        # runsc's restore never ended (seen on ptrace under load); what it made is removed, the
        # image is whole: restored once more, in a namespace made as at a start.
        log.warning("provider.gvisor_restore_wedged", machine_id=machine_id)
        pid, held, prepared, started = await _restore(runsc, machine_dir, machine_id, enter, ready)
    signalled, _ = await asyncio.gather(
        wake_daemon(runsc, machine_dir, machine_id, pid, nats_ports),
        asyncio.to_thread(remove_tree, image),
    )
    log.info("provider.gvisor_resumed", machine_id=machine_id, pid=pid, kept_netns=held,
             signalled=signalled,
             prep_ms=round((prepared - began) * 1000),
             sandbox_ms=round((started - prepared) * 1000),
             after_ms=round((time.monotonic() - started) * 1000))  # fmt: skip
    return pid


async def _restore(runsc: Runsc, machine_dir: Path, machine_id: str, enter: list[str],
                   ready: NetnsReady | None) -> tuple[int, bool, float, float]:  # fmt: skip
    """The restore itself, in the namespace the pause kept if it can be used: the sandbox's
    pid, whether the namespace was kept, and when the restore began and ended."""
    held = await asyncio.to_thread(held_netns, machine_dir, machine_id)
    if held is not None and not has_netns_config(machine_dir / BUNDLE):  # no way to use it
        held = None
    if held is None:
        await asyncio.to_thread(stop_pasta, machine_id)  # any left
    await asyncio.to_thread(forget_state, runsc, container_id(machine_id))  # it runs nothing
    await asyncio.to_thread(write_restore_mark, machine_dir)
    prepared = time.monotonic()
    pid = await start_sandbox(
        runsc, machine_id, machine_dir / BUNDLE, machine_dir / "daemon.log", machine_id, enter,
        verb=("restore", "--image-path", str(machine_dir / IMAGE_DIR)), ready=ready,
        netns_holder=held,
    )  # fmt: skip
    started = time.monotonic()
    (machine_dir / BUNDLE / NETNS_HOLDER).unlink(missing_ok=True)
    return pid, held is not None, prepared, started
