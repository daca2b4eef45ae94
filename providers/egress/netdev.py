"""A gvisor machine's egress policy in the kernel (docs/runtimes.md): the same policy as a
namespaces machine's (providers/egress/nftables.py ``compile_ruleset``: its sets), in a ``netdev``
table with an ``egress`` hook on each interface of the machine's network namespace.

gVisor's network stack (``--network=sandbox``) writes whole frames on a packet socket, which
the ``inet`` output hook never sees; a ``netdev`` egress hook sees every frame leaving the
interface, whoever wrote it. The table is written by root on the host in the namespace of the
sandbox's process (as providers/egress/nftables.py ``apply``); nothing of the machine's can reach
the host's kernel to change it (gVisor's own kernel answers its netlink).

What differs from the ``inet`` table: a ``netdev`` hook has no connection tracking, so there
is no "established" rule (nothing answers a connection from outside: a gvisor machine has no
forwarded ports) and a refused packet is dropped, not answered (``reject`` is not allowed on
this hook): a connection not allowed times out. ARP and IPv6 neighbour discovery pass. Names
are not enforced: a gvisor machine resolves through the host's resolvers, not the platform's
DNS proxy, so a policy with a name in it is refused by name (``names``).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping, Sequence
from functools import partial

from contracts.gateway.network import EgressPolicy, parse_entry
from providers.egress.nftables import TABLE, EgressUnavailable, Ruleset, nft, run_nft

_T = f"netdev {TABLE}"
_RULES = (
    "ether type arp accept",
    "ip daddr . th dport @platform4 accept",
    "ip6 daddr . th dport @platform6 accept",
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
    "ip daddr . th dport @deny4 drop",
    "ip6 daddr . th dport @deny6 drop",
    "ip daddr . th dport @allow4 accept",
    "ip6 daddr . th dport @allow6 accept",
)


def names(policy: EgressPolicy) -> list[str]:
    """The entries of ``policy`` that are names and would take effect (allow entries count
    under ``default: deny`` only): what a gvisor machine cannot enforce."""
    allow = policy.allow if policy.default == "deny" else []
    return [e for e in [*allow, *policy.deny] if _is_name(e)]


def _is_name(entry: str) -> bool:
    return parse_entry(entry).net is None


def script(ruleset: Ruleset, deny_by_default: bool, devices: Sequence[str]) -> str:
    """The nft script that makes ``ruleset``'s sets the namespace's ``netdev`` table, with a
    base chain on each of ``devices``, whatever the table had, in one transaction."""
    declare = "".join(
        f"  set {n} {{ type {'ipv4' if n.endswith('4') else 'ipv6'}_addr . inet_service; "
        "flags interval; }\n"
        for n in ruleset.fill  # the static sets of providers/egress/nftables.py, each family
    )
    hooks = "".join(
        f'  chain out_{i} {{ type filter hook egress device "{d}" priority 0; policy accept; }}\n'
        for i, d in enumerate(devices)
    )
    rules = (*_RULES, "drop") if deny_by_default else _RULES
    return (
        f"table {_T}\ndelete table {_T}\n"
        f"table {_T} {{\n{declare}  chain check {{ }}\n{hooks}}}\n"
        + _fill(ruleset.fill)
        + "".join(f"add rule {_T} check {r}\n" for r in rules)
        + "".join(f"add rule {_T} out_{i} jump check\n" for i, _ in enumerate(devices))
    )


def _fill(fill: Mapping[str, tuple[str, ...]]) -> str:
    return "".join(f"add element {_T} {n} {{ {', '.join(xs)} }}\n" for n, xs in fill.items() if xs)


def _devices() -> list[str]:
    """The interfaces of the calling thread's network namespace but its loopback."""
    return sorted(name for _, name in socket.if_nameindex() if name != "lo")


def _load(ruleset: Ruleset, deny_by_default: bool) -> subprocess.CompletedProcess[bytes]:
    devices = _devices()
    if not devices:  # no way out yet: a table with no hook would hold nothing later
        raise EgressUnavailable("the machine's network namespace has no interface to filter")
    return nft(script(ruleset, deny_by_default, devices))


async def apply(netns_pid: int, ruleset: Ruleset, deny_by_default: bool, owner: str) -> None:
    """Write the table in the network namespace of ``netns_pid`` (a process the provider
    started), on the interfaces it has then; as providers/egress/nftables.py ``apply``."""
    await run_nft(netns_pid, partial(_load, ruleset, deny_by_default), owner)
