"""`fleet`: run fleetd and drive it from a terminal.

Exit codes (stable; scripts may switch on them; docs/cli.md has the table): 0 ok; 1 the
operation ran and failed (a machine failed or was archived during --wait, a command killed at its
timeout, refresh-env or cron set could not write to a machine); 2 usage; 3 fleetd unreachable;
4 the API answered an error (a wrong token too: error 1001); 5 timed out; 130 interrupted; 141
stdout closed early (`| head`). `machines exec` otherwise exits with the remote command's own
exit code. The commands live in fleet/cli/records.py and fleet/cli/machines.py; tables and the
progress display in render.py.
"""

from __future__ import annotations

import os
import sys

# Only these: `fleet --version` needs no more, and argparse, the parser's module (common.py)
# and pathlib are imported where the parser is built.
from fleet import DEFAULT_URL
from fleet.cli.defaults import (
    COMMANDS,
    EXIT_API,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    METHOD_GROUPS,
    default_token,
    split_remote,
    timed_out_text,
    version_line,
)

TYPE_CHECKING = False  # typing's own costs `fleet --version` a few ms; type checkers know this
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from fleet.cli.common import Parser, SubAction

__all__ = [
    "EXIT_API",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
]


def _parser(*, lazy: bool = False) -> Parser:
    """The whole parser; ``lazy``: the commands' own parsers (defaults.COMMANDS) are built
    when one is given (LazyCommands), which is what running a command needs."""
    from pathlib import Path

    from fleet.cli.common import LazyCommands, Parser, VersionAction

    p = Parser(
        prog="fleet",
        description="fleetd: remote development machines",
        epilog="Any API method: fleet call METHOD (fleet call --help lists them); its groups: "
        + ", ".join(METHOD_GROUPS)
        + ".\nExit codes: 0 ok, 1 failed, 2 usage, 3 unreachable, 4 API error, 5 timed out.",
    )
    p.add_argument(
        "--url",
        default=os.environ.get("FLEET_URL", DEFAULT_URL),
        help="gateway URL (FLEET_URL; default %(default)s)",
    )
    p.add_argument("--token", default=None, help="access token (FLEET_TOKEN)")
    p.add_argument(
        "--version", action=VersionAction, help="print the version and git SHA, and exit"
    )
    p.add_argument("--json", action="store_true", help="print the API's JSON result")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", action=LazyCommands)
    assert isinstance(sub, LazyCommands)
    _up(sub)
    gc = sub.add_parser("gc", help="end and remove what stacks that no longer run left here")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc.add_argument("--data-dir", type=Path, default=None,
                    help="only this data dir's stack (default: every gone stack)")  # fmt: skip
    for name, (module, help) in COMMANDS.items():
        sub.add_later(name, help, module)
    if not lazy:
        sub.build_all()
    return p


def _up(sub: SubAction) -> None:
    from pathlib import Path

    up = sub.add_parser("up", help="run the whole stack on this host")
    up.add_argument("--port", type=int, default=8080,
                    help="the console's and API's port (0: a free port, printed)")  # fmt: skip
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--preview-port", type=int, default=None,
                    help="the previews' listener, an origin apart from the console's "
                    "(default: --port + 1; 0: a free port, printed)")  # fmt: skip
    up.add_argument("--e2b-port", type=int, default=None,
                    help="the listener of E2B's SDKs (default: --port + 2; 0: a free port, "
                    "printed)")  # fmt: skip
    up.add_argument("--data-dir", type=Path, default=Path(".fleet-data"))
    up.add_argument("--nats-url", help="use this NATS (JetStream on) instead of the embedded one")
    up.add_argument("--redis-url", help="use this Redis instead of the embedded valkey "
                    "(credentials in the URL: redis://user:password@host:port/0)")  # fmt: skip
    up.add_argument("--no-sandbox", action="store_true",
                    help="run local machines without bubblewrap: NOT isolated from the host "
                    "(only where bwrap cannot run)")  # fmt: skip
    up.add_argument("--prod", action="store_true", help="JSON logs")
    up.add_argument("--provider", choices=["local", "docker"], default="local",
                    help="machines.create's default provider; docker: builds the machine image "
                    "if missing and puts NATS on the machines' network")  # fmt: skip
    up.add_argument("--runtime", choices=["namespaces", "gvisor"], default=None,
                    help="machines.create's default runtime (FLEET_RUNTIME; docs/runtimes.md); "
                    "gvisor: NATS listens where gVisor's network reaches it")  # fmt: skip
    image = sub.add_parser("image", help="the docker provider's machine image")
    image.add_argument("action", choices=["build"], help="build it if missing (offline too)")
    up.add_argument("--ha", action="store_true",
                    help="3 NATS nodes, valkey with 2 replicas and 3 sentinels, 2 replicas of "
                    "each service (gateways on --port and free ports, printed)")  # fmt: skip
    up.add_argument("--hosts", type=_host_count, default=0, metavar="N",
                    help="N hosts on this machine, each a provisioner with its own host id "
                    "(host-1 ... host-N), data dir and FLEET_HOST_CAPACITY")  # fmt: skip


def _run_up(args: argparse.Namespace) -> int:
    from fleet.up import UpOptions, up

    opts = UpOptions(
        port=args.port,
        preview_port=args.preview_port,
        e2b_port=args.e2b_port,
        host=args.host,
        data_dir=args.data_dir,
        nats_url=args.nats_url,
        redis_url=args.redis_url,
        env="prod" if args.prod else "dev",
        sandbox=not args.no_sandbox,
        provider=args.provider,
        runtime=args.runtime,
        ha=args.ha,
        hosts=args.hosts,
    )
    return up(opts)


def _host_count(text: str) -> int:
    import argparse

    n = int(text) if text.isdigit() else 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hosts from 1 to 64")
    return n


def _run_image_build() -> int:
    from contracts.errors import ProviderError
    from controlplane.settings import Settings
    from fleet.up import prepare_sync

    try:
        prepare_sync(Settings.from_env(), "fleet image")
    except ProviderError as exc:
        print(f"fleet image: {exc}", file=sys.stderr)
        return 1
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    """Everything after the first `--` is a remote command, passed verbatim (argparse would try
    to read options in it)."""
    ours, remote = split_remote(argv)
    args = _parser(lazy=True).parse_args(ours)
    args.argv = remote
    return args


def _run_here(args: argparse.Namespace) -> int:
    """`fleet up`, `fleet image` and `fleet gc`, which run on this host: what stops them is one
    line on stderr, never a traceback (a bad setting names its variable and exits 2, a usage
    error)."""
    from contracts.errors import ProviderError
    from controlplane.settings import SettingsError
    from fleet.up import ServerStartError

    try:
        if args.cmd == "gc":
            from fleet.up import gc

            return gc.main(dry_run=args.dry_run, only=args.data_dir)
        return _run_up(args) if args.cmd == "up" else _run_image_build()
    except SettingsError as exc:
        print(f"fleet {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ServerStartError, ProviderError) as exc:
        print(f"fleet {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:  # what the parser would do first, without building it
        print(version_line())
        raise SystemExit(EXIT_OK)
    if "machines" in argv and (code := _guarded(lambda: _oneshot(argv))) is not None:
        raise SystemExit(code)
    args = parse(argv)
    if args.cmd in ("up", "image", "gc"):
        raise SystemExit(_run_here(args))
    if not args.url.startswith(("http://", "https://")):
        print(f"fleet: --url {args.url!r} is not an http(s):// URL", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    import asyncio  # here: `fleet --help` and `fleet up` do without it

    raise SystemExit(_guarded(lambda: asyncio.run(_run_client(args))))


def _oneshot(argv: list[str]) -> int | None:
    # Only for a command line that names `machines`: the others' start does without it.
    from fleet.cli.oneshot import run

    return run(argv)


def _guarded(command: Callable[[], int | None]) -> int | None:
    """``command``'s exit code, or Ctrl-C's, or a closed stdout's (`fleet events | head`: the
    reader has gone, stop quietly)."""
    try:
        return command()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


async def _run_client(args: argparse.Namespace) -> int:
    # Imported only now: the client (aiohttp) is most of a command's start-up, and parsing
    # (`fleet --help`, a usage error) needs none of it.
    from contracts.errors import FleetError
    from fleet.cli.common import UsageError, error_line
    from fleet.cli.refs import resolve_refs
    from fleet.client import (
        ConnectionFailed,
        EventTooLong,
        FleetClient,
        StreamCut,
        StreamTransport,
    )

    token = args.token or default_token()
    # Not aiohttp's transport: importing it costs more than the rest of a command's start.
    transport = StreamTransport(args.url, token)
    async with FleetClient(args.url, token, transport=transport) as client:
        try:
            await resolve_refs(client, args)
            code: int = await args.func(client, args)
            return code
        except UsageError as exc:
            print(f"fleet: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (ConnectionFailed, StreamCut, EventTooLong) as exc:  # none, or broken midway
            print(f"fleet: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except FleetError as exc:
            print(error_line(exc), file=sys.stderr)
            return EXIT_API
        except TimeoutError:
            print(timed_out_text(args.url), file=sys.stderr)
            return EXIT_TIMEOUT
