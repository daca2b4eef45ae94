"""A machine's egress policy in the kernel: an nftables table in the machine's own network
namespace, written by root on the host (``nft -f -`` started in the namespace:
providers/sandbox/namespaces.py). The machine has no ``CAP_NET_ADMIN`` in that namespace (it runs
with none at all), so nothing in it can list, flush or change the table, and a raw socket's
packets pass the same output hook.

The table, ``inet fleet_egress``, has one base chain on the output hook:

1. the machine's own loopback, NATS (``platform`` sets) and IPv6 neighbour discovery pass;
2. a destination in a ``deny`` set is refused, even on a connection already open;
3. packets of connections already open pass; then the ``allow`` sets, then the addresses the
   platform's DNS proxy answered for an allowed name (``dns`` sets, each element with the
   record's TTL as its timeout);
4. under ``default: deny`` everything else is refused (a TCP reset, else ICMP
   admin-prohibited), so a connection fails at once instead of timing out.

Every set is keyed by address and port (``ip daddr . th dport``) with intervals, so a CIDR
with a port range is one element and a policy of a thousand entries is one lookup per set.
A new policy replaces the whole table in one nft transaction (atomic: no packet sees half of
it), or, when few of its elements differ from the policy this host last wrote there, changes
only those, also in one transaction, which the kernel refuses whole unless the table is the one
the change was computed from (``Ruleset.change_from``). Either way the ``dns`` sets start empty
and the DNS proxy fills them again with what the machine learned and still may reach.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import structlog

from contracts.errors import ProviderError
from contracts.gateway.network import EgressEntry, EgressPolicy
from providers.egress.log import LOG_RULE
from providers.sandbox import CLONE_NEWNET, in_namespaces

log = structlog.get_logger(__name__)

TABLE = "fleet_egress"
_TIMEOUT_S = 10.0
_ALL_PORTS = (0, 65535)
Endpoint = tuple[str, int]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressUnavailable(ProviderError):
    """The policy could not be written into the machine's network namespace."""


Box = tuple[int, int, int, int]  # first and last address, first and last port


def _boxes(entries: Iterable[EgressEntry]) -> tuple[list[Box], list[Box]]:
    """The IPv4 and IPv6 (addresses, ports) of the address entries."""
    v4: list[Box] = []
    v6: list[Box] = []
    for e in entries:
        if e.net is None:
            continue
        low, high = e.ports or _ALL_PORTS
        box = (int(e.net.network_address), int(e.net.broadcast_address), low, high)
        (v4 if e.net.version == 4 else v6).append(box)
    return v4, v6


def disjoint(boxes: Iterable[Box]) -> list[Box]:
    """The same (address, port) pairs as ``boxes`` in boxes that do not overlap: the kernel's
    interval sets refuse overlapping elements, and a policy may well list ``10.0.0.0/8`` and
    ``10.1.2.3:443``. CIDRs nest or are apart, so one walk over the nesting (sorted by start,
    widest first: a block's parent is the nearest enclosing one) gives each block the union of
    its own and its enclosing blocks' ports, minus the blocks directly inside it."""
    ports: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for lo, hi, plo, phi in boxes:
        ports.setdefault((lo, hi), []).append((plo, phi))
    blocks = sorted(ports, key=lambda b: (b[0], -b[1]))
    inherited: dict[tuple[int, int], list[tuple[int, int]]] = {}
    children: dict[tuple[int, int], list[tuple[int, int]]] = {b: [] for b in blocks}
    enclosing: list[tuple[int, int]] = []
    for block in blocks:
        while enclosing and enclosing[-1][1] < block[0]:
            enclosing.pop()
        above = inherited[enclosing[-1]] if enclosing else []
        if enclosing:
            children[enclosing[-1]].append(block)
        inherited[block] = _merge(above + ports[block])
        enclosing.append(block)
    return [(a, b, plo, phi) for block in blocks for a, b in _minus(*block, children[block])
            for plo, phi in inherited[block]]  # fmt: skip


def _minus(lo: int, hi: int, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    at = lo
    for hlo, hhi in holes:
        if hlo > at:
            out.append((at, hlo - 1))
        at = hhi + 1
    if at <= hi:
        out.append((at, hi))
    return out


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _elements(boxes: Iterable[Box], version: int) -> list[str]:
    addr = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    out = []
    for lo, hi, plo, phi in disjoint(boxes):
        a = str(addr(lo)) if lo == hi else f"{addr(lo)}-{addr(hi)}"
        out.append(f"{a} . {_port(plo, phi)}")
    return out


def _endpoints(platform: Iterable[Endpoint]) -> tuple[list[Box], list[Box]]:
    v4: list[Box] = []
    v6: list[Box] = []
    for host, port in platform:
        ip = ipaddress.ip_address(host)
        (v4 if ip.version == 4 else v6).append((int(ip), int(ip), port, port))
    return v4, v6


def _port(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _set(name: str, family: str, timeout: bool = False) -> str:
    flags = "interval, timeout" if timeout else "interval"
    return f"  set {name} {{ type {family}_addr . inet_service; flags {flags}; }}\n"


_STATIC = ("platform4", "platform6", "allow4", "allow6", "deny4", "deny6")
_RULES = (
    'oif "lo" accept',
    "ip daddr . th dport @platform4 accept",
    "ip6 daddr . th dport @platform6 accept",
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
    "ip daddr . th dport @deny4 jump refuse",
    "ip6 daddr . th dport @deny6 jump refuse",
    "ct state established,related accept",
    "ip daddr . th dport @allow4 accept",
    "ip6 daddr . th dport @allow6 accept",
    "ip daddr . th dport @dns4 accept",
    "ip6 daddr . th dport @dns6 accept",
)
#: Logged for the host (rate-limited: providers/egress/log.py), then refused at once.
_REFUSE = (LOG_RULE, "meta l4proto tcp reject with tcp reset",
           "reject with icmpx admin-prohibited")  # fmt: skip
#: Under default deny, DNS goes to the platform's resolver only (on the machine's loopback).
_DNS_ELSEWHERE = "meta l4proto { tcp, udp } th dport { 53, 853 } jump refuse"


@dataclass(frozen=True)
class Ruleset:
    """A policy compiled for a machine's table: each static set's elements and the ``out``
    chain's rules. A table made from it carries ``marker``, an empty chain named after its
    content, which a change from it deletes: the change fails, changing nothing, on a table
    made from anything else."""

    fill: Mapping[str, tuple[str, ...]]
    rules: tuple[str, ...]

    @functools.cached_property
    def marker(self) -> str:
        content = repr((sorted(self.fill.items()), self.rules)).encode()
        return f"policy_{hashlib.sha256(content).hexdigest()[:20]}"

    @functools.cached_property
    def script(self) -> str:
        """The nft script that makes this the machine's table whatever it had (its namespace's
        own table only): the old table (made first if missing) goes, the new one comes whole,
        in one transaction."""
        declare = "".join(_set(n, "ipv4" if n.endswith("4") else "ipv6") for n in _STATIC)
        declare += _set("dns4", "ipv4", timeout=True) + _set("dns6", "ipv6", timeout=True)
        return (
            f"table {_T}\ndelete table {_T}\n"
            f"table {_T} {{\n{declare}"
            "  chain out { type filter hook output priority 0; policy accept; }\n"
            f"  chain refuse {{ }}\n  chain {self.marker} {{ }}\n}}\n"
            + _elements_script("add", self.fill)
            + "".join(f"add rule {_T} out {r}\n" for r in self.rules)
            + "".join(f"add rule {_T} refuse {r}\n" for r in _REFUSE)
        )

    def change_from(self, old: Ruleset) -> str | None:
        """The nft script that turns a table made from ``old`` into this one in one
        transaction: the elements that differ, the rules again, the ``dns`` sets emptied (as a
        new table's are); None when a new table is as little work (half its elements change)."""
        gone, new = _elements_minus(old.fill, self.fill), _elements_minus(self.fill, old.fill)
        changed = sum(map(len, gone.values())) + sum(map(len, new.values()))
        if 2 * changed > sum(map(len, self.fill.values())):
            return None
        return (
            f"delete chain {_T} {old.marker}\nadd chain {_T} {self.marker}\n"
            f"flush chain {_T} out\nflush set {_T} dns4\nflush set {_T} dns6\n"
            + _elements_script("delete", gone)  # first: an added element may overlap one gone
            + _elements_script("add", new)
            + "".join(f"add rule {_T} out {r}\n" for r in self.rules)
        )


_T = f"inet {TABLE}"


def _elements_script(verb: str, fill: Mapping[str, tuple[str, ...]]) -> str:
    return "".join(
        f"{verb} element {_T} {n} {{ {', '.join(xs)} }}\n" for n, xs in fill.items() if xs
    )


def _elements_minus(
    a: Mapping[str, tuple[str, ...]], b: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Each set's elements in ``a`` and not in ``b``."""
    out = {}
    for name, xs in a.items():
        there = set(b[name])
        out[name] = tuple(x for x in xs if x not in there)
    return out


def compile_ruleset(policy: EgressPolicy, platform: Sequence[Endpoint]) -> Ruleset:
    """``policy`` for a machine's table; ``platform``: the addresses and ports always open
    (NATS)."""
    allow, deny = policy.parsed()
    boxes = [*_endpoints(platform), *_boxes(allow if policy.default == "deny" else ()),
             *_boxes(deny)]  # fmt: skip
    fill = {name: tuple(_elements(b, 4 if name.endswith("4") else 6))
            for name, b in zip(_STATIC, boxes, strict=True)}  # fmt: skip
    rules = list(_RULES)
    if policy.default == "deny":
        rules.insert(1, _DNS_ELSEWHERE)  # after the loopback (where the resolver is)
        rules.append("jump refuse")
    return Ruleset(fill, tuple(rules))


def ruleset(policy: EgressPolicy, platform: Sequence[Endpoint]) -> str:
    """The nft script that makes ``policy`` the machine's table, whatever it had."""
    return compile_ruleset(policy, platform).script


def learned_script(
    learned: Mapping[IpAddress, tuple[list[tuple[int, int]], float]], now: float
) -> str:
    """The nft script that makes the ``dns`` sets hold exactly ``learned`` (address: its ports
    and when it expires, on the monotonic clock ``now`` is of), in one transaction."""
    t = _T
    lines = [f"flush set {t} dns4", f"flush set {t} dns6"]
    for addr, (ports, until) in learned.items():
        seconds = max(1, round(until - now))
        for lo, hi in _merge(ports):
            lines.append(f"add element {t} dns{addr.version} "
                         f"{{ {addr} . {_port(lo, hi)} timeout {seconds}s }}")  # fmt: skip
    return "\n".join(lines) + "\n"


async def apply(netns_pid: int, script: str, owner: str, executor: Executor | None = None) -> None:
    """Run ``script`` with nft in the network namespace of ``netns_pid`` (a process the
    provider started: the namespace is held by descriptor, not by a path in the machine).
    nft is started by a thread in the namespace (of ``executor``, else the loop's default),
    never by the event loop: starting a process blocks its caller until the child runs, which
    on a loaded host would stall the work of every other machine."""
    await run_nft(netns_pid, partial(nft, script), owner, executor)


async def run_nft(
    netns_pid: int,
    work: Callable[[], subprocess.CompletedProcess[bytes]],
    owner: str,
    executor: Executor | None = None,
) -> None:
    """``work`` (an nft run) in the network namespace of ``netns_pid``, off the event loop;
    EgressUnavailable, naming ``owner``, unless nft loaded its script."""
    loop = asyncio.get_running_loop()
    run = partial(in_namespaces, netns_pid, CLONE_NEWNET, work)
    try:
        done = await loop.run_in_executor(executor, run)
    except OSError as exc:
        raise EgressUnavailable(f"{owner}'s network namespace is gone: {exc}") from None
    except subprocess.TimeoutExpired:
        raise EgressUnavailable(f"nft did not load {owner}'s egress policy in time") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise EgressUnavailable(f"nft refused {owner}'s egress policy: {said[:3]}")
    log.debug("provider.egress_applied", owner=owner)


def nft(script: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=_TIMEOUT_S,
                          check=False)  # fmt: skip
