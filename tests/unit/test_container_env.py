"""The container's variables as the daemon reads them for each process it starts
(daemon/processes/env.py): under the .env's and the caller's, over the image's, HOME kept; a file
the
machine replaced with something else (a FIFO, a link, garbage) gives none and never blocks."""

from __future__ import annotations

import os
from pathlib import Path

from base.dotenv import render
from contracts.daemon.machine_files import CONTAINER_ENV_FILE
from daemon.processes.env import ProcessEnv, compose

IMAGE = {"FOO": "image", "PATH": "/bin", "FLEET_MACHINE_TOKEN": "t", "FLEET_RUNTIME_LIBS": "/x"}


def test_the_rule_in_order() -> None:
    env = compose({**IMAGE, "BAR": "image", "BAZ": "image", "QUX": "image"}, Path("/home/m"),
                  {"BAR": "c", "BAZ": "c", "QUX": "c", "HOME": "/x"}, {"BAZ": "e", "QUX": "e"},
                  {"QUX": "call"})  # fmt: skip
    assert env == {"FOO": "image", "PATH": "/bin", "BAR": "c", "BAZ": "e", "QUX": "call",
                   "HOME": "/home/m"}  # fmt: skip


def test_the_containers_variables_sit_between_the_images_and_the_callers(tmp_path: Path) -> None:
    (tmp_path / ".fleet").mkdir()
    (tmp_path / CONTAINER_ENV_FILE).write_text(render({"FOO": "c", "BAR": "c", "HOME": "/x"}))
    env = ProcessEnv(tmp_path, IMAGE)({"BAR": "caller"})
    assert env == {"FOO": "c", "BAR": "caller", "PATH": "/bin", "HOME": str(tmp_path)}


def test_a_file_that_is_not_one_gives_none(tmp_path: Path) -> None:
    (tmp_path / ".fleet").mkdir()
    path = tmp_path / CONTAINER_ENV_FILE
    plain = {"FOO": "image", "PATH": "/bin", "HOME": str(tmp_path)}
    assert ProcessEnv(tmp_path, IMAGE)() == plain
    os.mkfifo(path)  # nobody writes: a blocking open would wait for ever
    assert ProcessEnv(tmp_path, IMAGE)() == plain
    path.unlink()
    (tmp_path / "elsewhere").write_text("A=1\n")
    path.symlink_to(tmp_path / "elsewhere")
    assert ProcessEnv(tmp_path, IMAGE)() == plain
    path.unlink()
    path.write_text("not a line of the format\n")
    assert ProcessEnv(tmp_path, IMAGE)() == plain
