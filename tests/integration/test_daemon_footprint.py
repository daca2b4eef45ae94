"""What an idle daemon loads (bench 5), read from the running process's memory map, and TLS
still working for a daemon that starts without OpenSSL (daemon/lean.py)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported
from contracts.ids import new_machine_id
from controlplane.bus import Bus, ensure_stream
from controlplane.calls.daemon_client import DaemonClient, static_key
from controlplane.settings import Settings
from fleet.up import NatsServer
from tests.conftest import MACHINE_TOKEN, DaemonProc, SpawnDaemon
from tests.waiters import subscribed

#: Shared objects whose presence in an idle daemon on nats:// is a regression: OpenSSL (about
#: 5 MB; TLS only) and, by name, the Python modules that would load it.
OPENSSL = ("libssl.so", "libcrypto.so", "/_ssl.", "/_hashlib.")


def mapped(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1] for line in f if "/" in line}


def openssl_in(pid: int) -> list[str]:
    return sorted(p for p in mapped(pid) if any(s in p for s in OPENSSL))


async def boot(nc: nats.NATS, spawn_daemon: SpawnDaemon, **env: str) -> DaemonProc:
    mid = new_machine_id()
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, mid)
    async with subscribed(nc, subject) as inbox:
        d = spawn_daemon(mid, **env)
        event = await inbox.next_event(timeout=20)
    assert isinstance(event, DaemonStatusReported), d.output()
    assert event.status == "ready"
    health = await DaemonClient(nc, keys=static_key(MACHINE_TOKEN)).machine(mid).health()
    assert health.ok  # signed RPC both ways: MACs on the builtin SHA-256 verify here
    return d


async def test_idle_daemon_maps_no_openssl(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d = await boot(bus.nc, spawn_daemon)
    assert openssl_in(d.proc.pid) == []
    # Its MACs: the builtin SHA-256 (_sha256 to Python 3.11, _sha2 from 3.12).
    assert any("/_sha256." in p or "/_sha2." in p for p in mapped(d.proc.pid))


# --- TLS ----------------------------------------------------------------------------------------
class TlsNatsServer(NatsServer):
    """nats-server requiring TLS on its client port (certificates from ``tls_dir``)."""

    def __init__(self, data_dir: Path, tls_dir: Path) -> None:
        super().__init__(data_dir)
        self.tls_dir = tls_dir

    def config(self) -> str:
        cert, key = self.tls_dir / "server.pem", self.tls_dir / "server.key"
        return super().config() + f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'


Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key: Key, ca: tuple[str, Key] | None) -> x509.Certificate:
    """A CA's own certificate (``ca`` None), or a server certificate for 127.0.0.1 it signs."""
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder().subject_name(_name(cn))
        .issuer_name(_name(ca[0] if ca else cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )  # fmt: skip
    if ca is None:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        return b.sign(key, hashes.SHA256())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(ca[1], hashes.SHA256())


def write_certs(d: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it; returns the CA's file."""
    d.mkdir(parents=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(_cert("fleetd test CA", ca_key, None).public_bytes(pem))
    server = _cert("127.0.0.1", server_key, ("fleetd test CA", ca_key))
    (d / "server.pem").write_bytes(server.public_bytes(pem))
    (d / "server.key").write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))  # fmt: skip
    return d / "ca.pem"


@pytest.fixture
def tls_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[NatsServer, Path]]:
    ca = write_certs(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # this process's clients trust the test CA
    with TlsNatsServer(tmp_path / "nats-tls", tmp_path / "tls") as server:
        yield server, ca


@pytest.mark.parametrize("scheme", ["nats", "tls"])
async def test_daemon_speaks_tls(
    tls_nats: tuple[NatsServer, Path], spawn_daemon: SpawnDaemon, scheme: str
) -> None:
    """nats://: the daemon starts without OpenSSL and loads it when the server demands TLS
    (deploy/nats.conf.example: clients upgrade); tls://: it imports ssl up front."""
    server, ca = tls_nats
    url = server.url.replace("nats://", f"{scheme}://")
    nc = await nats.connect(url)
    try:
        await ensure_stream(nc.jetstream(), Settings())
        d = await boot(nc, spawn_daemon, FLEET_NATS_URL=url, SSL_CERT_FILE=str(ca))
    finally:
        await nc.close()
    assert any("libssl.so" in p for p in mapped(d.proc.pid))
