"""The machine's Python site as each kernel's start finds it (daemon/code/site.py): a copy of
the home at another path (a fork of a local machine) runs pip's programs and its own ``pip``
there; a site made for another interpreter is brought to this one; what the machine put in
its place (a FIFO at ``pyvenv.cfg``) neither blocks the daemon nor is written through."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from daemon.code import site as code_site

SITE = Path(".fleet/python")


async def out_of(*argv: str | Path) -> str:
    ran = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.STDOUT)  # fmt: skip
    out, _ = await asyncio.wait_for(ran.communicate(), 120)
    assert ran.returncode == 0, out.decode()
    return out.decode()


async def test_a_copy_of_the_home_at_another_path_runs_its_programs_there(
    tmp_path: Path,
) -> None:
    source, fork = tmp_path / "m-source" / "home", tmp_path / "m-fork" / "home"
    source.mkdir(parents=True)
    made = code_site.ensure(source)
    # A program as pip writes one: its first line names the site's interpreter by its path.
    program = made.root / "bin" / "where"
    program.write_text(f"#!{made.python}\nimport sys\nprint(sys.prefix)\n")
    program.chmod(0o755)
    assert (await out_of(program)).strip() == str(made.root)
    shutil.copytree(source, fork, symlinks=True)
    shutil.rmtree(source)  # a fork's sandbox has no other machine's home
    copy = code_site.ensure(fork)
    assert (await out_of(copy.root / "bin" / "where")).strip() == str(copy.root)
    assert "pip" in await out_of(copy.root / "bin" / "pip", "--version")
    assert ((copy.root / "bin" / "where").stat().st_mode & 0o777) == 0o755


async def test_a_site_made_for_another_interpreter_is_brought_to_this_one(
    tmp_path: Path,
) -> None:
    root = tmp_path / SITE
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /opt/gone/bin\nversion = 3.10.1\n")
    os.symlink("/opt/gone/bin/python3.10", root / "bin" / "python")
    site = code_site.ensure(tmp_path)
    assert os.readlink(site.python) == code_site.base_python()
    assert (
        f"home = {os.path.dirname(code_site.base_python())}\n" in (root / "pyvenv.cfg").read_text()
    )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (await out_of(site.python, "-c", "import sys; print(sys.prefix)")).strip() == str(root)
    assert (root / "lib" / f"python{version}" / "site-packages" / code_site.PLATFORM_PTH).is_file()


@pytest.mark.timeout(60)
async def test_a_fifo_the_machine_put_at_its_config_neither_blocks_nor_is_written_through(
    tmp_path: Path,
) -> None:
    root = tmp_path / SITE
    root.mkdir(parents=True)
    fifo = root / "pyvenv.cfg"
    os.mkfifo(fifo)
    made = asyncio.create_task(asyncio.to_thread(code_site.ensure, tmp_path))
    done, _ = await asyncio.wait([made], timeout=20)
    if not done:  # blocked opening the FIFO: a writer lets it go, then the test fails
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        await made
        pytest.fail("ensure blocked on a FIFO at pyvenv.cfg")
    site = made.result()
    assert fifo.is_file()  # replaced by the file, never written into
    assert (await out_of(site.python, "-c", "import sys; print(sys.prefix)")).strip() == str(root)
