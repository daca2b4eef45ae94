"""providers/scratch.py ``remove_tree`` when another removes the same tree at once (two
deletes of one snapshot): each ends with the tree gone, neither fails on what the other took."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from providers.scratch import remove_tree


def _tree(top: Path) -> None:
    for d in range(40):
        sub = top / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(50):
            (sub / f"f{f}").write_bytes(b"x")


def test_two_removals_of_one_tree_at_once_both_end_with_it_gone(tmp_path: Path) -> None:
    for round_ in range(5):
        top = tmp_path / f"image-{round_}"
        _tree(top)
        with ThreadPoolExecutor(4) as pool:
            done = [pool.submit(remove_tree, top) for _ in range(4)]
            for d in done:
                d.result()  # raised FileNotFoundError where another had taken an entry
        assert not top.exists()
