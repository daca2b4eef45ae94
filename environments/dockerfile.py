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
from collections.abc import Iterator, Mapping

import aiodocker

from contracts.errors import EnvironmentInvalid, EnvironmentRefused

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(\S*)\s*$")
#: Any scheme (http, https, git, ssh, ...) or an scp-like git remote (``git@host:path``).
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/]*@[^/]*:|^github\.com/", re.IGNORECASE)
_ARG_REF = re.compile(r"\$\{(\w+)(?::([-+])([^}]*))?\}|\$(\w+)")


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


def base_images(text: bytes, args: Mapping[str, str]) -> list[str]:
    """The images the Dockerfile's stages start FROM (not an earlier stage, not ``scratch``),
    with the builder's substitution: the ARGs declared before the first FROM, ``args`` (the
    build's arguments) over their defaults."""
    known: dict[str, str] = {}
    stages, out, started = {"scratch"}, [], False
    for _line, keyword, rest in instructions(text.decode("utf-8", errors="replace")):
        if keyword == "ARG" and not started:
            for word in rest.split():
                name, eq, default = word.partition("=")
                known[name] = args.get(name, default.strip("\"'") if eq else "")
        elif keyword == "FROM":
            started = True
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                continue
            ref = _ARG_REF.sub(lambda m: _arg(m, known), words[0])
            if ref.lower() not in stages:
                out.append(ref)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
    return out


def _arg(m: re.Match[str], known: Mapping[str, str]) -> str:
    name, op, word, bare = m.groups()
    value = known.get(name or bare, "")
    if op == "-":
        return value or word
    if op == "+":
        return word if value else ""
    return value


async def check_base_images(docker: aiodocker.Docker, refs: list[str]) -> None:
    """Each image a build starts FROM, pulled as the builder would pull it, and its ONBUILD
    triggers (which run in the build) held to ``check_sources``. EnvironmentInvalid for an
    image the engine cannot have."""
    for ref in refs:
        try:
            config = (await docker.images.inspect(ref))["Config"] or {}
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise
            config = await _pulled(docker, ref)
        triggers = "\n".join(config.get("OnBuild") or []).encode()
        check_sources(triggers, f"image {ref}", onbuild=True)


async def _pulled(docker: aiodocker.Docker, ref: str) -> dict[str, object]:
    tagged = "@" in ref or ":" in ref.rsplit("/", 1)[-1]
    try:  # a name with no tag is its ``latest`` (the API would pull every tag)
        await docker.images.pull(ref if tagged else f"{ref}:latest")
        return dict((await docker.images.inspect(ref))["Config"] or {})
    except aiodocker.DockerError as exc:
        raise EnvironmentInvalid(f"base image {ref!r} cannot be had: {exc.message}") from None
