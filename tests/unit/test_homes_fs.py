"""Which home filesystem a data dir gets (providers/local/homes.py): ``auto`` never makes an image
unasked, and plain homes already there are never hidden under a mount."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import ProviderError
from providers.local import homes as homes_fs


def test_auto_and_plain_keep_plain_homes_without_an_image(tmp_path: Path) -> None:
    assert not homes_fs.is_btrfs(tmp_path)  # the suite's tmp is not btrfs: else this says nothing
    assert homes_fs.prepare(tmp_path, "plain") is False
    assert homes_fs.prepare(tmp_path, "auto") is False
    assert not (tmp_path / homes_fs.IMAGE).exists()
    assert not (tmp_path / homes_fs.MOUNT).exists()


def test_btrfs_refuses_a_data_dir_that_holds_plain_homes(tmp_path: Path) -> None:
    (tmp_path / "machines" / "m-0000000000000001" / "home").mkdir(parents=True)
    with pytest.raises(ProviderError, match="already holds plain homes"):
        homes_fs.prepare(tmp_path, "btrfs")
    assert not (tmp_path / homes_fs.IMAGE).exists()
    (tmp_path / homes_fs.IMAGE).touch()  # made before: auto would use it, but not over homes
    assert homes_fs.prepare(tmp_path, "auto") is False
