"""Benchmark 36: E2B's own Python SDKs through fleetd's E2B front against fleetd's Python client
doing the same, in the same run.

On the embedded stack with local machines (``FLEET_E2B_RUNTIME=namespaces``, the runtime of the
client's machines too), the SDKs unmodified (``e2b``, ``e2b-code-interpreter``, in
``.venv/peers``) in a process of their own with the variables ``fleet up``'s banner prints,
each call timed inside that process; its batches alternate with the client's, so that a change
of the host's load falls on both:

- **create and kill**: ``Sandbox.create()`` then ``sandbox.kill()``, against
  ``instances.create``, ``machines.create``, the machine ``ready`` (``wait_ready``, driven by its
  events) and ``machines.archive``. Target: median at most 1.3x.
- **warm code**: ``run_code("1+1")`` of the code interpreter's SDK in a sandbox whose kernel has
  started, against ``machines.code.run`` of ``1+1`` in that same machine. Target: p50 at most
  1.3x.
- **a command**: ``sandbox.commands.run("true")`` (a session on pipes: open, attach, its end,
  close), against ``machines.exec`` of what the SDK sends (``/bin/bash -l -c true``) in that
  same machine. Target: p50 at most 1.5x.
- **1 MiB file**: ``sandbox.files.write`` then ``files.read`` of 1 MiB of random bytes, against
  ``FleetClient.upload`` then ``download`` of the same bytes in the same machine: fleetd's
  streamed transfers, the ones the front's envd file routes use (``machines.writeFile`` and
  ``readFile`` carry one NATS message, and 1 MiB is over what one holds). Target: p50 at most
  1.5x.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from bench.common import REPO, Figure, Report, percentile, temp_dir
from bench.stack import ADMIN_TOKEN, FleetUp, servers
from fleet.client import FleetClient

#: The peers' venv beside this interpreter's (``./run``'s ``.venv/peers``).
PEERS_PYTHON = Path(sys.executable).parent.parent / "peers" / "bin" / "python"
MiB = 1024 * 1024
#: Calls per batch: each side's batches alternate.
BATCH = 10
#: The SDK's side: one command a line on stdin (``create N``, ``code N``, ``files N``), each
#: answered with one JSON line of the calls' seconds, timed here, in the SDK's process.
SDK_SIDE = r"""
import json, os, sys, time
from e2b import Sandbox
from e2b_code_interpreter import Sandbox as CodeSandbox

data = os.urandom(1024 * 1024)
sbx = CodeSandbox.create(timeout=3600)
sbx.run_code("1+1")  # its kernel started
print(json.dumps({"sandboxId": sbx.sandbox_id}), flush=True)
for line in sys.stdin:
    what, n = line.split()
    out = []
    for i in range(int(n)):
        t0 = time.perf_counter()
        if what == "create":
            Sandbox.create().kill()
        elif what == "code":
            got = sbx.run_code("1+1")
            assert got.error is None and got.text == "2", got
        elif what == "command":
            assert sbx.commands.run("true").exit_code == 0
        else:
            sbx.files.write(f"bench/sdk-{i}.bin", data)
            assert sbx.files.read(f"bench/sdk-{i}.bin", format="bytes") == data
        out.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": out}), flush=True)
sbx.kill()
"""


class SdkAnswer(msgspec.Struct, rename="camel"):
    seconds: list[float] = []
    sandbox_id: str = ""


def e2b_env(banner: str) -> dict[str, str]:
    """The E2B_* variables of ``fleet up``'s banner, as a user exports them."""
    line = re.search(r"^  e2b +(.*?)   \(", banner, re.M)
    if line is None:
        raise RuntimeError("fleet up printed no e2b line")
    return dict(word.split("=", 1) for word in line[1].split())


class SdkSide:
    """The SDK's process for the run, driven a command at a time."""

    def __init__(self, proc: asyncio.subprocess.Process, sandbox_id: str) -> None:
        self.proc = proc
        self.sandbox_id = sandbox_id

    @classmethod
    async def start(cls, env: dict[str, str]) -> SdkSide:
        proc = await asyncio.create_subprocess_exec(
            str(PEERS_PYTHON), "-c", SDK_SIDE, env={**os.environ, **env}, cwd=REPO,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        side = cls(proc, "")
        side.sandbox_id = (await side._answer("start")).sandbox_id
        return side

    async def ask(self, command: str) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        return (await self._answer(command)).seconds

    async def _answer(self, command: str) -> SdkAnswer:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 600)
        if not line:
            raise RuntimeError(f"the SDK's side exited {await self.proc.wait()} on {command!r}")
        return msgspec.json.decode(line, type=SdkAnswer)

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 120)


async def _client_creates(client: FleetClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        instance = await client.create_instance("bench-e2b")
        machine = await client.create_machine(instance.id)
        await client.machine(machine.id).wait_ready(120)
        await client.archive_machine(machine.id)
        out.append(time.perf_counter() - t0)
    return out


async def _client_codes(client: FleetClient, mid: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = await client.machines_code_run(mid, "1+1")
        out.append(time.perf_counter() - t0)
        assert got.error is None, got.error
        assert got.results[0]["text/plain"] == "2", got
    return out


async def _client_commands(client: FleetClient, mid: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        done = await client.exec(mid, ["/bin/bash", "-l", "-c", "true"])
        out.append(time.perf_counter() - t0)
        assert done.exit_code == 0, done
    return out


async def _client_files(client: FleetClient, mid: str, local: Path, n: int) -> list[float]:
    out, back = [], local.with_name("back.bin")
    for i in range(n):
        t0 = time.perf_counter()
        await client.upload(mid, local, f"bench/client-{i}.bin")
        await client.download(mid, f"bench/client-{i}.bin", back)
        out.append(time.perf_counter() - t0)
    assert back.read_bytes() == local.read_bytes()
    return out


async def _alternate(sdk: SdkSide, command: str, ours: Callable[[int], Awaitable[list[float]]],
                     n: int, batch: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """``n`` calls each way in alternating batches, one call of each first to warm both."""
    await sdk.ask(f"{command} 1")
    await ours(1)
    theirs_s: list[float] = []
    ours_s: list[float] = []
    for _ in range(max(1, n // batch)):
        theirs_s += await sdk.ask(f"{command} {batch}")
        ours_s += await ours(batch)
    return theirs_s, ours_s


def _add(report: Report, name: str, sdk: list[float], base: list[float], base_name: str,
         goal: float) -> None:  # fmt: skip
    p50, b50 = percentile(sdk, 50), percentile(base, 50)
    report.add(Figure("36", f"{name} p50 (of {len(sdk)})", p50, "s", b50, f"{base_name} p50",
                      f"<= {goal}x", p50 <= goal * b50))  # fmt: skip
    report.add(Figure("36", f"{name} p95", percentile(sdk, 95), "s", percentile(base, 95),
                      f"{base_name} p95"))  # fmt: skip


async def run(report: Report, quick: bool) -> None:
    if not PEERS_PYTHON.exists():
        raise SystemExit("benchmark 36 needs E2B's SDKs in .venv/peers (./run test installs them)")
    creates, codes, files = (4, 30, 10) if quick else (12, 100, 30)
    commands = codes // 2
    print(
        f"[36] E2B's Python SDKs through the E2B front vs fleetd's client: {creates} creates, "
        f"{codes} warm run_code, {commands} commands, {files} 1 MiB write+read each way, "
        "namespaces machines"
    )
    with (
        temp_dir() as root,
        servers(root) as (ns, valkey),
        FleetUp(root, ns.url, valkey.url, {"FLEET_E2B_RUNTIME": "namespaces"}) as up,
    ):
        local = root / "file.bin"
        local.write_bytes(os.urandom(MiB))
        sdk = await SdkSide.start(e2b_env(up.log.read_text()))
        try:
            async with FleetClient(up.url, ADMIN_TOKEN) as client:
                mid = sdk.sandbox_id

                async def codes_(k: int) -> list[float]:
                    return await _client_codes(client, mid, k)

                async def commands_(k: int) -> list[float]:
                    return await _client_commands(client, mid, k)

                async def files_(k: int) -> list[float]:
                    return await _client_files(client, mid, local, k)

                async def creates_(k: int) -> list[float]:
                    return await _client_creates(client, k)

                theirs, ours = await _alternate(sdk, "code", codes_, codes, BATCH)
                _add(report, "run_code 1+1, warm sandbox", theirs, ours, "code.run", 1.3)
                theirs, ours = await _alternate(sdk, "command", commands_, commands, BATCH)
                _add(report, "commands.run true", theirs, ours, "exec", 1.5)
                theirs, ours = await _alternate(sdk, "files", files_, files, 5)
                _add(report, "files.write+read 1 MiB", theirs, ours, "upload+download", 1.5)
                theirs, ours = await _alternate(sdk, "create", creates_, creates, 2)
                _add(report, "Sandbox.create()+kill()", theirs, ours, "create+ready+archive",
                     1.3)  # fmt: skip
        finally:
            await sdk.close()
