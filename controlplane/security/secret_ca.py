"""An instance's own certificate authority: what the egress proxy ends a machine's TLS with, for
the hosts a secret of the instance names (``providers/egress/proxy.py``).

One CA per instance, so a leaked key exposes only that instance's traffic. Its key never leaves
the platform: sealed in the store (``SecretBox``), opened only by the proxy. Its certificate goes
into the instance's machines' trust bundles. The CA may sign only server certificates
(``ExtendedKeyUsage``) and no CA under it (``path_length=0``).

``cryptography`` makes the keys and certificates: no hand-rolled ASN.1 faces a client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.security.crypto import SecretBox
from controlplane.store import Store, StoredCa

CA_YEARS = 10
#: A leaf lives this long; the proxy makes another well before it ends.
LEAF_DAYS = 30
_LEAF_RENEW = dt.timedelta(days=7)
#: Server contexts kept (one per instance and host the proxy ended TLS for).
CONTEXTS_KEPT = 512
_PEM = serialization.Encoding.PEM


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(instance_id: str, box: SecretBox) -> StoredCa:
    """A new CA for ``instance_id``: its certificate, and its key sealed by ``box``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetd"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"fleetd secrets CA for instance {instance_id}"),
    ])  # fmt: skip
    now = _now()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    return StoredCa(cert_pem=cert.public_bytes(_PEM).decode(),
                    key_sealed=box.encrypt(key_pem.decode()))  # fmt: skip


async def instance_ca(store: Store, box: SecretBox, instance_id: str) -> StoredCa:
    """The instance's CA, made now if it has none (by whichever process asks first)."""
    kept = await store.secrets.ca(instance_id)
    return (
        kept
        if kept is not None
        else await store.secrets.keep_ca(instance_id, make_ca(instance_id, box))
    )


def leaf(ca: StoredCa, box: SecretBox, host: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A server certificate for ``host`` (a name or an address), signed by ``ca``: PEM."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    ca_key = serialization.load_pem_private_key(box.decrypt(ca.key_sealed).encode(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(_PEM)


def server_context(cert_pem: bytes, key: ec.EllipticCurvePrivateKey) -> ssl.SSLContext:
    """A TLS server context for one leaf; HTTP/1.1 only (the proxy reads requests as such)."""
    key_pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    # ssl loads a chain from a path only: an anonymous file of this process, never on disk.
    fd = os.memfd_create("fleet-leaf", os.MFD_CLOEXEC)
    try:
        os.write(fd, cert_pem + key_pem)
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return ctx


@dataclass
class LeafContexts:
    """Server contexts by (instance, host), made on first use and renewed before they end.
    One key for every leaf of this process: it never leaves it, and a leaf is only as good
    as the CA that signed it."""

    box: SecretBox
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    _made: OrderedDict[tuple[str, str], tuple[ssl.SSLContext, dt.datetime]] = field(
        default_factory=OrderedDict
    )

    def context(self, instance_id: str, ca: StoredCa, host: str) -> ssl.SSLContext:
        at = (instance_id, host)
        kept = self._made.get(at)
        if kept is not None and kept[1] - _now() > _LEAF_RENEW:
            self._made.move_to_end(at)
            return kept[0]
        ctx = server_context(leaf(ca, self.box, host, self.key), self.key)
        self._made[at] = (ctx, _now() + dt.timedelta(days=LEAF_DAYS))
        while len(self._made) > CONTEXTS_KEPT:
            self._made.popitem(last=False)
        return ctx
