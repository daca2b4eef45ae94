"""A machine's files through the gateway, against real daemons: the one-message methods, the
streamed upload and download (100 MiB and 1 GiB round trips, checked by SHA-256), an upload
cut half way, confinement attacks over the API and HTTP, and another instance's token."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from pathlib import Path

import aiohttp
import pytest
import yarl

from contracts.errors import (
    BadPath,
    FileNotFound,
    FileTooLarge,
    Forbidden,
    InvalidParams,
    StreamAborted,
    TransferAborted,
)
from contracts.gateway.files import files_url
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, ReadyMachine
from tests.waiters import wait_until

MIB = 1024 * 1024
# Each test takes a ready machine of its own on the module's stack, and acts only inside it.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def home_of(settings: Settings, machine_id: str) -> Path:
    return settings.data_path / "machines" / machine_id / "home"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(4 * MIB):
            h.update(data)
    return h.hexdigest()


def random_file(path: Path, size: int) -> Path:
    """``size`` bytes, quick to make: a random MiB repeated, each copy stamped with its
    offset (so a chunk delivered twice or out of order changes the hash)."""
    block = bytearray(os.urandom(MIB))
    with path.open("wb") as f:
        for offset in range(0, size, MIB):
            block[:8] = offset.to_bytes(8, "big")
            f.write(block[: min(MIB, size - offset)])
    return path


# --- one message ------------------------------------------------------------------------------
async def test_read_list_stat_remove_on_a_real_daemon(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    mid = await ready_machine("files")
    await shared_stack.write_file(mid, "proj/a.txt", "héllo\n", 0o600)
    await shared_stack.exec(mid, ["ln", "-s", "a.txt", "proj/link"])
    got = await shared_stack.read_file(mid, "~/proj/a.txt")
    assert (got.content, got.size, got.mode) == ("héllo\n", 7, 0o600)
    assert (await shared_stack.read_file(mid, "proj/link")).content == "héllo\n"
    listed = await shared_stack.list_dir(mid, "proj")
    assert [(e.name, e.kind) for e in listed.entries] == [("a.txt", "file"), ("link", "symlink")]
    assert (await shared_stack.stat(mid, "proj/link")).target == "a.txt"
    assert (await shared_stack.remove_file(mid, "proj", recursive=True)).removed
    with pytest.raises(FileNotFound):
        await shared_stack.stat(mid, "proj")
    home = home_of(shared_settings, mid)
    (home / "big").write_bytes(b"x" * (2 * MIB))
    with pytest.raises(FileTooLarge, match="fleet machines cp"):
        await shared_stack.read_file(mid, "big")


async def test_make_dir_move_and_a_deep_listing_on_a_real_daemon(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    mid = await ready_machine("tree")
    made = await shared_stack.make_dir(mid, "proj/src/lib")
    assert (made.created, made.entry.kind) == (True, "dir")
    assert (await shared_stack.make_dir(mid, "~/proj/src/lib")).created is False
    await shared_stack.write_file(mid, "proj/src/lib/x.py", "x = 1\n")
    moved = await shared_stack.move(mid, "proj/src", "proj/code")
    assert (moved.path, moved.entry.name) == (str(home_of(shared_settings, mid) / "proj" / "code"),
                                              "code")  # fmt: skip
    with pytest.raises(InvalidParams, match="into itself"):
        await shared_stack.move(mid, "proj", "proj/code/proj")
    deep = await shared_stack.list_dir(mid, "proj", depth=3)
    assert [e.name for e in deep.entries] == ["code", "code/lib", "code/lib/x.py"]
    # Owner, group and permissions: what the machine itself says of the file (a number it
    # names no one by is that number, as `ls -l` shows it; stat(1) says UNKNOWN).
    said = await shared_stack.exec(mid, ["stat", "-c", "%U %u %G %g %A", "proj/code/lib/x.py"])
    user, uid, group, gid, permissions = said.stdout.split()
    x = deep.entries[-1]
    assert (x.owner, x.group, x.permissions) == (uid if user == "UNKNOWN" else user,
                                                 gid if group == "UNKNOWN" else group,
                                                 permissions)  # fmt: skip


async def test_confinement_attacks_through_the_gateway(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    mid = await ready_machine("attacks")
    outside = shared_settings.data_path / "secret"
    outside.write_text("SECRET")
    # Planted by code on the machine: a link out of the home (the sandbox does not show it the
    # target, but the daemon must not follow it either way).
    os.symlink(outside, home_of(shared_settings, mid) / "out")
    for path in ("../secret", "~/../../secret", str(outside), "out", "out/x", "a\0b"):
        with pytest.raises(InvalidParams):
            await shared_stack.read_file(mid, path)
        if path != "out":  # removing "out" removes the link, which is in the home
            with pytest.raises(InvalidParams):
                await shared_stack.remove_file(mid, path)
    headers = {"Authorization": f"Bearer {shared_stack._token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for path in ("%2e%2e/secret", "out", "out/x", "%2e%2e/%2e%2e/secret", "a%00b"):
            typed = f"{shared_stack.url}/machines/{mid}/files/{path}"
            url = yarl.URL(typed, encoded=True)  # as typed
            async with s.get(url) as r:
                assert r.status == 400, (path, await r.text())
            if path != "out":  # an upload to "out" replaces the link itself
                async with s.put(url, data=b"x") as r:
                    assert r.status == 400, (path, await r.text())
    assert outside.read_text() == "SECRET"
    assert (await shared_stack.remove_file(mid, "out")).removed  # the link, not its target
    assert outside.read_text() == "SECRET"


async def test_another_instances_token_gets_403(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    mid = await ready_machine("theirs")
    await shared_stack.write_file(mid, "private", "theirs")
    mine = await shared_stack.create_instance("mine")
    token = (await shared_stack.create_token("a", mine.id)).token
    async with FleetClient(shared_stack.url, token) as a:
        for call in (a.read_file(mid, "private"), a.list_dir(mid), a.stat(mid, "private"),
                     a.remove_file(mid, "private")):  # fmt: skip
            with pytest.raises(Forbidden):
                await call
    url = shared_stack.url + files_url(mid, "private")
    async with aiohttp.ClientSession() as s:
        for headers, status in (({"Authorization": f"Bearer {token}"}, 403), ({}, 401)):
            async with s.get(url, headers=headers) as r:
                assert r.status == status
            async with s.put(url, headers=headers, data=b"overwritten") as r:
                assert r.status == status
    assert (home_of(shared_settings, mid) / "private").read_text() == "theirs"


# --- streamed ---------------------------------------------------------------------------------
@pytest.mark.timeout(300)
@pytest.mark.parametrize("size", [100 * MIB + 123, 1024 * MIB + 123], ids=["100MiB", "1GiB"])
async def test_a_round_trip_is_the_same_bytes(
    shared_stack: FleetClient,
    ready_machine: ReadyMachine,
    shared_settings: Settings,
    tmp_path: Path,
    size: int,
) -> None:
    mid = await ready_machine("big")
    here = tmp_path / "local"
    here.mkdir()
    local = random_file(here / "up.bin", size)
    os.chmod(local, 0o640)
    up = await shared_stack.upload(mid, local, "data/up.bin")
    on_machine = home_of(shared_settings, mid) / "data" / "up.bin"
    assert (up.size, up.sha256, up.mode) == (local.stat().st_size, sha256_of(local), 0o640)
    assert sha256_of(on_machine) == up.sha256
    assert on_machine.stat().st_mode & 0o777 == 0o640
    down = await shared_stack.download(mid, "data/up.bin", here / "down.bin")
    assert (down.sha256, down.mode) == (up.sha256, 0o640)
    assert sha256_of(here / "down.bin") == up.sha256
    assert sorted(p.name for p in here.iterdir()) == ["down.bin", "up.bin"]  # no temp left
    assert sorted(p.name for p in on_machine.parent.iterdir()) == ["up.bin"]


async def test_odd_names_an_empty_file_and_an_absolute_path(
    shared_stack: FleetClient,
    ready_machine: ReadyMachine,
    shared_settings: Settings,
    tmp_path: Path,
) -> None:
    mid = await ready_machine("odd")
    home = home_of(shared_settings, mid)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for remote in ("dir with space/ü #1?.txt", str(home / "abs.txt"), "~/tilde.txt"):
        up = await shared_stack.upload(mid, empty, remote)
        assert (up.size, up.sha256) == (0, hashlib.sha256(b"").hexdigest())
        down = await shared_stack.download(mid, remote, tmp_path / "got")
        assert (down.size, (tmp_path / "got").read_bytes()) == (0, b"")
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) == [
        "abs.txt", "dir with space", "tilde.txt"]  # fmt: skip
    assert (home / "dir with space" / "ü #1?.txt").exists()


async def test_a_path_the_file_system_cannot_use_is_a_400_everywhere(
    shared_stack: FleetClient,
    ready_machine: ReadyMachine,
    shared_settings: Settings,
    tmp_path: Path,
) -> None:
    """A 300-byte file name (files GET and PUT, readFile, listDir) and a 5,000-character cwd
    (sessions.open, exec): 400 and BadPath naming the reason, never -32603 or a 500."""
    mid = await ready_machine("long-names")
    long_name = "n" * 300
    url = shared_stack.url + files_url(mid, long_name)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for method, body in (("GET", None), ("PUT", b"hello")):
            async with s.request(method, url, data=body) as r:
                assert r.status == 400, (method, await r.text())
                error = (await r.json())["error"]
                assert (error["code"], error["data"]["reason"]) == (1049, "nameTooLong")
    local = tmp_path / "f"
    local.write_text("x")
    calls = [
        shared_stack.read_file(mid, long_name),
        shared_stack.list_dir(mid, f"d/{long_name}"),
        shared_stack.upload(mid, local, long_name),
        shared_stack.download(mid, long_name, tmp_path / "back"),
        shared_stack.open_session(mid, ["true"], cwd="c" * 5000),
        shared_stack.exec(mid, ["true"], cwd="c/" * 2500),
    ]
    for call in calls:
        with pytest.raises(BadPath) as refused:
            await call
        assert refused.value.data is not None
        assert refused.value.data["reason"] == "nameTooLong"
    assert (await shared_stack.exec(mid, ["true"])).exit_code == 0  # the daemon serves on


async def test_a_directory_of_6000_long_names_is_listed_page_by_page(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    """More entries than one answer holds: each page is cut to fit, says so, and names where
    the next one starts; paging through gives every name once, in order."""
    mid = await ready_machine("many-names")
    big = home_of(shared_settings, mid) / "big"
    big.mkdir()
    names = sorted(f"{i:05d}-" + "n" * 240 for i in range(6000))
    for name in names:
        (big / name).touch()
    seen: list[str] = []
    after, pages = None, 0
    while True:
        page = await shared_stack.list_dir(mid, "big", limit=10_000, after=after)
        pages += 1
        assert pages < 50, "the pages do not move on"
        seen += [e.name for e in page.entries]
        if not page.truncated:
            assert page.next_after is None
            break
        assert page.next_after == page.entries[-1].name
        after = page.next_after
    assert seen == names
    assert pages > 1  # 6000 entries of 250-byte names do not fit one message
    first = await shared_stack.list_dir(mid, "big", limit=10)
    assert ([e.name for e in first.entries], first.truncated) == (names[:10], True)


def _read_position(name: str) -> int | None:
    """Where the process that has a file called ``name`` open for reading stands in it (the
    daemon, sending it): from /proc/<pid>/fdinfo, as the host sees every process."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/" + name):
                    info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                    return int(info.split("pos:")[1].split()[0])
    return None


async def test_a_download_goes_only_as_fast_as_its_client_reads(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    """A client that stops reading stops the daemon's reading of the file within a few MiB
    (socket buffers and one window): nothing in between buffers the rest."""
    mid = await ready_machine("slow")
    size = 96 * MIB
    random_file(home_of(shared_settings, mid) / "bp.bin", size)
    reader, writer = await asyncio.open_connection("127.0.0.1", shared_settings.port)
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                                          64 * 1024)  # fmt: skip
    writer.write(f"GET {files_url(mid, 'bp.bin')} HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {shared_stack._token}\r\n\r\n".encode())  # fmt: skip
    await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(MIB)
    positions: list[int] = []

    async def settled() -> bool:  # the daemon's position stopped moving
        positions.append(_read_position("bp.bin") or 0)
        return len(positions) > 5 and positions[-1] == positions[-6]

    await wait_until(settled, timeout=30, every=0.2)
    assert 0 < positions[-1] < 24 * MIB, positions
    got = MIB + len(await reader.readexactly(size - MIB))  # reading again: it all comes
    assert got == size
    writer.close()


async def test_an_upload_cut_half_way_leaves_nothing(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    """The client announces 64 MiB, sends half, and its connection drops: nothing at the path,
    no temporary file left, and the file that was there before is untouched."""
    mid = await ready_machine("cut")
    home = home_of(shared_settings, mid)
    (home / "keep.bin").write_bytes(b"the old bytes")
    for target in ("keep.bin", "new/fresh.bin"):
        url = shared_stack.url + files_url(mid, target)
        _, writer = await asyncio.open_connection("127.0.0.1", shared_settings.port)
        head = (
            f"PUT {url.removeprefix(shared_stack.url)} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {shared_stack._token}\r\nContent-Length: {64 * MIB}\r\n\r\n"
        )
        writer.write(head.encode())
        chunk = os.urandom(MIB)
        for _ in range(32):
            writer.write(chunk)
            await writer.drain()
        await wait_until(lambda: any(".fleet-upload" in p.name for p in home.rglob("*")), 10)
        writer.transport.abort()  # no FIN handshake: the connection just drops
        await wait_until(lambda: not any(".fleet-upload" in p.name for p in home.rglob("*")), 30)
    assert (home / "keep.bin").read_bytes() == b"the old bytes"
    assert not (home / "new" / "fresh.bin").exists()


async def test_an_upload_with_another_sha256_or_a_short_body_is_refused(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    mid = await ready_machine("sha")
    home = home_of(shared_settings, mid)
    headers = {"Authorization": f"Bearer {shared_stack._token}"}
    url = shared_stack.url + files_url(mid, "f.bin")
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.put(url, params={"sha256": "0" * 64}, data=b"payload") as r:
            assert r.status == 502
            assert "SHA-256" in (await r.json())["error"]["message"]
        async with s.put(url, params={"mode": "9"}, data=b"payload") as r:
            assert r.status == 400
            assert (await r.json())["error"]["data"] == {"field": "$.mode"}
        right = hashlib.sha256(b"payload").hexdigest()
        async with s.put(url, params={"sha256": right, "mode": "600"}, data=b"payload") as r:
            assert r.status == 201, await r.text()
            assert (await r.json())["sha256"] == right
    assert (home / "f.bin").read_bytes() == b"payload"
    assert (home / "f.bin").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in home.iterdir() if "fleet-upload" in p.name] == []
    with pytest.raises((TransferAborted, StreamAborted, FileNotFound)):
        await shared_stack.download(mid, "nothing.bin", shared_settings.data_path / "x")
