"""The egress policy's grammar (contracts/gateway/network.py) and its nft ruleset
(providers/egress/nftables.py), pure. That the kernel enforces it:
tests/integration/test_egress.py."""

from __future__ import annotations

import ipaddress

import msgspec
import pytest

from contracts.gateway.network import (
    MAX_ENTRIES,
    EgressPolicy,
    SetNetworkPolicyParams,
    parse_entry,
)
from contracts.rpc.rpc_params import invalid_params
from providers.egress.nftables import disjoint, ruleset

INSTANCE = "i-" + "0" * 16


@pytest.mark.parametrize(
    ("text", "net", "domain", "wildcard", "ports"),
    [
        ("pypi.org", None, "pypi.org", False, None),
        ("PyPI.org.", None, "pypi.org", False, None),
        ("*.github.com:443", None, "github.com", True, (443, 443)),
        ("example.test:8000-8100", None, "example.test", False, (8000, 8100)),
        ("10.0.0.0/8", "10.0.0.0/8", None, False, None),
        ("10.1.2.3/8:22", "10.0.0.0/8", None, False, (22, 22)),
        ("192.0.2.7", "192.0.2.7/32", None, False, None),
        ("2001:db8::/32", "2001:db8::/32", None, False, None),
        ("[2001:db8::1]:443", "2001:db8::1/128", None, False, (443, 443)),
        ("[fd00::/8]:1-1024", "fd00::/8", None, False, (1, 1024)),
    ],
)
def test_an_entry_is_parsed(
    text: str, net: str | None, domain: str | None, wildcard: bool, ports: tuple[int, int] | None
) -> None:
    e = parse_entry(text)
    assert (str(e.net) if e.net else None, e.domain, e.wildcard, e.ports) == (
        net, domain, wildcard, ports,
    )  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["", "exa mple.com", "*.", "a.*.b", "*example.com", "example.com:0", "example.com:70000",
     "example.com:90-80", "example.com:http", "[10.0.0.1]:80", "[2001:db8::1]", "1.2.3.999",
     "10.0.0.0/33", "-bad.com", "a..b", "x" * 64 + ".com", "http://example.com"],
)  # fmt: skip
def test_an_invalid_entry_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_entry(text)
    raw = {"instanceId": INSTANCE, "egress": {"default": "deny", "allow": ["ok.test", text]}}
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.convert(raw, SetNetworkPolicyParams)
    err = invalid_params(raised.value)
    assert err.code == -32602
    assert "allow[1]" in err.message
    assert repr(text) in err.message


def test_a_wildcard_is_for_subdomains_only() -> None:
    e = parse_entry("*.example.test")
    assert e.matches("a.example.test")
    assert e.matches("b.a.example.test")
    assert not e.matches("example.test")
    assert not e.matches("example.test.evil")
    assert not e.matches("aexample.test")
    assert parse_entry("example.test").matches("example.test")
    assert not parse_entry("example.test").matches("a.example.test")


def test_at_most_a_thousand_entries_each() -> None:
    many = [f"10.0.{i // 256}.{i % 256}" for i in range(MAX_ENTRIES + 1)]
    msgspec.convert({"allow": many[:MAX_ENTRIES], "deny": many[:MAX_ENTRIES]}, EgressPolicy)
    with pytest.raises(msgspec.ValidationError, match="length <= 1000"):
        msgspec.convert({"deny": many}, EgressPolicy)


def test_the_default_policy_allows_everything() -> None:
    assert EgressPolicy().is_open()
    assert msgspec.convert({}, EgressPolicy) == EgressPolicy()
    assert not EgressPolicy(deny=["10.0.0.0/8"]).is_open()
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"default": "block"}, EgressPolicy)


def _covers(boxes: list[tuple[int, int, int, int]], addr: int, port: int) -> int:
    return sum(lo <= addr <= hi and plo <= port <= phi for lo, hi, plo, phi in boxes)


def test_overlapping_entries_become_disjoint_elements_covering_the_same() -> None:
    """The kernel's interval sets refuse overlaps; the elements cover exactly the union."""

    def box(cidr: str, lo: int, hi: int) -> tuple[int, int, int, int]:
        n = ipaddress.ip_network(cidr)
        return int(n.network_address), int(n.broadcast_address), lo, hi

    given = [box("10.0.0.0/8", 0, 65535), box("10.1.2.0/24", 80, 90), box("10.1.2.3/32", 22, 22),
             box("10.1.2.3/32", 22, 22), box("10.2.0.0/16", 443, 443),
             box("10.2.3.0/24", 400, 500), box("192.0.2.0/24", 1000, 2000)]  # fmt: skip
    out = disjoint(given)
    probes = [(int(ipaddress.ip_address(a)), p) for a in
              ("10.0.0.1", "10.1.2.3", "10.2.3.4", "10.2.9.9", "192.0.2.5", "192.0.3.1", "9.9.9.9")
              for p in (22, 80, 443, 450, 1500, 3000)]  # fmt: skip
    for addr, port in probes:
        assert _covers(out, addr, port) == min(1, _covers(given, addr, port)), (addr, port)


def test_the_ruleset_denies_first_and_rejects_the_rest_under_deny() -> None:
    policy = EgressPolicy(default="deny", allow=["192.0.2.0/24:8000-8100", "[2001:db8::/32]:443",
                          "pypi.org"], deny=["192.0.2.66"])  # fmt: skip
    text = ruleset(policy, [("172.17.0.1", 4222)])
    assert "add element inet fleet_egress platform4 { 172.17.0.1 . 4222 }" in text
    assert "allow4 { 192.0.2.0/24 . 8000-8100 }" in text.replace(
        "192.0.2.0-192.0.2.255", "192.0.2.0/24"
    )
    assert "allow6 { 2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff . 443 }" in text
    assert "deny4 { 192.0.2.66 . 0-65535 }" in text
    rules = [
        line for line in text.splitlines() if line.startswith("add rule inet fleet_egress out")
    ]
    order = [r.split(" out ", 1)[1] for r in rules]
    assert (
        order.index("ip daddr . th dport @deny4 jump refuse")
        < order.index("ct state established,related accept")
        < order.index("ip daddr . th dport @allow4 accept")
    )
    assert order.index("ip daddr . th dport @platform4 accept") < order.index(
        "ip daddr . th dport @deny4 jump refuse"
    )
    assert order[-1] == "jump refuse"
    # Under allow, allow entries change nothing and nothing else is refused; DNS goes anywhere.
    open_text = ruleset(EgressPolicy(allow=["192.0.2.0/24"], deny=["10.0.0.0/8"]), [])
    assert "add element inet fleet_egress allow4" not in open_text
    assert "add element inet fleet_egress deny4 { 10.0.0.0/8 . 0-65535 }" in open_text.replace(
        "10.0.0.0-10.255.255.255", "10.0.0.0/8"
    )
    assert "out jump refuse" not in open_text
    assert "th dport { 53, 853 } jump refuse" not in open_text
    assert "th dport { 53, 853 } jump refuse" in text


def test_names_are_decided_by_the_domain_entries() -> None:
    from controlplane.policy import NameRules, decide
    from providers.egress.dns import forbidden, host_upstream

    deny = NameRules.of(EgressPolicy(default="deny", allow=["*.example.test:8000-8090",
                        "pypi.org", "10.0.0.0/8"], deny=["bad.example.test"]))  # fmt: skip
    assert decide(deny, "a.example.test") == [(8000, 8090)]
    assert decide(deny, "pypi.org") == [(0, 65535)]
    assert decide(deny, "example.test") is None
    assert decide(deny, "example.test.evil") is None
    assert decide(deny, "bad.example.test") is None  # deny wins
    allow = NameRules.of(EgressPolicy(deny=["*.evil.test"]))
    assert decide(allow, "anything.test") == []
    assert decide(allow, "x.evil.test") is None
    platform = [ipaddress.ip_address("172.18.0.1")]
    for bad in ("127.0.0.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1", "::ffff:127.0.0.1",
                "224.0.0.1", "172.18.0.1"):  # fmt: skip
        assert forbidden(ipaddress.ip_address(bad), platform), bad
    assert not forbidden(ipaddress.ip_address("192.0.2.1"), platform)
    assert host_upstream("10.0.0.2:5353") == ("10.0.0.2", 5353)
    assert host_upstream("[2001:db8::1]:53") == ("2001:db8::1", 53)
    assert host_upstream("2001:db8::1") == ("2001:db8::1", 53)
    assert host_upstream("10.0.0.2") == ("10.0.0.2", 53)
