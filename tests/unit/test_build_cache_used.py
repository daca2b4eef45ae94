"""The builds' cache's last-used file: every change is a read-modify-write under the file's own
lock, so concurrent builds (threads here; the provisioner's replicas on one host) lose none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from environments.cache import BuildCache, _forget, _touch


async def test_concurrent_touches_and_a_forget_lose_nothing(tmp_path: Path) -> None:
    cache = BuildCache(state_dir=tmp_path / "environments", max_bytes=0)
    tags = [f"fleetd-env:{n}" for n in range(40)]
    await asyncio.gather(*(_touch(cache, tag) for tag in tags), _forget(cache, ["fleetd-env:x"]))
    used = json.loads(cache.used_file.read_text())
    assert sorted(used) == sorted(tags)
    await _forget(cache, tags[:10])
    assert sorted(json.loads(cache.used_file.read_text())) == sorted(tags[10:])
