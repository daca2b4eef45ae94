"""Forks with memory of a gvisor machine (docs/fork-snapshots.md): one checkpoint of the
source, taken in place, then restored once per fork, each in a sandbox and a network namespace
of its own.

The source is frozen (``runsc pause``) once its daemon has let NATS go (as for a pause:
providers/gvisor/pause.py), checkpointed with ``--leave-running`` (it stays in its sandbox and
its namespace: its listeners, its egress policy and its pasta are never touched), its home
copied while it is still frozen (the forks' homes are the source's as of the image's instant),
then thawed (``runsc resume``). runsc's ``--net-disconnect-ok`` resets the connections that
cross the source's edge as the checkpoint saves them, in the source as in the image.

A restored copy holds its source's credential in memory. So:
- the source's NATS password is renewed before the source is thawed (its token, the signing
  key's, is kept: contracts/daemon/signing.py), and its daemon told to reconnect with it: the copy
  every fork holds is refused by the auth callout from then on;
- a fork's sandbox is given its own token and machine id in its token directory before its
  restore, and its daemon (parked, as the source's was at the checkpoint) is resumed at once:
  its supervisor reads both again and tells them to the daemon (daemon/supervision/nodump.py
  tell_new_identity), which lets the source's connection go unused and connects as the fork,
  in the same process (no new interpreter to start).

A fork's sandbox sees its own home, code store and token directory at the source's paths (a
restored process keeps its open files and working directory); its processes run as the
source's uid, which the fork's files keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from contracts.bus.events import HomeCopy
from contracts.errors import Conflict, ProviderError
from providers.gvisor.pause import (
    CHECKPOINT_FLAGS,
    _runsc_error,
    image_size,
    park_daemon,
    signal_daemon,
    unpark,
)
from providers.gvisor.root import ROOT_UID_FILE, give_rootfs, write_bin
from providers.gvisor.runsc import (
    BUNDLE,
    NetnsReady,
    Runsc,
    empty_rootfs,
    running_container,
    sandbox_pid,
    start_sandbox,
    write_bundle,
    write_restore_mark,
    write_token,
)
from providers.scratch import remove_tree

log = structlog.get_logger(__name__)

#: In a memory image's directory, beside runsc's image: its source's OCI spec, machine
#: directory and uid, and how many forks are still to be restored from it.
SPEC_FILE = "spec.json"
SOURCE_FILE = "source"
UID_FILE = "uid"
LEFT_FILE = "forks-left"
#: In a fork's machine directory until its restore: the memory image it is restored from.
MARKER = "memory-image"
#: A checkpoint's wait: seconds for each 256 MiB on ptrace.
_IMAGE_TIMEOUT_S = 600.0


async def take_image(
    runsc: Runsc,
    machine_dir: Path,
    machine_id: str,
    *,
    nats_ports: set[int],
    memory: Path,
    forks: int | None,
    copy_home: Callable[[], Awaitable[HomeCopy]],
    renew: Callable[[], Awaitable[str]],
) -> tuple[int, float, HomeCopy]:
    """Freeze the machine, checkpoint it into ``memory`` leaving it in place, copy its home
    (``copy_home``) while it is still frozen, and let it go on with the credential ``renew``
    gives (stored by it before the machine's daemon reconnects); the image's size, how long
    the machine stood still (ms) and how its home was copied. ``forks``: how many restores
    delete it; None: kept until deleted (a snapshot's).

    The machine never leaves its sandbox nor its network namespace (its egress policy and
    its listeners stay as they are). All or nothing: if the checkpoint, the copy or the
    renewal fails (or the call is cancelled), the machine goes on as it was (its daemon
    woken), the image is removed, and the error raised; the caller removes its home copy."""
    began = time.monotonic()
    pid, cid = await _frozen_image(runsc, machine_dir, machine_id, nats_ports, memory)
    checkpointed = time.monotonic()
    try:
        await asyncio.to_thread(_describe_image, machine_dir, memory, forks)
        copied = await copy_home()  # nothing of the machine runs: its home as of the image
        home_copied = time.monotonic()
        # The copy every fork holds of the old credential is refused from now on.
        credential = await renew()
        await asyncio.to_thread(write_token, machine_dir, credential, machine_id)
    except BaseException:
        await asyncio.to_thread(remove_tree, memory)  # no fork is made of it
        raise
    finally:
        await asyncio.to_thread(_go_on, runsc, machine_dir, machine_id, pid, cid)
    stood_ms = (time.monotonic() - began) * 1000
    log.info("provider.gvisor_memory_image", machine_id=machine_id, pid=pid, forks=forks,
             ms=round(stood_ms), checkpoint_ms=round((checkpointed - began) * 1000),
             home_ms=round((home_copied - checkpointed) * 1000))  # fmt: skip
    return await asyncio.to_thread(image_size, memory), stood_ms, copied


async def _frozen_image(runsc: Runsc, machine_dir: Path, machine_id: str,
                        nats_ports: set[int], memory: Path) -> tuple[int, str]:  # fmt: skip
    """The machine's daemon lets NATS go, its sandbox is frozen (``runsc pause``) and
    checkpointed into ``memory`` (made anew), left frozen in place; its pid and container id.
    Conflict, the machine going on as it was, if the checkpoint fails."""
    pid = await asyncio.to_thread(sandbox_pid, machine_dir)
    if pid is None:
        raise ProviderError(f"machine {machine_id}'s sandbox is not running")
    cid = running_container(machine_dir, machine_id)
    await park_daemon(runsc, machine_dir, machine_id, pid, cid, nats_ports)
    await asyncio.to_thread(remove_tree, memory)
    memory.mkdir(mode=0o700)
    got = await runsc.run_async("pause", cid, inside=pid, timeout_s=60)
    if got.returncode == 0:
        got = await runsc.run_async("checkpoint", "--image-path", str(memory),
                                    *CHECKPOINT_FLAGS, "--leave-running", cid, inside=pid,
                                    timeout_s=_IMAGE_TIMEOUT_S)  # fmt: skip
    if got.returncode != 0:
        log.warning("provider.gvisor_checkpoint_failed", machine_id=machine_id,
                    stderr=got.stderr[:20000])  # fmt: skip
        await asyncio.to_thread(_go_on, runsc, machine_dir, machine_id, pid, cid)
        await asyncio.to_thread(remove_tree, memory)
        why = _runsc_error(got.stderr)
        raise Conflict(f"runsc could not checkpoint machine {machine_id}, which runs on as it "
                       f"was: {why}", data={"checkpoint": "failed"})  # fmt: skip
    return pid, cid


def left_frozen(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int, cid: str,
                token: str) -> None:  # fmt: skip
    """A machine a take left frozen (its provisioner ended between its ``runsc pause`` and its
    ``runsc resume``: a restart) goes on where it was, with its stored credential (the take
    may have renewed it), rather than be started afresh, which loses every process of it.
    The take's image and home copy, which no record holds, are the sweeper's."""
    write_token(machine_dir, token, machine_id)
    _go_on(runsc, machine_dir, machine_id, pid, cid)


def _go_on(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int, cid: str) -> None:
    """The frozen machine thawed (``runsc resume``; nothing if it is not frozen), and its
    daemon told to reconnect."""
    runsc.run("resume", cid, inside=pid, timeout_s=60)
    unpark(runsc, machine_dir, machine_id, pid, cid)


def _describe_image(machine_dir: Path, memory: Path, forks: int | None) -> None:
    """Beside runsc's image: its source's spec, directory and uids, and the forks to come."""
    shutil.copyfile(machine_dir / BUNDLE / "config.json", memory / SPEC_FILE)
    (memory / SOURCE_FILE).write_text(str(machine_dir))
    shutil.copyfile(machine_dir / "uid", memory / UID_FILE)
    if (machine_dir / ROOT_UID_FILE).is_file():
        shutil.copyfile(machine_dir / ROOT_UID_FILE, memory / ROOT_UID_FILE)
    if forks is not None:
        (memory / LEFT_FILE).write_text(str(forks))


def fork_spec(spec: dict[str, Any], source_dir: Path, machine_dir: Path,
              machine_id: str) -> dict[str, Any]:  # fmt: skip
    """The source's OCI spec for its fork ``machine_id``: every mount of the source's
    directory (home, code store, token) from the fork's, at the same place inside, and a
    root of the fork's own."""
    mounts: list[dict[str, Any]] = spec["mounts"]
    write_bin(machine_dir)  # its own sudo, as its source's
    for m in mounts:
        if m["type"] == "bind" and Path(m["source"]).is_relative_to(source_dir):
            m["source"] = str(machine_dir / Path(m["source"]).relative_to(source_dir))
    targets = [(str(m["destination"]), m["type"] != "bind" or os.path.isdir(m["source"]))
               for m in mounts]  # fmt: skip
    spec["root"]["path"] = str(rootfs := empty_rootfs(machine_dir / BUNDLE, targets))
    if (maps := spec.get("linux", {}).get("uidMappings")) and maps[0]["containerID"] == 0:
        give_rootfs(rootfs, int(maps[0]["hostID"]))  # its source's root, as its uid is
    env = [e for e in spec["process"]["env"] if not e.startswith("FLEET_MACHINE_ID=")]
    spec["process"]["env"] = [*env, f"FLEET_MACHINE_ID={machine_id}"]
    return spec


def prepare_fork(memory: Path, machine_dir: Path) -> None:
    """Before a fork's start: its uid and its root's are its source's (its restored processes
    run as those)."""
    uid = machine_dir / "uid"
    if not uid.exists():
        shutil.copyfile(memory / UID_FILE, uid)
    root = machine_dir / ROOT_UID_FILE
    if (memory / ROOT_UID_FILE).is_file() and not root.exists():
        shutil.copyfile(memory / ROOT_UID_FILE, root)


async def restore_fork(runsc: Runsc, machine_dir: Path, machine_id: str, token: str,
                       memory: Path, enter: list[str],
                       ready: NetnsReady | None = None) -> int:  # fmt: skip
    """The fork restored from its source's image, with its own identity, in a namespace
    readied by ``ready`` (its egress policy); its sandbox's pid."""
    began = time.monotonic()
    spec = json.loads((memory / SPEC_FILE).read_text())
    source_dir = Path((memory / SOURCE_FILE).read_text())
    await asyncio.to_thread(write_token, machine_dir, token, machine_id)
    # Its parked supervisor, restored, sees it and wakes the daemon as the fork at once.
    await asyncio.to_thread(write_restore_mark, machine_dir)
    spec = await asyncio.to_thread(fork_spec, spec, source_dir, machine_dir, machine_id)
    bundle = await asyncio.to_thread(write_bundle, machine_dir, spec)
    pid = await start_sandbox(
        runsc, machine_id, bundle, machine_dir / "daemon.log", machine_id, enter,
        verb=("restore", "--image-path", str(memory)), ready=ready,
    )  # fmt: skip
    restored = time.monotonic()
    # Its daemon, parked as its source's, woke as the fork the moment it was restored (its
    # restore mark); the resume's signal follows at once, not after a look for its reconnect
    # as a resume's (``wake_daemon``): a fork's reconnect as itself takes longer, and the look
    # and the signal after it cost twice the signal (80 ms p50 against 39, benchmark 27).
    await asyncio.to_thread(signal_daemon, runsc, machine_id, pid, "USR2")
    log.info("provider.gvisor_fork_restored", machine_id=machine_id, pid=pid,
             restore_ms=round((restored - began) * 1000),
             signal_ms=round((time.monotonic() - restored) * 1000))  # fmt: skip
    return pid


def one_fork_less(memory: Path) -> bool:
    """Count a fork restored; True when it was the last one (the image is then dropped).
    Never for a snapshot's image (no count: it is kept until the snapshot is deleted)."""
    if not (memory / LEFT_FILE).is_file():
        return False
    with open(memory / LEFT_FILE, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        left = 0
        with contextlib.suppress(ValueError):
            left = int(f.read().strip()) - 1
        f.seek(0)
        f.truncate()
        f.write(str(left))
    return left <= 0
