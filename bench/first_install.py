"""Benchmark 32: a new user's first ``./run up``, from a fresh clone with empty package caches.

In one run: the wall time from ``./run up`` in a fresh clone of this checkout (its venv
installed from PyPI into empty uv and pip caches, no pip configuration of this host) to its
gateway answering ``/healthz`` (the install, then the stack's start); against the floor of any
Python install, ``python -m venv`` plus one small wheel (six) with pip, from the same empty
caches. Without ``--quick``, the same first ``./run up`` with pip as the installer
(``FLEET_INSTALLER=pip``: a host where PyPI's uv cannot be had). The Debian packages ./run
installs are this host's already: their download is apt's, not ours.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import REPO, Figure, Report, temp_dir

TARGET_S = 90.0
BANNER = "Ctrl-C stops everything"


def _clean_env(work: Path) -> dict[str, str]:
    """This process's environment with empty caches and no pip or uv configuration."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "FLEET_", "VIRTUAL_ENV"))}  # fmt: skip
    return env | {"PIP_CONFIG_FILE": os.devnull, "PIP_CACHE_DIR": str(work / "pip-cache"),
                  "UV_CACHE_DIR": str(work / "uv-cache"), "UV_NO_CONFIG": "1",
                  "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # fmt: skip


def _baseline(work: Path) -> float:
    env = _clean_env(work / "base")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(work / "base" / "venv")], env=env,
                   check=True, timeout=300)  # fmt: skip
    subprocess.run([str(work / "base" / "venv" / "bin" / "pip"), "install", "-q", "six"],
                   env=env, check=True, timeout=300)  # fmt: skip
    return time.perf_counter() - t0


def _first_up(work: Path, installer: str) -> float:
    """Seconds to /healthz of ./run up in a fresh clone."""
    clone = work / f"clone-{installer}"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    env = _clean_env(work / installer) | {"FLEET_INSTALLER": installer}
    t0 = time.perf_counter()
    up = subprocess.Popen([str(clone / "run"), "up", "--port", "0"], cwd=clone, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)  # fmt: skip
    lines: list[tuple[float, str]] = []
    seen = threading.Event()

    def pump() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append((time.perf_counter() - t0, line))
            if BANNER in line:
                seen.set()
        seen.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not seen.wait(600) or up.poll() is not None:
            raise RuntimeError(f"./run up ({installer}) printed no banner: "
                               f"{''.join(line for _, line in lines)[-2000:]}")  # fmt: skip
        url = re.search(r"http://127\.0\.0\.1:\d+", "".join(line for _, line in lines))
        assert url is not None
        with urllib.request.urlopen(f"{url.group(0)}/healthz", timeout=30):  # noqa: S310
            answered = time.perf_counter() - t0
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(120)
    return answered


async def run(report: Report, quick: bool) -> None:
    print("\n32. first ./run up: a fresh clone, empty package caches")
    with temp_dir() as work:
        base = _baseline(work)
        for installer in ("uv",) if quick else ("uv", "pip"):
            answered = _first_up(work, installer)
            name = f"first ./run up to /healthz ({installer})"
            report.add(Figure("32", name, answered, "s", base,
                              "python -m venv + pip install six, empty cache",
                              f"<= {TARGET_S:.0f} s", answered <= TARGET_S))  # fmt: skip
