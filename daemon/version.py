"""The version of the code this process runs: package version and git SHA."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


@cache
def package_version() -> str:
    try:
        return _pkg_version("fleetd")
    except PackageNotFoundError:
        return "0+unknown"


@cache
def git_sha() -> str | None:
    """FLEET_GIT_SHA if set (deployments), else the SHA of the checkout the code runs from."""
    if sha := os.environ.get("FLEET_GIT_SHA"):
        return sha
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
