"""The ``.env`` format, both ways: the builder (a pure function from env vars, and proxy/CA
settings, to file content) and its exact inverse, the parser the daemon reads it with.

The file is read by python-dotenv (with or without interpolation) and by POSIX sh
(``set -a; . ~/.fleet/.env``), so every value is written in a quoting both read the same way
and in which sh runs nothing: single quotes (sh takes everything literally), or double quotes
for a value with a ``'`` but no ``"``, ``$``, backquote or backslash. A value neither carries
unchanged is refused (``contracts.validation.env_value_quoting``): at ``env.set`` time, and
here, naming the variable, for one stored before the rule. Names are checked, not escaped.

The parser is ours rather than python-dotenv's: the daemon must not depend on a dev-only
package, and values are taken byte for byte, never interpolated. It still reads the
backslash escapes older fleetd versions wrote in single quotes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from contracts.validation import check_env_name, env_value_quoting

HEADER = "# Written by fleetd on every setup push; edits here are overwritten.\n"

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
NO_PROXY_VARS = ("NO_PROXY", "no_proxy")
CA_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
)


def quote(value: str, name: str = "value") -> str:
    """``value`` quoted for the .env; ValueError naming ``name`` if no quoting carries it."""
    mark = env_value_quoting(value)
    if mark is None:
        raise ValueError(
            f"{name}: the value cannot be written to the .env so that python-dotenv and sh read "
            "the same (NUL, carriage return, ${...}, a backslash pair or final backslash, or a "
            'single quote together with one of " $ ` \\); set it again without them'
        )
    return mark + value + mark


def proxy_and_ca_vars(
    *, egress_proxy: str = "", no_proxy: str = "", ca_path: str | None = None
) -> dict[str, str]:
    """The standard variables that point HTTP clients at the egress proxy and the CA bundle."""
    out: dict[str, str] = {}
    if egress_proxy:
        out.update(dict.fromkeys(PROXY_VARS, egress_proxy))
        if no_proxy:
            out.update(dict.fromkeys(NO_PROXY_VARS, no_proxy))
    if ca_path:
        out.update(dict.fromkeys(CA_VARS, ca_path))
    return out


def merge_env(
    platform: Mapping[str, str], instance: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Later scopes win: base (proxy/CA), then platform vars, then instance vars."""
    return {**(base or {}), **platform, **instance}


def render(env: Mapping[str, str]) -> str:
    lines = [HEADER]
    for name, value in env.items():
        check_env_name(name)
        lines.append(f"{name}={quote(value, name)}\n")
    return "".join(lines)


def build_env_file(
    platform: Mapping[str, str],
    instance: Mapping[str, str],
    *,
    egress_proxy: str = "",
    no_proxy: str = "",
    ca_path: str | None = None,
) -> str:
    base = proxy_and_ca_vars(egress_proxy=egress_proxy, no_proxy=no_proxy, ca_path=ca_path)
    return render(merge_env(platform, instance, base))


_ASSIGN = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*")
#: A quoted value: any character but ' and \, or a backslash pair. Possessive (*+) so an
#: unterminated quote fails in linear time instead of backtracking.
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*+)'[ \t]*(?:#[^\n]*)?(?:\n|\Z)", re.DOTALL)
#: A double-quoted value, as render() writes it: nothing inside is special.
_DOUBLE = re.compile(r'"([^"\\$`]*)"[ \t]*(?:#[^\n]*)?(?:\n|\Z)')
_BARE = re.compile(r"([^\n]*)(?:\n|\Z)")
_SKIP = re.compile(r"[ \t]*(?:#[^\n]*)?(?:\n|\Z)")
_UNESCAPE = re.compile(r"\\([\\'])")


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
        elif text.startswith('"', pos):
            quoted = _DOUBLE.match(text, pos)
            if quoted is None:
                raise ValueError(f"line {_line_no(text, pos)}: a double-quoted value fleetd would "
                                 "not have written (unterminated, or with \\, $ or `)")  # fmt: skip
            env[assign.group(1)] = quoted.group(1)
        else:
            quoted = _BARE.match(text, pos)
            assert quoted is not None  # matches anything, even the empty string
            env[assign.group(1)] = quoted.group(1).strip()
        pos = quoted.end()
    return env


def _line_no(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1
