"""The daemon's .env reader is the exact inverse of the setup pusher's render()."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import dotenv
import pytest

from base.dotenv import HEADER, parse_env_file, render
from contracts.validation import env_value_quoting
from daemon.processes.envload import EnvFile

TRICKY = [
    "",
    " ",
    "plain",
    " leading and trailing ",
    "tab\tinside",
    "line1\nline2",
    "\n",
    "\n\n",
    "trailing newline\n",
    "\nleading newline",
    "carriage\rreturn",
    "\r",
    "crlf\r\nline",
    "'",
    "''",
    '"',
    "it's",
    "\\",
    "\\\\",
    "trailing backslash\\",
    "\\'",
    "\\\\'",
    "'\\",
    "\\n is not a newline",
    "# not a comment",
    "value # not a comment",
    "NAME='injected'",
    "x'\nEVIL='1",
    "a\nB='2'\n# c",
    "$HOME ${HOME} $(id) `id`",
    "=",
    "a=b=c",
    "ünïcödé ✓ 🚀",
    "x" * 100_000,
]
#: Characters that matter to the quoting, weighted towards the dangerous ones.
ALPHABET = "'\\\n\r\t #=$\"`{}ab Z_é🚀"


def writable(env: dict[str, str]) -> dict[str, str]:
    """The values render() writes (the others it refuses: test_envfile_render.py)."""
    return {k: v for k, v in env.items() if env_value_quoting(v) is not None}


def test_tricky_values_round_trip() -> None:
    env = writable({f"V{i}": value for i, value in enumerate(TRICKY)})
    assert len(env) > len(TRICKY) // 2
    assert parse_env_file(render(env)) == env


@pytest.mark.parametrize("seed", range(5))
def test_random_values_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    env = writable({
        f"{rng.choice('ABC_')}{i}": "".join(rng.choices(ALPHABET, k=rng.randint(0, 12)))
        for i in range(400)
    })  # fmt: skip
    assert len(env) > 40
    assert parse_env_file(render(env)) == env


def test_order_and_last_assignment_win_like_a_shell() -> None:
    text = render({"B": "1", "A": "2"}) + "B='3'\n"
    assert list(parse_env_file(text).items()) == [("B", "3"), ("A", "2")]


def test_agrees_with_python_dotenv() -> None:
    """The README promises any dotenv reader (without interpolation) gets the same values."""
    content = render(writable({f"V{i}": v for i, v in enumerate(TRICKY)}))
    reference = dotenv.dotenv_values(stream=io.StringIO(content), interpolate=False)
    assert parse_env_file(content) == reference


def test_comments_blank_lines_and_hand_edits() -> None:
    text = (
        f"{HEADER}\n   \n# A='no'\n  # indented comment\n"
        "export EXPORTED='yes'\n"
        "BARE= spaced value \n"
        "EMPTY=\n"
        "QUOTED='q'   # trailing comment\n"
        "LAST='no newline at the end'"
    )
    assert parse_env_file(text) == {
        "EXPORTED": "yes",
        "BARE": "spaced value",
        "EMPTY": "",
        "QUOTED": "q",
        "LAST": "no newline at the end",
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("A='unterminated\n", 1),
        ("A='1'\n\nB='x' trailing junk\n", 3),
        ("A='1'\nnot an assignment\n", 2),
        ("1BAD='x'\n", 1),
        ("A='ok'\nB='multi\nline\nC='never closed\n", 2),
    ],
)
def test_malformed_input_names_the_line(text: str, line: int) -> None:
    with pytest.raises(ValueError, match=f"^line {line}:"):
        parse_env_file(text)


@pytest.mark.timeout(60)  # catastrophic backtracking would run for hours, not seconds
def test_huge_unterminated_value_fails_fast() -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_env_file("A='" + "\\'x" * 500_000)


def test_env_file_rereads_on_change_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    env_file = EnvFile(path)
    assert env_file.load() == {}
    path.write_text(render({"A": "1"}))
    assert env_file.load() == {"A": "1"}
    replacement = tmp_path / ".env.tmp"
    replacement.write_text("A='broken\n")
    os.replace(replacement, path)  # as the daemon's writeFile does: a new inode
    assert env_file.load() == {"A": "1"}
    path.write_text(render({"A": "2", "B": "3"}))
    assert env_file.load() == {"A": "2", "B": "3"}
    path.unlink()
    assert env_file.load() == {}
