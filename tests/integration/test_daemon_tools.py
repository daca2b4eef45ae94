"""tools.write_file on a real file system: modes under any umask, parents made when missing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from contracts.daemon_rpc import WriteFileParams
from daemon import tools


@pytest.mark.parametrize("umask", [None, 0o022, 0o077, 0o000])
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755, 0o777, 0o000])
def test_write_file_gets_exactly_the_mode_asked(
    tmp_path: Path, umask: int | None, mode: int
) -> None:
    old = os.umask(umask if umask is not None else 0o027)
    try:
        result = tools.write_file(tmp_path, WriteFileParams(path="a/b/f", content="x", mode=mode),
                                  umask)  # fmt: skip
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(result.path).st_mode) == mode
    assert Path(result.path) == tmp_path / "a" / "b" / "f"
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["f"]  # no temp file left


def test_current_umask_reads_the_process_umask() -> None:
    old = os.umask(0o037)
    try:
        assert tools.current_umask() == 0o037
    finally:
        os.umask(old)
