"""`fleet instances network`: where an instance's machines may connect (its egress policy)."""

from __future__ import annotations

import argparse
import sys

from fleet.cli_common import EXIT_FAILED, EXIT_OK, SubAction, command, emit
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
