"""The codemode sandbox and a run's engine, with a real bubblewrap sandbox and no bus.

Each escape test is what hostile code would try; each must fail inside the sandbox. The
providers here are plain objects: the gateway-backed ones are tested in test_codemode.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import NotFound
from contracts.gateway.codemode import RunEvent, RunJob, RunLog, RunResult, new_run_id
from services.codemode.engine import Run, ToolProvider
from services.codemode.sandbox import Limits
from tests.syscall_probe import DENIED, PROBE
from tests.waiters import wait_until

SECRET = f"tok-{uuid.uuid4().hex}"


class Echo:
    name = "fleet"

    async def call(self, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if path == "missing":
            raise NotFound("no such thing")
        return {"path": path, "args": args, "kwargs": kwargs}

    async def describe(self) -> str:
        return ""


async def run(
    code: str, timeout_s: float = 20.0, limits: Limits | None = None, on_event: Any = None
) -> tuple[RunResult, list[RunEvent]]:
    events: list[RunEvent] = []

    async def publish(event: RunEvent) -> None:
        events.append(event)
        if on_event is not None:
            await on_event(event)

    job = RunJob(run_id=new_run_id(), code=code, timeout_s=timeout_s, token_id="t")
    providers: dict[str, ToolProvider] = {"fleet": Echo()}
    result = await Run(job, providers, limits or Limits(), publish).execute()
    return result, events


def processes_with(marker: str) -> list[int]:
    """Pids on this host whose command line holds ``marker`` (for process-tree checks)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


async def test_last_expression_is_the_result_and_prints_are_logs() -> None:
    code = 'print("hello")\nimport sys\nprint("oops", file=sys.stderr)\n{"a": [1, 2], "b": None}'
    result, events = await run(code)
    assert result.status == "ok", result
    assert result.result == {"a": [1, 2], "b": None}
    assert result.logs == ["hello", "oops"] or sorted(result.logs) == ["hello", "oops"]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted"
    assert kinds[-1] == "RunResultEvent"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.stream for e in events if isinstance(e, RunLog)} == {"stdout", "stderr"}


async def test_top_level_await_and_tool_calls() -> None:
    code = (
        "out = await fleet.machines.exec(machineId='m', command=['ls'])\n"
        "try:\n"
        "    await fleet.missing()\n"
        "except ToolError as e:\n"
        "    code = e.code\n"
        "[out, code]"
    )
    result, events = await run(code)
    assert result.status == "ok", result
    assert result.result == [
        {"path": "machines.exec", "args": [], "kwargs": {"machineId": "m", "command": ["ls"]}},
        1004,
    ]
    assert [type(e).__name__ for e in events].count("RunToolResult") == 2


async def test_syntax_error_names_the_line() -> None:
    result, _ = await run("x = 1\ny = (\n")
    assert result.status == "error"
    assert result.error is not None
    assert "line 2" in result.error


async def test_an_exception_names_its_line() -> None:
    result, _ = await run("x = 1\n\n1 / 0\n")
    assert result.status == "error"
    assert result.error == "ZeroDivisionError: division by zero (line 3)"


async def test_unknown_provider_is_refused() -> None:
    result, _ = await run("await machine.exec(['ls'])")
    assert result.status == "error"
    assert "NameError" in (result.error or "")


async def test_endless_loop_times_out_and_the_whole_tree_ends() -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 997}"
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "subprocess.Popen(['sh', '-c', 'while :; do :; done'])\n"
        "print('spawned', flush=True)\n"
        "while True:\n    pass\n"
    )
    seen: list[int] = []

    async def on_event(event: RunEvent) -> None:
        if isinstance(event, RunLog) and event.line == "spawned":
            await wait_until(lambda: bool(processes_with(marker)), timeout=5)
            seen.extend(processes_with(marker))

    result, _ = await run(code, timeout_s=2, on_event=on_event)
    assert result.status == "timeout"
    assert seen, "the child was running during the run"
    await wait_until(lambda: not processes_with(marker), timeout=5)


async def test_fork_bomb_stops_at_the_process_limit() -> None:
    code = (
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
    result, _ = await run(code, limits=Limits(processes=16))
    assert result.status == "ok", result
    assert result.result[0] < 16
    assert "unavailable" in result.result[1]
    after, _ = await run("1 + 1")
    assert after.result == 2


async def test_memory_bomb_stops_at_the_memory_limit() -> None:
    result, _ = await run("x = bytearray(4 * 1024**3)\nlen(x)", limits=Limits(memory_mb=256))
    assert result.status == "error"
    assert "MemoryError" in (result.error or "")


async def test_output_is_capped() -> None:
    result, _ = await run("for i in range(100000):\n    print(i)\n'done'")
    assert result.status == "ok"
    assert result.result == "done"
    assert len(result.logs) <= 1001
    assert "truncated" in result.logs[-1]


async def test_cannot_read_the_data_dir_or_home(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    code = (
        "import os\n"
        "found = []\n"
        f"for p in [{str(secret)!r}, {str(tmp_path)!r}, '/root', '/etc/passwd', '/work']:\n"
        "    try:\n"
        "        found.append((p, os.listdir(p) if os.path.isdir(p) else open(p).read()))\n"
        "    except OSError as e:\n"
        "        pass\n"
        "found"
    )
    result, _ = await run(code)
    assert result.status == "ok", result
    assert SECRET not in str(result.result)
    assert all(p == "/root" for p, _ in result.result)  # only the interpreter's prefix, if any


async def test_cannot_open_a_socket() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    code = (
        "import socket\n"
        "errors = []\n"
        f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(addr, timeout=2)\n"
        "        errors.append('connected')\n"
        "    except OSError as e:\n"
        "        errors.append(type(e).__name__)\n"
        "errors"
    )
    async with server:
        result, _ = await run(code)
    assert result.status == "ok", result
    assert "connected" not in result.result


async def test_no_token_in_the_environment_or_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service's own environment holds the secrets a deployment gives it.
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", SECRET)
    monkeypatch.setenv("FLEET_SECRET_KEY", SECRET)
    code = (
        "import os\n"
        "seen = [repr(dict(os.environ))]\n"
        "for pid in os.listdir('/proc'):\n"
        "    for name in ('environ', 'cmdline'):\n"
        "        try:\n"
        "            seen.append(open(f'/proc/{pid}/{name}', 'rb').read().decode('latin-1'))\n"
        "        except OSError:\n"
        "            pass\n"
        "[len(seen), any('FLEET_' in s for s in seen), '\\n'.join(seen)]"
    )
    result, _ = await run(code)
    assert result.status == "ok", result
    count, fleet_vars, text = result.result
    assert count > 2  # it did read its own /proc
    assert not fleet_vars
    assert SECRET not in text


async def test_docker_denied_syscalls_and_user_namespaces_are_refused() -> None:
    code = f"exec({PROBE!r})"
    result, _ = await run(code)
    assert result.status == "ok", result
    found = json.loads(result.logs[-1])
    assert {name: found[name] for name in DENIED} == dict.fromkeys(DENIED, errno.EPERM), found
    assert found["getpid"] == 0
    assert found["unshare -r true"] != 0
