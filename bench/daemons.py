"""Daemons started as the local provider starts them, and the signed clients that call them."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

from nats.aio.client import Client as NATS

from contracts.daemon.signing import sign
from controlplane.calls.daemon_client import DaemonClient
from controlplane.security.crypto import SecretBox
from controlplane.store import Store

# --- daemon clients ---------------------------------------------------------------------------
#: Where a DaemonClient gets a machine's request-signing key.
KeySource = Callable[[str], Awaitable[bytes]]


def signing_key(token: str) -> bytes:
    """The key that signs requests to a machine (b"" before signed daemon RPC existed)."""
    try:
        from contracts.daemon.signing import signing_key as derive
    except ImportError:
        return b""
    return derive(token)


def token_keys(tokens: Mapping[str, str]) -> KeySource:
    """Keys of machines whose tokens this process knows (it started their daemons)."""
    keys = {mid: signing_key(t) for mid, t in tokens.items()}

    async def get(machine_id: str) -> bytes:
        return keys[machine_id]

    return get


@contextlib.asynccontextmanager
async def stored_keys(redis_url: str, secret_key: str) -> AsyncIterator[KeySource]:
    """Keys of the machines the provisioner minted tokens for, as the services get them."""
    async with Store(redis_url) as store:
        box = SecretBox(secret_key)
        cache: dict[str, bytes] = {}

        async def get(machine_id: str) -> bytes:
            if machine_id not in cache:
                sealed = await store.machine_secret(machine_id)
                cache[machine_id] = signing_key(box.decrypt(sealed or ""))
            return cache[machine_id]

        yield get


def daemon_client(nc: NATS, keys: KeySource, timeout_s: float = 10.0) -> DaemonClient:
    """The services' DaemonClient (it signs every request)."""
    return DaemonClient(nc, keys=keys, timeout_s=timeout_s)


def sign_headers(key: bytes, machine_id: str, body: bytes) -> dict[str, str]:
    """Headers as DaemonClient sends them with ``body`` (for a raw baseline of the same bytes)."""
    return sign(key, machine_id, body, ttl_s=15.0)


# --- daemon processes -------------------------------------------------------------------------
def bench_token(machine_id: str) -> str:
    return f"bench-token-{machine_id}"


def daemon_env(nats_url: str, machine_id: str, home: Path) -> dict[str, str]:
    """The environment the local provider gives a daemon (see providers.LocalProvider)."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "FLEET_GIT_SHA")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env | {
        "HOME": str(home),
        "FLEET_HOME": str(home),
        "FLEET_NATS_URL": nats_url,
        "FLEET_MACHINE_ID": machine_id,
        "FLEET_MACHINE_TOKEN": bench_token(machine_id),
        "FLEET_LOG_LEVEL": "warning",
    }


def spawn(argv: list[str], env: dict[str, str], log: Path) -> int:
    """posix_spawn, as the local provider starts daemons (no fork of this big process)."""
    out = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return os.posix_spawn(
        argv[0],
        argv,
        env,
        setsid=True,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), out, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
    )


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
