"""What a test session left behind: processes, mounts and docker containers of this session,
found by its base temp dir (``.../pytest-of-<user>/pytest-<n>``, xdist workers' under it),
which names every data dir, machine home and server store its tests made. Other checkouts'
sessions running on this host have base temp dirs of their own: theirs are never counted.

Machines outlive the provisioner that started them by design, so a fixture that makes them
must end them; ``tests/conftest.py`` fails the session, naming them, when one did not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from base import procinfo
from providers.docker_names import LABEL_STACK

#: Teardowns signal; their processes may still be ending as the session finishes.
SETTLE_S = 10.0


def find(basetemp: Path, settle_s: float = SETTLE_S) -> list[str]:
    """Each leftover of the session whose base temp dir is ``basetemp``, one line each; what
    is still ending is given ``settle_s`` to end."""
    deadline = time.monotonic() + settle_s
    while True:
        found = processes(basetemp) + mounts(basetemp) + containers(basetemp)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def processes(basetemp: Path) -> list[str]:
    """Processes whose command line, environment or working directory names ``basetemp``
    (not this process or its ancestors)."""
    # The dir itself, not ``pytest-12`` within ``pytest-123``.
    mark = re.compile(re.escape(str(basetemp.resolve()).encode()) + rb"(?![\w.-])")
    mine = set(_ancestors(os.getpid()))
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        pid = int(entry.name)
        if procinfo.state(pid) in (None, "Z", "X"):
            continue
        if any(mark.search(seen) for seen in _facts(pid)):
            found.append(f"process {pid}: {' '.join(procinfo.cmdline(pid))[:300]}")
    return found


def _facts(pid: int) -> list[bytes]:
    """Its command line, environment and working directory (those it lets us read)."""
    facts = []
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                facts.append(f.read())
        except OSError:
            continue
    with contextlib.suppress(OSError):
        facts.append(os.readlink(f"/proc/{pid}/cwd").encode())
    return facts


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        chain.append(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def mounts(basetemp: Path) -> list[str]:
    """Mount points (of this mount namespace) under ``basetemp``."""
    root = basetemp.resolve()
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = Path(_unescape(line.split()[4]))
            if point.is_relative_to(root):
                found.append(f"mount {point}")
    return found


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline or backslash as an octal escape."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def containers(basetemp: Path) -> list[str]:
    """Docker containers (running or not) labelled with a stack under ``basetemp``; none
    where no engine answers (then none can have been made)."""
    if shutil.which("docker") is None:
        return []
    try:
        out = subprocess.run(
            ["docker", "ps", "--all", "--no-trunc", "--filter", f"label={LABEL_STACK}",
             "--format", "{{json .}}"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return []
    root = basetemp.resolve()
    found = []
    for line in out.splitlines():
        row = json.loads(line)
        labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
        stack = labels.get(LABEL_STACK, "")
        if stack and Path(stack).is_relative_to(root):
            found.append(f"container {row.get('Names')} ({row.get('State')}): stack {stack}")
    return found
