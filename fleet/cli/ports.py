"""`fleet machines ports|forward|tunnel|preview`: reach the ports of a machine.

forward listens on 127.0.0.1 and tunnels each connection it accepts to the machine's port,
through the gateway (one WebSocket per connection); tunnel joins stdin and stdout to the
port, for ssh's ProxyCommand; preview prints a URL that opens the port's preview in a
browser once (its ticket is single-use and short-lived).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.errors import FleetError
from fleet.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    SubAction,
    UsageError,
    command,
    emit,
    error_line,
)
from fleet.cli.stop import ensure_started

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(g: SubAction) -> None:
    ports = command(g, "ports", _ports, "the TCP ports listening in the machine")
    ports.add_argument("machine_id")
    fwd = command(g, "forward", _forward,
                  "forward [LOCAL:]REMOTE: listen on 127.0.0.1:LOCAL, tunnel to REMOTE "
                  "in the machine (LOCAL 0: any free port, printed)")  # fmt: skip
    fwd.add_argument("machine_id")
    fwd.add_argument("spec", metavar="[LOCAL:]REMOTE")
    tun = command(g, "tunnel", _tunnel,
                  "join stdin/stdout to PORT in the machine "
                  "(ssh -o ProxyCommand='fleet machines tunnel %%h 22')")  # fmt: skip
    tun.add_argument("machine_id")
    tun.add_argument("port", type=int)
    pv = command(g, "preview", _preview, "a URL that opens PORT's preview in a browser, once")
    pv.add_argument("machine_id")
    pv.add_argument("port", type=int)


def parse_spec(spec: str) -> tuple[int, int]:
    """``[LOCAL:]REMOTE`` -> (local, remote); local defaults to remote."""
    local, _, remote = spec.rpartition(":")
    try:
        ports = (int(local) if local else int(remote), int(remote))
    except ValueError:
        raise UsageError(f"{spec!r} is not [LOCAL:]REMOTE (two port numbers)") from None
    if not (0 <= ports[0] <= 65535 and 1 <= ports[1] <= 65535):
        raise UsageError(f"{spec!r}: LOCAL must be 0-65535 and REMOTE 1-65535")
    return ports


async def _ports(c: FleetClient, a: Args) -> int:
    found = await c.machine_ports(a.machine_id)

    def human() -> str:
        rows = [f"{p.port:>5}  {p.family}  {p.address:<15}  {p.label or ''}".rstrip()
                for p in found.ports]  # fmt: skip
        rows += [f"{f.port:>5}  -     not listening yet  {f.label or ''}".rstrip()
                 for f in found.forwarded if not f.listening]  # fmt: skip
        head = "PORT   FAMILY  ADDRESS          LABEL"
        return "\n".join([head, *rows]) if rows else "no listening ports"

    return emit(a, found, human)


async def _preview(c: FleetClient, a: Args) -> int:
    from contracts.ports import PREVIEW_TICKET_PARAM  # here: it loads the method specs

    ticket = await c.preview_ticket(a.machine_id, a.port)
    base = "" if ticket.url.startswith(("http://", "https://")) else c.url  # an own origin
    url = f"{base}{ticket.url}?{PREVIEW_TICKET_PARAM}={ticket.ticket}"
    return emit(a, {"url": url, "expiresInS": ticket.expires_in_s}, lambda: url)


async def _forward(c: FleetClient, a: Args) -> int:
    import asyncio

    import structlog

    from fleet.cli import tunnel as t  # here, as in _tunnel: it imports aiohttp, parsing does not

    log = structlog.get_logger(__name__)
    local, remote = parse_spec(a.spec)
    await ensure_started(c, a.machine_id)  # a stopped machine is started first, saying so

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ws = await t.open_tunnel(c, a.machine_id, remote)
        except FleetError as exc:
            print(error_line(exc), file=sys.stderr)
            writer.close()
            return
        try:
            await t.join_socket(ws, reader, writer)
        except (t.TunnelBroken, OSError) as exc:  # one connection broke, not the forward
            log.info("forward.connection_broken", error=str(exc))

    server = await asyncio.start_server(connection, "127.0.0.1", local)
    bound = server.sockets[0].getsockname()[1]
    print(f"forwarding 127.0.0.1:{bound} -> {a.machine_id}:{remote} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)  # fmt: skip
    async with server:
        await server.serve_forever()
    return EXIT_OK


async def _tunnel(c: FleetClient, a: Args) -> int:
    if not 1 <= a.port <= 65535:
        raise UsageError(f"{a.port} is not a TCP port (1-65535)")
    from fleet.cli import tunnel as t

    await ensure_started(c, a.machine_id)
    ws = await t.open_tunnel(c, a.machine_id, a.port)
    try:
        await t.join_stdio(ws)
    except t.TunnelBroken as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def register_ssh_keys(g: SubAction) -> None:
    what = "replace the SSH public keys of the instance's machines (authorized_keys)"
    keys = command(g, "ssh-keys", _ssh_keys, what)
    keys.add_argument("instance_id")
    keys.add_argument("key_files", nargs="*", metavar="KEY_FILE",
                      help="public key files (id_ed25519.pub); none: remove every key")  # fmt: skip


async def _ssh_keys(c: FleetClient, a: Args) -> int:
    keys = []
    for name in a.key_files:
        try:
            text = Path(name).expanduser().read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from None
        keys += [line.strip() for line in text.splitlines() if line.strip()]
    r = await c.set_ssh_keys(a.instance_id, keys)
    for f in r.failed:
        print(f"fleet: {f.machine_id}: error {f.code}: {f.message}", file=sys.stderr)

    def human() -> str:
        done = r.machines - len(r.failed)
        return f"{len(r.keys)} key(s) set; written to {done} of {r.machines} running machine(s)"

    emit(a, r, human)
    return EXIT_FAILED if r.failed else EXIT_OK
