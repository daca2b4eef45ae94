"""What the platform itself runs inside a gvisor machine, as root of its kernel: programs of the
platform's own, named by absolute paths into what the platform mounts there read-only, never
found on the machine's ``PATH`` nor among its files.

Root inside owns an image's root file system (providers/gvisor_image.py): its ``/usr`` and
``/bin`` are the machine's to change, and ``/usr/local/sbin`` comes before ``/bin`` on an
image's usual ``PATH``, so a ``cat`` run by name there is whatever root put first. A machine of
an image has the platform's runtime (its Python, through the platform's loader) read-only under
``RUNTIME_DIR``; a machine of the host's system has the host's ``/usr``, read-only, as a mount
of its own at ``/usr`` (a mount point: root cannot move it, nor, without ``CAP_SYS_ADMIN``,
mount over it). Which of the two a sandbox is comes from the spec it was started with: the
bundle its runsc was given (``--bundle``), written by the platform.

What such a program prints is still the machine's to shape (it reads the machine's kernel):
the caller reads it bounded (``Runsc.run``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from contracts.errors import ProviderError
from providers.gvisor_image import sudo_runtime
from providers.local_image import RUNTIME_DIR

#: The host's, in its ``/usr`` (a merged-/usr host's: a gvisor machine of the host's system
#: sees no other).
HOST_CAT = "/usr/bin/cat"
#: Prints each file named in its arguments, for the platform's Python.
_PRINT_FILES = (
    "import sys\n"
    "for name in sys.argv[1:]:\n"
    "    with open(name, 'rb') as f:\n"
    "        sys.stdout.buffer.write(f.read())\n"
)


def print_files(sandbox_pid: int, *files: str) -> list[str]:
    """The argv (inside the sandbox of host pid ``sandbox_pid``) of the platform's own program
    that prints ``files``: the runtime's Python in a machine of an image, else the host's
    ``cat``."""
    if runs_platform_runtime(sandbox_pid):
        python, _ = sudo_runtime()
        return [*python, "-IS", "-c", _PRINT_FILES, *files]
    return [HOST_CAT, *files]


def runs_platform_runtime(sandbox_pid: int) -> bool:
    """Whether the sandbox's spec mounts the platform's runtime (that of a machine of an image,
    in place of the host's system): read from the bundle in its runsc's command line."""
    try:
        cmdline = Path(f"/proc/{sandbox_pid}/cmdline").read_bytes().split(b"\0")
        given = next(a for a in cmdline if a.startswith(b"--bundle="))
        spec = json.loads((Path(os.fsdecode(given.removeprefix(b"--bundle="))) /
                           "config.json").read_text())  # fmt: skip
        mounts = [str(m["destination"]) for m in spec["mounts"]]
    except (OSError, StopIteration, ValueError, KeyError, TypeError) as exc:
        raise ProviderError(f"cannot read the spec of sandbox {sandbox_pid}: {exc}") from None
    return f"{RUNTIME_DIR}/python" in mounts
