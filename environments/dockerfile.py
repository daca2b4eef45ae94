"""A repo's Dockerfile read as the engine's builder reads it, for what would leave the build
network: ``ADD`` of a remote source (a URL, a git remote). The builder fetches such a source
itself, from the host's own network namespace, where ``fleet-builds``' rules never see it (the
host's loopback services, other machines' bridge addresses, a cloud's metadata service); it is
refused before any build. ``ONBUILD ADD`` counts too (it runs in a later build over the image),
and so do an image's own ONBUILD triggers (``check_sources(..., onbuild=True)``).

The reading follows the builder's: parser directives at the top (``# escape=``), line
continuations with the escape character (comment and blank lines inside one skipped),
instructions in any case, flags (``--chmod=...``) before the sources, the JSON form, and the
escape character and quotes removed from a word. A source with a variable (``$U``) is refused
too: its value is known only to the builder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from contracts.errors import EnvironmentRefused

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(\S*)\s*$")
#: Any scheme (http, https, git, ssh, ...) or an scp-like git remote (``git@host:path``).
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/]*@[^/]*:|^github\.com/", re.IGNORECASE)


def check_sources(text: bytes, name: str, *, onbuild: bool = False) -> None:
    """EnvironmentRefused naming ``name`` and the line of each ``ADD`` whose source is remote
    (or a variable) in the Dockerfile ``text``; with ``onbuild``, ``text`` is an image's
    ONBUILD triggers, one per line."""
    bad = []
    for line, keyword, rest in instructions(text.decode("utf-8", errors="replace")):
        if keyword == "ONBUILD":
            keyword, _, rest = rest.strip().partition(" ")
            keyword = keyword.upper()
        if keyword == "ADD" and any(_remote(s) for s in _sources(rest)):
            where = "ONBUILD trigger" if onbuild else f"{name}:{line}"
            bad.append(f"{where}: ADD {' '.join(rest.split())}")
    if bad:
        raise EnvironmentRefused(
            f"{name}: refused (a build fetches nothing itself; download in a RUN step, which "
            f"runs on the build network, or COPY from the repo): {'; '.join(bad)}",
            data={"properties": ["ADD"]},
        )


def instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """Each instruction: its first line's number, its keyword in upper case, the rest of it
    with continuations joined."""
    escape = "\\"
    lines = text.splitlines()
    n = 0
    while n < len(lines) and (m := _DIRECTIVE.match(lines[n])):  # parser directives
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
        n += 1
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(lines[n:], start=n + 1):
        stripped = raw.strip()
        if parts and (not stripped or stripped.startswith("#")):
            continue  # a blank or comment line inside a continuation
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if not parts:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            parts.append(body[: -len(escape)])
            continue
        parts.append(body)
        yield _split(start, " ".join(parts))
        parts = []
    if parts:
        yield _split(start, " ".join(parts))


def _split(line: int, joined: str) -> tuple[int, str, str]:
    keyword, _, rest = joined.strip().partition(" ")
    return line, keyword.upper(), rest


def _sources(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            words = json.loads(rest)
        except ValueError:
            words = None
        if isinstance(words, list):
            return [str(w) for w in words[:-1]] if len(words) > 1 else [str(w) for w in words]
    words = [w for w in rest.split() if not w.startswith("--")]
    return words[:-1] if len(words) > 1 else words


def _remote(source: str) -> bool:
    """Whether the builder could read ``source`` as something to fetch (or cannot tell)."""
    word = re.sub(r"[\"'\\`]", "", source)  # quotes and escapes go before the builder looks
    return "$" in word or bool(_REMOTE.search(word))
