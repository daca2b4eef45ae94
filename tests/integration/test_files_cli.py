"""`fleet machines cp` as a user runs it: the real CLI process against the stack and a real
daemon, both ways, checked by SHA-256; and a CLI killed half way through an upload, which
leaves nothing at the path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, new_ready_machine as ready_machine
from tests.integration.test_files import MIB, home_of, random_file, sha256_of
from tests.waiters import wait_until


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "FLEET_URL": f"http://127.0.0.1:{settings.port}",
            "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip


async def _fleet(settings: Settings, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli.entry import main; main()", *args, env=_env(settings),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


async def test_cp_up_and_down(stack: FleetClient, settings: Settings, tmp_path: Path) -> None:
    mid = await ready_machine(stack, "cp")
    local = random_file(tmp_path / "data.bin", 20 * MIB + 7)
    os.chmod(local, 0o600)
    cli = await _fleet(settings, "machines", "cp", str(local), f"{mid}:in/data.bin")
    out, err = await asyncio.wait_for(cli.communicate(), 120)
    assert cli.returncode == 0, err
    assert sha256_of(local).encode() in out
    # The path as the machine's user writes it, not where its home lies on this host.
    assert f" -> {mid}:~/in/data.bin (".encode() in out, out
    remote = home_of(settings, mid) / "in" / "data.bin"
    assert sha256_of(remote) == sha256_of(local)
    assert remote.stat().st_mode & 0o777 == 0o600
    back = tmp_path / "back"
    back.mkdir()
    cli = await _fleet(settings, "machines", "cp", f"{mid}:in/data.bin", str(back))
    out, err = await asyncio.wait_for(cli.communicate(), 120)
    assert cli.returncode == 0, err
    assert sha256_of(back / "data.bin") == sha256_of(local)
    assert [p.name for p in back.iterdir()] == ["data.bin"]
    cli = await _fleet(settings, "machines", "cp", str(local), str(back / "x"))
    _, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode != 0
    assert b"MACHINE_ID:PATH" in err


async def test_write_says_where_in_the_machine(stack: FleetClient, settings: Settings) -> None:
    mid = await ready_machine(stack, "write")
    cli = await _fleet(settings, "machines", "write", mid, "notes/./todo.txt", "--content", "milk")
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err
    assert out == b"wrote 4 bytes to ~/notes/todo.txt\n"
    assert (home_of(settings, mid) / "notes" / "todo.txt").read_text() == "milk"


async def test_a_cp_killed_half_way_leaves_nothing(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    mid = await ready_machine(stack, "cp-kill")
    home = home_of(settings, mid)
    big = tmp_path / "big.bin"
    with big.open("wb") as f:  # sparse: made at once, longer to send than the test waits
        f.truncate(4096 * MIB)
    cli = await _fleet(settings, "machines", "cp", str(big), f"{mid}:big.bin")

    def uploading() -> bool:
        for p in home.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if p.name.endswith(".fleet-upload") and p.stat().st_size > MIB:
                    return True
        return False

    await wait_until(uploading, 60)
    cli.send_signal(signal.SIGKILL)
    await cli.wait()
    await wait_until(lambda: not any(".fleet-upload" in p.name for p in home.iterdir()), 30)
    assert not (home / "big.bin").exists()
