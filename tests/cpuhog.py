"""Run a command while busy processes load the CPUs: the contention the full suite meets.

    python -m tests.cpuhog [--procs 2] [--max-s 1800] [--runs 10] -- pytest tests/e2e/test_chaos.py

Starts ``--procs`` processes that spin, runs the command ``--runs`` times in a row (stopping at
the first failure), then ends the hogs. Each hog also ends by itself after ``--max-s`` seconds,
so nothing outlives a killed run for long.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time


def spin(max_s: float) -> None:
    end = time.monotonic() + max_s
    while time.monotonic() < end:
        sum(i * i for i in range(10_000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cpuhog")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--max-s", type=float, default=1800.0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    hogs = [multiprocessing.Process(target=spin, args=(args.max_s,)) for _ in range(args.procs)]
    for h in hogs:
        h.start()
    code = 0
    try:
        for run in range(1, args.runs + 1):
            t0 = time.monotonic()
            code = subprocess.call(args.command)
            print(f"cpuhog: run {run}/{args.runs}: exit {code} in {time.monotonic() - t0:.1f}s",
                  flush=True)  # fmt: skip
            if code:
                break
    finally:
        for h in hogs:
            h.terminate()
            h.join()
    return code


if __name__ == "__main__":
    sys.exit(main())
