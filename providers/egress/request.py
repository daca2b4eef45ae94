"""Which request in an intercepted tunnel may carry a secret: the one rule, in one place
(docs/secrets.md).

A secret is added only to a request whose scheme, host and port are the tunnel's (the
``CONNECT``'s, which its upstream's address, TLS name and certificate check were tied to), whose
method is an ordinary one, on a connection the platform identified (the proxy's socket in the
machine's namespace, or the door's pasta lookup). Anything else in the tunnel is refused before
any secret is read: a ``Host`` a shared ingress would route to another site, a ``TRACE`` a
server would echo the headers of, a ``CONNECT`` inside the tunnel, an absolute-form target that
names another authority or plain ``http``.

The tunnel is HTTPS, so a ``Host`` (or an absolute-form target) without a port means 443. Names
compare without regard to case or a trailing dot; an IPv6 address is written in brackets and
compares as an address (``[2001:DB8:0::1]`` is ``[2001:db8::1]``); any other spelling of an
address (``0xc0.0.2.2``) is another host, as is anything with a user, a path or a space in it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

ORDINARY_METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"}
)
HTTPS_PORT: Final = 443
#: A registered name (or an IPv4 address written as one), in lower case.
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


class Inadmissible(Exception):
    """The request may not go through the tunnel with its secrets: the text says why (no secret
    in it)."""


def admitted_target(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], tunnel: tuple[str, int]
) -> bytes:
    """The request's target in origin form (``/path?query``) if it may go through ``tunnel``
    (the ``CONNECT``'s host and port) with the tunnel's secrets; else Inadmissible."""
    if method not in ORDINARY_METHODS:
        raise Inadmissible(f"the method {method[:20]!r} is not one a secret goes with")
    host = [v for k, v in headers if k.lower() == b"host"]
    if len(host) != 1 or not same_authority(host[0].decode("ascii", "replace"), tunnel):
        raise Inadmissible(f"the request's Host is not the tunnel's {_shown(tunnel)}")
    if target.startswith(b"/"):
        return target
    try:
        url = urlsplit(target.decode("ascii", "replace"))
    except ValueError:  # a bracket left open
        url = urlsplit("")
    if url.scheme.lower() != "https" or not same_authority(url.netloc, tunnel):
        raise Inadmissible(f"the request's target is not on the tunnel's https://{_shown(tunnel)}")
    return ((url.path or "/") + (f"?{url.query}" if url.query else "")).encode()


def host_header(tunnel: tuple[str, int]) -> bytes:
    """The ``Host`` a request through ``tunnel`` goes upstream with: the tunnel's authority as
    its ``CONNECT`` named it (no port for 443), whatever spelling of it the machine sent, so
    that an upstream that routes by the text of its ``Host`` routes every admitted request alike."""
    host = f"[{tunnel[0]}]" if ":" in tunnel[0] else tunnel[0]
    return (host if tunnel[1] == HTTPS_PORT else f"{host}:{tunnel[1]}").encode()


def same_authority(text: str, tunnel: tuple[str, int]) -> bool:
    """Whether ``text`` (a ``Host`` header's value, a URL's authority) names the tunnel's host
    and port, 443 when it names none."""
    try:
        host, port = authority(text)
    except ValueError:
        return False
    return port == tunnel[1] and same_host(host, tunnel[0])


def authority(text: str) -> tuple[str, int]:
    """``host[:port]`` as (host, port): a name in lower case without its trailing dot, or an
    address (an IPv6 one without its brackets); 443 when no port is named. ValueError if it is
    no such thing."""
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"no host in {text[:100]!r}")
        host = str(ipaddress.IPv6Address(inside))
    else:
        name, colon, port = text.partition(":")
        if not _NAME.fullmatch(name.lower()):
            raise ValueError(f"no host in {text[:100]!r}")
        host, rest = name.lower().removesuffix("."), colon + port
    if not rest:
        return host, HTTPS_PORT
    port = rest.removeprefix(":")
    if rest[0] != ":" or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"no port in {text[:100]!r}")
    return host, int(port)


def same_host(a: str, b: str) -> bool:
    """Two hosts as ``authority`` or a ``CONNECT`` gives them: equal names (case and a trailing
    dot aside), or equal IPv6 addresses however written."""
    a, b = a.strip("[]").lower().removesuffix("."), b.strip("[]").lower().removesuffix(".")
    if ":" in a and ":" in b:
        try:
            return ipaddress.IPv6Address(a) == ipaddress.IPv6Address(b)
        except ValueError:
            return False
    return a == b


def _shown(tunnel: tuple[str, int]) -> str:
    host = f"[{tunnel[0]}]" if ":" in tunnel[0] else tunnel[0]
    return f"{host}:{tunnel[1]}"
