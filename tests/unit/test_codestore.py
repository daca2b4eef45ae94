"""The code store's checks (base/codestore.py): what the platform recorded is what runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from base.codestore import CURRENT_FILE, CodeUnverified, current_code, record, tree_digest
from contracts.daemon.machine_files import CODE_SHA_FILE

SHA = "a" * 40


def store_with(tmp_path: Path) -> Path:
    code = tmp_path / "store" / SHA
    (code / "daemon").mkdir(parents=True)
    (code / "daemon" / "__main__.py").write_text("print('platform')\n")
    (code / CODE_SHA_FILE).write_text(SHA + "\n")
    (code.parent / CURRENT_FILE).write_bytes(record(SHA, tree_digest(code)))
    return code.parent


def test_the_recorded_code_checks_out(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    assert current_code(store) == (store / SHA, SHA)
    assert current_code(store, SHA[:12]) == (store / SHA, SHA)
    assert current_code(tmp_path / "empty") is None  # nothing recorded: nothing to run


@pytest.mark.parametrize("change", ["content", "new file", "exec bit", "link", "marker"])
def test_a_tree_changed_after_the_install_is_refused(tmp_path: Path, change: str) -> None:
    store = store_with(tmp_path)
    main = store / SHA / "daemon" / "__main__.py"
    if change == "content":
        main.write_text("print('machine')\n")
    elif change == "new file":
        (store / SHA / "daemon" / "sitecustomize.py").write_text("")
    elif change == "exec bit":
        main.chmod(0o755)
    elif change == "link":
        main.unlink()
        main.symlink_to("/etc/hostname")
    else:
        (store / SHA / CODE_SHA_FILE).write_text("b" * 40 + "\n")
    with pytest.raises(CodeUnverified):
        current_code(store)


@pytest.mark.parametrize("record_text", [b"{", b'{"gitSha": "HEAD", "treeDigest": "x"}', b"[]"])
def test_a_bad_record_is_refused(tmp_path: Path, record_text: bytes) -> None:
    store = store_with(tmp_path)
    (store / CURRENT_FILE).write_bytes(record_text)
    with pytest.raises(CodeUnverified):
        current_code(store)


def test_only_the_recorded_commit_is_asked_for(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    other = store / ("b" * 40)
    os.rename(store / SHA, other)  # installed, but not what the record names
    with pytest.raises(CodeUnverified, match="not the code the platform installed"):
        current_code(store, "b" * 40)
