"""Which Python runs a code kernel (daemon/code_launch.py), with real interpreters: the
platform's kernel finds its module with no PYTHONPATH given, and a machine of an environment's
image runs its Python kernel on the image's python3 when that one has ipykernel, only then."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from base.tokenfd import RUNTIME_LIBS_VAR
from daemon.code_launch import kernel_argv

#: A stand-in kernel module: says what it was started with.
FAKE_KERNEL = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "last": sys.path[-1], "name": __name__,
                  "pythonpath": os.environ.get("PYTHONPATH")}))
"""


def python3_on(tmp_path: Path, has_ipykernel: bool) -> dict[str, str]:
    """An environment whose PATH has a ``python3`` that says it has ipykernel, or not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexit {0 if has_ipykernel else 1}\n")
    (bin_dir / "python3").chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


async def test_the_platforms_kernel_finds_its_module_with_no_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "fleet_fake_kernel.py").write_text(FAKE_KERNEL)
    monkeypatch.syspath_prepend(str(lib))  # where the daemon finds it
    monkeypatch.delenv(RUNTIME_LIBS_VAR, raising=False)
    argv = await kernel_argv("bash", "fleet_fake_kernel", {"PATH": "/usr/bin:/bin"})
    argv = [a.replace("{connection_file}", "conn.json") for a in argv]
    assert argv[0] == sys.executable
    ran = await asyncio.create_subprocess_exec(*argv, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                                               stdout=asyncio.subprocess.PIPE)  # fmt: skip
    out, _ = await asyncio.wait_for(ran.communicate(), 60)
    assert ran.returncode == 0
    seen = json.loads(out)
    assert seen == {"argv": ["-f", "conn.json"], "last": str(lib), "name": "__main__",
                    "pythonpath": None}  # fmt: skip


async def test_an_environments_python_with_ipykernel_runs_the_python_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUNTIME_LIBS_VAR, "/run/fleet/runtime/usr/lib")
    env = python3_on(tmp_path, has_ipykernel=True)
    own = str(tmp_path / "bin" / "python3")
    python = await kernel_argv("python", "ipykernel_launcher", env)
    assert python == [own, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    bash = await kernel_argv("bash", "bash_kernel", env)  # bash's is always the platform's
    assert bash[0] == sys.executable


@pytest.mark.parametrize(("image", "has_ipykernel"), [(True, False), (False, True)])
async def test_otherwise_the_python_kernel_is_the_platforms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: bool, has_ipykernel: bool
) -> None:
    """An image's python3 without ipykernel, or a machine of no image (its python3 is the
    host's or the platform's, never asked)."""
    if image:
        monkeypatch.setenv(RUNTIME_LIBS_VAR, "/run/fleet/runtime/usr/lib")
    else:
        monkeypatch.delenv(RUNTIME_LIBS_VAR, raising=False)
    argv = await kernel_argv("python", "ipykernel_launcher", python3_on(tmp_path, has_ipykernel))
    assert (argv[0], argv[1]) == (sys.executable, "-c")
    assert argv[-3:] == ["ipykernel_launcher", "-f", "{connection_file}"]
