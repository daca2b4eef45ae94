"""python -m bench [--quick] [--only 1,2,...] [--json [PATH]] [--profile DIR]

Runs the benchmarks and prints, for each figure, the baseline measured in
the same run and the ratio. ``--quick`` runs fewer calls and machines and, unless ``--only``
names them, leaves out the benchmarks that stay slow even so (SLOW: it says so), to finish in
about a minute and a half; ``--json`` also writes the figures to docs/benchmarks.json (or PATH)
(with ``--only``, into that file: those benchmarks' figures replaced, the others kept),
the file the docs site's benchmarks page renders; ``--profile DIR`` also samples the services
with py-spy (a dev dependency) during benchmarks 2 and 3 and writes the top functions there
(31 runs its egress proxy under cProfile instead).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from base.logs import configure_logging
from bench import (
    audit,
    bytestreams,
    cli_start,
    code_interpreter,
    codemode,
    create_ready,
    desktop,
    e2b,
    egress,
    egress_proxy,
    env_cache,
    exec_stream,
    files,
    first_install,
    footprint,
    fork,
    gateway_attacks,
    gvisor,
    ha_failover,
    hosts,
    netns,
    people,
    pipeline,
    ports,
    providers,
    recovery,
    redis_calls,
    rpc,
    scale,
    startup,
    stop_start,
    terminal,
    typescript_sdk,
    warm_pool,
    webhook_fairness,
    webhooks,
)
from bench.common import REPO, Report, fmt, machine_description, verdict

#: Where ``--json`` writes by default: the figures the docs site's benchmarks page shows.
FIGURES = REPO / "docs" / "benchmarks.json"
BENCHES = tuple(str(n) for n in range(1, 38))
#: Left out of ``--quick`` unless ``--only`` names them: each takes a minute or more even when
#: quick (three stacks and the docker engine; a 30 s ack-wait baseline; --ha; both providers'
#: pools), as long as all the others together; 27 also needs runsc, which not every host has.
SLOW = {
    "9": "providers (3 stacks, docker)",
    "10": "recovery (a 30 s ack-wait baseline)",
    "11": "scale (300 machines, --ha)",
    "12": "warm pools (local and docker)",
    "15": "terminals (100 MiB through a PTY)",
    "16": "ports (forward and preview downloads)",
    "17": "files (a 1 GiB round trip)",
    "18": "stop/start (cold, warm and stopped machines)",
    "19": "own network (machines with and without it, 100 MiB egress)",
    "20": "hosts (200 machines on one host, then over 4)",
    "22": "fork (a 1 GiB home, btrfs and plain homes, docker)",
    "24": "egress policy (100 machines, 100 MiB downloads)",
    "25": "creates while a NATS node is lost (--ha)",
    "26": "environments (two docker stacks, image builds)",
    "27": "gvisor (runsc: 256 MiB pauses and resumes, stops and starts, forks with memory)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[2])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller runs; without --only, skips the slow ones",
    )
    parser.add_argument("--only", help="comma-separated benchmark numbers (1-37; default all)")
    parser.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=FIGURES,
        help=f"also write the figures as JSON (default: {FIGURES.relative_to(REPO)}, which the "
        "docs site's benchmarks page renders)",
    )
    parser.add_argument("--machines", type=int, help="machines for benchmarks 3, 4, 11, 20 and 24")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the services (cProfile the egress proxy of 31) into this directory",
    )
    args = parser.parse_args(argv)
    only = {b.strip() for b in (args.only or ",".join(BENCHES)).split(",") if b.strip()}
    if not only <= set(BENCHES):
        parser.error(f"--only takes numbers from {', '.join(BENCHES)}")
    left_out = sorted(only & SLOW.keys(), key=int) if args.quick and not args.only else []
    only -= set(left_out)

    configure_logging("dev", "warning")  # the providers used in-process stay quiet
    print("fleetd benchmarks" + (" (quick)" if args.quick else ""))
    for b in left_out:
        print(f"  not in --quick: {b} {SLOW[b]} (--quick --only {b} runs it)")
    machine = machine_description()
    for key, value in machine.items():
        print(f"  {key:<22} {value}")
    print(f"  command                python -m bench {' '.join(argv or sys.argv[1:])}".rstrip())
    report = Report()
    report.skipped += [f"{b} {SLOW[b]}: not in --quick (--quick --only {b} runs it)"
                       for b in left_out]  # fmt: skip
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
    if "14" in only:
        asyncio.run(bytestreams.run(report, args.quick))
    if "15" in only:
        asyncio.run(terminal.run(report, args.quick))
    if "16" in only:
        asyncio.run(ports.run(report, args.quick))
    if "17" in only:
        asyncio.run(files.run(report, args.quick))
    if "18" in only:
        asyncio.run(stop_start.run(report, args.quick))
    if "19" in only:
        asyncio.run(netns.run(report, args.quick))
    if "20" in only:
        asyncio.run(hosts.run(report, args.quick, args.machines))
    if "21" in only:
        asyncio.run(audit.run(report, args.quick))
    if "22" in only:
        asyncio.run(fork.run(report, args.quick))
    if "23" in only:
        asyncio.run(people.run(report, args.quick))
    if "24" in only:
        asyncio.run(egress.run(report, args.quick, args.machines))
    if "25" in only:
        asyncio.run(ha_failover.run(report, args.quick))
    if "26" in only:
        asyncio.run(env_cache.run(report, args.quick))
    if "27" in only:
        asyncio.run(gvisor.run(report, args.quick))
    if "28" in only:
        asyncio.run(typescript_sdk.run(report, args.quick))
    if "29" in only:
        asyncio.run(code_interpreter.run(report, args.quick))
    if "30" in only:
        asyncio.run(startup.run(report, args.quick))
    if "31" in only:
        asyncio.run(egress_proxy.run(report, args.quick, args.profile))
    if "32" in only:
        asyncio.run(first_install.run(report, args.quick))
    if "33" in only:
        asyncio.run(webhooks.run(report, args.quick))
    if "34" in only:
        asyncio.run(desktop.run(report, args.quick))
    if "35" in only:
        asyncio.run(webhook_fairness.run(report, args.quick))
    if "36" in only:
        asyncio.run(e2b.run(report, args.quick))
    if "37" in only:
        asyncio.run(cli_start.run(report, args.quick))
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
        run = msgspec.json.decode(report.to_json()) | {
            "command": f"python -m bench {' '.join(argv or sys.argv[1:])}".rstrip(),
            "machine": machine,
            "elapsedS": round(time.monotonic() - started, 1),
            "loadAverageAtEnd": load,
        }
        if args.only and args.json.exists():  # a re-run of some: the others' figures stay
            run = merged(msgspec.json.decode(args.json.read_bytes()), run, only)
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(run)) + b"\n")
        print(f"figures written to {args.json}")
    return 0


def merged(old: dict[str, Any], new: dict[str, Any], only: set[str]) -> dict[str, Any]:
    """``old``'s run with the figures of the benchmarks in ``only`` replaced by ``new``'s, and
    ``new``'s run recorded beside ``old``'s (``laterRuns``: which benchmarks, which command)."""
    figures = [f for f in old["figures"] if f["bench"] not in only] + new["figures"]
    figures.sort(key=lambda f: int(f["bench"]))  # stable: each benchmark's own order stays
    skipped = [s for s in old["skipped"] if s.split(" ", 1)[0] not in only] + new["skipped"]
    later = [r for r in old.get("laterRuns", []) if not set(r["benches"]) <= only]
    later.append({k: new[k] for k in ("command", "elapsedS", "loadAverageAtEnd")}
                 | {"benches": sorted(only, key=int)})  # fmt: skip
    # A re-run benchmark's notes replace its earlier ones ("<number>: ..."), as its figures do.
    notes = [n for n in old["notes"] if n.split(":", 1)[0] not in only] + new["notes"]
    return old | {"figures": figures, "skipped": skipped, "notes": notes,
                  "laterRuns": later}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
