"""What an instance's machines may reach outside: ``instances.setNetworkPolicy`` and
``instances.getNetworkPolicy``, and the grammar of an egress entry.

A policy is ``{default: allow|deny, allow: [...], deny: [...]}``; deny wins over allow, and
NATS (the platform's way in) is always open. An entry is one of:

- a domain, ``pypi.org`` (that name only), or a wildcard, ``*.github.com`` (its subdomains,
  not ``github.com`` itself), allowed through the platform's DNS;
- an IPv4 or IPv6 address or CIDR, ``10.0.0.0/8``, ``2001:db8::/32``;

each optionally followed by ``:PORT`` or ``:LOW-HIGH`` (TCP and UDP). An IPv6 address or CIDR
with a port is written in brackets: ``[2001:db8::/32]:443``. Without a port an entry covers
every port and protocol.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from contracts.errors import Forbidden, InvalidParams, NotFound
from contracts.gateway.types import InstanceId, InstanceRef, RefreshFailure
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

MAX_ENTRIES = 1000
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class EgressEntry:
    """One parsed entry: ``net`` for an address or CIDR, else ``domain`` (lower case, no
    trailing dot) with ``wildcard`` for ``*.domain``; ``ports`` None: every port."""

    net: Network | None
    domain: str | None
    wildcard: bool
    ports: tuple[int, int] | None

    def matches(self, name: str) -> bool:
        """Whether the DNS name ``name`` (lower case, no trailing dot) is this entry's."""
        if self.domain is None:
            return False
        if self.wildcard:
            return name.endswith("." + self.domain)
        return name == self.domain


@functools.lru_cache(maxsize=8192)
def parse_entry(text: str) -> EgressEntry:
    """The entry ``text`` stands for; ValueError says what is wrong with it. Remembered (an
    entry is immutable): a policy is checked whenever it is decoded, by every call that sets it
    and every read of it for each machine, and parsing a thousand entries costs milliseconds."""
    host, ports = _split_port(text.strip())
    if host.startswith("["):
        raise ValueError("a bracketed address must be followed by :PORT, or written bare")
    try:
        net = ipaddress.ip_network(host, strict=False)
    except ValueError:
        net = None
    if net is not None:
        return EgressEntry(net, None, False, ports)
    wildcard = host.startswith("*.")
    domain = (host[2:] if wildcard else host).lower().removesuffix(".")
    _check_domain(domain)
    return EgressEntry(None, domain, wildcard, ports)


def _split_port(text: str) -> tuple[str, tuple[int, int] | None]:
    if text.startswith("["):  # [v6]:port
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            raise ValueError("expected [IPv6]:PORT")
        inner = text[1:close]
        if ":" not in inner:
            raise ValueError("brackets are for IPv6 addresses only")
        return inner, _ports(text[close + 2 :])
    if text.count(":") > 1:  # bare IPv6: no port (it would be ambiguous)
        return text, None
    host, sep, port = text.partition(":")
    return host, (_ports(port) if sep else None)


def _ports(text: str) -> tuple[int, int]:
    m = _PORTS.fullmatch(text)
    if m is None:
        raise ValueError(f"port {text!r} is not PORT or LOW-HIGH")
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) else low
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range {text!r} is not within 1-65535, low to high")
    return low, high


def _check_domain(domain: str) -> None:
    if not domain or len(domain) > 253:
        raise ValueError("not an address, a CIDR or a domain name")
    labels = domain.split(".")
    bad = next((label for label in labels if not _LABEL.fullmatch(label)), None)
    if bad is not None:
        raise ValueError(f"label {bad!r} is not a DNS label (a wildcard is only `*.` first)")
    if labels[-1].isdigit():
        raise ValueError("not a valid address, and a domain's last label is not a number")


Entries = Annotated[list[str], msgspec.Meta(max_length=MAX_ENTRIES)]


class EgressPolicy(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """Where an instance's machines may connect. The default one allows everything."""

    default: Literal["allow", "deny"] = "allow"
    allow: Entries = msgspec.field(default_factory=list)
    deny: Entries = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for field, entries in (("allow", self.allow), ("deny", self.deny)):
            for i, entry in enumerate(entries):
                try:
                    parse_entry(entry)
                except ValueError as exc:
                    raise ValueError(f"field `{field}[{i}]` {entry!r}: {exc}") from None

    def parsed(self) -> tuple[list[EgressEntry], list[EgressEntry]]:
        """The allow and deny entries, parsed (a stored policy was checked when set)."""
        return [parse_entry(e) for e in self.allow], [parse_entry(e) for e in self.deny]

    def is_open(self) -> bool:
        """Whether it allows everything (nothing to enforce)."""
        return self.default == "allow" and not self.deny


class SetNetworkPolicyParams(Params, kw_only=True):
    instance_id: InstanceId
    egress: EgressPolicy


class NetworkPolicyResult(Result, kw_only=True):
    instance_id: str
    egress: EgressPolicy
    #: Running machines the policy was applied to now, and those that failed (they get it at
    #: their next start).
    machines: int = 0
    failed: list[RefreshFailure] = msgspec.field(default_factory=list)


INSTANCES_SET_NETWORK_POLICY = MethodSpec(
    "instances.setNetworkPolicy",
    SetNetworkPolicyParams,
    NetworkPolicyResult,
    "Set where the instance's machines may connect (egress: default allow|deny, allow and "
    "deny lists of domains, *.wildcards, addresses and CIDRs with optional :PORT or "
    ":LOW-HIGH; deny wins). Applied to its running machines before the answer.",
    (NotFound, Forbidden, InvalidParams),
    scope="admin",
    hand_written=True,
)
INSTANCES_GET_NETWORK_POLICY = MethodSpec(
    "instances.getNetworkPolicy",
    InstanceRef,
    NetworkPolicyResult,
    "Where the instance's machines may connect.",
    (NotFound, Forbidden),
    scope="machines:read",
    reads=True,
    client=ClientMethod("get_network_policy", "instance_id"),
)

NETWORK_METHODS: tuple[AnySpec, ...] = (INSTANCES_SET_NETWORK_POLICY, INSTANCES_GET_NETWORK_POLICY)
