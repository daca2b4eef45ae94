"""Read ``~/.fleet/.env``: the exact inverse of ``services.setup_pusher.envfile.render``.

render() writes ``NAME='value'`` lines, ``\\`` and ``'`` escaped inside the single quotes and
everything else (newlines, ``\\r``, ``$``, ``#``) verbatim, so a value may span lines. We parse
it ourselves rather than with python-dotenv: the daemon must not depend on a dev-only package,
and values are taken byte for byte, never interpolated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_ASSIGN = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*")
#: A quoted value: any character but ' and \, or a backslash pair. Possessive (*+) so an
#: unterminated quote fails in linear time instead of backtracking.
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*+)'[ \t]*(?:#[^\n]*)?(?:\n|\Z)", re.DOTALL)
_BARE = re.compile(r"([^\n]*)(?:\n|\Z)")
_SKIP = re.compile(r"[ \t]*(?:#[^\n]*)?(?:\n|\Z)")
_UNESCAPE = re.compile(r"\\([\\'])")

#: (inode, size, mtime_ns): a rename-into-place always changes the inode, an edit in place
#: changes size or mtime.
Signature = tuple[int, int, int] | None


def parse_env_file(text: str) -> dict[str, str]:
    """Raise ValueError naming the line of anything render() would not have written.

    Unquoted values (a human's ``NAME=value``) are accepted too, taken to the end of the line
    with surrounding blanks removed.
    """
    env: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        skipped = _SKIP.match(text, pos)
        if skipped and skipped.end() > pos:
            pos = skipped.end()
            continue
        assign = _ASSIGN.match(text, pos)
        if assign is None:
            raise ValueError(f"line {_line_no(text, pos)}: expected NAME=value")
        pos = assign.end()
        if text.startswith("'", pos):
            quoted = _QUOTED.match(text, pos)
            if quoted is None:
                raise ValueError(
                    f"line {_line_no(text, pos)}: unterminated quote, or text after it"
                )
            env[assign.group(1)] = _UNESCAPE.sub(r"\1", quoted.group(1))
        else:
            quoted = _BARE.match(text, pos)
            assert quoted is not None  # matches anything, even the empty string
            env[assign.group(1)] = quoted.group(1).strip()
        pos = quoted.end()
    return env


def _line_no(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class EnvFile:
    """``~/.fleet/.env``, re-read only when it changed. A file that does not parse is logged
    and the last good contents are used: a bad push must not strip a running dev server of
    its whole environment."""

    path: Path
    _seen: Signature = None
    _values: dict[str, str] = field(default_factory=dict)

    def load(self) -> dict[str, str]:
        sig = signature(self.path)
        if sig == self._seen:
            return dict(self._values)
        self._seen = sig
        try:
            text = self.path.read_text(encoding="utf-8") if sig is not None else ""
            self._values = parse_env_file(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("process.env_invalid", path=str(self.path), error=str(exc))
        return dict(self._values)
