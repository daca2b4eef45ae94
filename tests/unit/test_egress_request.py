"""Which request in an intercepted tunnel may carry a secret (providers/egress/request.py): the
tunnel's scheme, host and port, an ordinary method. On real sockets and a real upstream:
tests/fast/test_egress_proxy.py; on a real machine: tests/integration/test_secrets.py."""

from __future__ import annotations

import pytest

from providers.egress.request import (
    ORDINARY_METHODS,
    Inadmissible,
    admitted_target,
    host_header,
)

API = ("api.corp.example", 443)


def _admit(
    tunnel: tuple[str, int], host: str | None, target: str = "/v1", method: bytes = b"GET"
) -> bytes:
    headers = [] if host is None else [(b"host", host.encode())]
    return admitted_target(method, target.encode(), [(b"accept", b"*/*"), *headers], tunnel)


@pytest.mark.parametrize("method", sorted(ORDINARY_METHODS))
def test_an_ordinary_method_to_the_tunnels_host_goes(method: bytes) -> None:
    assert _admit(API, "api.corp.example", "/v1/chat?x=1", method) == b"/v1/chat?x=1"


@pytest.mark.parametrize("method", [b"TRACE", b"TRACK", b"CONNECT", b"PROPFIND", b"get", b"DEBUG"])
def test_any_other_method_is_refused(method: bytes) -> None:
    with pytest.raises(Inadmissible, match="method"):
        _admit(API, "api.corp.example", "/", method)


@pytest.mark.parametrize(("tunnel", "host"), [
    (API, "api.corp.example"),  # no port: 443, the tunnel's
    (API, "api.corp.example:443"),
    (API, "API.Corp.Example"),
    (API, "api.corp.example."),
    (("api.corp.example.", 443), "api.corp.example"),
    (("api.corp.example", 8443), "api.corp.example:8443"),
    (("192.0.2.2", 8443), "192.0.2.2:8443"),
    (("2001:db8::1", 443), "[2001:db8::1]"),
    (("2001:db8::1", 443), "[2001:DB8:0::1]:443"),
    (("2001:db8::1", 8443), "[2001:db8::1]:8443"),
])  # fmt: skip
def test_a_host_that_is_the_tunnels_however_spelled_goes(
    tunnel: tuple[str, int], host: str
) -> None:
    assert _admit(tunnel, host) == b"/v1"


@pytest.mark.parametrize(("tunnel", "host"), [
    (API, "my-app.corp.example"),
    (API, "attacker.example"),
    (API, "api.corp.example.attacker.example"),
    (API, "corp.example"),
    (API, "api.corp.example:8443"),  # another port of the same name
    (("api.corp.example", 8443), "api.corp.example"),  # 443, not the tunnel's 8443
    (("192.0.2.2", 8443), "192.0.2.2"),
    (("192.0.2.2", 443), "0xc0.0.2.2"),  # another spelling of the address is another host
    (("192.0.2.2", 443), "192.0.2.3"),
    (("2001:db8::1", 443), "2001:db8::1"),  # an IPv6 address without its brackets
    (("2001:db8::1", 443), "[2001:db8::2]"),
    (("2001:db8::1", 443), "[2001:db8::1]:8443"),
    (("2001:db8::1", 443), "[2001:db8::1"),
    (API, "api.corp.example@attacker.example"),
    (API, "attacker.example@api.corp.example"),
    (API, "api.corp.example/x"),
    (API, "api.corp.example:"),
    (API, "api.corp.example:0"),
    (API, "api.corp.example:65979"),
    (API, "api.corp.example:443:80"),
    (API, "api.corp.example:\uff14\uff14\uff13"),  # fullwidth digits
    (API, "api corp.example"),
    (API, ""),
    (API, None),  # no Host at all (HTTP/1.0)
])  # fmt: skip
def test_any_other_host_is_refused(tunnel: tuple[str, int], host: str | None) -> None:
    with pytest.raises(Inadmissible, match="Host"):
        _admit(tunnel, host)


def test_two_hosts_are_refused() -> None:
    headers = [(b"host", b"api.corp.example"), (b"Host", b"attacker.example")]
    with pytest.raises(Inadmissible, match="Host"):
        admitted_target(b"GET", b"/", headers, API)


@pytest.mark.parametrize(("target", "origin"), [
    ("https://api.corp.example/v1?q=1", b"/v1?q=1"),
    ("HTTPS://API.corp.example:443/v1", b"/v1"),
    ("https://api.corp.example", b"/"),
])  # fmt: skip
def test_an_absolute_target_on_the_tunnel_goes_in_origin_form(target: str, origin: bytes) -> None:
    assert _admit(API, "api.corp.example", target) == origin


@pytest.mark.parametrize("target", [
    "https://attacker.example/v1",
    "https://api.corp.example:8443/v1",
    "http://api.corp.example/v1",  # plain http: another scheme than the tunnel's
    "https://user@api.corp.example/v1",
    "https://api.corp.example@attacker.example/v1",
    "https://[2001:db8::1/v1",
    "api.corp.example:443",  # authority form: a CONNECT's
    "*",  # asterisk form
    "v1",
])  # fmt: skip
def test_a_target_on_another_authority_or_scheme_is_refused(target: str) -> None:
    with pytest.raises(Inadmissible, match="target"):
        _admit(API, "api.corp.example", target)


def test_the_upstream_gets_the_tunnels_own_host() -> None:
    assert host_header(API) == b"api.corp.example"
    assert host_header(("api.corp.example", 8443)) == b"api.corp.example:8443"
    assert host_header(("2001:db8::1", 443)) == b"[2001:db8::1]"
    assert host_header(("2001:db8::1", 8443)) == b"[2001:db8::1]:8443"
