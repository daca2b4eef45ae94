"""The console's Notebook panel on a machine page, in a real browser (Playwright, Debian's
chromium) against `fleet up`: cells that keep the kernel's state (Shift+Enter and Run), output
shown while the cell still runs, an image result as an <img>, an HTML result in a sandboxed
frame whose scripts never run in the console's page, an error with its traceback free of
colour codes, and the context picker (a new context that does not see the default one's
state, deleted)."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser import WAIT_MS
from tests.e2e.conftest import FleetUp, ok
from tests.e2e.test_console import page, sign_in

__all__ = ["page"]

#: A 1x1 PNG, made from bytes in the machine (no matplotlib).
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
SHOW_PNG = (
    "import base64\nfrom IPython.display import Image, display\n"
    f"display(Image(data=base64.b64decode({PNG_B64!r})))"
)
#: Machine output that would act in the console's page were it ever put there as HTML.
HOSTILE = (
    "<p id='said'>html from the machine</p>"
    "<script>window.top.pwned = 'script'; parent.document.title = 'pwned';</script>"
    "<img src='x' onerror=\"window.top.pwned = 'onerror'\">"
)
SHOW_HTML = f"from IPython.display import HTML, display\ndisplay(HTML({HOSTILE!r}))"
#: Prints a line, then waits for the test's file before its second one.
AWAIT_GO = (
    "import os, time\nprint('first', flush=True)\n"
    "for _ in range(1200):\n    if os.path.exists(os.path.expanduser('~/go')): break\n"
    "    time.sleep(0.05)\nprint('second')"
)


def run_cell(page: Page, n: int, code: str, *, shift_enter: bool = False) -> None:
    cell = page.get_by_test_id("notebook-cell").nth(n)
    cell.get_by_test_id("notebook-code").fill(code)
    if shift_enter:
        cell.get_by_test_id("notebook-code").press("Shift+Enter")
    else:
        cell.get_by_test_id("notebook-run").click()


@pytest.mark.timeout(300)
def test_notebook_cells_keep_state_stream_and_show_rich_results_safely(
    shared_fleet_up: FleetUp,
    page: Page,
) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    instance = json.loads(ok(up.cli("instances", "create", "nb", "--json")))["id"]
    made = up.cli("machines", "create", "--instance", instance, "--wait", "--json", timeout=180)
    found = re.search(r"m-[0-9a-f]{16}", made.stdout)
    assert found, made.stdout + made.stderr
    mid = found.group(0)
    sign_in(page, up)
    page.goto(f"{up.url}/#/machines/{mid}")
    cells = page.get_by_test_id("notebook-cell")
    expect(cells).to_have_count(1)

    # State across cells; Shift+Enter runs a cell and opens the next.
    run_cell(page, 0, "x = 41", shift_enter=True)
    expect(cells).to_have_count(2)
    expect(cells.nth(0)).to_have_attribute("data-state", "done")
    run_cell(page, 1, "x + 1")
    expect(cells.nth(1).get_by_test_id("notebook-text")).to_have_text("42")
    expect(cells.nth(1).get_by_test_id("notebook-count")).to_have_text(re.compile(r"\[\d+\]"))

    # Output shows while the cell still runs.
    run_cell(page, 2, AWAIT_GO)
    expect(cells.nth(2).get_by_test_id("notebook-stdout")).to_contain_text("first")
    expect(cells.nth(2)).to_have_attribute("data-state", "running")
    ok(up.cli("machines", "exec", mid, "--", "touch", "go"))
    expect(cells.nth(2)).to_have_attribute("data-state", "done")
    expect(cells.nth(2).get_by_test_id("notebook-stdout")).to_have_text("first\nsecond\n")

    # An image: an <img> of the PNG's bytes, decoded by the browser.
    run_cell(page, 3, SHOW_PNG)
    image = cells.nth(3).get_by_test_id("notebook-image")
    expect(image).to_have_attribute("src", f"data:image/png;base64,{PNG_B64}")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=notebook-image]')?.naturalWidth === 1"
    )

    # HTML: shown in a frame with sandbox="", its scripts and handlers never run here.
    run_cell(page, 4, SHOW_HTML)
    frame = cells.nth(4).get_by_test_id("notebook-html")
    expect(frame).to_have_attribute("sandbox", "")
    expect(cells.nth(4).frame_locator("iframe").locator("#said")).to_have_text(
        "html from the machine"
    )
    assert page.evaluate("() => window.pwned") is None
    assert page.title() != "pwned"
    assert page.locator("#said").count() == 0  # never in the console's own document

    # An error: its name, value and traceback, without colour codes.
    run_cell(page, 5, "1/0")
    expect(cells.nth(5)).to_have_attribute("data-state", "error")
    expect(cells.nth(5).get_by_test_id("notebook-error-name")).to_have_text("ZeroDivisionError")
    expect(cells.nth(5).get_by_test_id("notebook-error-value")).to_have_text("division by zero")
    traceback = cells.nth(5).get_by_test_id("notebook-traceback").inner_text()
    assert "ZeroDivisionError" in traceback, traceback
    assert "\x1b" not in traceback, traceback

    # A new context: its own kernel, which has no x; then deleted.
    page.get_by_test_id("notebook-context-new").click()
    picker = page.get_by_test_id("notebook-context")
    expect(picker).not_to_have_value("")
    context = picker.input_value()
    run_cell(page, 6, "x")
    expect(cells.nth(6).get_by_test_id("notebook-error-name")).to_have_text("NameError")
    page.get_by_test_id("notebook-context-delete").click()
    expect(picker).to_have_value("")
    assert not any(context in t for t in picker.locator("option").all_inner_texts())
    run_cell(page, 7, "x")  # the default context again: its state kept
    expect(cells.nth(7).get_by_test_id("notebook-text")).to_have_text("41")
