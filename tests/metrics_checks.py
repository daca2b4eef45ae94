"""What a machine's metrics must show, on any runtime (tests/integration/*metrics*.py): a
machine that runs a busy loop holding 200 MB shows that in ``machines.metrics``, its CPU as
the loop's own CPU time says it got (one core on an idle host; this project's shared hosts
give it less), and its latest sample on ``machines.get``."""

from __future__ import annotations

import bisect
import time

from contracts.models import MachineSample
from fleet.client import FleetClient
from tests.waiters import wait_until

MB = 1 << 20
#: One core busy, 200 MB held (each page touched, so that it is resident); twice a second
#: it logs its clock and its own CPU time ("<time> <cpu seconds>").
LOAD = """
import time
held = bytearray(200 * 1024 * 1024)
for i in range(0, len(held), 4096):
    held[i] = 1
with open("load.log", "a", buffering=1) as log:
    due = 0.0
    while True:
        now = time.time()
        if now >= due:
            log.write(f"{now} {time.process_time()}\\n")
            due = now + 0.5
"""


def cpu_rate(log: str, start: float, end: float) -> float | None:
    """The cores the loop used between ``start`` and ``end``, from its log (None: the log does
    not cover that time)."""
    rows = [tuple(map(float, line.split())) for line in log.splitlines() if line.count(" ") == 1]
    times = [t for t, _ in rows]
    a, b = bisect.bisect_left(times, start), bisect.bisect_right(times, end) - 1
    if not rows or times[0] > start + 0.5 or times[-1] < end - 0.5 or b <= a:
        return None
    (t0, c0), (t1, c1) = rows[a], rows[b]
    return (c1 - c0) / (t1 - t0)


async def shows_its_load(client: FleetClient, mid: str, timeout_s: float = 60.0, *,
                         guest_clock: bool = False) -> float:  # fmt: skip
    """The load started on the machine and seen in its samples: how long that took (s). The
    sample's CPU is the loop's own CPU time over it, within 0.2 core; ``guest_clock``: the
    loop's clock is its own kernel's (gVisor's), which on a busy host counts time the host
    gave others too, so the sample (the host's count) may be as low as half of it."""
    await client.write_file(mid, "load.py", LOAD)
    started = time.monotonic()
    await client.start_process(mid, ["python3", "load.py"], tag="load")
    seen: list[tuple[MachineSample, float]] = []
    found: list[tuple[MachineSample, float]] = []

    def agrees(sample: MachineSample, rate: float) -> bool:
        """The sample's CPU is the loop's, within 0.2 core (what else runs in the machine, its
        daemon and this check's own ``cat``, counts in the sample, and on a loaded host the
        loop's log and the sample's window meet only roughly): one sample that agrees is the
        check, a single one that does not is noise, every one that does not a wrong count."""
        low = rate / 2 if guest_clock else rate - 0.2
        return sample.cpu_cores is not None and low <= sample.cpu_cores <= rate + 0.2

    async def shown() -> bool:
        got = await client.machine_metrics(mid, since=time.time() - 60)
        log = (await client.exec(mid, ["cat", "load.log"])).stdout
        for s in got.samples:
            rate = cpu_rate(log, s.at - s.step_s, s.at)
            if rate is not None and (s.memory_bytes or 0) >= 190 * MB:
                seen.append((s, rate))
                if agrees(s, rate):
                    found.append((s, rate))
        return bool(found)

    try:
        await wait_until(shown, timeout=timeout_s, every=0.5)
    except TimeoutError:
        got = await client.machine_metrics(mid, since=time.time() - 60)
        raise AssertionError(f"no sample showed the load (samples with the loop's own CPU "
                             f"rate: {seen[-8:]}): {got.samples}") from None  # fmt: skip
    took = time.monotonic() - started
    sample, rate = found[0]
    print(f"sample {sample}; the loop's own CPU time over it: {rate:.3f} cores")
    cpu, memory, limit = sample.cpu_cores, sample.memory_bytes, sample.memory_limit_bytes
    assert cpu is not None, sample
    assert cpu <= 1.2, sample  # its limit: one core
    assert memory is not None, sample
    assert memory < 400 * MB, sample
    assert limit is not None, sample
    assert limit >= 200 * MB, sample
    latest = (await client.get_machine(mid)).metrics
    assert latest is not None, mid
    assert latest.at >= sample.at, latest
    return took
