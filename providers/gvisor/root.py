"""Root inside a gvisor machine, never the host's (docs/runtimes.md, "Root inside").

- **Its own host uid.** The sandbox has a user namespace: its root is a host uid of the
  machine's own (``root-uid`` in its directory, allocated as its uid is), its user is its uid on
  both sides, and nothing else is mapped. runsc's gofer, which does the sandbox's file work on
  the host, runs in it: a file root makes in the home is that uid's on the host, never the
  host root's (a set-user-ID file of the host's root would be a way up), and the host root's
  own files are nobody's inside.
- **Reachable paths.** In that namespace runsc's processes are that uid on the host too, and may
  not walk a directory of the host root's that others cannot search (``/root``, a 0700 data
  dir). Each mount's source and the root are bound under ``STAGE`` first, in the private mount
  namespace the sandbox starts in, and the spec runsc is given names them there
  (``staged_bundle``); the spec on disk keeps the real paths (forks and resumes read it).
- **sudo.** ``write_bin``: the machine's ``sudo`` (daemon/supervision/sudo.py), read-only, first on
its PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from base.version import SOURCE_ROOT

#: In a machine's directory: the host uid its root (of gVisor's kernel) is on the host.
ROOT_UID_FILE = "root-uid"
#: The platform's programs for the machine, beside its home, and where the sandbox sees them.
BIN_DIR = "gvisor-bin"
BIN_MOUNT = "/run/fleet-bin"
#: Where a sandbox's sources are bound, in its own mount namespace (a tmpfs there; on the host
#: an empty directory of root's that anyone may search).
STAGE = "/run/fleet-gvisor"
#: In a bundle: the spec runsc is given, its sources staged.
RUN_DIR = "run"
#: In ``RUN_DIR``: each source's bind under the stage, as ``mount --all`` reads them.
FSTAB = "fstab"
#: Binds every source under the stage (``STAGE FSTAB``), in one ``mount`` (a start or a restore
#: made two processes a source, about 60, in a machine's way), the mount point of each file
#: named before ``--`` made first (a directory's: by the mount, ``X-mount.mkdir``); then runs
#: the rest.
STAGE_SCRIPT = (
    'stage=$1; fstab=$2; shift 2; mkdir -p -m 0755 "$stage" && '
    'mount -t tmpfs -o mode=0755 tmpfs "$stage" || exit 1; '
    'while [ "$1" != -- ]; do : > "$stage/$1" || exit 1; shift; done; shift; '
    'mount --all --fstab "$fstab" || exit 1; '
)


def root_uid(machine_dir: Path) -> int | None:
    """The host uid the machine's root stands for; None for a machine made before there was
    one (its root files as the host's root, as it did)."""
    with contextlib.suppress(OSError, ValueError):
        return int((machine_dir / ROOT_UID_FILE).read_text())
    return None


def id_mappings(root: int, uid: int, inside: tuple[int, int] | None = None) -> dict[str, Any]:
    """The sandbox's user namespace: root inside is ``root`` on the host, the machine's user
    ``uid`` on both sides, or ``inside`` (an image's user and group) is ``uid`` on the host.
    ``root == uid``: the machine's user is root, and nothing else is mapped."""
    if root == uid:
        alone = [{"containerID": 0, "hostID": uid, "size": 1}]
        return {"uidMappings": alone, "gidMappings": alone}
    user, group = inside or (uid, uid)

    def maps(own: int) -> list[dict[str, int]]:
        return [{"containerID": 0, "hostID": root, "size": 1},
                {"containerID": own, "hostID": uid, "size": 1}]  # fmt: skip

    return {"uidMappings": maps(user), "gidMappings": maps(group)}


def give_rootfs(root: Path, owner: int) -> None:
    """The sandbox's root (directories and mount points the platform made) to ``owner``: root
    inside owns it; its writes there go to gVisor's memory (``Runsc.argv``)."""
    for path in (root, *root.rglob("*")):
        os.chown(path, owner, owner, follow_symlinks=False)


def staged_bundle(bundle: Path) -> tuple[Path, list[str]]:
    """The bundle runsc is given and the shell words that stage its sources: the bundle as is
    for a sandbox without a user namespace, else ``RUN_DIR`` beside it with every bind's
    source and the root under ``STAGE`` (``STAGE_SCRIPT``'s arguments)."""
    spec = json.loads((bundle / "config.json").read_text())
    if not spec.get("linux", {}).get("uidMappings"):
        return bundle, []
    pairs: list[tuple[str, str]] = [("root", spec["root"]["path"])]
    spec["root"]["path"] = f"{STAGE}/root"
    for n, m in enumerate(spec["mounts"]):
        if m["type"] == "bind":
            pairs.append((str(n), m["source"]))
            m["source"] = f"{STAGE}/{n}"
    run = bundle / RUN_DIR
    run.mkdir(mode=0o755, exist_ok=True)
    (run / "config.json").write_text(json.dumps(spec, indent=1))
    files = [name for name, source in pairs if not os.path.isdir(source)]
    (run / FSTAB).write_text("".join(
        f"{_fstab_field(source)} {STAGE}/{name} none "
        f"{'rbind' if name in files else 'rbind,X-mount.mkdir'} 0 0\n"
        for name, source in pairs))  # fmt: skip
    return run, [STAGE, str(run / FSTAB), *files, "--"]


def _fstab_field(path: str) -> str:
    """``path`` as an fstab field: its blanks and backslashes octal-escaped, as libmount reads
    them."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def write_bin(machine_dir: Path, runtime: tuple[list[str], str] | None = None) -> Path:
    """The machine's ``sudo``: a script of the platform's Python (mounted in the sandbox at
    the same path), which asks the supervisor's broker (daemon/supervision/sudo.py). ``runtime``:
    in an
    image, where the host's Python is not, a shell script that runs the platform's runtime
    (its interpreter's argv, its source directory: providers/gvisor/image.py)."""
    d = machine_dir / BIN_DIR
    d.mkdir(mode=0o755, exist_ok=True)
    code = "from daemon.supervision.sudo import main\nsys.exit(main(sys.argv[1:]))\n"
    if runtime is None:
        script = f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {str(SOURCE_ROOT)!r})\n"
        script += code
    else:
        python, src = runtime
        inline = f"import sys; sys.path.insert(0, {src!r})\n{code}"
        script = f'#!/bin/sh\nexec {shlex.join([*python, "-IS", "-c", inline])} "$@"\n'
    tmp = d / "sudo.tmp"
    tmp.write_text(script)
    tmp.chmod(0o755)
    tmp.replace(d / "sudo")
    return d
