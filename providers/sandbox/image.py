"""A ``local`` machine of an environment's image: the image's root file system (unpacked once,
providers/local/image_rootfs.py) under an overlay of the machine's own, run under bubblewrap in
place of the host's system directories, with the platform's runtime read-only under ``RUNTIME_DIR``.

- The overlay (``<machine dir>/upper`` over the unpacked root, mounted at ``<machine
  dir>/root``) is what the machine writes outside its home: kept across stop and start,
  removed with the machine; a new machine starts from the image afresh.
- The sandbox's root is bubblewrap's own tmpfs; each top-level directory of the image is bound
  there (a top-level link is made as a link, never followed). The sandbox's own mounts
  (``/proc``, ``/dev``, ``/tmp``, ``/run``, the home at ``/home/fleet``) are never inside an
  image directory, so nothing the image (or the machine, in its overlay) put at a path makes
  root create or mount anything through it. The top is root's: the machine cannot change what
  is at ``/``.
- The runtime: this host's interpreter (its prefix), the C library's directory, the daemon's
  site-packages and fleetd's daemon packages, each read-only; the supervisor and the daemon
  start through the execute-only loader with ``--library-path``; the supervisor becomes the
  machine's uid itself (``RUN_AS_VAR``): the host's ``setpriv`` is not in the image.
"""

from __future__ import annotations

import os
import site
import stat
import subprocess
import sys
from pathlib import Path

from base.loader import LIBRARY_FLAGS
from base.tokenfd import LOADER_VAR, RUN_AS_VAR, RUNTIME_LIBS_VAR
from base.version import SOURCE_ROOT
from contracts.errors import ProviderError
from providers import scratch
from providers.sandbox.nodump_loader import SANDBOX_LOADER

RUNTIME_DIR = "/run/fleet/runtime"
MACHINE_HOME = "/home/fleet"
#: Top-level names the sandbox makes itself: the image's are not bound.
OWN_TOP = frozenset({"proc", "dev", "sys", "tmp", "run", "home"})
DAEMON_PACKAGES = ("contracts", "base", "daemon")


def _libc_dir() -> Path:
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if os.path.basename(path).startswith("libc.so"):
                return Path(path).resolve().parent
    raise ProviderError("no C library in /proc/self/maps (a static interpreter?)")


def runtime_binds() -> list[tuple[Path, str]]:
    """(host path, where the machine has it), all read-only."""
    prefix = Path(sys.base_prefix).resolve()
    binds = [(prefix, f"{RUNTIME_DIR}/python"), (_libc_dir(), f"{RUNTIME_DIR}/libs"),
             (Path(site.getsitepackages()[0]).resolve(), f"{RUNTIME_DIR}/site")]  # fmt: skip
    binds += [(SOURCE_ROOT / p, f"{RUNTIME_DIR}/src/{p}") for p in DAEMON_PACKAGES]
    return binds


def runtime_env(run_as: int | str | None) -> dict[str, str]:
    """The supervisor's environment; ``run_as``: the uid (``UID`` or ``UID:GID``) it becomes."""
    libs = f"{RUNTIME_DIR}/python/lib:{RUNTIME_DIR}/libs"
    env = {"PYTHONPATH": f"{RUNTIME_DIR}/src:{RUNTIME_DIR}/site", "PYTHONDONTWRITEBYTECODE": "1",
           LOADER_VAR: SANDBOX_LOADER, RUNTIME_LIBS_VAR: libs,
           "HOME": MACHINE_HOME, "FLEET_HOME": MACHINE_HOME}  # fmt: skip
    return env | ({RUN_AS_VAR: str(run_as)} if run_as is not None else {})


def runtime_argv() -> list[str]:
    """The supervisor's argv, then its daemon's."""
    prefix = Path(sys.base_prefix).resolve()
    python = Path(sys.executable).resolve().relative_to(prefix)
    one = [SANDBOX_LOADER, *LIBRARY_FLAGS, "--library-path", runtime_env(None)[RUNTIME_LIBS_VAR],
           f"{RUNTIME_DIR}/python/{python}", "-s", "-P", "-m"]  # fmt: skip
    return [*one, "daemon.supervise", *one, "daemon"]


def image_mounts(root: Path) -> list[str]:
    """bwrap's arguments that put the image's top-level entries at ``/`` (see the module)."""
    out: list[str] = []
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in sorted(os.listdir(top)):
            if name in OWN_TOP:
                continue
            st = os.stat(name, dir_fd=top, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                out += ["--symlink", os.readlink(name, dir_fd=top), f"/{name}"]
            elif stat.S_ISDIR(st.st_mode):
                out += ["--bind", str(root / name), f"/{name}"]
    finally:
        os.close(top)
    # bwrap makes a bind's missing parents 0700, which the machine's uid could not pass.
    for parent in ("/run/fleet", RUNTIME_DIR, f"{RUNTIME_DIR}/src"):
        out += ["--perms", "0755", "--dir", parent]
    for host, inside in runtime_binds():
        out += ["--ro-bind", str(host), inside]
    return out


def overlay_dirs(machine_dir: Path) -> tuple[Path, Path, Path]:
    """(upper, work, merged) of the machine's overlay."""
    return machine_dir / "upper", machine_dir / "work", machine_dir / "root"


def mount_overlay(machine_dir: Path, lower: Path) -> Path:
    """The machine's root: its overlay over ``lower``, mounted unless it is; where."""
    upper, work, merged = overlay_dirs(machine_dir)
    if merged in scratch.mount_points():
        return merged
    for path in (upper, work, merged):
        path.mkdir(mode=0o755, exist_ok=True)
    os.chown(upper, 0, 0)
    os.chmod(upper, 0o755)  # noqa: S103 - the merged top: root's, 0755
    return overlay(lower, upper, work, merged)


def overlay(lower: Path, upper: Path, work: Path, merged: Path) -> Path:
    """``upper`` over ``lower`` mounted at ``merged``; ``merged``."""
    if any(c in str(p) for p in (lower, upper, work) for c in ",:"):
        raise ProviderError(f"an overlay cannot have {merged} (a ',' or ':' in the path)")
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    argv = ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise ProviderError(f"cannot mount the overlay at {merged}: {done.stderr.strip()}")
    return merged


def unmount_overlay(machine_dir: Path) -> None:
    _, _, merged = overlay_dirs(machine_dir)
    scratch.unmount_under(merged)


def remove_overlay(machine_dir: Path) -> None:
    """The machine's writes outside its home, gone (its archive)."""
    unmount_overlay(machine_dir)
    for path in overlay_dirs(machine_dir):
        if path.exists():
            scratch.remove_tree(path)
