"""CI's fresh-machine stage: the README's two commands on a bare Debian 12 and 13.

``python -m tests.fresh_machine [SUITE...]`` (default: bookworm trixie) makes a minimal root
file system of each suite with debootstrap (the machine image's base: python3, git and
ca-certificates beside Debian's minimal variant; imported once, its tag covering the mirror,
suite and packages), then runs ``tests/fresh_inside.py`` in a privileged container of each, as
``./run up`` needs, from a fresh clone of this checkout's HEAD. The container trusts this host's CA
bundle. Downloads are cached on this host between runs (``CACHE``: apt's archives per suite, uv's
and npm's caches), so only the first run pays for them; everything is installed again in each
container. Exits non-zero naming the suite and step that failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiodocker

from providers.docker.image import BASE_PACKAGES, ImageBuilder, host_apt_source

REPO = Path(__file__).resolve().parents[1]
SUITES = ("bookworm", "trixie")
#: Downloads kept between runs: what a fresh machine installs is the same each time.
CACHE = Path(os.environ.get("FLEET_FRESH_CACHE", "/var/cache/fleetd-fresh"))
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: ``--privileged``, less what this host's engine cannot grant: runc fails to apply the full
#: capability set where the host's bounding set lacks one (CAP_SYS_RESOURCE in some VMs).
PRIVILEGED = ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt",
              "seccomp=unconfined", "--security-opt", "apparmor=unconfined", "--security-opt",
              "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm", "--device",
              "/dev/net/tun", "--cgroupns", "private"]  # fmt: skip
#: What --privileged mounts writable and the options above leave read-only: /sys and the
#: container's cgroups (a machine's limits are a cgroup of its own).
WRITABLE_SYS = ("mount -o remount,rw /sys && for m in $(awk '$3 ~ /^cgroup/ {print $2}' "
                "/proc/mounts); do mount -o remount,bind,rw \"$m\"; done")  # fmt: skip
#: A container that has not finished by then is stopped, and its suite failed.
TIMEOUT_S = 1200


async def images(suites: list[str]) -> dict[str, str]:
    """Each suite's bare image, built where this engine lacks it."""
    mirror, _ = host_apt_source()
    work = Path(tempfile.gettempdir()) / "fleetd-fresh-build"
    async with aiodocker.Docker() as docker:
        builder = ImageBuilder(docker, "", work, lambda line: print(f"fresh: {line}", flush=True))
        return {s: await builder.debian(mirror, s, BASE_PACKAGES) for s in suites}


def docker_run(suite: str, image: str) -> list[str]:
    name = f"fleetd-fresh-{suite}-{os.getpid()}"
    mounts = {
        str(REPO): "/src:ro",
        CA_BUNDLE: f"{CA_BUNDLE}:ro",
        str(CACHE / f"apt-{suite}"): "/var/cache/apt/archives",
        str(CACHE / "uv"): "/root/.cache/uv",
        str(CACHE / "pip"): "/root/.cache/pip",
        str(CACHE / "npm"): "/root/.npm",
    }
    for host in mounts:
        if host.startswith(str(CACHE)):
            Path(host).mkdir(parents=True, exist_ok=True)
    volumes = [a for host, inside in mounts.items() for a in ("-v", f"{host}:{inside}")]
    # A clone of what is committed, as a new user's `git clone` gets it.
    inside = (f"{WRITABLE_SYS} && git clone -q /src /root/fleetd && cd /root/fleetd && "
              "exec python3 -m tests.fresh_inside")  # fmt: skip
    return ["docker", "run", "--rm", "--init", *PRIVILEGED, "--name", name, *volumes,
            "-e", f"FRESH_SUITE={suite}", image, "bash", "-c", inside]  # fmt: skip


def run_one(suite: str, image: str) -> subprocess.Popen[bytes]:
    print(f"fresh {suite}: {image}", flush=True)
    return subprocess.Popen(docker_run(suite, image), stdin=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", default=list(SUITES))
    args = parser.parse_args()
    began = time.monotonic()
    built = asyncio.run(images(args.suites))
    print(f"fresh: images ready in {time.monotonic() - began:.0f} s", flush=True)
    running = {suite: run_one(suite, image) for suite, image in built.items()}
    failed = []
    for suite, proc in running.items():
        try:
            code = proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - began)))
        except subprocess.TimeoutExpired:
            subprocess.run(["docker", "rm", "-f", f"fleetd-fresh-{suite}-{os.getpid()}"],
                           capture_output=True, check=False)  # fmt: skip
            code = proc.wait()
            print(f"fresh {suite}: FAILED: not done within {TIMEOUT_S} s", flush=True)
        if code != 0:
            failed.append(suite)
    took = time.monotonic() - began
    if failed:
        print(f"fresh: FAILED on {', '.join(failed)} after {took:.0f} s", flush=True)
        return 1
    print(f"fresh: the two commands work on {', '.join(running)} ({took:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
