"""Which Python runs a code kernel and with which environment (daemon/code/launch.py,
daemon/code/site.py), with real interpreters and a real pip: where the platform's runtime runs
as it is, a kernel runs on the machine's Python site in its home (its packages before the
platform's, ``pip`` first on its ``PATH`` installing into it, the platform's directories out of
``PYTHONPATH``); a machine of an environment's image runs its Python kernel on the image's
python3 when that one has ipykernel, else on the platform's runtime, which finds its module
with no PYTHONPATH given; a site that cannot be made leaves the kernel on the platform's."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from base.tokenfd import RUNTIME_LIBS_VAR
from daemon.code import site as code_site
from daemon.code.launch import CONNECTION, kernel_launch
from tests.code_checks import make_wheel

#: A stand-in kernel module: says what it was started with and what it sees.
FAKE_KERNEL = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "name": __name__, "prefix": sys.prefix,
                  "path": sys.path, "env": dict(os.environ)}))
"""


def python3_on(tmp_path: Path, has_ipykernel: bool) -> dict[str, str]:
    """An environment whose PATH has a ``python3`` that says it has ipykernel, or not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexit {0 if has_ipykernel else 1}\n")
    (bin_dir / "python3").chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


@pytest.fixture
def fake_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``fleet_fake_kernel``, importable by the daemon (as the platform's kernels are), and so
    one of the platform's modules the site sees."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "fleet_fake_kernel.py").write_text(FAKE_KERNEL)
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.setattr(code_site, "PLATFORM_MODULES",
                        (*code_site.PLATFORM_MODULES, "fleet_fake_kernel"))  # fmt: skip
    return lib


async def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    argv = [a.replace(CONNECTION, "conn.json") for a in argv]
    ran = await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd,
                                               stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.STDOUT)  # fmt: skip
    out, _ = await asyncio.wait_for(ran.communicate(), 120)
    assert ran.returncode is not None
    return ran.returncode, out.decode()


async def test_a_kernel_runs_on_the_machines_site_that_pip_installs_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_kernel: Path
) -> None:
    """Where the platform's runtime runs as it is: the kernel's Python is the site's, its
    packages first and the platform's after; ``pip`` on the kernel's PATH (as ``!pip`` runs it)
    and ``sys.executable -m pip`` (as ``%pip`` does) install there, whatever marks the platform's
    Python as externally managed; the docker machine image's PYTHONPATH (the platform's
    directory) is left out, a user's entry kept."""
    monkeypatch.delenv(RUNTIME_LIBS_VAR, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    base = {"PATH": "/usr/bin:/bin", "HOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(fake_kernel), "/mine"])}  # fmt: skip
    argv, env = await kernel_launch("python", "fleet_fake_kernel", base, home)
    site = home / ".fleet" / "python"
    assert argv == [str(site / "bin" / "python"), "-m", "fleet_fake_kernel", "-f", CONNECTION]
    assert env["PATH"] == f"{site / 'bin'}:/usr/bin:/bin"
    assert (env["VIRTUAL_ENV"], env["PYTHONPATH"]) == (str(site), "/mine")
    code, out = await run(argv, env, home)
    assert code == 0, out
    seen = json.loads(out)
    assert (seen["argv"], seen["name"], seen["prefix"]) == (
        ["-f", "conn.json"], "__main__", str(site))  # fmt: skip
    packages = str(site / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
                   / "site-packages")  # fmt: skip
    assert seen["path"].index(packages) < seen["path"].index(str(fake_kernel))
    for pip, module in ((["pip"], "by_shell"), ([str(site / "bin" / "python"), "-m", "pip"],
                                                 "by_magic")):  # fmt: skip
        wheel = make_wheel(tmp_path, module)
        code, out = await run([*pip, "install", "--no-index", str(wheel)], env, home)
        assert code == 0, out
        assert (Path(packages) / f"{module}.py").is_file()
    # The bash kernel gets the same environment: its ``pip`` and ``python`` are the site's.
    _, bash_env = await kernel_launch("bash", "fleet_fake_kernel", base, home)
    assert bash_env == env


@pytest.mark.parametrize(("has_ipykernel"), [True, False])
async def test_in_an_environments_image_the_python_kernel_is_its_own_else_the_platforms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_kernel: Path, has_ipykernel: bool
) -> None:
    """The runtime runs there only through the loader with its libraries: no site. The
    image's python3 with ipykernel runs the Python kernel; otherwise (and bash always) the
    platform's runtime, which finds its module where the daemon did, with no PYTHONPATH."""
    monkeypatch.setenv(RUNTIME_LIBS_VAR, "/run/fleet/runtime/usr/lib")
    env = python3_on(tmp_path, has_ipykernel)
    argv, got = await kernel_launch("python", "fleet_fake_kernel", env, tmp_path)
    own = str(tmp_path / "bin" / "python3")
    if has_ipykernel:
        assert argv == [own, "-m", "fleet_fake_kernel", "-f", CONNECTION]
    else:
        assert (argv[0], argv[1]) == (sys.executable, "-c")
    assert got == env
    bash, _ = await kernel_launch("bash", "fleet_fake_kernel", env, tmp_path)
    assert bash[0] == sys.executable
    code, out = await run(bash, {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert code == 0, out
    seen = json.loads(out)
    assert (seen["argv"], seen["path"][-1], seen["name"]) == (
        ["-f", "conn.json"], str(fake_kernel), "__main__")  # fmt: skip
    assert "PYTHONPATH" not in seen["env"]
    assert not (tmp_path / ".fleet").exists()


async def test_a_site_that_cannot_be_made_leaves_the_kernel_on_the_platforms_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_kernel: Path
) -> None:
    monkeypatch.delenv(RUNTIME_LIBS_VAR, raising=False)
    (tmp_path / ".fleet").mkdir()
    (tmp_path / ".fleet" / "python").write_text("not a directory")
    env = {"PATH": "/usr/bin:/bin"}
    argv, got = await kernel_launch("python", "fleet_fake_kernel", env, tmp_path)
    assert (argv[0], argv[1], got) == (sys.executable, "-c", env)
