"""Which modules the daemon's imports load (daemon/lean.py), in a fresh interpreter each: on
nats://, no OpenSSL, no importlib.metadata, no aiohttp and no structlog extras; on tls://, the
real ssl from the start; and the stand-in ssl turning into the real one when first used."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from daemon.lean import lean_imports
lean_imports(sys.argv[1])
import daemon.server, base.logs  # what fleet-daemon imports before it connects
import asyncio.base_events, asyncio.sslproto, nats.aio.client
if sys.argv[2] == "use":  # what nats-py does when the server requires TLS
    nats.aio.client.ssl.create_default_context()
heavy = ["_ssl", "_hashlib", "importlib.metadata", "aiohttp", "rich", "better_exceptions"]
print(json.dumps({
    "loaded": [m for m in heavy if sys.modules.get(m) is not None],
    "ssl": type(sys.modules["ssl"]).__name__,
    "asyncio_ssl": [type(m.ssl).__name__ for m in (asyncio.base_events, asyncio.sslproto)],
    "again": hasattr(asyncio.sslproto, "SSLAgainErrors"),
    "nats_version": nats.aio.client.__version__,
}))
"""


def probe(url: str, use: str = "") -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, url, use or "-"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out))


def test_nats_url_loads_no_openssl_and_no_metadata() -> None:
    got = probe("nats://127.0.0.1:4222,nats://127.0.0.2:4222")
    assert got["loaded"] == []
    assert got["ssl"] == "_DeferredSSL"
    assert got["asyncio_ssl"] == ["NoneType", "NoneType"]
    from importlib.metadata import version

    assert got["nats_version"] == version("nats-py")  # still sent in CONNECT


def test_first_use_of_ssl_loads_it_for_asyncio_too() -> None:
    got = probe("nats://127.0.0.1:4222", "use")
    assert "_ssl" in got["loaded"]  # type: ignore[operator]
    assert got["ssl"] == "module"
    assert got["asyncio_ssl"] == ["module", "module"]
    assert got["again"] is True


def test_tls_url_imports_the_real_ssl_up_front() -> None:
    for url in ("tls://127.0.0.1:4222", "nats://a:4222, tls://b:4222", "wss://a:443"):
        got = probe(url)
        assert got["ssl"] == "module", url
        assert got["asyncio_ssl"] == ["module", "module"], url
        assert "_ssl" in got["loaded"], url  # type: ignore[operator]


#: A transfer's bytes are hashed by OpenSSL's SHA-256 (5x the builtin's speed, and it lets go
#: of the GIL), loaded on the first transfer: not by the daemon's start.
BULK = """
import sys
try:
    import _sha256 as builtin  # to 3.11
except ImportError:
    import _sha2 as builtin  # 3.12 on
from daemon.lean import bulk_sha256, lean_imports
lean_imports("nats://127.0.0.1:4222")
import daemon.server
started = sys.modules.get("_hashlib") is not None
h = bulk_sha256()
h.update(b"x" * 3000)
print(started, type(h).__module__, h.hexdigest() == builtin.sha256(b"x" * 3000).hexdigest())
"""


def test_a_transfer_hashes_with_openssl_loaded_only_then() -> None:
    out = subprocess.run([sys.executable, "-c", BULK], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()  # fmt: skip
    assert out == ["False", "_hashlib", "True"]
