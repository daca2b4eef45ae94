"""E2B's own SDKs as the tests' clients of the E2B front: the Python SDKs (``e2b``,
``e2b-code-interpreter``, pinned in pyproject.toml's ``peer-sdks``, in ``.venv/peers``) and the
JavaScript ones (``e2b``, ``@e2b/code-interpreter`` from package.json, under node), each run as
a program of its own, unmodified, with the variables ``fleet up``'s banner prints. A script
prints its findings as one JSON document on its last line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.e2b.control import api_key_of
from controlplane.settings import Settings
from tests.conftest import ADMIN_TOKEN

REPO = Path(__file__).resolve().parent.parent
PEERS_PYTHON = REPO / ".venv" / "peers" / "bin" / "python"
JS_SCENARIO = REPO / "tests" / "js" / "e2b_scenario.mjs"


@pytest.fixture
def e2b_settings(settings: Settings) -> Settings:
    """Sandboxes on the namespaces runtime (pause and fork with memory: the gvisor tests)."""
    return msgspec.structs.replace(settings, e2b_runtime="namespaces")


def sdk_env(settings: Settings, token: str = ADMIN_TOKEN) -> dict[str, str]:
    """What points a stock SDK at the stack of ``settings`` (``fleet up``'s E2B_* words): the
    key in E2B's form, as the banner prints it (an SDK may check a key's form)."""
    url, key = f"http://127.0.0.1:{settings.e2b_port}", api_key_of(token)
    return {"E2B_API_URL": url, "E2B_SANDBOX_URL": url,
            "E2B_DOMAIN": f"localhost:{settings.e2b_port}", "E2B_API_KEY": key}  # fmt: skip


async def _run(argv: list[str], env: dict[str, str], timeout: float) -> Any:
    proc = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, "PYTHONFAULTHANDLER": "1", **env}, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        # PYTHONFAULTHANDLER prints every thread's stack on SIGABRT: where the SDK waited
        proc.send_signal(signal.SIGABRT)
        _, err = await proc.communicate()
        raise AssertionError(f"{argv[0]} ran over {timeout} s:\n{err.decode()[-6000:]}") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise AssertionError(f"{argv[0]} exited {proc.returncode}:\n{err.decode()[-4000:]}")
    lines = out.decode().strip().splitlines()
    assert lines, f"{argv[0]} printed nothing:\n{err.decode()[-2000:]}"
    return json.loads(lines[-1])


#: A script's process ends once it printed its findings: the SDK's threads left at interpreter
#: shutdown (the async SDK's, now and then aborting there) are not what a test asks about.
_THEN_EXIT = "\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n"


async def python_sdk(script: str, env: dict[str, str], timeout: float = 240) -> Any:
    """``script`` (its last line of output JSON) run by E2B's Python SDK's own interpreter."""
    code = textwrap.dedent(script) + _THEN_EXIT
    return await _run([str(PEERS_PYTHON), "-c", code], env, timeout)


async def js_sdk(scenario: str, env: dict[str, str], timeout: float = 240) -> Any:
    """A scenario of ``tests/js/e2b_scenario.mjs`` run by node with E2B's JavaScript SDKs."""
    return await _run(["node", str(JS_SCENARIO), scenario], env, timeout)
