"""devcontainer features: a local one (a folder beside the devcontainer.json with
devcontainer-feature.json and install.sh) or an OCI one (``registry/namespace/name:tag``),
installed at build by a generated Dockerfile layer as the spec's reference implementation does
(options as upper-cased variables in ``devcontainer-features.env``, then ``install.sh`` as root).

A feature's metadata is untrusted like the devcontainer.json: the same properties are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import posixpath
import re
import shlex
import ssl
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from contracts.errors import EnvironmentInvalid, EnvironmentRefused, FeatureUnavailable
from environments import devcontainer as dc
from environments.sources import read

#: The largest OCI feature archive fetched.
MAX_FEATURE_BYTES = 64 * 1024 * 1024
_OCI = re.compile(
    r"^(?P<registry>[A-Za-z0-9.-]+(?::\d+)?)/(?P<repo>[a-z0-9._/-]+)(?::(?P<tag>[\w.-]+))?$"
)
_MEDIA = "application/vnd.oci.image.manifest.v1+json"
_REDIRECTS = (301, 302, 303, 307, 308)
#: The most redirects one fetch follows (each within the origin it started at).
MAX_REDIRECTS = 5


class OffOrigin(aiohttp.ClientError):
    """A registry (or its token realm) sent a fetch somewhere else than itself."""


@dataclass
class Feature:
    """One feature, ready to install: its files in ``root`` (a host directory), the
    variables its install.sh gets, and what its metadata adds to the machine."""

    id: str
    root: Path
    options: dict[str, str]
    container_env: dict[str, str] = field(default_factory=dict)
    lifecycle: dict[str, dc.Command] = field(default_factory=dict)


def env_name(option: str) -> str:
    """An option's variable, as the reference implementation names it."""
    name = re.sub(r"[^\w_]", "_", option)
    return re.sub(r"^[\d_]+", "_", name).upper()


def local_feature(checkout: Path, config_path: str, fid: str, given: dict[str, Any]) -> Feature:
    rel = dc.in_repo(posixpath.join(posixpath.dirname(config_path), fid), f"features.{fid}")
    meta = dc.loads(read(checkout, f"{rel}/devcontainer-feature.json", dc.MAX_CONFIG_BYTES),
                    f"{rel}/devcontainer-feature.json")  # fmt: skip
    read(checkout, f"{rel}/install.sh")  # present, a regular file, within the cap
    return _feature(fid, checkout / rel, meta, given)


def _feature(fid: str, root: Path, meta: dict[str, Any], given: dict[str, Any]) -> Feature:
    bad = dc.refused(meta) + [k for k in ("init", "entrypoint") if meta.get(k)]
    if bad:
        raise EnvironmentRefused(
            f"feature {fid}: refused (a machine gets nothing of the host): {'; '.join(bad)}",
            data={"properties": [b.split(":", 1)[0] for b in bad]},
        )
    options: dict[str, str] = {}
    for name, spec in (meta.get("options") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            options[env_name(name)] = _text(spec["default"])
    for name, value in given.items():
        options[env_name(name)] = _text(value)
    env = {str(k): str(v) for k, v in (meta.get("containerEnv") or {}).items()}
    for name in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise EnvironmentInvalid(f"feature {fid}: containerEnv name {name!r} is not valid")
    lifecycle = {k: meta[k] for k in dc.LIFECYCLE if meta.get(k)}
    return Feature(id=fid, root=root, options=options, container_env=env, lifecycle=lifecycle)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def layer(base: str, user: str, features: list[Feature]) -> str:
    """The Dockerfile that installs ``features`` over ``base`` (run as root), the image's own
    user restored after; each feature's files are copied from ``features/N`` of the context."""
    lines = [f"FROM {base}", "USER 0"]  # by number: an image may have no /etc/passwd
    for n, f in enumerate(features):
        where = f"/tmp/fleetd-features/{n}"
        lines += [
            f"COPY features/{n} {where}",
            f"RUN cd {where} && chmod +x install.sh && . ./devcontainer-features.env "
            f"&& ./install.sh && cd / && rm -rf {where}",
        ]
        lines += [f"ENV {k}={_quote_env(v)}" for k, v in f.container_env.items()]
    if user:
        lines.append(f"USER {user}")
    return "\n".join(lines) + "\n"


def env_file(feature: Feature, remote_user: str, container_user: str) -> bytes:
    values = {**feature.options, "_REMOTE_USER": remote_user, "_CONTAINER_USER": container_user}
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()).encode()


def _quote_env(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def oci_parts(fid: str) -> tuple[str, str, str]:
    m = _OCI.match(fid)
    if m is None or ("." not in m["registry"] and ":" not in m["registry"]):
        raise EnvironmentInvalid(
            f"feature {fid!r}: not a local feature (./NAME) nor an OCI reference "
            "(registry/namespace/name:tag)"
        )
    return m["registry"], m["repo"], m["tag"] or "latest"


async def oci_feature(fid: str, given: dict[str, Any], dest: Path, timeout_s: float,
                      blob_hosts: frozenset[str] = frozenset()) -> Feature:  # fmt: skip
    """Fetch ``fid`` from its registry into ``dest``; FeatureUnavailable naming the feature
    and the registry when it does not answer within ``timeout_s`` (connecting: at most 5 s).
    Its layer may come from one of ``blob_hosts`` if the registry redirects there (a CDN the
    operator named: over https, without the registry's token; the layer is checked against
    its digest)."""
    registry, repo, tag = oci_parts(fid)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s))
    # The host's trust store as it is now (SSL_CERT_FILE included), read off the event loop.
    tls = await asyncio.to_thread(ssl.create_default_context)
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=tls)
        ) as http:
            blob = await _fetch(http, f"https://{registry}/v2/{repo}", tag, blob_hosts)
    except OffOrigin as exc:
        raise FeatureUnavailable(
            f"feature {fid}: its registry {registry}: {exc}",
            data={"feature": fid, "registry": registry},
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        raise FeatureUnavailable(
            f"feature {fid}: its registry {registry} did not answer ({why}) within {timeout_s:g}s",
            data={"feature": fid, "registry": registry},
        ) from None
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")  # no links out, no devices, no absolute names
    meta = dc.loads((dest / "devcontainer-feature.json").read_bytes(), f"{fid}: metadata")
    return _feature(fid, dest, meta, given)


@contextlib.asynccontextmanager
async def _get(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
               elsewhere: frozenset[str] = frozenset(),
               ) -> AsyncIterator[aiohttp.ClientResponse]:  # fmt: skip
    """GET ``url``, following a redirect only within its origin (https, the same host and
    port) or to a host of ``elsewhere`` (https; ``headers`` but ``Accept`` stay behind): the
    host's network is not the tenant's to walk, and a token goes nowhere but where it came
    from. OffOrigin otherwise."""
    origin = URL(url).origin()
    for _ in range(MAX_REDIRECTS + 1):
        async with http.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status not in _REDIRECTS:
                yield resp
                return
            target = URL(url).join(URL(resp.headers.get("Location", "")))
        if target.scheme != "https" or (target.origin() != origin and target.host not in elsewhere):
            raise OffOrigin(f"a redirect from {origin} to {target.origin()} is never followed "
                            "(only within the registry, over https)")  # fmt: skip
        if target.origin() != origin:
            headers = {k: v for k, v in headers.items() if k == "Accept"}
        url = str(target)
    raise OffOrigin(f"more than {MAX_REDIRECTS} redirects")


async def _fetch(http: aiohttp.ClientSession, base: str, tag: str,
                 blob_hosts: frozenset[str]) -> bytes:  # fmt: skip
    headers = {"Accept": _MEDIA}
    async with _get(http, f"{base}/manifests/{tag}", headers) as resp:
        if resp.status == 401:
            headers["Authorization"] = await _token(http, resp.headers.get("WWW-Authenticate", ""))
    async with _get(http, f"{base}/manifests/{tag}", headers) as resp:
        resp.raise_for_status()
        manifest = await resp.json(content_type=None)
    try:
        digest = str(manifest["layers"][0]["digest"])
    except (KeyError, IndexError, TypeError):
        raise aiohttp.ClientPayloadError("its manifest names no layer") from None
    async with _get(http, f"{base}/blobs/{digest}", headers, blob_hosts) as resp:
        resp.raise_for_status()
        blob = await resp.content.read(MAX_FEATURE_BYTES + 1)
    if len(blob) > MAX_FEATURE_BYTES or f"sha256:{hashlib.sha256(blob).hexdigest()}" != digest:
        raise aiohttp.ClientPayloadError(f"layer {digest} is too large or not what was named")
    return blob


async def _token(http: aiohttp.ClientSession, challenge: str) -> str:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = fields.pop("realm", "")
    if not realm.startswith("https://"):
        raise aiohttp.ClientResponseError(None, (), status=401, message="no usable token realm")  # type: ignore[arg-type]
    async with _get(http, str(URL(realm).update_query(fields)), {}) as resp:
        resp.raise_for_status()
        doc = await resp.json(content_type=None)
    return f"Bearer {doc.get('token') or doc.get('access_token')}"
