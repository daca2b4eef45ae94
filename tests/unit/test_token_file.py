"""A docker machine's token file: read once by its first process, which empties it; never
through a link (base/tokenfd.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from base.tokenfd import take_token_file


def test_the_token_is_taken_once_and_the_file_left_empty(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("t0k3n\n")
    assert take_token_file(str(path)) == "t0k3n"
    assert path.read_bytes() == b""
    assert take_token_file(str(path)) == ""  # started again by its engine: spent


def test_a_link_in_its_place_is_never_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("not a token")
    (tmp_path / "token").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        take_token_file(str(tmp_path / "token"))
    assert (tmp_path / "elsewhere").read_text() == "not a token"
