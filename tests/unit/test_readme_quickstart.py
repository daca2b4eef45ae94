"""How tests/e2e/test_quickstart.py reads the README's quick start: the blocks it must find, and
what it masks (only what changes from run to run)."""

from __future__ import annotations

import pytest

from tests.e2e import readme_quickstart as qs


def test_the_readme_has_the_blocks_the_quick_start_test_runs() -> None:
    assert qs.commands("up")[-1].endswith("./run up")
    cli = qs.steps("cli")
    assert cli[0].command == "alias fleet=.venv/bin/fleet"
    assert any(s.command.startswith("fleet machines create") and "ready" in s.expected for s in cli)
    assert qs.steps("work")


def test_a_missing_or_doubled_marker_is_an_error() -> None:
    with pytest.raises(AssertionError, match="exactly one"):
        qs.block("up", "no markers here")
    twice = "<!-- quickstart:x -->\n```sh\nls\n```\n<!-- /quickstart:x -->\n"
    with pytest.raises(AssertionError, match="exactly one"):
        qs.block("x", twice * 2)
    assert qs.commands("x", twice) == ["ls"]


def test_masks_hide_ids_timings_and_paths_but_not_content() -> None:
    real = (
        "machine m-d8ee490e554cb5d0 (instance i-09ef957b824e1d9c)\n"
        "  +   0.41s  ready\n998b12b init\nadded /tmp/x/demo/hello@main -> ~/src/hello\n"
    )
    shown = (
        "machine m-01b63eb8adbe507d (instance i-830af7a6077401d3)\n"
        "  +   0.13s  ready\n4d4d2f1 init\nadded /home/you/fleetd/demo/hello@main -> ~/src/hello\n"
    )
    assert qs.mask(real) == qs.mask(shown)
    assert qs.mask("  +   0.41s  failed") != qs.mask("  +   0.41s  ready")
    assert qs.mask("HTTP_TIMEOUT='30'") != qs.mask("HTTP_TIMEOUT='31'")


def test_outputs_pairs_each_step_with_its_exit_code() -> None:
    steps = [qs.Step("echo a", "a"), qs.Step("printf b; false", "b")]
    script = qs.script(steps, "@@m")
    assert "shopt -s expand_aliases" in script
    printed = "@@m 0\na\n\n@@m rc 0\n@@m 1\nb\n@@m rc 1\n"
    assert qs.outputs(printed, "@@m") == [("a", 0), ("b", 1)]
