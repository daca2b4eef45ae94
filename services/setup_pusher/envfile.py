"""The .env builder: a pure function from env vars (and proxy/CA settings) to file content.

Values are single-quoted with ``\\`` and ``'`` escaped, the one dotenv quoting in which every
string (newlines, quotes, ``#``, ``$`` included) round-trips through python-dotenv's parser: a
value can never end its line early and add a variable. Names are checked, not escaped.
Readers should load the file without ``${VAR}`` interpolation to get values byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.validation import check_env_name

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


def quote(value: str) -> str:
    if "\x00" in value:
        raise ValueError("env values cannot contain NUL characters")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
        lines.append(f"{name}={quote(value)}\n")
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
