"""What an idle daemon does not load (bench 5: its RSS is what every machine pays).

Called by ``fleet-daemon`` before anything imports asyncio, structlog or nats-py."""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: hashlib is imported only once OpenSSL is kept out of it
    import hashlib

#: Optional extras structlog imports when they are installed: rich and better_exceptions
#: (the dev console renderer's pretty tracebacks; rich alone is 50 modules and 4 MB) and
#: greenlet (structlog.threadlocal's greenlet support). None is a fleetd dependency, so a
#: machine's daemon runs without them anyway; a developer's venv (rich comes with
#: import-linter) must not make the daemon it starts bigger, or its log look different.
_STRUCTLOG_EXTRAS = ("rich", "better_exceptions", "greenlet")


def lean_imports(nats_url: str) -> None:
    """Import structlog without its optional extras, nats-py without aiohttp unless the
    daemon connects over WebSocket (aiohttp is nats-py's WebSocket transport: half the
    daemon's start time and 10 MB of its memory), and asyncio and hashlib without OpenSSL
    unless the URL asks for TLS (see defer_openssl)."""
    urls = [u.strip() for u in nats_url.split(",")]
    if not any(u.startswith(("ws://", "wss://")) for u in urls):
        sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    if not any(u.startswith(("tls://", "wss://")) for u in urls):
        defer_openssl()
    blocked = [name for name in _STRUCTLOG_EXTRAS if name not in sys.modules]
    for name in blocked:  # None in sys.modules: "import rich" raises ImportError
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog.dev  # noqa: F401  (its optional imports happen now, and only now)
    finally:
        for name in blocked:  # whatever imports them later (a tool, a test) still can
            del sys.modules[name]
    _import_nats()


def _import_nats() -> None:
    """nats-py reads its own version with importlib.metadata at import (2.4 MB: email, zipfile,
    csv...); read it from its .dist-info directory's name instead (base.version.dist_version)."""
    if "nats" in sys.modules or "importlib.metadata" in sys.modules:
        return
    from base.version import dist_version

    sys.modules["importlib.metadata"] = None  # type: ignore[assignment]
    try:
        import nats.aio.client
    finally:
        del sys.modules["importlib.metadata"]
    # It sends this in CONNECT (the server's connz shows it): keep it true.
    nats.aio.client.__version__ = dist_version("nats-py") or nats.aio.client.__version__


def defer_openssl() -> None:
    """Keep OpenSSL (libcrypto and libssl, about 5 MB of every daemon) out until TLS is used.

    asyncio imports ``ssl`` and hashlib/hmac import ``_hashlib`` at import time, and nats-py
    imports ``ssl`` unconditionally, though a daemon on a ``nats://`` URL never uses TLS unless
    the server demands it. So: asyncio, hashlib and hmac are imported with both blocked (they
    take their documented no-OpenSSL paths: hashlib's builtin SHA-256, asyncio's ``ssl = None``)
    and ``ssl`` becomes a stand-in that imports the real module the first time anything uses
    it (nats-py upgrading to TLS for a server that requires it), and then hands it to asyncio.
    A no-op when any of them is already imported (too late to matter)."""
    if any(m in sys.modules for m in ("ssl", "_ssl", "_hashlib", "asyncio", "hashlib", "hmac")):
        return
    if not _builtin_sha256():  # a Python built without it: hashlib needs OpenSSL's
        return
    sys.modules["ssl"] = sys.modules["_hashlib"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
        import hashlib  # noqa: F401
        import hmac  # noqa: F401
    finally:
        del sys.modules["_hashlib"]
        sys.modules["ssl"] = _DeferredSSL("ssl", "the real ssl module, imported on first use")


def bulk_sha256() -> hashlib._Hash:
    """A SHA-256 for bulk data (a file transfer's bytes): OpenSSL's, imported now if it is not
    yet (a daemon started without it, see defer_openssl, loads it on its first transfer, not at
    start), else the builtin one. The builtin SHA-256 is about 5x slower and, to 3.11, holds the
    GIL while it hashes, stalling the event loop for as long; OpenSSL's lets go of it."""
    import hashlib

    try:
        import _hashlib
    except ImportError:  # a Python built without OpenSSL
        return hashlib.sha256()
    return _hashlib.openssl_sha256()


def _builtin_sha256() -> bool:
    """Python's own SHA-256 is there (``_sha256`` to 3.11, ``_sha2`` from 3.12; a build may
    leave the builtin hashes out)."""
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("_sha256", "_sha2"))


class _DeferredSSL(types.ModuleType):
    """``ssl`` until its first use (an attribute read): then the real one, everywhere."""

    def __getattr__(self, name: str) -> object:
        return getattr(load_ssl(), name)


def load_ssl() -> types.ModuleType:
    """Import the real ssl, and give it to every module that took the stand-in or, in asyncio,
    ``None`` (base_events, selector_events, sslproto: without it they refuse TLS)."""
    if isinstance(sys.modules.get("ssl"), _DeferredSSL):
        del sys.modules["ssl"]
    import ssl

    for name, mod in list(sys.modules.items()):
        held = getattr(mod, "__dict__", {}).get("ssl", 0)
        if isinstance(held, _DeferredSSL) or (held is None and name.startswith("asyncio.")):
            setattr(mod, "ssl", ssl)  # noqa: B010  (any module: no attribute mypy knows)
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        # Set at its import only when ssl was there (the errors a TLS read retries on).
        again = (ssl.SSLWantReadError, ssl.SSLSyscallError)
        sslproto.SSLAgainErrors = again  # type: ignore[attr-defined]
    return ssl
