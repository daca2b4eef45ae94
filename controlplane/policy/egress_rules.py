"""An instance's egress policy as rules: the ports a name may be reached on (``decide``: the
machine's resolver, providers/egress/dns.py, and the egress proxy ask it), and why the policy
refuses a destination, in its user's words, with the command that allows it: what a clone the
policy refused says (the setup pusher) and what repos.add warns of. git in the machine says
only ``Could not resolve host``, ``Connection refused`` or, through the egress proxy,
``CONNECT tunnel failed, response 403``.

The policy's own rules decide, as the machine meets them: a name by the machine's resolver
(``decide``: a deny domain entry, or under ``default: deny`` no allow domain entry for it at
that port), an address by its kernel's rules (a deny entry covers it, or under ``default:
deny`` no allow entry does). Nothing is resolved here: a name the policy lets through may
still reach an address a deny entry covers, which only the connection tells.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from contracts.gateway.network import EgressEntry, EgressPolicy, parse_entry
from contracts.gateway.secrets import entry_covers

#: The most entries a command in a refusal repeats; past it, the words say where they are.
COMMAND_ENTRIES = 8
#: The port git connects to for each scheme a repo's URL may have (contracts/validation.py).
_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}


@dataclass(frozen=True)
class NameRules:
    """What of a policy decides names: its default and its domain entries (parsed once)."""

    default: str
    allow: tuple[EgressEntry, ...]
    deny: tuple[EgressEntry, ...]

    @classmethod
    def of(cls, policy: EgressPolicy) -> NameRules:
        allow, deny = policy.parsed()
        return cls(policy.default, tuple(e for e in allow if e.domain),
                   tuple(e for e in deny if e.domain))  # fmt: skip


def decide(rules: NameRules, name: str) -> list[tuple[int, int]] | None:
    """The ports a name may be reached on (``[]`` under default allow: no set to fill), or
    None if it is refused."""
    if any(e.matches(name) for e in rules.deny):
        return None
    if rules.default == "allow":
        return []
    ports = [e.ports or (0, 65535) for e in rules.allow if e.matches(name)]
    return ports or None


def remote_host(url: str) -> tuple[str, int] | None:
    """The host and port git connects to for a repo's ``url`` (as ``check_repo_url`` allows
    them: a URL, or ``user@host:path`` over ssh); None for a path on the machine."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme is None:
        host = url.partition(":")[0].rpartition("@")[2] if not url.startswith("/") else ""
        return (host, 22) if host and ":" in url else None
    if scheme not in _PORTS:
        return None
    try:
        parts = urlsplit(url)
        return (parts.hostname, parts.port or _PORTS[scheme]) if parts.hostname else None
    except ValueError:
        return None


def policy_refusal(instance_id: str, policy: EgressPolicy, host: str, port: int, *,
                   done: bool = True) -> str | None:  # fmt: skip
    """What refusing ``host:port`` (a name in any case, or an address) is, told to a user:
    which rule refused it (``done``; else refuses it: before any attempt) and how to allow it;
    None if the policy's rules let it through."""
    host = host.strip("[]").lower().removesuffix(".")
    denied = _deny_entry(policy, host, port)
    if denied is None and _lets_through(policy, host, port):
        return None
    at = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    why = (f"its deny entry {denied!r}" if denied is not None
           else f"its default is deny and no allow entry names {at}")  # fmt: skip
    return (f"the instance's network policy {'refused' if done else 'refuses'} {at} ({why}); "
            "allow it with "
            f"{allow_command(instance_id, policy, host, denied)}")  # fmt: skip


def _deny_entry(policy: EgressPolicy, host: str, port: int) -> str | None:
    """The deny entry that refuses ``host:port``: for a name, a domain entry that matches it
    (the resolver refuses the name on every port); for an address, one that covers it."""
    name = not _is_address(host)
    for text in policy.deny:
        entry = parse_entry(text)
        if entry.matches(host) if name else entry_covers(entry, host, port):
            return text
    return None


def _lets_through(policy: EgressPolicy, host: str, port: int) -> bool:
    if not _is_address(host):
        ports = decide(NameRules.of(policy), host)
        return ports is not None and (not ports or any(lo <= port <= hi for lo, hi in ports))
    allow, deny = policy.parsed()
    if any(entry_covers(e, host, port) for e in deny):
        return False
    return policy.default == "allow" or any(entry_covers(e, host, port) for e in allow)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allow_command(instance_id: str, policy: EgressPolicy, host: str, drop: str | None) -> str:
    """The command that sets ``policy`` with ``host`` allowed: without its deny entry
    ``drop``, and under ``default: deny`` with ``host`` among its allow entries. The command
    sets a whole policy, so it gives again every entry the policy keeps (``--reset`` when no
    entry is left under ``default: allow``)."""
    deny = [e for e in policy.deny if e != drop]
    deny_default = policy.default == "deny"
    allow = [*policy.allow, host] if deny_default else list(policy.allow)
    base = f"fleet instances network {instance_id}"
    if not deny_default and not deny and not allow:
        return f"`{base} --reset`"
    if len(allow) + len(deny) > COMMAND_ENTRIES:
        change = [f"--allow {host}"] if deny_default else []
        change += [f"no --deny {drop}"] if drop is not None else []
        return (f"`{base} ...` with {' and '.join(change)} and its other entries given again "
                f"(it sets the whole policy; `{base}` lists them)")  # fmt: skip
    args = ["fleet", "instances", "network", instance_id]
    args += ["--default", "deny"] if deny_default else []
    args += [w for e in allow for w in ("--allow", e)]
    args += [w for e in deny for w in ("--deny", e)]
    return f"`{shlex.join(args)}`"
