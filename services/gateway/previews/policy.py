"""What passes between a browser and a program behind a preview, header by header.

A program in a machine is hostile content: its answers may try to set the platform's cookies
(to break another tenant's preview, or to plant one for the console), to reach past its own
preview with a cookie's ``Domain`` or ``Path``, or to redirect the browser to another site. So:

- the platform's cookies (``PLATFORM_COOKIE_PREFIX``) never reach the program, and a
  ``Set-Cookie`` of one from it is dropped;
- a ``Set-Cookie`` loses its ``Domain`` (a cookie stays its preview host's) and, on a shared
  origin, its ``Path`` is taken under the preview's prefix, as the program's other paths are;
- a ``Location`` (or ``Refresh``) stays on the preview (its origin, and on a shared origin
  its prefix): the program's own ``http://localhost:<port>/...`` becomes the preview's;
  anywhere else is refused (``BadUpstream``);
- a request may carry the preview cookie more than once (a page of another preview of a shared
  parent domain can plant one): each is tried, and only one of the platform's own opens it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

from contracts.errors import BadUpstream
from contracts.ports import PLATFORM_COOKIE_PREFIX, PREVIEW_COOKIE

#: Every answer of a preview, beside the program's own policy: no other origin (the console,
#: another preview) may frame it.
PREVIEW_CSP = "frame-ancestors 'self'"
#: Answer headers that would reach past a path-based preview's own prefix on its shared origin:
#: ``Service-Worker-Allowed: /`` lets the program's service worker take every path of the
#: origin (every other preview) for good; ``Clear-Site-Data`` wipes the whole origin's storage.
_ORIGIN_WIDE = frozenset({b"service-worker-allowed", b"clear-site-data"})
#: Preview cookies tried per request: the platform sets one; more were planted.
MAX_COOKIES_TRIED = 16
_SECURE_PREFIXES = ("__host-", "__secure-")
_QUOTES = "'\""


class View(NamedTuple):
    """Where a request reached a preview: what its answer's headers are judged against."""

    #: ``/`` on an origin of the preview's own, else ``/machines/<id>/ports/<port>/``.
    prefix: str
    #: The program's port: it sees itself as ``localhost:<port>``.
    port: int
    #: The ``Host`` the browser sent (the preview's own, or its shared origin's).
    host: str
    #: The request's path as it came (still percent-encoded).
    path: str


def is_platform_cookie(name: str) -> bool:
    low = name.strip().lower()
    for secure in _SECURE_PREFIXES:
        low = low.removeprefix(secure)
    return low.startswith(PLATFORM_COOKIE_PREFIX)


def _pairs(values: Iterable[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(";") if p.strip()]


def preview_cookies(cookie_headers: Iterable[str]) -> list[str]:
    """Every distinct value of the preview cookie, in the order the browser sent them."""
    out: list[str] = []
    for pair in _pairs(cookie_headers):
        name, _, value = pair.partition("=")
        if name.strip() == PREVIEW_COOKIE and value.strip() not in out:
            out.append(value.strip())
    return out[:MAX_COOKIES_TRIED]


def forwarded_cookie(value: bytes) -> bytes:
    """A ``Cookie`` header without the platform's cookies (b"" when nothing else is left)."""
    pairs = _pairs([value.decode("latin-1")])
    keep = [p for p in pairs if not is_platform_cookie(p.partition("=")[0])]
    return "; ".join(keep).encode("latin-1")


def answer_headers(raw: Iterable[tuple[bytes, bytes]], view: View) -> list[tuple[bytes, bytes]]:
    """The program's answer headers as a browser may get them (names lower-case, as h11's)."""
    out = []
    for name, value in raw:
        if view.prefix != "/" and name in _ORIGIN_WIDE:
            continue
        if name == b"set-cookie":
            kept = set_cookie(value.decode("latin-1"), view.prefix)
            if kept is None:
                continue
            value = kept.encode("latin-1")
        elif name == b"location":
            value = location(value.decode("latin-1"), view).encode("latin-1")
        elif name == b"refresh":  # "5; url=...": a redirect too
            value = _refresh(value.decode("latin-1"), view).encode("latin-1")
        out.append((name, value))
    return out


def set_cookie(value: str, prefix: str) -> str | None:
    """None for one of the platform's cookies; else without ``Domain``, its ``Path`` under
    ``prefix``."""
    pair, *attrs = value.split(";")
    name, eq, rest = pair.partition("=")
    # A cookie with no name goes back to the server as its bare value: "=fleet_x=1" is
    # sent as "fleet_x=1".
    sent_as = name if eq and name.strip() else rest.partition("=")[0] if eq else pair
    if is_platform_cookie(sent_as):
        return None
    kept = [pair]
    for attr in attrs:
        key, _, val = attr.partition("=")
        key = key.strip().lower()
        if key == "domain":
            continue
        if key == "path" and prefix != "/" and val.strip().startswith("/"):
            attr = " Path=" + prefix.rstrip("/") + val.strip()
        kept.append(attr)
    return ";".join(kept)


def location(value: str, view: View) -> str:
    """A redirect's target on the preview itself; BadUpstream for one anywhere else."""
    text = value.strip().replace("\\", "/")  # browsers read "\" as "/" in http(s) URLs
    parts = urlsplit(text)
    if parts.scheme or text.startswith("//"):
        origin = parts.netloc.lower()
        if parts.scheme.lower() not in ("http", "https", ""):
            raise _off_preview(value)
        if origin in (f"localhost:{view.port}", f"127.0.0.1:{view.port}"):
            path = view.prefix.rstrip("/") + (parts.path or "/")  # the program's own view
        elif origin == view.host.lower():
            path = parts.path or "/"
        else:
            raise _off_preview(value)
    elif text.startswith("/"):
        path = view.prefix.rstrip("/") + parts.path
    else:
        base = view.path if not parts.path else view.path.rsplit("/", 1)[0] + "/" + parts.path
        path = base
    resolved = remove_dot_segments(path)
    if not (resolved.startswith(view.prefix) or resolved + "/" == view.prefix):
        raise _off_preview(value)
    return resolved + ("?" + parts.query if parts.query else "") + (
        "#" + parts.fragment if parts.fragment else "")  # fmt: skip


def _refresh(value: str, view: View) -> str:
    delay, sep, target = value.partition(";")
    key, eq, url = target.strip().partition("=")
    if not sep or not eq or key.strip().lower() != "url":
        return delay.strip()  # a reload of the page itself
    target_url = url.strip().strip(_QUOTES)
    return f"{delay.strip()}; url={location(target_url, view)}"


def remove_dot_segments(path: str) -> str:
    """``path`` with ``.`` and ``..`` resolved as a browser does (``%2e`` is a dot too)."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        dots = segment.lower().replace("%2e", ".")
        last = i == len(segments) - 1
        if dots == "..":
            if out:
                out.pop()
        elif dots != ".":
            out.append(segment)
            continue
        if last:
            out.append("")
    return "/" + "/".join(out)


def _off_preview(value: str) -> BadUpstream:
    return BadUpstream(f"the program redirected to {value[:200]!r}, off its preview: a "
                       "preview's redirects stay on its own origin and path")  # fmt: skip
