"""python -m bench [--quick] [--only 1,2,...] [--json PATH] [--profile DIR]

Runs the benchmarks of issues 7 and 14 and prints, for each figure, the baseline measured in
the same run and the ratio. ``--quick`` finishes in under a minute (fewer calls and machines);
``--profile DIR`` also samples the services with py-spy (a dev dependency) during benchmarks 2
and 3 and writes the top functions there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from bench import (
    codemode,
    create_ready,
    exec_stream,
    footprint,
    gateway_attacks,
    pipeline,
    providers,
    recovery,
    redis_calls,
    rpc,
    scale,
    warm_pool,
)
from bench.common import Report, fmt, machine_description, verdict
from core.logs import configure_logging

BENCHES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[2])
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help="comma-separated benchmark numbers (1-13)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--machines", type=int, help="machines for benchmarks 3, 4 and 11")
    parser.add_argument("--profile", type=Path, help="py-spy the services into this directory")
    args = parser.parse_args(argv)
    only = {b.strip() for b in args.only.split(",") if b.strip()}
    if not only <= set(BENCHES):
        parser.error(f"--only takes numbers from {', '.join(BENCHES)}")

    configure_logging("dev", "warning")  # the providers used in-process stay quiet
    print("fleetd benchmarks" + (" (quick)" if args.quick else ""))
    for key, value in machine_description().items():
        print(f"  {key:<22} {value}")
    print(f"  command                python -m bench {' '.join(argv or sys.argv[1:])}".rstrip())
    report = Report()
    started = time.monotonic()
    if "1" in only:
        asyncio.run(rpc.run(report, args.quick))
    if "2" in only:
        asyncio.run(create_ready.run(report, args.quick, args.profile))
    if only & {"3", "4"}:
        asyncio.run(
            pipeline.run(
                report,
                args.quick,
                machines=args.machines,
                scale="3" in only,
                fanout="4" in only,
                profile=args.profile,
            )
        )
    if "5" in only:
        asyncio.run(footprint.run(report, args.quick))
    if "6" in only:
        asyncio.run(gateway_attacks.run(report, args.quick))
    if "7" in only:
        asyncio.run(exec_stream.run(report, args.quick))
    if "8" in only:
        asyncio.run(codemode.run(report, args.quick))
    if "9" in only:  # the machines given to 3 and 4 do not apply: 9 has its own count
        asyncio.run(providers.run(report, args.quick))
    if "10" in only:
        asyncio.run(recovery.run(report, args.quick))
    if "11" in only:
        asyncio.run(scale.run(report, args.quick, args.machines))
    if "12" in only:
        asyncio.run(warm_pool.run(report, args.quick))
    if "13" in only:
        asyncio.run(redis_calls.run(report, args.quick))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nsummary ({time.monotonic() - started:.0f} s; load average at the end {load})")
    print("| # | figure | value | baseline | ratio | target | |")
    print("|---|---|---|---|---|---|---|")
    for f in report.figures:
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        base = f"{f.baseline_name} {fmt(f.baseline, f.unit)}" if f.baseline is not None else ""
        met = verdict(f.met) if f.target else ""
        cells = [f.bench, f.name, fmt(f.value, f.unit), base, ratio, f.target, met]
        print("| " + " | ".join(cells) + " |")
    for line in report.skipped:
        print(f"skipped: {line}")
    if args.json:
        args.json.write_bytes(report.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
