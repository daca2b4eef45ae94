"""A gvisor machine's egress table (providers/egress/netdev.py), pure. That the kernel holds it
against a real runsc sandbox: tests/integration/test_gvisor_egress.py."""

from __future__ import annotations

from contracts.gateway.network import EgressPolicy
from providers.egress.netdev import names, script
from providers.egress.nftables import compile_ruleset

PLATFORM = [("172.17.0.1", 4222)]


def test_names_that_take_effect_are_the_ones_a_gvisor_machine_refuses() -> None:
    assert names(EgressPolicy(default="deny", allow=["10.0.0.0/8", "pypi.org:443"])) == [
        "pypi.org:443"
    ]
    # Under default allow an allow entry changes nothing; a denied name would.
    assert names(EgressPolicy(allow=["pypi.org"])) == []
    assert names(EgressPolicy(deny=["*.evil.test", "192.0.2.1"])) == ["*.evil.test"]


def test_each_interface_gets_a_hook_and_default_deny_drops_the_rest() -> None:
    policy = EgressPolicy(default="deny", allow=["192.0.2.0/24:443"], deny=["192.0.2.9"])
    got = script(compile_ruleset(policy, PLATFORM), True, ["eth0", "tap1"])
    assert 'type filter hook egress device "eth0"' in got
    assert 'type filter hook egress device "tap1"' in got
    assert "add element netdev fleet_egress platform4 { 172.17.0.1 . 4222 }" in got
    assert "192.0.2.9 . 0-65535" in got  # in the deny set, before the allow set's rule
    rules = [line for line in got.splitlines() if line.startswith("add rule netdev")]
    assert rules.index("add rule netdev fleet_egress check ip daddr . th dport @deny4 drop") < (
        rules.index("add rule netdev fleet_egress check ip daddr . th dport @allow4 accept")
    )
    assert "add rule netdev fleet_egress check drop" in rules
    assert "ct state" not in got  # no connection tracking on this hook


def test_default_allow_drops_only_the_denied() -> None:
    got = script(compile_ruleset(EgressPolicy(deny=["198.51.100.0/24"]), PLATFORM), False, ["e"])
    assert "add rule netdev fleet_egress check drop" not in got
    assert "add rule netdev fleet_egress check ip daddr . th dport @deny4 drop" in got
