"""A gvisor machine of an environment's image (docs/runtimes.md, "Environments"): runsc's root is
the image's unpacked root file system (providers/local/image_rootfs.py), shared by every machine of
the image and never written, under an overlay of the machine's own on the host
(``mount_root``), as a ``namespaces`` machine of an image has: what it writes outside its home
(runsc's mount points, root's ``apt-get install``) is kept there across a stop.

The unpacked root is ID-mapped (providers/sandbox/idmap.py) so that the host root's files are the
machine's root uid's, root's inside (and its image user's files its uid's): runsc's gofer,
which does the sandbox's file work as that unprivileged uid, can write them, and what it
writes in the overlay is that uid's on the host, never the host root's.

In place of the host's system directories the sandbox gets the platform's runtime read-only
under ``RUNTIME_DIR`` (providers/sandbox/image.py ``runtime_binds``), the home at
``/home/fleet`` as any machine of an image has it, and the loader at ``SANDBOX_LOADER``: a
copy of the host's blind to the image's ``/etc/ld.so.preload`` (base/loader.py), *readable*
(gVisor's kernel reads a program to run it: an execute-only file is "permission denied"
there). The supervisor stays root of gVisor's kernel and each daemon becomes the machine's
user itself (``DAEMON_RUN_AS_VAR``), as on a gvisor machine of the host's system.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from base.loader import blind
from providers import scratch
from providers.sandbox import (
    MACHINE_HOME,
    RUNTIME_DIR,
    SANDBOX_LOADER,
    host_loader,
    mount_idmapped,
    overlay,
    runtime_argv,
    runtime_binds,
)

#: In a machine's directory: the image's root ID-mapped, the overlay over it (its upper holds
#: only the mount points runsc's gofer makes), and where that overlay is mounted.
LOWER, UPPER, WORK, MERGED = "gvisor-lower", "gvisor-upper", "gvisor-work", "gvisor-root"
#: In a machine's directory: its OCI bundle (``config.json``, the rootfs made beside it).
BUNDLE = "gvisor"


class ImageRoot(NamedTuple):
    """What a gvisor machine of an image runs: the image's unpacked root, the loader, the
    (uid, gid) its user has in the image (None: the machine's own uid), and whether its user
    is root (of gVisor's kernel: its host uid is the machine's own, nothing else is mapped)."""

    root: Path
    loader: Path
    user: tuple[int, int] | None = None
    as_root: bool = False


def readable_loader(data_dir: Path) -> Path:
    """``<data-dir>/sandbox/ld-blind-r-*.so``: the host's loader, blind to a preload file,
    mode 0555 (one per loader: a new glibc brings its own)."""
    source = host_loader()
    st = source.stat()
    target = data_dir / "sandbox" / f"ld-blind-r-{st.st_size}-{int(st.st_mtime)}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(blind(source.read_bytes()))
        tmp.chmod(0o555)
        tmp.replace(target)
    return target


def image_mounts(image: ImageRoot, home: Path) -> list[dict[str, Any]]:
    """The sandbox's binds of the platform's runtime, its loader and the machine's home (at
    ``MACHINE_HOME``), in an image's root."""
    ro = [(host, inside) for host, inside in runtime_binds()]
    ro.append((image.loader, SANDBOX_LOADER))
    mounts = [{"destination": inside, "type": "bind", "source": str(host),
               "options": ["rbind", "ro"]} for host, inside in ro]  # fmt: skip
    mounts.append({"destination": MACHINE_HOME, "type": "bind", "source": str(home),
                   "options": ["rbind", "rw"]})  # fmt: skip
    return mounts


def sudo_runtime() -> tuple[list[str], str]:
    """What the machine's ``sudo`` runs in an image (providers/gvisor/root.py ``write_bin``): the
    platform's interpreter through the loader, and the directory of fleetd's packages."""
    argv = runtime_argv()
    return argv[: argv.index("-s")], f"{RUNTIME_DIR}/src"


def mount_root(machine_dir: Path, image: Path, root_owner: int, uid: int,
               user: tuple[int, int] | None) -> Path:  # fmt: skip
    """The machine's root (mounted unless it is): an overlay over ``image`` ID-mapped so that
    the host root's files are ``root_owner``'s (root's inside the sandbox), and its image user's
    ``uid``'s; where."""
    lower, upper, work, merged = (machine_dir / n for n in (LOWER, UPPER, WORK, MERGED))
    points = scratch.mount_points()
    if merged in points:
        return merged
    for path in (lower, upper, work, merged):
        path.mkdir(mode=0o755, exist_ok=True)
    os.chown(upper, root_owner, root_owner)
    if lower not in points:
        uids, gids = [(0, root_owner)], [(0, root_owner)]
        if user is not None and user[0] != 0:
            uids.append((user[0], uid))
        if user is not None and user[1] != 0:
            gids.append((user[1], uid))
        mount_idmapped(image, lower, uids, gids)
    return overlay(lower, upper, work, merged)


def runs_image(machine_dir: Path) -> bool:
    """The machine's root is an image's (``mount_root``): what it writes there is kept in its
    overlay on the host, across a stop, not in gVisor's memory. Read from its spec (the root
    it is started with), not from a directory an earlier start may have left; or, for a machine
    with no spec yet or a stopped one, from the layer of its writes, kept until its archive."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        spec = json.loads((machine_dir / BUNDLE / "config.json").read_text())
        return bool(spec["root"]["path"] == str(machine_dir / MERGED))
    return (machine_dir / UPPER).is_dir()


def unmount_root(machine_dir: Path) -> None:
    for name in (MERGED, LOWER):
        scratch.unmount_under(machine_dir / name)


def remove_root(machine_dir: Path) -> None:
    unmount_root(machine_dir)
    for name in (UPPER, WORK, MERGED, LOWER):
        if (machine_dir / name).exists():
            scratch.remove_tree(machine_dir / name)
