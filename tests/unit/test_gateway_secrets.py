"""``contracts/gateway/secrets.py``: what a secret may name and be sent as, and which
``CONNECT`` targets its hosts cover (the egress proxy adds it to those and no others)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts.gateway.secrets import (
    DEFAULT_FORMAT,
    DEFAULT_HEADER,
    SetSecretParams,
    covers,
    placeholder,
)

INSTANCE = "i-0000000000000001"


def params(**extra: Any) -> SetSecretParams:
    body = {"instanceId": INSTANCE, "name": "API_KEY", "value": "v", "hosts": ["api.example.com"],
            **extra}  # fmt: skip
    return msgspec.convert(body, SetSecretParams)


def refusal(**extra: Any) -> str:
    with pytest.raises(msgspec.ValidationError) as refused:
        params(**extra)
    return str(refused.value)


def test_defaults_send_a_bearer_authorization() -> None:
    p = params(value="sk-1")
    assert (p.header, p.format) == (DEFAULT_HEADER, DEFAULT_FORMAT)
    assert p.header_value() == "Bearer sk-1"
    assert params(value="sk-1", header="X-Api-Key", format="{value}").header_value() == "sk-1"
    assert placeholder("API_KEY") == "fleet-secret-API_KEY"


@pytest.mark.parametrize(
    "hosts",
    [["10.0.0.0/8"], ["2001:db8::/64"], ["https://api.example.com"], ["api.example.com/v1"],
     ["api.example.com:0"], ["api.example.com:443-80"], ["[10.0.0.1]:443"], [""], []],
)  # fmt: skip
def test_hosts_that_name_no_connect_target_are_refused(hosts: list[str]) -> None:
    assert "hosts" in refusal(hosts=hosts)


@pytest.mark.parametrize(
    "header", ["Host", "content-length", "Proxy-Authorization", "Transfer-Encoding",
               "X Key", "X-Key\r\nX-Other", "X:Y", ""],
)  # fmt: skip
def test_headers_that_frame_the_request_or_break_the_line_are_refused(header: str) -> None:
    assert "header" in refusal(header=header)


@pytest.mark.parametrize(
    "fmt", ["Bearer", "{value} {value}", "Bearer {value}\r\nX-Injected: 1", "{name} {value}",
            "Bearer {VALUE}", "token {value}\x00"],
)  # fmt: skip
def test_a_format_holds_value_once_and_nothing_that_breaks_the_line(fmt: str) -> None:
    assert "format" in refusal(format=fmt)


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "é", ""])
def test_a_value_is_printable_ascii_on_one_line(value: str) -> None:
    assert "value" in refusal(value=value)


def test_a_name_is_a_variable_name() -> None:
    assert "name" in refusal(name="NOT A NAME")
    assert "name" in refusal(name="A=B")


def test_an_exact_name_covers_itself_at_any_port_and_nothing_else() -> None:
    hosts = ["api.example.com"]
    assert covers(hosts, "api.example.com", 443)
    assert covers(hosts, "API.Example.com.", 8443)
    assert not covers(hosts, "sub.api.example.com", 443)
    assert not covers(hosts, "api.example.com.evil.test", 443)
    assert not covers(hosts, "example.com", 443)


def test_a_wildcard_covers_subdomains_not_its_apex() -> None:
    hosts = ["*.github.com"]
    assert covers(hosts, "api.github.com", 443)
    assert covers(hosts, "a.b.github.com", 443)
    assert not covers(hosts, "github.com", 443)
    assert not covers(hosts, "evilgithub.com", 443)


def test_ports_and_port_ranges_narrow_an_entry() -> None:
    assert covers(["api.example.com:443"], "api.example.com", 443)
    assert not covers(["api.example.com:443"], "api.example.com", 8443)
    assert covers(["api.example.com:8000-8100"], "api.example.com", 8080)
    assert not covers(["api.example.com:8000-8100"], "api.example.com", 8101)


def test_addresses_cover_that_address_only() -> None:
    assert covers(["10.1.2.3"], "10.1.2.3", 443)
    assert not covers(["10.1.2.3"], "10.1.2.4", 443)
    assert not covers(["10.1.2.3"], "ten.example", 443)
    v6 = ["[2001:db8::1]:8443"]
    assert covers(v6, "[2001:db8::1]", 8443)
    assert covers(v6, "2001:db8:0::1", 8443)
    assert not covers(v6, "2001:db8::1", 443)
    assert not covers(v6, "2001:db8::2", 8443)
    assert covers(["2001:db8::1"], "2001:db8::1", 443)
