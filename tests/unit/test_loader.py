"""The platform's loader copy reads no preload file, and an image's loader variables reach the
machine's commands but never the platform's processes (base/loader.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from base.loader import (
    NO_PRELOAD_FILE,
    PRELOAD_FILE,
    LoaderUnknown,
    blind,
    restored,
    withheld,
    write_blind,
)
from providers.sandbox import host_loader


def test_the_copy_names_no_preload_file_and_keeps_every_offset(tmp_path: Path) -> None:
    code = host_loader().read_bytes()
    out = blind(code)
    assert len(out) == len(code)
    assert PRELOAD_FILE not in out
    assert out.count(NO_PRELOAD_FILE) == 1
    write_blind(host_loader(), tmp_path / "ld.so")
    assert os.stat(tmp_path / "ld.so").st_mode & 0o777 == 0o111
    # It still loads a program (root may exec what it cannot read).
    argv = [str(tmp_path / "ld.so"), "--inhibit-cache", "/bin/true"]
    assert subprocess.run(argv, timeout=30, check=False).returncode == 0


def test_a_loader_of_another_layout_is_refused() -> None:
    with pytest.raises(LoaderUnknown):
        blind(b"no preload file named here")
    with pytest.raises(LoaderUnknown):
        blind(PRELOAD_FILE * 2)


def test_an_images_loader_variables_are_withheld_and_given_back() -> None:
    image = ["PATH=/bin", "LD_PRELOAD=/lib/x.so", "PYTHONHOME=/opt/py", "PYTHONPATH=/opt/lib",
             "PYTHONPYCACHEPREFIX=/opt/pyc", "GLIBC_TUNABLES=a=1", "LD_BIND_NOW="]  # fmt: skip
    platform = {"PATH": "/usr/bin", "PYTHONPATH": "/run/fleet/runtime/lib"}
    held = withheld(image, platform)
    # What the platform sets is its own; every other loader or interpreter variable is empty.
    assert {k: v for k, v in held.items() if not k.startswith("FLEET_")} == {
        "LD_PRELOAD": "", "PYTHONHOME": "", "PYTHONPYCACHEPREFIX": "", "GLIBC_TUNABLES": "",
        "LD_BIND_NOW": ""}  # fmt: skip
    env = platform | held
    assert restored(env) == platform | {
        "LD_PRELOAD": "/lib/x.so", "PYTHONHOME": "/opt/py", "PYTHONPYCACHEPREFIX": "/opt/pyc",
        "GLIBC_TUNABLES": "a=1", "LD_BIND_NOW": ""}  # fmt: skip
    # None in the image: none for the commands either.
    assert withheld(["PATH=/bin", "NOEQUALS"], platform) == {}
    # A fork's layer: a container's environment, committed; what it kept aside stays (the
    # engine puts the container's config over the image's).
    layer = [f"{k}={v}" for k, v in env.items()]
    assert restored(env | platform | withheld(layer, platform)) == restored(env)
