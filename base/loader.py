"""The platform's copy of the dynamic loader, blind to a machine's loader configuration.

A machine's supervisor and daemon start through an execute-only copy of glibc's loader
(daemon/supervision/nodump.py). In a machine of an environment's image, ``/etc`` is the image's
(and the
machine's to write in its overlay): glibc's loader reads ``/etc/ld.so.preload`` before anything
else and runs every library it names inside the process, which would be the image's code in
the platform's processes (the token's holders; on docker the container's first process). The
copy has that path replaced by one of the same length that never exists (``/proc/0`` is no
process), so it reads no preload file at all; ``LIBRARY_FLAGS`` keeps the image's
``/etc/ld.so.cache`` out too, and the platform's runtime is found by its own library path.

An image's configuration reaches the container's first process through its environment too:
the loader's (``LD_*``, ``GLIBC_TUNABLES``) and the interpreter's (``PYTHON*``) variables can
make them run code that is not the platform's (``LD_PRELOAD``, ``LD_AUDIT``, ``PYTHONHOME``,
``PYTHONPLATLIBDIR``, ``PYTHONPYCACHEPREFIX``...). The provider sets each the image has empty
for the platform's processes (an empty one counts for neither), unless the platform sets it
itself, and keeps the image's value aside (``withheld``); the daemon gives those back to the
machine's commands (``restored``), whose programs are the image's anyway.

Standard library only: the machine image's build runs it (``python3 -m base.loader``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Container, Iterable, Mapping
from pathlib import Path

PRELOAD_FILE = b"/etc/ld.so.preload\0"
#: Same length; ``/proc/0`` never exists (no process has pid 0), in any sandbox or container.
NO_PRELOAD_FILE = b"/proc/0/no-preload\0"
#: The loader's flags that go before ``--library-path``: the image's ld.so.cache is never read.
LIBRARY_FLAGS = ("--inhibit-cache",)


#: The names of the loader's and the interpreter's variables (a prefix, or the whole name).
LOADER_ENV = ("LD_", "PYTHON", "GLIBC_TUNABLES")
#: Where the image's value of one of them waits for the machine's commands.
WITHHELD_PREFIX = "FLEET_IMAGE_"


def withheld(image_env: Iterable[str], platform: Container[str]) -> dict[str, str]:
    """For a container of an image whose config has ``image_env`` (``NAME=value`` lines): each
    loader or interpreter variable of it that the ``platform`` does not set, empty, with the
    image's value kept aside (unless kept aside already: a fork's layer, committed from a
    container of this platform's, has both)."""
    image = dict(line.partition("=")[::2] for line in image_env)
    out: dict[str, str] = {}
    for name, value in image.items():
        if name.startswith(LOADER_ENV) and name not in platform:
            out[name] = ""
            if WITHHELD_PREFIX + name not in image:
                out[WITHHELD_PREFIX + name] = value
    return out


def restored(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a machine's command: the image's values of its withheld variables back."""
    out = {k: v for k, v in env.items() if not k.startswith(WITHHELD_PREFIX)}
    out |= {k.removeprefix(WITHHELD_PREFIX): v for k, v in env.items()
            if k.startswith(WITHHELD_PREFIX)}  # fmt: skip
    return out


class LoaderUnknown(ValueError):
    """The loader does not name its preload file the way glibc's does: not blinded."""


def blind(code: bytes) -> bytes:
    """``code`` (glibc's loader) reading no preload file."""
    if len(PRELOAD_FILE) != len(NO_PRELOAD_FILE):
        raise AssertionError("the replacement must keep every offset")
    if code.count(PRELOAD_FILE) != 1:
        raise LoaderUnknown(
            f"the loader names {PRELOAD_FILE[:-1].decode()} {code.count(PRELOAD_FILE)} times "
            "(once in glibc's): cannot make a copy that ignores it"
        )
    return code.replace(PRELOAD_FILE, NO_PRELOAD_FILE)


def write_blind(source: Path, target: Path) -> None:
    """``target``: ``source`` blinded, execute-only (mode 0111), replaced atomically."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(blind(source.read_bytes()))
    os.chmod(tmp, 0o111)  # noqa: S103 - execute-only is the point: nobody may read it
    tmp.replace(target)


if __name__ == "__main__":
    write_blind(Path(sys.argv[1]), Path(sys.argv[2]))
