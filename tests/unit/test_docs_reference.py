"""The reference pages are generated from the code (docsite/reference.py): each names every
gateway method, daemon method, error code, setting, subject and CLI command the code has, and the
hand-written notes beside them name nothing the code no longer has."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
import yaml

from contracts.bus.asyncapi import asyncapi_document
from contracts.daemon.rpc import DAEMON_METHODS
from contracts.errors import ERRORS, NotSupported
from contracts.gateway.rpc import GATEWAY_METHODS
from controlplane.settings import PREFIX, Settings
from daemon.settings import DaemonSettings
from docsite import benchmarks, reference
from docsite.hooks import on_files  # noqa: F401  (the hook imports: it must load)

ROOT = Path(__file__).resolve().parents[2]


def env_names(cls: type[msgspec.Struct]) -> list[str]:
    return [PREFIX + f.name.upper() for f in msgspec.structs.fields(cls)]


def test_every_gateway_method_has_a_section() -> None:
    page = reference.gateway_page()
    missing = [m.name for m in GATEWAY_METHODS if f"## `{m.name}`" not in page]
    assert missing == []


def test_a_method_without_a_note_is_documented_from_its_spec_alone() -> None:
    """The notes are optional prose: a method they do not name still has its section."""
    said = reference.notes()["methods"]
    bare = next(m for m in GATEWAY_METHODS if m.name not in said)
    page = reference.gateway_page()
    section = page.split(f"## `{bare.name}`", 1)[1].split("\n## ", 1)[0]
    assert "**Result**" in section
    assert "in short" not in section


def test_every_daemon_method_has_a_section() -> None:
    page = reference.daemon_page()
    assert [m.name for m in DAEMON_METHODS if f"## `{m.name}`" not in page] == []


def test_every_setting_has_a_row() -> None:
    page = reference.settings_page()
    rows = set(
        re.findall(r"^\| <span id=\"[a-z_0-9]+\"></span>`(FLEET_[A-Z_0-9]+)` \|", page, re.M)
    )
    assert set(env_names(Settings)) <= rows
    assert set(env_names(DaemonSettings)) <= rows


def test_every_setting_says_what_it_is_for() -> None:
    """A new setting needs a ``#:`` comment in its class or a note in docsite/notes.yml."""
    for line in reference.settings_page().splitlines():
        if line.startswith("| <span"):
            assert not line.rstrip().endswith("|  |"), line


def _error_rows() -> dict[int, str]:
    page = reference.errors_page()
    found = re.findall(
        r'^\| <span id="(-?\d+)"></span>-?\d+ \| (\w+) \| \d+ \| (.*) \|$', page, re.M
    )
    return {int(code): f"{name}: {when}" for code, name, when in found}


def test_every_error_code_has_a_row_saying_when() -> None:
    rows = _error_rows()
    assert set(ERRORS) <= set(rows), sorted(set(ERRORS) - set(rows))
    for code, cls in ERRORS.items():
        assert rows[code].startswith(cls.__name__ + ": "), rows[code]
        assert len(rows[code]) > len(cls.__name__) + 10, f"{code} says nothing about when"


def test_no_error_row_says_a_code_is_never_raised() -> None:
    """1601 once was documented as never raised, while refreshCode on swarm answered it."""
    rows = _error_rows()
    assert [r for r in rows.values() if re.search(r"not raised|reserved", r)] == []
    assert "refreshCode" in rows[NotSupported.code]


def test_every_subject_has_a_section() -> None:
    page = reference.events_page()
    for name, channel in asyncapi_document()["channels"].items():
        assert f"## {name}" in page, name
        assert f"`{channel['address']}`" in page, name


def test_every_cli_command_has_its_help() -> None:
    page = reference.cli_page()
    for command in ("fleet up", "fleet machines exec", "fleet processes start", "fleet code run"):
        assert f"## `{command}`" in page, command
    assert "usage: fleet machines exec" in page


def test_the_notes_name_only_what_the_code_has() -> None:
    notes = yaml.safe_load((ROOT / "docsite" / "notes.yml").read_text())
    assert set(notes["methods"]) <= {m.name for m in GATEWAY_METHODS}
    assert set(notes.get("daemonMethods", {})) <= {m.name for m in DAEMON_METHODS}
    assert set(notes["errors"]) <= set(ERRORS)
    assert set(notes["settings"]) <= set(env_names(Settings)) | set(reference.OTHER_VARIABLES)
    for env, module in reference.OTHER_VARIABLES.items():
        if module.endswith(".py"):
            assert env in (ROOT / module).read_text(), f"{module} no longer reads {env}"
    assert set(notes["daemonSettings"]) <= set(env_names(DaemonSettings))


def test_the_nav_lists_every_generated_page() -> None:
    """A generated page missing from mkdocs.yml's nav would be built but unreachable."""
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [p for p in reference.PAGES if f": {p}" not in nav] == []


# Words for how the docs were made, not for what the product does.
PROCESS_WORDS = re.compile(
    r"\bissues? \d+|\bissue #|(?<![\w/-])#\d+\b|\b(first|second|third|fourth|fifth|sixth|this|"
    r"next|a later|an earlier) (work )?session\b|\bbranch `|\bon (the )?branch\b",
    re.IGNORECASE,
)  # a terminal session is a feature of the product: "session" alone is fine


@pytest.mark.parametrize(
    "page",
    [
        "README.md",
        "deploy/README.md",
        *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("docs/**/*.md")),
    ],
)
def test_no_page_speaks_of_sessions_branches_or_issues(page: str) -> None:
    text = (ROOT / page).read_text()
    hits = [m.group(0) for m in PROCESS_WORDS.finditer(text)]
    assert hits == [], f"{page}: {hits}"


def test_no_generated_page_speaks_of_sessions_branches_or_issues() -> None:
    for path, page in reference.PAGES.items():
        assert [m.group(0) for m in PROCESS_WORDS.finditer(page())] == [], path
    methods = benchmarks.methods_markdown()  # from bench/*.py's docstrings, which do
    assert [m.group(0) for m in PROCESS_WORDS.finditer(methods)] == []
    numbers = {n for n, _, _ in benchmarks.benchmark_docs()}
    assert numbers >= set(range(1, 14)), sorted(numbers)
    assert methods.count("### Benchmark ") == len(benchmarks.benchmark_docs())
