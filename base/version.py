"""The version of the code this process runs: package version and git SHA."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from functools import cache
from pathlib import Path

from contracts.daemon.code_files import CODE_SHA_FILE

SOURCE_ROOT = Path(__file__).resolve().parent.parent


@cache
def package_version() -> str:
    if found := dist_version("fleetd"):
        return found
    # importlib.metadata only now: importing it costs a daemon 2.4 MB (bench 5).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fleetd")
    except PackageNotFoundError:
        return "0+unknown"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def dist_version(name: str) -> str | None:
    """The version of installed distribution ``name`` from the name of its ``.dist-info``
    directory (``<name>-<version>.dist-info``, the first on sys.path, as importlib.metadata
    finds it) without importing importlib.metadata; None if there is no such directory."""
    want = _normalized(name)
    for entry in sys.path:
        with contextlib.suppress(OSError), os.scandir(entry or ".") as it:
            for e in it:
                if e.name.endswith(".dist-info") and "-" in e.name:
                    dist, _, version = e.name[: -len(".dist-info")].partition("-")
                    if _normalized(dist) == want and version:
                        return version
    return None


@cache
def git_sha() -> str | None:
    """The SHA of the code this process runs: the marker of an installed code directory
    (``~/.fleet/code/<sha>``), else FLEET_GIT_SHA (deployments), else the checkout's HEAD."""
    with contextlib.suppress(OSError):
        return (SOURCE_ROOT / CODE_SHA_FILE).read_text().strip()
    if sha := os.environ.get("FLEET_GIT_SHA"):
        return sha
    import subprocess  # only now: a process that knows its SHA (or `fleet --help`) does without

    try:
        out = subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None
