"""The .env against real POSIX shells: ``set -a; . ~/.fleet/.env`` gives every variable exactly
the value python-dotenv (and the daemon) read, and runs nothing, whatever the values.

Issue 13: values survived python-dotenv but not sh (the backslash escapes of single quotes mean
nothing to sh, so ``it's`` ended the quote and the rest of the value ran as commands).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dotenv
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from base.dotenv import parse_env_file, render
from contracts.validation import env_value_quoting

SHELLS = [s for s in ("sh", "dash", "bash") if shutil.which(s)]
#: Characters that matter to sh, dotenv or both, and a few that should not.
HOSTILE = "'\"\\$`(){};&|<>!#*?~=\n\t \x0b\x0c\x1b\x7f\u00e9\u2028\U0001f600aZ9-_./:@%^[]"


def test_the_shells_are_there() -> None:
    assert "sh" in SHELLS
    assert "dash" in SHELLS  # Debian's /bin/sh: the strict one


def source(shell: str, env_file: Path, names: list[str], cwd: Path) -> list[str]:
    """What ``set -a; . env_file`` leaves in each variable, read back NUL-separated."""
    script = 'set -a; . "$1"; printf "%s\\0" ' + " ".join(f'"${n}"' for n in names)
    out = subprocess.run(
        [shell, "-c", script, "sh", str(env_file)],
        capture_output=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin"},
        timeout=10,
        check=False,
    )
    assert out.returncode == 0, (shell, out.stderr.decode(errors="replace"))
    assert out.stderr == b"", out.stderr
    return out.stdout.decode().split("\0")[:-1]


def check_file(env: dict[str, str], tmp: Path) -> None:
    env_file = tmp / ".env"
    env_file.write_text(render(env))
    names = list(env)
    for shell in SHELLS:
        assert source(shell, env_file, names, tmp) == list(env.values()), shell
    for interpolate in (False, True):
        read = dotenv.dotenv_values(env_file, interpolate=interpolate)
        assert dict(read) == env, interpolate
    assert parse_env_file(env_file.read_text()) == env  # the daemon's own reader


PAYLOADS = [
    "'\ntouch PWNED\n#",  # ran `touch PWNED` under the old quoting (\' is no escape to sh)
    "it's",
    "'; touch PWNED; '",
    "it's $(touch PWNED)",
    "`touch PWNED`",
    "$(touch PWNED)",
    "x\ntouch PWNED\n",
    "\\'; touch PWNED; echo \\'",
    '"; touch PWNED; "',
    "'\"'\"'; touch PWNED; '",
    "a\\b\\nc",
    "C:\\path\\to\\file",
    "$HOME ${notbraced $1 $$",
    "-----BEGIN KEY-----\nMIIB+/=\n-----END KEY-----\n",
    "postgres://user:p@ss'word@host/db",
]


@pytest.mark.parametrize("value", PAYLOADS)
def test_hostile_values_source_to_themselves_and_run_nothing(value: str, tmp_path: Path) -> None:
    if env_value_quoting(value) is None:  # no quoting reads the same in both: refused
        with pytest.raises(ValueError, match=r"^VALUE: "):
            render({"VALUE": value})
        return
    check_file({"FIRST": "1", "VALUE": value, "LAST": "2"}, tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / ".env"]  # no PWNED, nothing else created


@pytest.mark.parametrize(
    "value", ["it's $HOME", "it's `id`", 'it\'s "q"', "it's \\", "${HOME}", "a\rb", "a\\\\b", "a\\"]
)
def test_values_no_quoting_carries_are_refused(value: str) -> None:
    assert env_value_quoting(value) is None
    with pytest.raises(ValueError, match=r"^VALUE: "):
        render({"VALUE": value})


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.text(alphabet=HOSTILE, max_size=24), min_size=1, max_size=6))
def test_any_writable_values_source_to_themselves(values: list[str], tmp_path: Path) -> None:
    env = {f"V{i}": v for i, v in enumerate(values) if env_value_quoting(v) is not None}
    assume(env)
    for old in tmp_path.iterdir():
        old.unlink()
    check_file(env, tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / ".env"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=HOSTILE, max_size=32))
def test_every_value_is_written_or_refused_by_name(value: str) -> None:
    if env_value_quoting(value) is None:
        with pytest.raises(ValueError, match=r"^NAME: "):
            render({"NAME": value})
    else:
        assert parse_env_file(render({"NAME": value})) == {"NAME": value}
