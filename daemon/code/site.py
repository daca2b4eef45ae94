"""The machine's Python site: where ``pip install`` in the code interpreter puts a package.

The platform's runtime is read-only in every machine (and Debian's Python is marked externally
managed), so the kernels run on a virtual environment in the home, ``PYTHON_SITE_DIR``, written
here (PEP 405: a ``pyvenv.cfg``, ``bin/python`` linked to the platform's interpreter, its
``site-packages``), not made by ``venv``, which would name the interpreter that runs the daemon
and, on a host, a venv's base with none of the kernels' packages. The platform's own directories
(the kernels, their libraries, pip) are a ``.pth`` line each in its ``site-packages``: after
it on ``sys.path``, so what the machine installs comes first, and pip sees them installed (it
does not fetch them again). Being a virtual environment, it is what pip installs into: ``%pip``
(``sys.executable -m pip``), and ``pip`` in a shell cell or bash (its ``bin/`` first on the
kernels' ``PATH``); no ``EXTERNALLY-MANAGED`` marker applies to it.

It is brought up to the runtime at each kernel's start (``ensure``): a platform on another
interpreter gets its links and ``pyvenv.cfg`` again (packages stay in their Python version's
``lib/pythonX.Y``); a copy of the home at another path (a fork of a local machine) gets the
first line of each program pip put in ``bin/`` again, which names the interpreter's path.
``bin/pip`` finds its Python beside itself wherever the home is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contracts.daemon.machine_files import PYTHON_SITE_DIR

#: The platform's modules the kernels import, and pip: each one's directory is on the site's path.
PLATFORM_MODULES = ("ipykernel_launcher", "bash_kernel", "pip")
#: The ``.pth`` file that puts them there.
PLATFORM_PTH = "_fleet_platform.pth"
#: ``pip`` and ``pip3`` in ``bin/``: sh runs the Python beside it on this very file, which
#: Python then reads as a string and a call of pip (distlib's launcher for a long shebang).
PIP_LAUNCHER = """#!/bin/sh
'''exec' "$(dirname -- "$0")/python" "$0" "$@"
' '''
import sys
from pip._internal.cli.main import main
sys.exit(main())
"""
#: A program's first line that names a site's interpreter (another home's, after a copy).
_SHEBANG = re.compile(rb"#!(/\S*/" + re.escape(PYTHON_SITE_DIR.encode()) + rb"/bin/python[\d.]*)\n")
#: How much of a program in ``bin/`` is read for its first line, and the largest one rewritten.
_HEAD = 4096
_PROGRAM_MAX = 1 << 20


@dataclass(frozen=True)
class Site:
    root: Path
    #: The platform's directories the site sees after its own (``PLATFORM_PTH``).
    platform: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """A kernel's environment: the site's ``bin/`` first on ``PATH``, the site as the
        active virtual environment, and ``PYTHONPATH`` without the platform's directories (the
        docker machine image's), which would come before the site's packages."""
        out = dict(env)
        out["PATH"] = os.pathsep.join([str(self.root / "bin"), env.get("PATH") or os.defpath])
        out["VIRTUAL_ENV"] = str(self.root)
        kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                if p and p.rstrip("/") not in self.platform]  # fmt: skip
        if kept:
            out["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            out.pop("PYTHONPATH", None)
        return out


def platform_dirs() -> tuple[str, ...]:
    """Where this process imports ``PLATFORM_MODULES`` from (one directory, on most hosts)."""
    found: dict[str, None] = {}
    for module in PLATFORM_MODULES:
        with contextlib.suppress(ModuleNotFoundError):
            found[library_of(module)] = None
    return tuple(found)


def library_of(module: str) -> str:
    """The directory ``module`` is imported from in this process (the platform's runtime)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    origin = Path(spec.origin)
    return str(origin.parents[1] if spec.submodule_search_locations else origin.parent)


def base_python() -> str:
    """The interpreter the daemon runs on, past every link and venv (the one the machine has)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def ensure(home: Path) -> Site:
    """The site in ``home``, made or brought up to this runtime (OSError: it cannot be)."""
    root, python = home / PYTHON_SITE_DIR, base_python()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = Site(root, platform_dirs())
    packages = root / "lib" / version / "site-packages"
    packages.mkdir(parents=True, exist_ok=True)
    (root / "bin").mkdir(exist_ok=True)
    _put(root / "pyvenv.cfg", f"home = {os.path.dirname(python)}\n"
         "include-system-site-packages = false\n"
         f"version = {sys.version.split()[0]}\nexecutable = {python}\n")  # fmt: skip
    for name in ("python", "python3", version):
        _link(root / "bin" / name, python)
    _put(packages / PLATFORM_PTH, "".join(f"{d}\n" for d in site.platform))
    for name in ("pip", "pip3"):
        _put(root / "bin" / name, PIP_LAUNCHER, 0o755)
    _relocate(root / "bin")
    return site


def _put(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """``path`` holds ``text`` with ``mode``, replaced whole if it did not."""
    data = text.encode() if isinstance(text, str) else text
    if _read(path, len(data) + 1) == (data, mode):
        return
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.chmod(mode)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path, limit: int) -> tuple[bytes, int] | None:
    """At most ``limit`` bytes of the regular file at ``path``, and its mode; None for
    anything else (the machine may have put a link, a FIFO or a directory there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        chunks, left = [], limit
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), stat.S_IMODE(st.st_mode)
    except OSError:
        return None
    finally:
        os.close(fd)


def _link(path: Path, target: str) -> None:
    with contextlib.suppress(OSError):
        if os.readlink(path) == target:
            return
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    os.symlink(target, tmp)
    try:
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _relocate(bin_dir: Path) -> None:
    """Each program in ``bin_dir`` whose first line names a site's interpreter in another
    directory (another home's) names the one of the same name here. Only a first line is read
    of each (``_HEAD``), and only a program that needs it is read whole (``_PROGRAM_MAX``:
    pip's are a few hundred bytes)."""
    here = str(bin_dir)
    for name in os.listdir(bin_dir):
        head = _read(bin_dir / name, _HEAD)
        found = _SHEBANG.match(head[0]) if head is not None else None
        if found is None or os.path.dirname(found[1].decode(errors="replace")) == here:
            continue
        whole = _read(bin_dir / name, _PROGRAM_MAX + 1)
        if whole is None or len(whole[0]) > _PROGRAM_MAX or not whole[0].startswith(found[0]):
            continue
        python = f"{here}/{os.path.basename(found[1].decode(errors='replace'))}"
        _put(bin_dir / name, f"#!{python}\n".encode() + whole[0][found.end() :], whole[1])
