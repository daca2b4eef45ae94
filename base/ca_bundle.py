"""CA bundles as PEM text: the host's own (OpenSSL's default file), and the host's with more
CAs added, for a client such as git whose one CA file replaces the system's."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path


def system_bundle() -> str:
    """The platform host's own CA bundle (OpenSSL's default file)."""
    paths = ssl.get_default_verify_paths()
    for path in (Path(p) for p in (paths.cafile, paths.openssl_cafile) if p):
        try:
            return path.read_text()
        except OSError:
            continue
    return ""


def with_system(files: Iterable[str]) -> str:
    """The host's bundle, then each PEM file of ``files`` (an operator's: read as it is now)."""
    parts = [system_bundle(), *(Path(f).read_text() for f in files)]
    return "\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
