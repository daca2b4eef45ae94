"""Which Python runs a code context's kernel (daemon/code/kernels.py), and how.

- **The machine's own**, for Python, in a machine of an environment's image (the platform's
  runtime brought in: ``RUNTIME_LIBS_VAR``) where the ``python3`` on the kernel's ``PATH`` has
  ``ipykernel``: an environment that brings its own (docs/code-interpreter.md, the
  ``code-interpreter`` environment) gets a kernel that imports what it installed (numpy,
  matplotlib, ...), whichever Python version it has. Elsewhere the machine's ``python3`` is the
  host's or the platform's own, and is not asked (a pyenv shim costs 0.6 s a start).
- Else **the machine's Python site** (daemon/code/site.py), a virtual environment in the home
  over the platform's runtime, which ``pip install`` in the kernel installs into, where that
  runtime runs as it is (a ``local`` machine of the host's system, the docker machine image):
  its ``bin/`` first on the kernel's ``PATH``.
- Else (a machine of an environment's image, whose runtime runs only through the loader with
  its libraries; or a site that could not be made) **the platform's runtime**, read-only, as
  the daemon has it: the kernel finds its module where the daemon found it, put at the end of
  its ``sys.path`` by its first line rather than by ``PYTHONPATH``, which a machine of an
  environment's image does not give its commands (daemon/processes/env.py) and which would reach
  every process the kernel's code starts. The machine's own packages come first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import structlog

from base.tokenfd import RUNTIME_LIBS_VAR
from contracts.daemon.machine_files import PYTHON_SITE_DIR
from daemon.code import site as code_site
from daemon.code.site import library_of
from daemon.supervision import nodump

log = structlog.get_logger(__name__)

#: The platform's kernel: its library directory appended to ``sys.path``, then its module run
#: as ``python -m`` would (argv: the directory, the module, the kernel's own arguments).
_BOOT = ("import runpy, sys; sys.path.append(sys.argv.pop(1)); "
         "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")  # fmt: skip
#: Whether the machine's Python has ipykernel: found, not imported (tens of ms, not hundreds).
_PROBE = "import importlib.util, sys; sys.exit(importlib.util.find_spec('ipykernel') is None)"
_PROBE_S = 10.0
#: Where a kernel's argv names its connection file (jupyter_client puts the path there).
CONNECTION = "{connection_file}"


async def kernel_launch(language: str, module: str, env: Mapping[str, str],
                        home: Path) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """The argv of a kernel of ``language`` (served by ``module`` of the platform's runtime)
    in a machine whose commands get ``env``, and the environment the kernel gets."""
    if os.environ.get(RUNTIME_LIBS_VAR):  # an environment's image
        own = await _own_python(env) if language == "python" else None
        if own is not None:
            return [own, "-m", module, "-f", CONNECTION], dict(env)
        return _platform_argv(module), dict(env)
    try:
        site = await asyncio.to_thread(code_site.ensure, home)
    except OSError as exc:
        log.warning("code.site_unavailable", path=str(home / PYTHON_SITE_DIR),
                    error=str(exc))  # fmt: skip
        return _platform_argv(module), dict(env)
    return [str(site.python), "-m", module, "-f", CONNECTION], site.env(env)


def _platform_argv(module: str) -> list[str]:
    return nodump.python_argv("-c", _BOOT, library_of(module), module, "-f", CONNECTION)


async def _own_python(env: Mapping[str, str]) -> str | None:
    """The machine's ``python3`` if it has ipykernel, else None (none, or it does not)."""
    python = shutil.which("python3", path=env.get("PATH"))
    if python is None:
        return None
    try:
        probe = await asyncio.create_subprocess_exec(
            python, "-I", "-c", _PROBE, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return None
    try:
        code = await asyncio.wait_for(probe.wait(), _PROBE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            probe.kill()
        await probe.wait()
        return None
    return python if code == 0 else None
