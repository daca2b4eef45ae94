"""What a user reads when the instance's network policy refused a repo's host
(controlplane/policy/egress_rules.py): which rule, decided as the machine's resolver and kernel
decide it, and a command that allows the host while keeping the rest of the policy (the CLI
sets a whole policy)."""

from __future__ import annotations

import pytest

from contracts.gateway.network import EgressPolicy
from controlplane.policy.egress_rules import COMMAND_ENTRIES, policy_refusal, remote_host

IID = "i-0123456789abcdef"


@pytest.mark.parametrize(("url", "at"), [
    ("https://Git.Example.com/org/app.git", ("git.example.com", 443)),
    ("http://git.example.com:8080/app.git", ("git.example.com", 8080)),
    ("ssh://git@git.example.com/org/app.git", ("git.example.com", 22)),
    ("git://10.1.2.3/app.git", ("10.1.2.3", 9418)),
    ("git@github.com:org/app.git", ("github.com", 22)),
    ("https://[2001:db8::1]:444/app.git", ("2001:db8::1", 444)),
    ("/srv/git/app.git", None),
    ("file:///srv/git/app.git", None),
])  # fmt: skip
def test_the_host_and_port_git_connects_to(url: str, at: tuple[str, int] | None) -> None:
    assert remote_host(url) == at


@pytest.mark.parametrize(("policy", "host", "port"), [
    (EgressPolicy(), "github.com", 443),
    (EgressPolicy(), "10.1.2.3", 443),
    (EgressPolicy(default="deny", allow=["github.com"]), "github.com", 443),
    (EgressPolicy(default="deny", allow=["*.example.com:443"]), "git.example.com", 443),
    (EgressPolicy(default="deny", allow=["10.0.0.0/8"]), "10.1.2.3", 22),
    (EgressPolicy(deny=["10.0.0.0/8:22"]), "10.1.2.3", 443),
])  # fmt: skip
def test_what_the_policy_lets_through_is_no_refusal(
    policy: EgressPolicy, host: str, port: int
) -> None:  # fmt: skip
    assert policy_refusal(IID, policy, host, port) is None


def test_a_default_deny_policy_names_itself_and_keeps_its_entries_in_the_command() -> None:
    policy = EgressPolicy(default="deny", allow=["pypi.org", "*.github.com:443"],
                          deny=["10.0.0.0/8"])  # fmt: skip
    assert policy_refusal(IID, policy, "GitHub.com.", 443) == (
        "the instance's network policy refused github.com:443 (its default is deny and no "
        "allow entry names github.com:443); allow it with `fleet instances network "
        f"{IID} --default deny --allow pypi.org --allow '*.github.com:443' --allow github.com "
        "--deny 10.0.0.0/8`"
    )
    only_ssh = EgressPolicy(default="deny", allow=["github.com:22"])
    assert "no allow entry names github.com:443" in (
        policy_refusal(IID, only_ssh, "github.com", 443) or ""
    )


def test_a_deny_entry_is_named_and_left_out_of_the_command() -> None:
    by_name = EgressPolicy(deny=["*.example.com:22", "169.254.0.0/16"])
    assert policy_refusal(IID, by_name, "git.example.com", 443) == (
        "the instance's network policy refused git.example.com:443 (its deny entry "
        f"'*.example.com:22'); allow it with `fleet instances network {IID} "
        "--deny 169.254.0.0/16`"
    )  # a deny domain entry refuses the name on every port, as the resolver does
    by_address = EgressPolicy(deny=["10.0.0.0/8"])
    said = policy_refusal(IID, by_address, "10.1.2.3", 443, done=False) or ""
    assert said.startswith("the instance's network policy refuses 10.1.2.3:443 (its deny entry "
                           "'10.0.0.0/8')")  # fmt: skip
    assert said.endswith(f"`fleet instances network {IID} --reset`")


def test_an_ipv6_destination_is_written_with_brackets() -> None:
    said = policy_refusal(IID, EgressPolicy(default="deny"), "2001:db8::1", 443) or ""
    assert "refused [2001:db8::1]:443" in said
    assert said.endswith(f"`fleet instances network {IID} --default deny --allow 2001:db8::1`")


def test_a_long_policy_is_not_repeated_in_full() -> None:
    allow = [f"host{i}.example" for i in range(COMMAND_ENTRIES + 1)]
    said = policy_refusal(IID, EgressPolicy(default="deny", allow=allow), "github.com", 443)
    assert said is not None
    assert "host0.example" not in said
    assert said.endswith(
        f"`fleet instances network {IID} ...` with --allow github.com and its other entries "
        f"given again (it sets the whole policy; `fleet instances network {IID}` lists them)"
    )
