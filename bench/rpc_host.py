"""``python -m bench.rpc_host``: the daemon process of benchmark 1.

It runs ``daemon.server.Daemon`` exactly as ``fleet-daemon`` does (settings from ``FLEET_*``,
logging, home as working directory, one NATS connection), and, on that same connection, a raw
nats-py responder for the baseline: a request to ``bench.raw.<machineId>.<name>`` is answered with
canned bytes, which the client sets beforehand by a request to ``bench.raw.<machineId>.<name>.set``
(the daemon's own answer to the same request); ``bench.raw.<machineId>.writefs`` first does the
same atomic file write as tool.writeFile, with the fewest system calls. So daemon and baselines
are measured between the same two processes, over the same connections; only what happens
inside differs. It imports as ``fleet-daemon`` does (``daemon.lean``: no OpenSSL on nats://,
so the daemon's MACs run on the builtin SHA-256, as on a machine): asyncio, nats-py and the
daemon are imported only after ``lean_imports``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec  # no asyncio, no OpenSSL: daemon.settings imports it before lean_imports too

from daemon.lean import lean_imports
from daemon.settings import DaemonSettings

if TYPE_CHECKING:
    from nats.aio.msg import Msg


def atomic_write(target: Path, data: bytes) -> None:
    tmp = f"{target.parent}/.{target.name}.floor.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, target)


def _content(body: bytes) -> bytes:
    """The request's content, as the daemon gets it (a JSON decode, no validation)."""
    return str(msgspec.json.decode(body)["params"]["content"]).encode()


async def serve(settings: DaemonSettings) -> None:
    import asyncio

    from daemon.compose import compose

    home = settings.home_path
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    canned: dict[str, bytes] = {}

    async def raw(msg: Msg) -> None:
        name = msg.subject.rsplit(".", 1)[1]
        if name == "writefs":  # the floor of tool.writeFile: the same atomic write, no RPC layer
            atomic_write(home / "bench" / "1k.txt", _content(msg.data))
            name = "write"
        await msg.respond(canned[name])

    async def set_canned(msg: Msg) -> None:
        canned[msg.subject.split(".")[-2]] = msg.data
        await msg.respond(b"ok")

    async with compose(settings) as daemon:
        prefix = f"bench.raw.{settings.machine_id}"
        await daemon.nc.subscribe(f"{prefix}.*", cb=raw)
        await daemon.nc.subscribe(f"{prefix}.*.set", cb=set_canned)
        await daemon.nc.flush()
        await stop.wait()


def main() -> None:
    settings = DaemonSettings.from_env()
    lean_imports(settings.nats_url)
    import asyncio

    from base.logs import configure_logging

    configure_logging(settings.env, settings.log_level, service="daemon")
    os.chdir(settings.home_path)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
