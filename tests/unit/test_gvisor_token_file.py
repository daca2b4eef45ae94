"""The host writes a gvisor machine's token into its token directory (providers/gvisor/runsc.py
``write_token``): whatever stands at the token's name, a FIFO, a symlink or a directory, the host
neither blocks on it nor writes through it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.errors import ProviderError
from providers.gvisor import TOKEN_DIR, write_token


def test_the_token_is_written_root_only(tmp_path: Path) -> None:
    d = write_token(tmp_path, "secret", "m-1")
    assert (d / "token").read_text() == "secret"
    assert (d / "token").stat().st_mode & 0o777 == 0o600
    assert d.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_what_stands_at_the_tokens_name_is_never_written_through(tmp_path: Path, kind: str) -> None:
    d = tmp_path / TOKEN_DIR
    d.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("")
    planted = d / "token"
    if kind == "fifo":
        os.mkfifo(planted)  # opened for writing, it would wait for a reader for ever
    elif kind == "symlink":
        planted.symlink_to(elsewhere)
    else:
        planted.mkdir()
    with pytest.raises((ProviderError, OSError)):
        write_token(tmp_path, "secret", "m-1")
    assert elsewhere.read_text() == ""
