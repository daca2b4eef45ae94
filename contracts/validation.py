"""Input rules shared by the gateway (which rejects bad input) and the setup pusher.

Nothing from a user reaches a shell, but git still parses its argv: a value that looks like an
option (``--upload-pack=...``) or a transport that runs commands (``ext::``) must never reach it.
These checks raise ``ValueError("field `x` ...")`` so that msgspec's ValidationError, and from it
the JSON-RPC -32602 error, names the offending field.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from contracts.daemon.cron import parse_schedule

if TYPE_CHECKING:
    from contracts.daemon.machine_files import CronJob

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_NAME_RE = re.compile(ENV_NAME_PATTERN)

_URL_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: git's scp-like syntax, user@host:path (the user is required here).
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.][A-Za-z0-9.-]*:\S+")
_BAD_REF = re.compile(r"(\.\.|@\{|[\x00-\x20\x7f~^:?*\[\\]|//|/\.|\.lock$|\.lock/|/$|\.$)")
#: Paths under the machine's home that belong to fleetd itself.
RESERVED_DIRS = (".fleet",)


def check_env_name(name: str, field: str = "name") -> None:
    if not ENV_NAME_RE.fullmatch(name):  # fullmatch: `$` alone would let "NAME\n" through
        raise ValueError(f"field `{field}` must match {ENV_NAME_PATTERN}, got {name!r}")


#: What python-dotenv interpolates (by default, in quoted values too) and sh does not.
_DOTENV_INTERPOLATION = re.compile(r"\$\{[^}]*\}")


def env_value_quoting(value: str) -> str | None:
    """How a value is written in the .env so that python-dotenv (with or without
    interpolation, from a file) and POSIX sh (``set -a; . ~/.fleet/.env``) read exactly it
    and nothing runs: ``'`` (single quotes: sh takes everything literally), ``"`` (double
    quotes, for a value with ``'`` but nothing sh or dotenv would expand or unescape), or None
    when no quoting reads the same in both."""
    if (
        "\x00" in value or "\r" in value
    ):  # no environment holds NUL; dotenv's open() turns \r into \n
        return None
    if _DOTENV_INTERPOLATION.search(value):
        return None
    # In single quotes dotenv unescapes \\ and \' (and a final \ escapes the closing quote);
    # sh keeps every backslash. A lone backslash before anything else reads the same.
    if "'" not in value and "\\\\" not in value and not value.endswith("\\"):
        return "'"
    if not any(c in value for c in '"$`\\'):
        return '"'
    return None


def check_env_value(name: str, value: str, field: str = "value") -> None:
    """Refuse a value no .env quoting carries unchanged to both python-dotenv and sh."""
    if env_value_quoting(value) is None:
        raise ValueError(
            f"field `{field}` of {name} cannot be written to the .env so that python-dotenv and "
            "POSIX sh read the same value: it holds NUL, a carriage return or a ${...}, or "
            'both a single quote and one of " $ ` \\, or \\\\ or a final \\'
        )


def check_repo_url(url: str, field: str = "url") -> None:
    """Refuse a URL git could read as an option, a command or a secret, judged on what git
    sees: percent-encoding is decoded before each part is checked."""
    if not url or url.startswith("-") or _has_blank_or_control(url):
        raise ValueError(f"field `{field}` must not be empty, start with '-' or contain spaces")
    if "::" in url.split("/", 1)[0]:
        raise ValueError(f"field `{field}`: git remote-helper transports (x::...) are refused")
    if _SCHEME.match(url):
        _check_scheme_url(url, field)
    elif url.startswith("/"):
        return
    elif _SCP_LIKE.fullmatch(url):
        host, _, path = url.partition(":")
        if host.rpartition("@")[2].startswith("-") or path.startswith("-"):
            raise ValueError(f"field `{field}`: a host or path cannot start with '-'")
    else:
        raise ValueError(
            f"field `{field}` must be an https://, http://, ssh://, git:// or file:// URL, "
            f"user@host:path, or an absolute path"
        )


def _has_blank_or_control(text: str) -> bool:
    return any(c.isspace() or ord(c) < 32 or ord(c) == 0x7F for c in text)


def _check_scheme_url(url: str, field: str) -> None:
    scheme = url.split(":", 1)[0].lower()
    if scheme not in _URL_SCHEMES:
        raise ValueError(f"field `{field}`: the scheme must be one of {', '.join(_URL_SCHEMES)}")
    try:
        parts = urlsplit(url)
        user, password, host = parts.username, parts.password, parts.hostname or ""
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:  # a bad port or IPv6 literal
        raise ValueError(f"field `{field}` is not a valid URL: {exc}") from None
    decoded = [unquote(x) for x in (user or "", password or "", host, parts.path)]
    if any(_has_blank_or_control(x) for x in decoded):
        raise ValueError(f"field `{field}`: encoded blanks or control characters are refused")
    if decoded[0].startswith("-") or decoded[2].startswith("-"):
        # ssh takes `-oProxyCommand=...` as an option (CVE-2017-1000117), encoded or not.
        raise ValueError(f"field `{field}`: a user or host name cannot start with '-'")
    if password is not None or (scheme in ("http", "https") and user is not None):
        raise ValueError(
            f"field `{field}` must not carry credentials (they would end up in .git/config, "
            "logs and `ps`); give them as `token` (`fleet repos add --git-token`), stored "
            "encrypted"
        )
    if scheme == "file" and host not in ("", "localhost"):
        raise ValueError(f"field `{field}`: a file:// URL names no host")


def local_repo_path(url: str) -> str | None:
    """The path on the host of a ``file://`` URL or an absolute path (what git reads there),
    decoded; None for a remote URL. Only an admin may add one (the repos.add handler)."""
    if url.startswith("/"):
        return posixpath.normpath(url)
    if url[:7].lower() == "file://":
        return posixpath.normpath(unquote(urlsplit(url).path) or "/")
    return None


def check_branch(branch: str, field: str = "branch") -> None:
    if not branch or len(branch) > 255 or branch.startswith(("-", "/", ".")) or branch == "HEAD":
        raise ValueError(f"field `{field}` must be a branch name, not {branch!r}")
    if _BAD_REF.search(branch):
        raise ValueError(f"field `{field}` is not a valid git branch name: {branch!r}")


def check_checkout_path(path: str, field: str = "path") -> None:
    """A repo's checkout path: relative to the machine's home, and staying inside it."""
    if not path or path.startswith(("-", "/", "~")) or "\x00" in path or "\\" in path:
        raise ValueError(f"field `{field}` must be a relative path inside the machine's home")
    norm = posixpath.normpath(path)
    if norm == "." or ".." in norm.split("/") or norm != path.rstrip("/"):
        raise ValueError(f"field `{field}` must be a normalized path inside the home: {path!r}")
    if norm.split("/", 1)[0] in RESERVED_DIRS:
        raise ValueError(f"field `{field}`: {norm.split('/', 1)[0]}/ is reserved for fleetd")
    if any(part.lower() == ".git" for part in norm.split("/")):
        # A checkout inside a repository's .git would write its hooks and config.
        raise ValueError(f"field `{field}`: a checkout path cannot be or be inside a .git")


def check_cron_jobs(jobs: Sequence[CronJob], field: str = "jobs") -> None:
    """Every schedule parses and no two jobs share a name (runs are recorded by name)."""
    seen: set[str] = set()
    for i, job in enumerate(jobs):
        try:
            parse_schedule(job.schedule)
        except ValueError as exc:
            raise ValueError(f"field `{field}[{i}].schedule`: {exc}") from None
        if job.name in seen:
            raise ValueError(f"field `{field}[{i}].name`: {job.name!r} is used twice")
        seen.add(job.name)
