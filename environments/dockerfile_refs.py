"""The images a Dockerfile names, read as the engine's builder reads them, so that each can be
held to the images its instance may use before the engine sees it: every ``FROM`` and every
``--from=`` (``COPY``, ``ADD``, ``RUN --mount``) that is not one of the file's own stages.

``${ARG}`` in them is expanded from the file's ``ARG`` lines before its first ``FROM`` and the
build's arguments, as the builder does; a reference that still holds a ``$`` (a variable the
builder would fill from elsewhere) cannot be checked and is refused.
"""

from __future__ import annotations

import re

from contracts.errors import ImageRefused

_DIRECTIVE = re.compile(r"#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::[-+]([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_FROM_FLAG = re.compile(r"(?:^|[\s,])from=([^\s,]+)", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(keyword upper-cased, rest of the line) per instruction, continuation lines joined,
    comments dropped; the escape character from a leading ``# escape=`` directive."""
    lines = text.splitlines()
    escape = "\\"
    for line in lines:
        m = _DIRECTIVE.match(line.strip())
        if m is None:
            break
        escape = m.group(1)
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in [*lines, ""]:
        if raw.strip().startswith("#"):
            continue  # a comment ends no instruction, inside a continued one too
        if raw.rstrip().endswith(escape):
            pending += raw.rstrip()[:-1] + " "
            continue
        whole, pending = (pending + raw).strip(), ""
        if whole:
            keyword, _, rest = whole.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _expand(value: str, args: dict[str, str]) -> str:
    """``value`` with ``$A``, ``${A}``, ``${A:-word}`` and ``${A:+word}`` filled from ``args``;
    a name ``args`` lacks stays as it is."""

    def one(m: re.Match[str]) -> str:
        name, word = m.group(1) or m.group(3), m.group(2)
        if word is None:
            return args.get(name, m.group(0))
        if name not in args:
            return m.group(0)
        minus = m.group(0)[len(name) + 3] == "-"
        return (args[name] or word) if minus else (word if args[name] else "")

    return _VAR.sub(one, value)


def _declared(rest: str, build_args: dict[str, str], outer: dict[str, str]) -> dict[str, str]:
    """The values of one ARG line: the build's argument, else its default, else (a name alone,
    in a stage) the global ARG's value."""
    out = {}
    for decl in rest.split():
        name, eq, default = decl.partition("=")
        value = default.strip("\"'") if eq else outer.get(name, "")
        out[name] = build_args.get(name, value)
    return out


def image_refs(dockerfile: bytes, build_args: dict[str, str]) -> list[str]:
    """The images ``dockerfile`` names (``scratch`` and its own stages left out), in order.
    ImageRefused for one that names a variable the file and ``build_args`` do not give."""
    text = dockerfile.decode("utf-8", errors="replace")
    glob: dict[str, str] = {}
    scope: dict[str, str] | None = None  # a stage's ARGs (None: before the first FROM)
    stages: set[str] = set()
    refs: list[str] = []

    def named(value: str, args: dict[str, str], what: str) -> None:
        ref = _expand(value, args)
        if "$" in ref:
            raise ImageRefused(f"the Dockerfile's {what} {value!r} names a variable the file "
                               "does not give: name the image")  # fmt: skip
        if ref.lower() != "scratch" and ref.lower() not in stages and not ref.isdigit():
            refs.append(ref)

    for keyword, rest in instructions(text):
        if keyword == "ARG":
            if scope is None:
                glob.update(_declared(rest, build_args, {}))
            else:
                scope.update(_declared(rest, build_args, glob))
        elif keyword == "FROM":
            scope = {}
            words = [w for w in rest.split() if not w.startswith("--")]
            if words:
                named(words[0], glob, "FROM")
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
        elif keyword in ("COPY", "ADD", "RUN", "ONBUILD"):
            for flag in (w for w in rest.split() if w.startswith("--")):
                for m in _FROM_FLAG.finditer(flag[2:]):
                    named(m.group(1), scope or {}, "--from")
    return refs
