"""The docs' screenshots follow the console: tests/screenshots.py, run as a person regenerating
them runs it (its own `fleet up`, Debian's chromium), makes one screenshot of each of the
console's pages and of a machine's terminal, ports, notebook and fork, and the docs show those
and no other."""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from base.lifeline import die_with_parent
from tests.screenshots import SHOTS, VIEWPORT

ROOT = Path(__file__).parents[2]
STATIC = ROOT / "services" / "gateway" / "static"
DOCS = ROOT / "docs"
#: Parts of the machine page that have screenshots of their own, beside the pages.
MACHINE_PARTS = {"terminal.js", "ports-panel.js", "notebook.js", "machine-actions.js"}
REFERENCE = re.compile(r"screenshots/([^)\s/]+)\.png")


def console_pages() -> set[str]:
    """The page modules the console's router (app.js) routes to."""
    return set(re.findall(r'from "\./(page-[a-z-]+\.js)"', (STATIC / "app.js").read_text()))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def referenced(doc: Path) -> set[str]:
    return set(REFERENCE.findall(doc.read_text()))


@pytest.mark.timeout(480)
def test_the_script_shoots_every_console_page_and_the_docs_show_those(tmp_path: Path) -> None:
    out = tmp_path / "shots"
    run = subprocess.run(
        # Its stack in the test's tmp dir: the session's leftover check covers it.
        die_with_parent(
            [sys.executable, "-m", "tests.screenshots", str(out), "--work", str(tmp_path)],
            signal.SIGTERM,
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert run.returncode == 0, f"the script failed:\n{run.stdout}\n{run.stderr[-8000:]}"
    made = {p.stem for p in out.glob("*.png")}
    assert made == set(SHOTS), run.stdout
    assert {n: png_size(out / f"{n}.png") for n in made} == dict.fromkeys(made, VIEWPORT)

    pages = console_pages()
    assert len(pages) >= 9, pages  # the router's imports were read
    assert all((STATIC / m).is_file() for m in MACHINE_PARTS)
    unshot = (pages | MACHINE_PARTS) - set(SHOTS.values())
    assert not unshot, f"console modules without a screenshot in tests/screenshots.py: {unshot}"

    docs = [ROOT / "README.md", *DOCS.rglob("*.md")]
    shown = {str(doc.relative_to(ROOT)): referenced(doc) for doc in docs}
    unknown = {doc: names - made for doc, names in shown.items() if names - made}
    assert not unknown, f"docs show screenshots the script does not make: {unknown}"
    console = shown["docs/console.md"]
    assert made <= console, f"not shown in docs/console.md: {made - console}"
    stale = {p.stem for p in (DOCS / "screenshots").glob("*.png")} - made
    assert not stale, f"docs/screenshots has files the script does not make: {stale}"
