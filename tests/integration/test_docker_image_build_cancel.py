"""A machine-image build cancelled half way (the provisioner stopping while a debootstrap runs)
leaves nothing running: the build's command and everything it started are killed. Real
processes; no Docker engine needed (the build's commands are plain subprocesses)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from base import procinfo
from contracts.errors import ProviderError
from providers import scratch
from providers.docker.image import BASE_PACKAGES, ImageBuilder, _run
from tests.waiters import wait_until


async def test_a_cancelled_build_step_kills_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # Like debootstrap: a process that starts others (here a grandchild sleep) and waits.
    script = f"sleep 300 & echo $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; wait"
    step = asyncio.create_task(_run(["sh", "-c", script]))
    await wait_until(pidfile.exists, timeout=10)
    child = int(pidfile.read_text())
    ticks = procinfo.start_ticks(child)
    assert procinfo.is_alive(child, ticks)
    step.cancel()
    await asyncio.gather(step, return_exceptions=True)
    assert step.cancelled()
    await wait_until(lambda: not procinfo.is_alive(child, ticks), timeout=10)


#: Like debootstrap half way: the host's /proc mounted in the new root, and (as other build
#: tools do with /dev) a host directory bound into it; then it waits, or fails.
FAKE_DEBOOTSTRAP = """#!/bin/sh
set -e
eval root=\\${$(($# - 1))}  # debootstrap's arguments: ... SUITE TARGET MIRROR
mkdir -p "$root/proc" "$root/dev" "$root/etc"
echo debian > "$root/etc/hostname"
mount -t proc proc "$root/proc"
mount --bind "$FAKE_HOST_DIR" "$root/dev"
ln -s "$FAKE_HOST_DIR" "$root/host-link"
touch "$FAKE_READY"
[ "$FAKE_MODE" = fail ] && exit 1
exec sleep 300
"""


def _fake_debootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "debootstrap"
    fake.write_text(FAKE_DEBOOTSTRAP)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MODE", mode)
    monkeypatch.setenv("FAKE_READY", str(tmp_path / "ready"))
    return tmp_path / "ready"


def _host_dir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory outside the build's, standing for the host's /dev: what it holds."""
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    files = {"null": "host device", "sub/keep": "host file"}
    for name, text in files.items():
        (host / name).write_text(text)
    return host, files


def _files(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): p.read_text() for p in top.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["cancel", "fail"])
async def test_a_build_stopped_half_way_unmounts_before_deleting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    ready = _fake_debootstrap(tmp_path, monkeypatch, mode)
    host, files = _host_dir(tmp_path)
    monkeypatch.setenv("FAKE_HOST_DIR", str(host))
    work = tmp_path / "work"
    builder = ImageBuilder(None, "", work, say=lambda _: None)  # type: ignore[arg-type]
    build = asyncio.create_task(
        builder._debootstrap("fleetd-base:test", "http://x", "bookworm", BASE_PACKAGES)
    )
    await wait_until(lambda: ready.exists() or build.done(), timeout=20)
    if mode == "cancel":
        assert {p.name for p in scratch.mounts_under(work)} == {"proc", "dev"}
        build.cancel()
    outcome = (await asyncio.gather(build, return_exceptions=True))[0]
    if mode == "cancel":
        assert build.cancelled()
    else:
        assert isinstance(outcome, ProviderError)
        assert "debootstrap failed" in str(outcome)
    assert scratch.mounts_under(tmp_path) == []
    assert sorted(p.name for p in work.iterdir()) == ["build.lock"]
    assert _files(host) == files


def test_removal_never_crosses_into_a_mount(tmp_path: Path) -> None:
    """Even with its mounts still there (were the unmount to fail), the removal deletes only
    what is on the build directory's own file system and names what it left."""
    host, files = _host_dir(tmp_path)
    build = tmp_path / "build"
    (build / "root" / "proc").mkdir(parents=True)
    (build / "root" / "dev").mkdir()
    (build / "root" / "tmp").mkdir()
    (build / "root" / "etc").mkdir()
    (build / "root" / "etc" / "hostname").write_text("debian")
    (build / "root" / "host-link").symlink_to(host)
    mounts = [
        ["mount", "-t", "proc", "proc", str(build / "root" / "proc")],
        ["mount", "--bind", str(host), str(build / "root" / "dev")],
        ["mount", "-t", "tmpfs", "tmpfs", str(build / "root" / "tmp")],
    ]
    for argv in mounts:
        subprocess.run(argv, check=True)
    (build / "root" / "tmp" / "on-tmpfs").write_text("x")
    try:
        with pytest.raises(ProviderError, match="another file system") as info:
            scratch.remove_tree(build)
        assert all(f"root/{name}" in str(info.value) for name in ("proc", "dev", "tmp"))
        assert (build / "root" / "tmp" / "on-tmpfs").read_text() == "x"
        assert not (build / "root" / "etc").exists()
        assert not (build / "root" / "host-link").is_symlink()
    finally:
        scratch.unmount_under(build)
    assert scratch.mounts_under(tmp_path) == []
    assert _files(host) == files
    scratch.remove_tree(build)
    assert not build.exists()
