"""Benchmark 17: streamed file upload and download against ``cp`` on the host.

On the embedded stack (``fleet up``) with one local machine: ``FleetClient.upload`` (``PUT
/machines/{id}/files/{path}``: gateway, byte stream over NATS, daemon writing a temp file,
fsync, rename) and ``FleetClient.download`` (``GET``: the daemon reading, the client writing a
temp file, fsync, rename) of one file, each checked by SHA-256, against ``cp --sparse=never``
of the same file on the host followed by ``sync`` of the copy (both ends of a transfer make
their file durable). Interleaved, best of N, in the same run. Also the 1 GiB round trip's wall
time (the test suite checks the same 1 GiB round trip by SHA-256, untimed). No target: the
figures say how far the stack is from the host's own copy; benchmark 14 holds the byte stream
under them to >= 0.6x of the raw nats-py hop.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from bench.common import Figure, Report, temp_dir
from bench.stack import ADMIN_TOKEN, EventWatch, FleetUp, servers
from fleet.client import FleetClient

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    """Random 1 MiB blocks stamped with their offsets (not compressible, not all zeros)."""
    block = bytearray(os.urandom(MiB))
    with path.open("wb") as f:
        for offset in range(0, size, MiB):
            block[:8] = offset.to_bytes(8, "big")
            f.write(block[: min(MiB, size - offset)])


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(4 * MiB):
            h.update(data)
    return h.hexdigest()


def host_cp(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    # --sparse=never: the copy writes every byte, as a transfer does (the 1 GiB file is sparse).
    subprocess.run(["cp", "--sparse=never", str(src), str(dst)], check=True)
    subprocess.run(["sync", str(dst)], check=True)
    elapsed = time.perf_counter() - t0
    dst.unlink()
    return elapsed


async def _ready_machine(client: FleetClient, nats_url: str) -> str:
    watch = await EventWatch().start(nats_url)
    try:
        inst = await client.create_instance("bench-files")
        machine = await client.create_machine(inst.id)
        await watch.wait_all("ready", [machine.id], timeout_s=60)
    finally:
        await watch.close()
    return machine.id


async def run(report: Report, quick: bool) -> None:
    size = (64 if quick else 256) * MiB
    rounds = 2 if quick else 3
    print(f"[17] file transfer: {size // MiB} MiB, best of {rounds}, local provider, vs cp+sync")
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        local = root / "file.bin"
        make_file(local, size)
        want = sha256_of(local)
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            mid = await _ready_machine(client, ns.url)
            up_s = down_s = cp_s = float("inf")
            for i in range(rounds):
                cp_s = min(cp_s, host_cp(local, root / "cp.bin"))
                t0 = time.perf_counter()
                done = await client.upload(mid, local, f"bench/{i}.bin")
                up_s = min(up_s, time.perf_counter() - t0)
                assert done.sha256 == want
                t0 = time.perf_counter()
                got = await client.download(mid, f"bench/{i}.bin", root / "back.bin")
                down_s = min(down_s, time.perf_counter() - t0)
                assert got.sha256 == want
                await client.remove_file(mid, f"bench/{i}.bin")
            cp_rate = size / MiB / cp_s
            for name, secs in (("upload", up_s), ("download", down_s)):
                report.add(Figure("17", f"file {name} {size // MiB} MiB", size / MiB / secs,
                                  "MiB/s", cp_rate, "cp + sync on the host"))  # fmt: skip
            if not quick:
                await _gib_round_trip(report, client, mid, root)


async def _gib_round_trip(report: Report, client: FleetClient, mid: str, root: Path) -> None:
    """1 GiB up and back down, sparse (quick to make) with a random block every 64 MiB."""
    size, local = 1024 * MiB, root / "gib.bin"
    with local.open("wb") as f:
        f.truncate(size)
        for offset in range(0, size, 64 * MiB):
            f.seek(offset)
            f.write(offset.to_bytes(8, "big") + os.urandom(MiB - 8))
    cp_s = host_cp(local, root / "gib-cp.bin")
    t0 = time.perf_counter()
    done = await client.upload(mid, local, "bench/gib.bin")
    got = await client.download(mid, "bench/gib.bin", root / "gib-back.bin")
    elapsed = time.perf_counter() - t0
    assert done.sha256 == got.sha256 == sha256_of(local)
    report.add(Figure("17", "file 1 GiB round trip (up + down)", elapsed, "s", 2 * cp_s,
                      "2x cp + sync on the host"))  # fmt: skip
