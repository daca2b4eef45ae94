"""Benchmark 29: the code interpreter (``machines.code.run``) against ``machines.exec`` and
``machines.readFile``.

On the embedded stack with local machines, each figure against its baseline in the same run:

- **warm call**: ``machines.code.run`` of ``1+1`` in a machine's default Python context, its
  kernel started, against ``machines.exec`` of ``true`` in the same machine, alternating, p50
  and p95. Target: p50 at most 1.5x.
- **first call**: in a fresh machine (created, then ready), the first ``machines.code.run`` of
  ``1+1`` (the kernel starts in it), against the first ``machines.exec`` of ``true`` in another
  fresh machine, created alternately, median over the machines. Target: at most 1 s.
- **PNG result**: ``machines.code.run`` of ``display(Image(filename=...))`` of a valid PNG of
  random pixels in the machine's home (an ``image/png`` result, base64 in the answer), against
  ``machines.readFile`` of the same file in base64, alternating, throughput at the p50. Target:
  at least 0.5x. The PNG is the largest that fits whole in one answer: an answer is one NATS
  message (1 MiB by default, the server's ``max_payload``), the daemon keeps 16 KiB of it for the
  error, and base64 takes 4 bytes for 3, so 750 KiB, not 1 MiB.
"""

from __future__ import annotations

import base64
import os
import statistics
import struct
import time
import zlib
from pathlib import Path

from bench.common import Figure, Report, percentile, temp_dir
from bench.files import _ready_machine
from bench.stack import ADMIN_TOKEN, FleetUp, servers
from fleet.client import FleetClient

KiB = 1024
#: The PNG's size: the largest round figure whose base64 fits in one answer (see above).
PNG_BYTES = 750 * KiB
PNG_PATH = "bench-result.png"
SHOW_PNG = f"from IPython.display import Image, display\ndisplay(Image(filename={PNG_PATH!r}))"


def random_png(at_most: int, width: int = 512) -> bytes:
    """A valid RGB PNG of random pixels (stored, not compressed: as big as it looks), the
    tallest of ``width`` that is at most ``at_most`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = 3 * width
    height = at_most // (row + 1)
    while True:
        pixels = os.urandom(row * height)
        raw = b"".join(b"\0" + pixels[y * row : (y + 1) * row] for y in range(height))
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
               + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))  # fmt: skip
        if len(png) <= at_most:
            return png
        height -= 1 + (len(png) - at_most) // (row + 1)


async def _timed_code(client: FleetClient, mid: str, code: str) -> tuple[float, dict[str, str]]:
    """The call's seconds, and its one result (checked: whole, no error)."""
    t0 = time.perf_counter()
    r = await client.machines_code_run(mid, code)
    elapsed = time.perf_counter() - t0
    assert r.error is None, r.error
    assert not r.truncated, "the result did not fit in one answer"
    assert len(r.results) == 1, r.results
    return elapsed, r.results[0]


async def _timed_exec(client: FleetClient, mid: str) -> float:
    t0 = time.perf_counter()
    r = await client.exec(mid, ["true"])
    elapsed = time.perf_counter() - t0
    assert r.exit_code == 0, r
    return elapsed


async def _warm(report: Report, client: FleetClient, mid: str, n: int) -> None:
    for _ in range(5):  # the kernel started, both paths warm (connections, imports)
        await _timed_code(client, mid, "1+1")
        await _timed_exec(client, mid)
    code, plain = [], []
    for _ in range(n):
        elapsed, result = await _timed_code(client, mid, "1+1")
        assert result["text/plain"] == "2", result
        code.append(elapsed)
        plain.append(await _timed_exec(client, mid))
    p50, base = percentile(code, 50), percentile(plain, 50)
    report.add(Figure("29", "code.run 1+1 warm p50", p50, "s", base, "exec true p50", "<= 1.5x",
                      p50 <= 1.5 * base))  # fmt: skip
    report.add(Figure("29", "code.run 1+1 warm p95", percentile(code, 95), "s",
                      percentile(plain, 95), "exec true p95"))  # fmt: skip


async def _first_calls(report: Report, client: FleetClient, nats_url: str, machines: int) -> None:
    code, plain = [], []
    for _ in range(machines):
        mid = await _ready_machine(client, nats_url)
        elapsed, result = await _timed_code(client, mid, "1+1")
        assert result["text/plain"] == "2", result
        code.append(elapsed)
        await client.stop_machine(mid)  # its kernel and daemon off the host's two cores
        mid = await _ready_machine(client, nats_url)
        plain.append(await _timed_exec(client, mid))
        await client.stop_machine(mid)
    first, base = statistics.median(code), statistics.median(plain)
    report.add(Figure("29", f"code.run 1+1 first call, fresh machine (median of {machines})",
                      first, "s", base, "first exec true", "<= 1 s", first <= 1.0))  # fmt: skip


async def _png(report: Report, client: FleetClient, mid: str, root: Path, n: int) -> None:
    png = random_png(PNG_BYTES)
    (root / PNG_PATH).write_bytes(png)
    await client.upload(mid, root / PNG_PATH, PNG_PATH)
    code, read = [], []
    for i in range(n + 2):  # the first two of each warm the paths (the import of Image)
        elapsed, result = await _timed_code(client, mid, SHOW_PNG)
        assert base64.b64decode(result["image/png"]) == png
        t0 = time.perf_counter()
        got = await client.read_file(mid, PNG_PATH, encoding="base64")
        read_s = time.perf_counter() - t0
        assert base64.b64decode(got.content) == png
        if i >= 2:
            code.append(elapsed)
            read.append(read_s)
    mib = len(png) / KiB / KiB
    rate, base = mib / percentile(code, 50), mib / percentile(read, 50)
    report.add(Figure("29", f"code.run PNG result {len(png) // KiB} KiB (the most one answer "
                      "holds)", rate, "MiB/s", base, "readFile of the same bytes", ">= 0.5x",
                      rate >= 0.5 * base))  # fmt: skip


async def run(report: Report, quick: bool) -> None:
    n, machines = (30, 3) if quick else (200, 7)
    print(
        f"[29] code interpreter: {n} warm calls and PNG results, {machines} fresh machines "
        "each way, local provider, vs machines.exec and machines.readFile"
    )
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            await _first_calls(report, client, ns.url, machines)
            mid = await _ready_machine(client, ns.url)
            await _warm(report, client, mid, n)
            await _png(report, client, mid, root, n)
