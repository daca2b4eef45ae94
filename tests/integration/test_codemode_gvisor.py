"""Codemode runs on gVisor (FLEET_CODEMODE_RUNTIME=gvisor): the whole stack and the codemode
service, each run's runner under a real runsc. What the run answers, the kernel it runs on,
that it has no network and sees nothing of the host, and that nothing of it is left after it.
The bubblewrap sandbox's own tests: test_codemode_sandbox.py."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import msgspec
import pytest

from contracts.gateway.codemode import RunJob, RunResult, new_run_id
from controlplane.settings import Settings
from fleet.client import FleetClient
from services.codemode.engine import Run
from services.codemode.sandbox import Limits
from services.codemode.sandbox_gvisor import Runsc
from tests.integration.test_codemode import codemode, run
from tests.integration.test_codemode_sandbox import Echo, processes_with
from tests.waiters import wait_until

__all__ = ["codemode"]  # the fixture, on this module's settings


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, codemode_runtime="gvisor")


def runsc_left(settings: Settings) -> list[int]:
    """Host processes of codemode's runsc (its CLI, gofer and sandbox)."""
    return processes_with(str(settings.data_path / "codemode-gvisor"))


async def test_a_run_answers_on_gvisors_kernel_with_no_network(
    codemode: FleetClient, stack_settings: Settings, tmp_path: Path
) -> None:
    secret = stack_settings.data_path / f"secret-{uuid.uuid4().hex}.txt"
    secret.write_text("do not read")
    listener = await asyncio.start_server(lambda r, w: w.close(), "0.0.0.0", 0)
    port = listener.sockets[0].getsockname()[1]
    code = (
        "import os, socket, subprocess\n"
        "kernel = subprocess.run(['dmesg'], capture_output=True, text=True).stdout\n"
        "reached = []\n"
        f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(addr, timeout=3)\n"
        "        reached.append(addr)\n"
        "    except OSError:\n"
        "        pass\n"
        "seen = []\n"
        f"for p in [{str(secret)!r}, {str(stack_settings.data_path)!r}, '/etc/passwd']:\n"
        "    try:\n"
        "        seen.append(open(p).read() if os.path.isfile(p) else os.listdir(p))\n"
        "    except OSError:\n"
        "        pass\n"
        "page = await fleet.machines.list()\n"
        "print('listed', flush=True)\n"
        "{'kernel': kernel, 'reached': reached, 'seen': seen, 'uid': os.getuid(),\n"
        " 'links': [n for _, n in socket.if_nameindex()], 'machines': page['machines']}"
    )
    async with listener:
        result = await run(codemode, code, timeout_s=120)
    assert result.status == "ok", result
    assert "Starting gVisor" in result.result["kernel"]
    assert result.result["reached"] == []
    assert result.result["links"] == ["lo"]  # --network=none: gVisor's own loopback, nothing else
    assert result.result["seen"] == []
    assert result.result["uid"] == 65534
    assert result.result["machines"] == []
    assert result.logs == ["listed"]
    await wait_until(lambda: not runsc_left(stack_settings), timeout=30)
    assert not list((stack_settings.data_path / "codemode-gvisor").glob("run-*"))


async def test_a_timeout_ends_the_sandbox_and_leaves_nothing(
    codemode: FleetClient, stack_settings: Settings
) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(600)"
    # The run's time counts from its runner's connection (services/codemode/engine.py): the
    # sandbox is up and its Python running by then, and it prints at once. A timeout is waited
    # out whole: a short one.
    result = await run(codemode, code, timeout_s=4)
    assert result.status == "timeout", result
    assert result.logs == ["up"]
    await wait_until(lambda: not runsc_left(stack_settings), timeout=30)
    assert not list((stack_settings.data_path / "codemode-gvisor").glob("run-*"))


ORPHAN = """
import asyncio, json, sys, time
from pathlib import Path
from services.codemode.sandbox import Limits
from services.codemode.sandbox_gvisor import GvisorSandbox, Runsc

async def main() -> None:
    runsc = Runsc("runsc", "ptrace", Path(sys.argv[1]))
    async with GvisorSandbox(Limits(), runsc) as sb:
        start = {"t": "start", "code": "import time\\nprint('up', flush=True)\\ntime.sleep(600)",
                 "providers": []}
        sb.writer.write(json.dumps(start).encode() + b"\\n")
        print((await sb.proc.stdout.readline()).decode().strip(), flush=True)
        time.sleep(600)  # blocks the loop: the service's process, killed while a run is up

asyncio.run(main())
"""


async def test_a_run_ends_with_the_service_that_ran_it(tmp_path: Path) -> None:
    work = tmp_path / "codemode-gvisor"
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ORPHAN, str(work), stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).parents[2]),
    )  # fmt: skip
    try:
        assert service.stdout is not None
        async with asyncio.timeout(120):
            assert await service.stdout.readline() == b"up\n"
        assert processes_with(str(work))
    finally:
        service.kill()
        await service.wait()
    await wait_until(lambda: not processes_with(str(work)), timeout=30)


async def test_the_limits_hold_on_gvisor(tmp_path: Path) -> None:
    """The run's rlimits, in its OCI spec (memory) and set inside (processes), hold under
    gVisor's kernel as under bubblewrap's."""
    fork_bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    stopped = str(e)\n"
        "[n, stopped]"
    )
    runsc = Runsc("runsc", "ptrace", tmp_path / "codemode-gvisor")

    async def publish(_: object) -> None:
        return None

    async def run_here(code: str, limits: Limits) -> RunResult:
        job = RunJob(run_id=new_run_id(), code=code, timeout_s=120, token_id="t")
        return await Run(job, {"fleet": Echo()}, limits, publish, runsc=runsc).execute()

    forks = await run_here(fork_bomb, Limits(processes=8))
    assert forks.status == "ok", forks
    assert forks.result[0] < 8
    assert "unavailable" in forks.result[1]
    memory = await run_here("x = bytearray(4 * 1024**3)\nlen(x)", Limits(memory_mb=256))
    assert memory.status == "error", memory
    assert "MemoryError" in (memory.error or "")
