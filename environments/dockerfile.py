"""A repo's Dockerfile read as the engine's builder reads it: the images it names
(``image_refs``: each is held to the images its instance may use), and what would leave the build
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

import asyncio
import json
import re
from collections.abc import Iterator, Mapping

import aiodocker
import structlog

from contracts.errors import EnvironmentInvalid, EnvironmentRefused, ImageRefused

log = structlog.get_logger(__name__)

#: How long a base image's pull may take before the build is given up as unable to have it.
PULL_TIMEOUT_S = 600.0
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(\S*)\s*$")
#: Any scheme (http, https, git, ssh, ...) or an scp-like git remote (``git@host:path``).
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/]*@[^/]*:|^github\.com/", re.IGNORECASE)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_FROM_FLAG = re.compile(r"(?:^|[\s,])from=([^\s,]+)", re.IGNORECASE)


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
    with the builder's substitution (``image_refs``)."""
    return [ref for keyword, ref in _named(text, args) if keyword == "FROM"]


def image_refs(text: bytes, args: Mapping[str, str]) -> list[str]:
    """Every image the Dockerfile names, in order: each ``FROM`` and each ``--from=``
    (``COPY``, ``ADD``, ``RUN --mount``, ``ONBUILD``) that is not one of its own stages (nor
    ``scratch``, nor a stage's number), substituted as the builder substitutes them: in a FROM
    the ARGs declared before the first FROM, in a stage its own ARGs, ``args`` (the build's
    arguments) over their defaults, an undeclared name empty. ImageRefused for a reference
    that comes out empty (``FROM $NOWHERE``): there is no image to check."""
    return [ref for _keyword, ref in _named(text, args)]


def _named(text: bytes, args: Mapping[str, str]) -> list[tuple[str, str]]:
    glob: dict[str, str] = {}
    scope: dict[str, str] | None = None  # a stage's ARGs (None: before the first FROM)
    stages: set[str] = set()
    out: list[tuple[str, str]] = []

    def named(keyword: str, value: str, known: Mapping[str, str]) -> None:
        ref = expand(value, known)
        if not ref:
            raise ImageRefused(f"the Dockerfile's {keyword} {value!r} names no image: a "
                               "variable the file does not give; name the image")  # fmt: skip
        if ref.lower() != "scratch" and ref.lower() not in stages and not ref.isdigit():
            out.append((keyword, ref))

    for _line, keyword, rest in instructions(text.decode("utf-8", errors="replace")):
        if keyword == "ARG":
            target = glob if scope is None else scope
            target.update(_declared(rest, args, {} if scope is None else glob))
        elif keyword == "FROM":
            scope = {}
            words = [w for w in rest.split() if not w.startswith("--")]
            if words:
                named("FROM", words[0], glob)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
        elif keyword in ("COPY", "ADD", "RUN", "ONBUILD"):
            for flag in (w for w in rest.split() if w.startswith("--")):
                for m in _FROM_FLAG.finditer(flag[2:]):
                    named("--from", m.group(1), scope or {})
    return out


def _declared(rest: str, args: Mapping[str, str], outer: Mapping[str, str]) -> dict[str, str]:
    """The values of one ARG line: the build's argument, else its default, else (a name alone,
    in a stage) the global ARG's value."""
    out = {}
    for decl in rest.split():
        name, eq, default = decl.partition("=")
        value = default.strip("\"'") if eq else outer.get(name, "")
        out[name] = args.get(name, value)
    return out


def expand(value: str, known: Mapping[str, str]) -> str:
    """``value`` with ``$A``, ``${A}``, ``${A:-word}`` and ``${A:+word}`` filled from
    ``known`` as the builder fills them: a name ``known`` lacks is empty."""

    def one(m: re.Match[str]) -> str:
        name, op, word = m.group(1) or m.group(4), m.group(2), m.group(3)
        got = known.get(name, "")
        if op == "-":
            return got or word
        if op == "+":
            return word if got else ""
        return got

    return _VAR.sub(one, value)


async def check_base_images(docker: aiodocker.Docker, refs: list[str]) -> None:
    """Each image a build starts FROM, pulled as the builder would pull it, and its ONBUILD
    triggers (which run in the build) held to ``check_sources``. EnvironmentInvalid for an
    image the engine cannot have."""
    for ref in refs:
        info = await pulled(docker, ref)
        if info is None:
            raise EnvironmentInvalid(f"base image {ref!r} cannot be had")
        config = info.get("Config")
        triggers = config.get("OnBuild") if isinstance(config, dict) else None
        check_sources("\n".join(triggers or []).encode(), f"image {ref}", onbuild=True)


async def pulled(docker: aiodocker.Docker, ref: str) -> dict[str, object] | None:
    """``ref`` as the engine has it (``docker image inspect``), pulled first if it lacks it, as
    a build would pull it (a name with no tag is its ``latest``: the API would pull every tag);
    None if it cannot be had (the pull fails, or takes longer than PULL_TIMEOUT_S)."""
    try:
        return dict(await docker.images.inspect(ref))
    except aiodocker.DockerError as exc:
        if exc.status not in (400, 404):
            raise
    tagged = "@" in ref or ":" in ref.rsplit("/", 1)[-1]
    try:
        await asyncio.wait_for(docker.images.pull(ref if tagged else f"{ref}:latest"),
                               PULL_TIMEOUT_S)  # fmt: skip
        return dict(await docker.images.inspect(ref))
    except (aiodocker.DockerError, TimeoutError) as exc:
        log.info("environment.image_pull_failed", image=ref, error=str(exc))
        return None
