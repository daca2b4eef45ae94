"""NATS JWTs for the auth callout, as pure functions: parse the server's authorization request,
build the machine's user JWT and the signed authorization response.

The format is nats-io/jwt v2: ``base64url(header) . base64url(claims) . base64url(signature)``,
unpadded, header ``{"typ":"JWT","alg":"ed25519-nkey"}``, the signature an ed25519 signature of
the first two parts by the issuer's nkey, and the NATS-specific claims under ``"nats"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import nkeys  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.bus import subjects

ALGORITHM = "ed25519-nkey"
HEADER: dict[str, str] = {"typ": "JWT", "alg": ALGORITHM}
#: The ``aud`` of every authorization request (nats-server ``AuthRequestSubject``).
REQUEST_AUDIENCE = "nats-authorization-request"
#: ``nats.type`` of a request: "authorization_request" in current nats-io/jwt, "authorization"
#: in older servers.
_REQUEST_TYPES = frozenset({"authorization_request", "authorization"})
RESPONSE_TYPE = "authorization_response"
#: Clock skew tolerated on an authorization request's expiry.
REQUEST_LEEWAY_S = 30.0
#: jwt library version the claims follow (nats-io/jwt v2).
CLAIMS_VERSION = 2
#: How long a machine may take to answer a request it received: the longest exec it can be
#: asked for (3600 s) plus margin. Past this the server drops the reply.
RESPONSE_TTL_S = 3600 + 300

# nkey prefix bytes (the first base32 letter of the encoded key).
_PREFIX_ACCOUNT = nkeys.PREFIX_BYTE_ACCOUNT  # 'A'
_PREFIX_SERVER = nkeys.PREFIX_BYTE_SERVER  # 'N'
_PREFIX_USER = nkeys.PREFIX_BYTE_USER  # 'U'


class JWTError(ValueError):
    """A token that is malformed, wrongly signed, expired or not what was expected."""


# --- encoding ---------------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JWTError(f"not base64url: {exc}") from None


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


# --- nkeys ------------------------------------------------------------------------------------
def new_account_seed() -> str:
    """A fresh account nkey seed (``SA...``): the callout's issuer key."""
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), _PREFIX_ACCOUNT)).decode()


class Issuer:
    """An account nkey that signs authorization responses and user JWTs."""

    def __init__(self, seed: str) -> None:
        try:
            prefix, _ = nkeys.decode_seed(seed.strip().encode())
            self._kp = nkeys.from_seed(seed.strip().encode())
        except nkeys.NkeysError as exc:
            raise JWTError(f"not an nkey seed: {exc}") from None
        if prefix != _PREFIX_ACCOUNT:
            raise JWTError("the callout issuer must be an account nkey (seed 'SA...')")
        self.public_key: str = bytes(self._kp.public_key).decode()

    def sign(self, data: bytes) -> bytes:
        return bytes(self._kp.sign(data))


def public_key_bytes(public_key: str, prefix: int) -> bytes:
    """The raw ed25519 key inside an encoded nkey, checking its role prefix and checksum."""
    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError):
        raise JWTError("public nkey is not base32") from None
    if len(raw) != 35 or raw[0] != prefix:
        raise JWTError("public nkey has the wrong length or role")
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if nkeys.crc16(bytearray(body)) != crc:
        raise JWTError("public nkey checksum mismatch")
    return bytes(body[1:])


def is_public_key(public_key: str, prefix: int) -> bool:
    try:
        public_key_bytes(public_key, prefix)
    except JWTError:
        return False
    return True


# --- generic JWT ------------------------------------------------------------------------------
def encode(claims: dict[str, Any], issuer: Issuer, *, now: float | None = None) -> str:
    """Sign ``claims`` (``sub`` required) as ``issuer``; sets ``iss``, ``iat`` and ``jti``."""
    if not claims.get("sub"):
        raise JWTError("claims need a subject")
    body = {**claims, "iss": issuer.public_key, "iat": int(time.time() if now is None else now)}
    body.pop("jti", None)
    # Like nats-io/jwt, the id is a hash of the claims (the server does not check it).
    body["jti"] = base64.b32encode(hashlib.sha256(_json(body)).digest()).decode().rstrip("=")
    signing_input = f"{b64url(_json(HEADER))}.{b64url(_json(body))}"
    return f"{signing_input}.{b64url(issuer.sign(signing_input.encode()))}"


def decode(
    token: str, *, issuer_prefix: int, now: float | None = None, leeway_s: float = 0.0
) -> dict[str, Any]:
    """The claims of ``token`` after checking its header, its signature against its own ``iss``
    (which must be an nkey of role ``issuer_prefix``) and its ``exp``/``nbf`` (give or take
    ``leeway_s`` of clock skew)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JWTError("a JWT has three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise JWTError("JWT header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("JWT header and claims must be objects")
    if header.get("alg") != ALGORITHM or str(header.get("typ", "")).upper() != "JWT":
        raise JWTError(f"unsupported JWT header {header!r}")
    iss = claims.get("iss")
    if not isinstance(iss, str):
        raise JWTError("JWT has no issuer")
    key = Ed25519PublicKey.from_public_bytes(public_key_bytes(iss, issuer_prefix))
    try:
        key.verify(b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode())
    except InvalidSignature:
        raise JWTError("bad JWT signature") from None
    t = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and exp and t > exp + leeway_s:
        raise JWTError("JWT has expired")
    if isinstance(nbf, int | float) and nbf and t < nbf - leeway_s:
        raise JWTError("JWT is not valid yet")
    return claims


# --- the auth callout -------------------------------------------------------------------------
@dataclass(frozen=True)
class AuthRequest:
    """What the server tells the callout about a connecting client."""

    #: The server asking; the response's ``aud`` must be its id.
    server_id: str
    #: The user nkey the server generated for this connection; the response's and the user
    #: JWT's ``sub`` must be it.
    user_nkey: str
    #: CONNECT ``user`` / ``pass``.
    user: str
    password: str
    client_id: int
    client_host: str
    client_name: str


def parse_auth_request(token: str, *, now: float | None = None) -> AuthRequest:
    """Decode and check an authorization request JWT (signed by the server's nkey)."""
    # The server's exp is its auth timeout (2 s), in whole seconds: allow for clock skew
    # between hosts. A late answer is harmless anyway, bound to this connection's user nkey.
    claims = decode(token, issuer_prefix=_PREFIX_SERVER, now=now, leeway_s=REQUEST_LEEWAY_S)
    if claims.get("aud") != REQUEST_AUDIENCE:
        raise JWTError("not an authorization request (aud)")
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") not in _REQUEST_TYPES:
        raise JWTError("not an authorization request (type)")
    server = nats.get("server_id") or {}
    user_nkey = nats.get("user_nkey", "")
    if not isinstance(user_nkey, str) or not is_public_key(user_nkey, _PREFIX_USER):
        raise JWTError("authorization request has no valid user_nkey")
    server_id = server.get("id", "") if isinstance(server, dict) else ""
    if not isinstance(server_id, str) or not server_id:
        raise JWTError("authorization request has no server id")
    opts = nats.get("connect_opts") or {}
    info = nats.get("client_info") or {}
    if not isinstance(opts, dict) or not isinstance(info, dict):
        raise JWTError("authorization request has malformed client data")
    cid = info.get("id", 0)
    return AuthRequest(
        server_id=server_id,
        user_nkey=user_nkey,
        user=str(opts.get("user", "")),
        password=str(opts.get("pass", "")),
        client_id=cid if isinstance(cid, int) else 0,
        client_host=str(info.get("host", "")),
        client_name=str(opts.get("name", "")),
    )


def machine_permissions(machine_id: str) -> dict[str, Any]:
    """Exactly what a machine may do: serve its own RPC subject, receive on its private inbox,
    publish its own status reports, heartbeats, streamed output and its side of its byte
    streams, read the platform's side of its byte streams, and answer requests it received."""
    return {
        "pub": {
            "allow": [
                subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, machine_id),
                subjects.heartbeat(machine_id),
                # Its own streamed output only: it cannot write into another machine's stream.
                subjects.exec_output(machine_id, "*"),
                # Its own side of its own byte streams (terminals, files, tunnels).
                subjects.stream_from_machine(machine_id, "*"),
            ]
        },
        "sub": {
            "allow": [
                subjects.daemon_rpc(machine_id),
                subjects.stream_to_machine(machine_id, "*"),
                subjects.machine_inbox_prefix(machine_id) + ".>",
            ]
        },
        # One reply per request received, within RESPONSE_TTL_S (nanoseconds on the wire).
        "resp": {"max": 1, "ttl": RESPONSE_TTL_S * 1_000_000_000},
    }


#: A machine's default payload limit: the NATS default max_payload (its answers carry output).
DEFAULT_MACHINE_PAYLOAD = 1024 * 1024


def user_claims(
    *, user_nkey: str, machine_id: str, account: str, expires_at: int | None = None,
    max_payload: int = DEFAULT_MACHINE_PAYLOAD,
) -> dict[str, Any]:  # fmt: skip
    """The machine's user JWT claims. ``aud`` is the account the server binds the connection
    to (non-operator mode): a wrong one would put the machine in another account."""
    claims: dict[str, Any] = {
        "sub": user_nkey,
        "aud": account,
        "name": machine_id,
        "nats": {
            **machine_permissions(machine_id),
            # Plain NATS clients only (no websocket, MQTT or leafnode connections).
            "allowed_connection_types": ["STANDARD"],
            "subs": -1,
            "data": -1,
            # The server refuses a larger message from this machine (without a cap of its own,
            # a machine could send the server's largest).
            "payload": max_payload,
            "type": "user",
            "version": CLAIMS_VERSION,
        },
    }
    if expires_at:
        claims["exp"] = expires_at
    return claims


def user_jwt(
    issuer: Issuer,
    *,
    user_nkey: str,
    machine_id: str,
    account: str,
    expires_at: int | None = None,
    now: float | None = None,
    max_payload: int = DEFAULT_MACHINE_PAYLOAD,
) -> str:
    claims = user_claims(
        user_nkey=user_nkey, machine_id=machine_id, account=account, expires_at=expires_at,
        max_payload=max_payload,
    )  # fmt: skip
    return encode(claims, issuer, now=now)


def authorization_response(
    issuer: Issuer,
    request: AuthRequest,
    *,
    jwt: str | None = None,
    error: str | None = None,
    now: float | None = None,
) -> str:
    """The signed answer to ``request``: exactly one of a user JWT or an error."""
    if (jwt is None) == (error is None):
        raise ValueError("an authorization response carries a jwt or an error, not both")
    payload: dict[str, Any] = {"type": RESPONSE_TYPE, "version": CLAIMS_VERSION}
    if jwt is not None:
        payload["jwt"] = jwt
    else:
        payload["error"] = error
    claims = {"sub": request.user_nkey, "aud": request.server_id, "nats": payload}
    return encode(claims, issuer, now=now)
