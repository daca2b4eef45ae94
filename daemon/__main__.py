"""``fleet-daemon``: run the daemon for one machine (settings from FLEET_* variables), or
look after it: ``status``, ``stop``, ``doctor [--clean]``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from base.poolwire import POOL_FD_VAR
from daemon.lean import lean_imports
from daemon.settings import DaemonSettings

if TYPE_CHECKING:
    from daemon.code.kernels import KeptKernels
    from daemon.server import Daemon
    from daemon.supervision.nodump import HeldIdentity

# asyncio, structlog, nats-py and everything importing them are imported in the functions
# below, after lean_imports() (see there): it decides what they load.


async def _run(settings: DaemonSettings, held: HeldIdentity) -> Path | None:
    """Run until asked to stop; returns the code to re-execute into, if any (selfUpdate). A
    resume that brings a new identity (daemon/supervision/nodump.py) is served next, in this
    process."""
    import msgspec
    import structlog

    from daemon.code.kernels import KeptKernels

    kept = KeptKernels()  # what one daemon of this process leaves the next
    while True:
        daemon = await _serve(settings, held, kept)
        if daemon is None or daemon.exit_mode != "identity" or daemon.next_identity is None:
            return daemon.exit_target if daemon and daemon.exit_mode == "exec" else None
        machine_id, token = daemon.next_identity
        settings = msgspec.structs.replace(settings, machine_id=machine_id, machine_token=token)
        os.environ["FLEET_MACHINE_ID"] = machine_id  # what the machine's commands are told
        held.keep_token(token)  # what a selfUpdate hands on
        structlog.contextvars.bind_contextvars(machine_id=machine_id)


async def _serve(settings: DaemonSettings, held: HeldIdentity, kept: KeptKernels) -> Daemon | None:
    """One daemon, until asked to stop; None if it stopped while starting."""
    import asyncio

    import structlog

    from base.lockfile import AlreadyRunning

    log = structlog.get_logger(__name__)

    from daemon.compose import compose

    daemon = compose(settings, held=held, kept=kept)
    main = asyncio.current_task()
    assert main is not None

    def on_signal(name: str) -> None:
        daemon.request_stop(name)
        if not daemon.serving:  # still connecting or reporting ready (NATS away): give up now
            main.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, signal.Signals(sig).name)
    # SIGHUP: the machine's supervisor restarts us in place; our processes stay for the next.
    loop.add_signal_handler(signal.SIGHUP, daemon.request_stop, "SIGHUP: restart", "handover")
    # A pause (SIGUSR1: let the NATS connection go) and its resume (SIGUSR2: back at once).
    loop.add_signal_handler(signal.SIGUSR1, daemon.request_park, True)
    loop.add_signal_handler(signal.SIGUSR2, daemon.request_park, False)
    # Its supervisor starts it with them blocked: one sent meanwhile is taken now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGUSR1, signal.SIGUSR2))
    try:
        async with daemon:
            await daemon.stopped.wait()
    except AlreadyRunning as exc:
        log.warning("daemon.already_running", error=str(exc))
        print(f"fleet-daemon: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    except asyncio.CancelledError:
        log.info("daemon.stopped_while_starting", reason=daemon.stop_reason)
        return None
    log.info("daemon.stopped", reason=daemon.stop_reason, mode=daemon.exit_mode)
    return daemon


def _home(arg: str | None) -> Path:
    return Path(arg or os.environ.get("FLEET_HOME") or os.environ.get("HOME") or Path.home())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet-daemon", description=__doc__)
    parser.add_argument("--home", help="the machine's home (default: $FLEET_HOME, then $HOME)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the daemon (the default)")
    st = sub.add_parser("status", help="show the daemon's state; exit 0 if running, else 3")
    st.add_argument("--json", action="store_true")
    sub.add_parser("stop", help="stop the daemon (control port, then signals)")
    doc = sub.add_parser("doctor", help="list the daemon's processes, flag runaways (exit 1)")
    doc.add_argument("--clean", action="store_true", help="end runaways: SIGTERM, then SIGKILL")
    doc.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command in ("status", "stop", "doctor"):
        from daemon.supervision import commands

        home = _home(args.home)
        if args.command == "status":
            raise SystemExit(commands.status(home, as_json=args.json))
        if args.command == "stop":
            raise SystemExit(commands.stop(home))
        raise SystemExit(commands.doctor(home, clean=args.clean, as_json=args.json))
    run()


def run() -> None:
    import faulthandler

    from daemon.supervision import nodump

    # A crash in native code (a signal such as SIGSEGV) leaves every thread's Python stack in
    # the daemon's log: the supervisor only sees the signal, and no core is dumped.
    faulthandler.enable(all_threads=True)
    nodump.forbid_dumps()  # the loader did it already where there is one (see there)
    held = nodump.HeldIdentity()
    held.take_token()  # from its pipe: never in our environment, nor our children's
    held.take_identity_fd()
    nodump.drop_root_for_daemon()  # a gvisor machine's daemon: its user only once it has it
    if POOL_FD_VAR in os.environ:  # a pooled machine: imports first, then wait to be claimed
        lean_imports(os.environ.get("FLEET_NATS_URL", ""))
        from daemon.supervision.pool import await_identity

        await_identity(os.environ, held)
    token = held.token
    try:
        settings = DaemonSettings.from_env(
            {**os.environ, **({nodump.TOKEN_VAR: token} if token else {})}
        )
    except ValueError as exc:
        print(f"fleet-daemon: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Only for this process: the programs the daemon runs must not inherit fleetd's code path.
    import_path = os.environ.pop("PYTHONPATH", None)
    lean_imports(settings.nats_url)
    import asyncio

    import structlog

    from base.logs import configure_logging

    configure_logging(settings.env, settings.log_level, service="daemon")
    os.chdir(settings.home_path)  # never keep a platform directory busy, never depend on it
    structlog.contextvars.bind_contextvars(machine_id=settings.machine_id)
    from daemon.processes.reaping import reap_without_threads

    reap_without_threads()
    target = asyncio.run(_run(settings, held))
    if target is not None:
        from daemon.supervision import update

        update.exec_in_place(target, held, import_path)


if __name__ == "__main__":
    main()
