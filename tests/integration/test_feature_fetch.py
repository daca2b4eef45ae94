"""An OCI devcontainer feature fetched from a real registry-like HTTPS server on this host
(issue 45, finding 12): a redirect to another host or to plain http is never followed (the
host's network namespace is not the tenant's to walk), the realm's token goes only to the
registry that asked for it, and a redirect within the registry is followed with it."""

from __future__ import annotations

import datetime
import hashlib
import io
import ipaddress
import json
import ssl
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.errors import FeatureUnavailable
from environments import features as ft

TOKEN = "realm-token-for-the-registry"
REPO = "ns/hello"


def _tls(tmp: Path) -> ssl.SSLContext:
    """A server context for 127.0.0.1 and localhost, its certificate trusted by this process's
    fetches (SSL_CERT_FILE, which the fetch's context reads)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test registry")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


def _feature_blob() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("devcontainer-feature.json", b'{"id": "hello"}'),
                           ("install.sh", b"#!/bin/sh\ntrue\n")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Servers:
    """A registry (https, 127.0.0.1), and two places it may try to send a fetch: a plain http
    server and an https one on another host name (localhost); each records what it got."""

    def __init__(self) -> None:
        self.blob = _feature_blob()
        self.digest = f"sha256:{hashlib.sha256(self.blob).hexdigest()}"
        self.redirect: dict[str, str] = {}  # what -> the URL the registry sends it to
        self.elsewhere: list[tuple[str, str | None]] = []
        self.registry_port = self.http_port = self.other_port = 0

    def registry(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_get(f"/v2/{REPO}/manifests/{{tag}}", self._manifest)
        app.router.add_get(f"/v2/{REPO}/blobs/{{digest}}", self._blob)
        app.router.add_get("/store/{digest}", self._stored)
        return app

    def _authorized(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            realm = f"https://127.0.0.1:{self.registry_port}/token"
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="t",scope="r"'}
            )

    async def _token(self, _: web.Request) -> web.Response:
        if "token" in self.redirect:
            raise web.HTTPTemporaryRedirect(self.redirect["token"])
        return web.json_response({"token": TOKEN})

    async def _manifest(self, request: web.Request) -> web.Response:
        self._authorized(request)
        if "manifest" in self.redirect:
            raise web.HTTPTemporaryRedirect(self.redirect["manifest"])
        return web.json_response({"layers": [{"digest": self.digest}]})

    async def _blob(self, request: web.Request) -> web.Response:
        self._authorized(request)
        where = self.redirect.get("blob", f"/store/{self.digest}")
        raise web.HTTPTemporaryRedirect(where)

    async def _stored(self, request: web.Request) -> web.Response:
        self._authorized(request)  # a redirect within the registry keeps its token
        return web.Response(body=self.blob)

    def thief(self) -> web.Application:
        async def anything(request: web.Request) -> web.Response:
            self.elsewhere.append((request.path, request.headers.get("Authorization")))
            if request.path.startswith("/cdn/"):
                return web.Response(body=self.blob)
            return web.json_response({"layers": [{"digest": self.digest}]})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        return app


@pytest.fixture
async def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Servers]:
    tls = _tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
    s = Servers()
    runners = []
    for app, host, ctx in ((s.registry(), "127.0.0.1", tls), (s.thief(), "127.0.0.1", None),
                           (s.thief(), "localhost", tls)):  # fmt: skip
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, 0, ssl_context=ctx)
        await site.start()
        runners.append(runner)
    ports = [r.addresses[0][1] for r in runners]
    s.registry_port, s.http_port, s.other_port = ports
    yield s
    for runner in runners:
        await runner.cleanup()


async def _fetch(s: Servers, tmp_path: Path, blob_hosts: frozenset[str] = frozenset(),
                 ) -> ft.Feature:  # fmt: skip
    fid = f"127.0.0.1:{s.registry_port}/{REPO}:1"
    return await ft.oci_feature(fid, {}, tmp_path / "feature", 10.0, blob_hosts)


async def test_a_redirect_within_the_registry_is_followed_with_its_token(
    servers: Servers, tmp_path: Path
) -> None:
    got = await _fetch(servers, tmp_path)
    assert (got.root / "install.sh").read_bytes() == b"#!/bin/sh\ntrue\n"


@pytest.mark.parametrize("what", ["manifest", "blob", "token"])
@pytest.mark.parametrize("where", ["http", "other-host"])
async def test_a_redirect_off_the_registry_is_never_followed(
    servers: Servers, tmp_path: Path, what: str, where: str
) -> None:
    s = servers
    s.redirect[what] = (f"http://127.0.0.1:{s.http_port}/steal" if where == "http"
                        else f"https://localhost:{s.other_port}/steal")  # fmt: skip
    with pytest.raises(FeatureUnavailable) as err:
        await _fetch(s, tmp_path)
    assert "redirect" in err.value.message
    assert s.elsewhere == []
    assert json.dumps(err.value.data or {}).find(TOKEN) == -1


async def test_a_layer_comes_from_a_cdn_the_operator_named_without_the_token(
    servers: Servers, tmp_path: Path
) -> None:
    """As ghcr.io sends its layers to its CDN: a host the operator named
    (FLEET_ENV_FEATURE_BLOB_HOSTS) serves the layer, which never gets the registry's token;
    the manifest may not go there."""
    s = servers
    s.redirect["blob"] = f"https://localhost:{s.other_port}/cdn/{s.digest}"
    got = await _fetch(s, tmp_path, frozenset({"localhost"}))
    assert (got.root / "install.sh").read_bytes() == b"#!/bin/sh\ntrue\n"
    assert s.elsewhere == [(f"/cdn/{s.digest}", None)]
    s.redirect = {"manifest": f"https://localhost:{s.other_port}/cdn/x"}
    with pytest.raises(FeatureUnavailable, match="redirect"):
        await _fetch(s, tmp_path / "again", frozenset({"localhost"}))
