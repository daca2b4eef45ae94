"""The one environment of every process a machine's daemon starts (daemon/processes/env.py), through
the daemon's own methods as the platform calls them: the daemon's variables without its secrets,
then the container's (``~/.fleet/container.env``), then the pushed ``~/.fleet/.env``, then the
call's own. A new .env is seen by the very next command; one that cannot be read keeps the last
good values."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from base.dotenv import render
from contracts.daemon import rpc as d, sessions as ss
from contracts.daemon.machine_files import CONTAINER_ENV_FILE, ENV_FILE
from contracts.rpc.jsonrpc import encode_request
from daemon.compose import compose
from daemon.server import Daemon
from daemon.settings import DaemonSettings
from tests.waiters import wait_until

NAMES = ("A", "B", "C", "D", "FLEET_MACHINE_TOKEN", "HOME")
#: Prints the variables of NAMES the process got, as JSON (argv[1]: a file to write it to).
PRINT = ("import json, os, sys; d = json.dumps({n: os.environ.get(n) for n in sys.argv[2:]}); "
         "open(sys.argv[1], 'w').write(d) if sys.argv[1] != '-' else print(d)")  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine's home, its daemon's own environment set for the rule's first layer."""
    (tmp_path / ".fleet").mkdir()
    for name in ("A", "B", "C", "D"):
        monkeypatch.setenv(name, "daemon")
    monkeypatch.setenv("FLEET_MACHINE_TOKEN", "the-machines-token")
    return tmp_path


@pytest.fixture
def daemon(home: Path) -> Daemon:
    settings = DaemonSettings(nats_url="nats://127.0.0.1:1", machine_id="m-" + "0" * 16,
                              machine_token="the-machines-token", home=str(home))  # fmt: skip
    # No lock, state file or control port: only its methods are called here.
    return compose(settings, lifecycle=False)


async def call(daemon: Daemon, method: str, params: Any) -> Any:
    """One call of the daemon's methods, decoded; an error answer fails the test."""
    answer = await daemon._dispatcher.handle(encode_request(method, params, 1), None)
    assert answer is not None
    decoded = json.loads(answer)
    assert "error" not in decoded, decoded
    return decoded["result"]


async def exec_env(daemon: Daemon, env: dict[str, str] | None = None) -> dict[str, str | None]:
    argv = [sys.executable, "-c", PRINT, "-", *NAMES]
    got = await call(daemon, d.EXEC_COMMAND.name, d.ExecCommandParams(command=argv, env=env))
    assert got["exitCode"] == 0, got
    seen: dict[str, str | None] = json.loads(got["stdout"])
    return seen


async def push(daemon: Daemon, path: str, env: dict[str, str]) -> None:
    """A file as the setup pusher writes it: tool.writeFile (replaced whole, a new inode)."""
    params = d.WriteFileParams(path=path, content=render(env), mode=0o600)
    await call(daemon, d.WRITE_FILE.name, params)


def expected(home: Path, **values: str) -> dict[str, str | None]:
    return {"A": "daemon", "B": "daemon", "C": "daemon", "D": "daemon",
            "FLEET_MACHINE_TOKEN": None, "HOME": str(home), **values}  # fmt: skip


async def test_the_order_daemon_then_container_then_dotenv_then_the_call(
    daemon: Daemon, home: Path
) -> None:
    await push(daemon, CONTAINER_ENV_FILE, {"B": "container", "C": "container", "D": "container"})
    await push(daemon, ENV_FILE, {"C": "dotenv", "D": "dotenv", "HOME": "/elsewhere"})
    seen = await exec_env(daemon, {"D": "call"})
    assert seen == expected(home, B="container", C="dotenv", D="call", HOME="/elsewhere")


async def test_a_new_dotenv_reaches_the_next_command_and_a_bad_one_keeps_the_last(
    daemon: Daemon, home: Path
) -> None:
    assert await exec_env(daemon) == expected(home)
    await push(daemon, ENV_FILE, {"C": "first"})
    assert await exec_env(daemon) == expected(home, C="first")
    await push(daemon, ENV_FILE, {"C": "second", "D": "new"})
    assert await exec_env(daemon) == expected(home, C="second", D="new")

    path = home / ENV_FILE
    path.write_text("C='never closed\n")  # does not parse
    assert await exec_env(daemon) == expected(home, C="second", D="new")
    path.unlink()
    (home / "planted").write_text(render({"C": "through a link"}))
    path.symlink_to(home / "planted")  # the machine's own: never followed
    assert await exec_env(daemon) == expected(home, C="second", D="new")
    path.unlink()
    os.mkfifo(path)  # nobody writes: a blocking open would hang every command
    assert await exec_env(daemon) == expected(home, C="second", D="new")
    path.unlink()
    (home / ".fleet").rename(home / "real")  # a link on the way is not followed either
    (home / "real" / ".env").write_text(render({"C": "through a linked directory"}))
    (home / ".fleet").symlink_to(home / "real")
    assert await exec_env(daemon) == expected(home, C="second", D="new")
    (home / ".fleet").unlink()
    (home / "real").rename(home / ".fleet")
    path.write_text("C='x'\n" * (2 * 1024 * 1024 // 6 + 1))  # over the cap: not read at all
    assert await exec_env(daemon) == expected(home, C="second", D="new")

    await push(daemon, ENV_FILE, {"C": "third"})
    assert await exec_env(daemon) == expected(home, C="third")
    path.unlink()  # no file: no .env variables, as before the first push
    assert await exec_env(daemon) == expected(home)


async def test_a_terminal_gets_the_same_environment(daemon: Daemon, home: Path) -> None:
    await push(daemon, CONTAINER_ENV_FILE, {"B": "container"})
    await push(daemon, ENV_FILE, {"C": "dotenv", "D": "dotenv"})
    out = home / "seen.json"
    argv = [sys.executable, "-c", PRINT, str(out), *NAMES]
    opened = await call(daemon, d.SESSION_OPEN.name,
                        ss.SessionOpenParams(command=argv, env={"D": "call"}))  # fmt: skip
    try:
        await wait_until(lambda: out.exists() and out.stat().st_size > 0, timeout=20)
        seen = msgspec.json.decode(out.read_bytes())
        assert seen == expected(home, B="container", C="dotenv", D="call")
    finally:
        await call(daemon, d.SESSION_CLOSE.name, ss.SessionRef(session_id=opened["sessionId"]))
