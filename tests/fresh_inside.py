"""Inside a bare Debian container, at the root of a fresh clone, as root: what a new user does.

1. The README's quick start, word for word: its repository, then ``./run up`` (which installs
   everything on first use) until the gateway answers ``/healthz``; then every CLI line, each
   printing what the README shows (ids and timings aside).
2. Ctrl-C: the stack stops with exit code 0, and leaves no process, mount, network namespace or
   network interface behind.
3. ``./run test --fast`` passes.

Run by ``tests/fresh_machine.py``. The Python here is Debian's own, with nothing installed: this
file uses the standard library and the README's parser alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.e2e import readme_quickstart

SUITE = os.environ.get("FRESH_SUITE", "?")
ROOT = Path.cwd()
UP_TIMEOUT_S = 900
BANNER = "Ctrl-C stops everything"


def say(line: str) -> None:
    print(f"fresh {SUITE}: {line}", flush=True)


def fail(step: str, why: str) -> None:
    data = ROOT / ".fleet-data"
    logs = sorted(data.glob("logs/*.log")) + sorted(data.glob("machines/*/*.log"))[:6]
    tails = "".join(f"--- {p}:\n" + "".join(p.read_text().splitlines(True)[-25:]) for p in logs)
    say(f"FAILED at {step}: {why}\n{tails}")
    sys.exit(1)


def snapshot() -> dict[str, set[str]]:
    """What a stack that stopped must not leave: processes, mounts, netns, interfaces."""
    me = {str(os.getpid()), "1"}
    procs = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name not in me:
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue  # gone meanwhile
            if cmd:  # kernel threads have none
                procs.add(cmd)
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    mounts = {" ".join(line.split()[3:5]) for line in lines}
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    return {"processes": procs, "mounts": mounts, "netns": netns,
            "interfaces": set(os.listdir("/sys/class/net"))}  # fmt: skip


def start_up(start: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """``start`` (the README's ``./run up`` line) in a session of its own; (the process, the
    gateway's URL, the lines that say a service died, as they come), once its banner is out."""
    up = subprocess.Popen(["bash", "-c", start], cwd=ROOT, start_new_session=True, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    printed: list[str] = []
    restarted: list[str] = []
    banner = threading.Event()

    def pump() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            printed.append(line)
            say(f"up| {line.rstrip()}")
            if BANNER in line:
                banner.set()
            if "restarting in" in line:  # a service died: its log says why
                restarted.append(line)
        banner.set()

    threading.Thread(target=pump, daemon=True).start()
    if not banner.wait(UP_TIMEOUT_S) or up.poll() is not None:
        fail("./run up", f"no banner within {UP_TIMEOUT_S} s (exit {up.poll()})")
    found = re.search(r"http://127\.0\.0\.1:\d+", "".join(printed))
    if found is None:
        fail("./run up", "its banner names no gateway URL")
    return up, found.group(0), restarted


def quick_start() -> subprocess.Popen[str]:
    *prepare, start = readme_quickstart.commands("up")
    subprocess.run(["bash", "-ec", "\n".join(prepare)], cwd=ROOT, check=True, timeout=60)
    began = time.monotonic()
    up, url, restarted = start_up(start)
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as answer:  # noqa: S310
        if answer.status != 200:
            fail("./run up", f"/healthz answered {answer.status}")
    say(f"./run up: installed, started, /healthz answers after {time.monotonic() - began:.1f} s")
    steps = readme_quickstart.steps("cli") + readme_quickstart.steps("work")
    marker = "@@quickstart"
    script = readme_quickstart.script(steps, marker)
    cli = subprocess.Popen(["bash", "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while cli.poll() is None and not restarted and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            cli.wait(1)
    if cli.poll() is None:
        cli.kill()
    printed = cli.communicate()[0]
    if restarted:
        fail("./run up", f"a service died: {restarted[0].strip()}")
    got = readme_quickstart.outputs(printed, marker)
    if len(got) != len(steps):
        fail("the quick start", f"ran {len(got)} of {len(steps)} steps:\n{printed}")
    for step, (output, rc) in zip(steps, got, strict=True):
        if (output, rc) != (step.expected, 0):
            fail("the quick start", f"$ {step.command}\nprinted (exit {rc}):\n{output}\n"
                 f"the README shows:\n{step.expected}")  # fmt: skip
    say(f"the quick start: {len(steps)} steps printed what the README shows")
    return up


def stop(up: subprocess.Popen[str], before: dict[str, set[str]]) -> None:
    os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in its terminal
    try:
        code = up.wait(90)
    except subprocess.TimeoutExpired:
        fail("Ctrl-C", "the stack did not stop within 90 s")
    if code != 0:
        fail("Ctrl-C", f"./run up exited {code}")
    after = snapshot()
    left = {kind: sorted(after[kind] - before[kind]) for kind in before}
    left = {kind: items for kind, items in left.items() if items}
    if left:
        fail("Ctrl-C", f"left behind: {left}")
    say("Ctrl-C: the stack stopped (exit 0) and left nothing behind")


def main() -> None:
    say(f"{Path('/etc/debian_version').read_text().strip()}, {sys.version.split()[0]}, as root")
    before = snapshot()
    stop(quick_start(), before)
    began = time.monotonic()
    done = subprocess.run(["./run", "test", "--fast", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)  # fmt: skip
    for line in done.stdout.splitlines()[-(40 if done.returncode == 0 else 400) :]:
        say(f"test| {line}")
    if done.returncode != 0:
        fail("./run test --fast", f"exit {done.returncode}")
    say(f"./run test --fast passed ({time.monotonic() - began:.0f} s with its install)")


if __name__ == "__main__":
    main()
