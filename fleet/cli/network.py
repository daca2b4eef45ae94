"""`fleet instances network`: where an instance's machines may connect (its egress policy);
`fleet machines egress`: what a machine's policy refused lately (its egress-denied events)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import deque
from typing import TYPE_CHECKING

from contracts.bus.events import MachineEgressDenied
from contracts.bus.subjects import EventKind
from fleet.cli.common import EXIT_FAILED, EXIT_OK, SubAction, command, emit
from fleet.cli.render import table

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(g: SubAction) -> None:
    net = command(g, "network", _network, "show or set where its machines may connect")
    net.add_argument("instance_id")
    net.add_argument("--default", choices=("allow", "deny"),
                     help="what is neither allowed nor denied (default: allow)")  # fmt: skip
    for name in ("allow", "deny"):
        net.add_argument(
            f"--{name}", action="append", metavar="ENTRY",
            help="a domain, *.domain, address or CIDR, optionally :PORT or :LOW-HIGH "
                 "([IPv6]:PORT); repeat it",
        )  # fmt: skip
    net.add_argument("--reset", action="store_true", help="back to allowing everything")


async def _network(c: FleetClient, a: Args) -> int:
    """Without options: the policy. With any: the policy given (what is not given is the
    default: allow everything, no entries)."""
    if a.reset or a.default or a.allow or a.deny:
        r = await c.set_network_policy(
            a.instance_id, default=a.default or "allow", allow=a.allow or [], deny=a.deny or []
        )
    else:
        r = await c.get_network_policy(a.instance_id)
    for f in r.failed:
        print(f"fleet: {f.machine_id}: error {f.code}: {f.message}", file=sys.stderr)

    def human() -> str:
        e = r.egress
        lines = [f"default: {e.default}"]
        lines += [f"allow {x}" for x in e.allow] + [f"deny {x}" for x in e.deny]
        if r.machines:
            lines.append(f"applied to {r.machines - len(r.failed)} of {r.machines} running "
                         "machine(s)")  # fmt: skip
        return "\n".join(lines)

    emit(a, r, human)
    return EXIT_FAILED if r.failed else EXIT_OK


def register_machine(g: SubAction) -> None:
    eg = command(g, "egress", _egress, "what its network policy refused lately")
    eg.add_argument("machine_id")
    eg.add_argument("--last", type=int, default=20, help="how many (default 20)")


async def _egress(c: FleetClient, a: Args) -> int:
    last: deque[MachineEgressDenied] = deque(maxlen=max(1, a.last))
    stream = c.events(a.machine_id, None, [EventKind.EGRESS_DENIED.value], follow=False)
    async with contextlib.aclosing(stream):
        async for _, event in stream:
            if isinstance(event, MachineEgressDenied):
                last.append(event)
    rows = [[e.occurred_at.isoformat(timespec="seconds"), e.name or "-", e.destination or "-",
             str(e.port or "-"), e.reason, str(e.dropped)] for e in last]  # fmt: skip
    return emit(a, list(last), lambda: table(rows, ["AT", "NAME", "DESTINATION", "PORT",
                                                    "REASON", "DROPPED BEFORE"]))  # fmt: skip
