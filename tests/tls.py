"""A TLS server's identity for tests: a CA of its own, written where the platform is told to
trust it (FLEET_SECRETS_UPSTREAM_CA), and a server context from it for one host (the same
certificate machinery as an instance's CA: controlplane/security/secret_ca.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.security.crypto import SecretBox, generate_secret_key
from controlplane.security.secret_ca import leaf, make_ca, server_context


def server_tls(host: str, ca_file: Path) -> ssl.SSLContext:
    """A server context for ``host``, signed by a new CA whose certificate goes to
    ``ca_file``."""
    box = SecretBox(generate_secret_key())
    ca = make_ca("upstream", box)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_file.write_text(ca.cert_pem)
    return server_context(leaf(ca, box, host, key), key)
