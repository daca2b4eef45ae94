"""The auth callout's JWTs: the request it parses, the user JWT and the response it signs."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import nkeys  # type: ignore[import-untyped]
import pytest

from services.auth_callout import jwt as J

MID = "m-0123456789abcdef"
OTHER = "m-fedcba9876543210"


def _seed(prefix: int) -> str:
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), prefix)).decode()


def _public(seed: str) -> str:
    return bytes(nkeys.from_seed(seed.encode()).public_key).decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    h, c, s = token.split(".")
    return json.loads(J.b64url_decode(h)), json.loads(J.b64url_decode(c)), J.b64url_decode(s)


class _Signer(J.Issuer):
    """Any nkey as a signer, to forge tokens the way a server (or an attacker) would."""

    def __init__(self, seed: str) -> None:
        self._kp = nkeys.from_seed(seed.encode())
        self.public_key = bytes(self._kp.public_key).decode()


SERVER = _Signer(_seed(nkeys.PREFIX_BYTE_SERVER))
USER_NKEY = _public(_seed(nkeys.PREFIX_BYTE_USER))


def request_claims(**over: Any) -> dict[str, Any]:
    nats: dict[str, Any] = {
        "server_id": {"name": "fleetd", "host": "127.0.0.1", "id": SERVER.public_key},
        "user_nkey": USER_NKEY,
        "client_info": {"host": "127.0.0.1", "id": 7, "user": MID, "kind": "Client"},
        "connect_opts": {"user": MID, "pass": "tok", "name": "daemon:" + MID, "protocol": 1},
        "type": "authorization_request",
        "version": 2,
    }
    nats.update(over.pop("nats", {}))
    return {"sub": "AFAKEACCOUNTKEY", "aud": J.REQUEST_AUDIENCE, "nats": nats, **over}


@pytest.fixture
def issuer() -> J.Issuer:
    return J.Issuer(J.new_account_seed())


def test_issuer_is_an_account_nkey(issuer: J.Issuer) -> None:
    assert issuer.public_key.startswith("A")
    assert len(issuer.public_key) == 56
    assert J.is_public_key(issuer.public_key, nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(J.JWTError, match="account"):
        J.Issuer(_seed(nkeys.PREFIX_BYTE_USER))
    with pytest.raises(J.JWTError):
        J.Issuer("not a seed")


def test_public_key_checksum_and_role_are_checked(issuer: J.Issuer) -> None:
    pk = issuer.public_key
    assert len(J.public_key_bytes(pk, nkeys.PREFIX_BYTE_ACCOUNT)) == 32
    flipped = pk[:10] + ("B" if pk[10] != "B" else "C") + pk[11:]
    with pytest.raises(J.JWTError, match="checksum"):
        J.public_key_bytes(flipped, nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(J.JWTError, match="role"):
        J.public_key_bytes(pk, nkeys.PREFIX_BYTE_USER)


def test_encoding_is_nats_jwt(issuer: J.Issuer) -> None:
    token = J.encode({"sub": USER_NKEY, "nats": {"type": "user"}}, issuer, now=1000)
    header, claims, sig = _parts(token)
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert "=" not in token  # base64url without padding
    assert claims["iss"] == issuer.public_key
    assert claims["iat"] == 1000
    assert claims["jti"]
    # The signature is the issuer nkey's over "header.claims" (checked with nkeys itself).
    signed = token.rsplit(".", 1)[0].encode()
    assert nkeys.from_seed(issuer._kp.seed).verify(signed, sig)
    assert J.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)["sub"] == USER_NKEY


def test_decode_rejects_tampering_and_bad_tokens(issuer: J.Issuer) -> None:
    token = J.encode({"sub": USER_NKEY, "aud": "APP"}, issuer)
    h, c, s = token.split(".")
    claims = json.loads(J.b64url_decode(c))
    forged = J.b64url(json.dumps({**claims, "aud": "SYS"}).encode())
    with pytest.raises(J.JWTError, match="signature"):
        J.decode(f"{h}.{forged}.{s}", issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    # Re-signed by another account key under our issuer's name: still a bad signature.
    other = J.Issuer(J.new_account_seed())
    resigned = J.encode({"sub": USER_NKEY}, other).split(".")
    with pytest.raises(J.JWTError, match="signature"):
        J.decode(f"{h}.{c}.{resigned[2]}", issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(J.JWTError, match="role"):  # an account key where a server's is expected
        J.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_SERVER)
    alg = J.b64url(json.dumps({"typ": "JWT", "alg": "none"}).encode())
    with pytest.raises(J.JWTError, match="header"):
        J.decode(f"{alg}.{c}.{s}", issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    for junk in ("", "a.b", "a.b.c.d", "!!.??.--", f"{h}.{J.b64url(b'[1]')}.{s}"):
        with pytest.raises(J.JWTError):
            J.decode(junk, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(J.JWTError, match="subject"):
        J.encode({"aud": "APP"}, issuer)


def test_decode_checks_expiry(issuer: J.Issuer) -> None:
    token = J.encode({"sub": USER_NKEY, "exp": 2000, "nbf": 1000}, issuer, now=1000)
    assert J.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT, now=1500)
    with pytest.raises(J.JWTError, match="expired"):
        J.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT, now=2001)
    with pytest.raises(J.JWTError, match="not valid yet"):
        J.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT, now=999)
    assert J.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT, now=2009, leeway_s=10)


def test_parse_auth_request() -> None:
    req = J.parse_auth_request(J.encode(request_claims(), SERVER))
    assert req == J.AuthRequest(
        server_id=SERVER.public_key,
        user_nkey=USER_NKEY,
        user=MID,
        password="tok",
        client_id=7,
        client_host="127.0.0.1",
        client_name="daemon:" + MID,
    )
    # Servers before nats-io/jwt 2.5 call the type "authorization".
    old = request_claims(nats={"type": "authorization"})
    assert J.parse_auth_request(J.encode(old, SERVER)).user == MID


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (request_claims(aud="something-else"), "aud"),
        (request_claims(nats={"type": "user"}), "type"),
        (request_claims(nats={"user_nkey": "UNOTAKEY"}), "user_nkey"),
        (request_claims(nats={"user_nkey": _public(_seed(nkeys.PREFIX_BYTE_ACCOUNT))}), "nkey"),
        (request_claims(nats={"server_id": {}}), "server id"),
        (request_claims(exp=1), "expired"),
        (request_claims(exp=int(time.time()) - 60), "expired"),
    ],
)
def test_parse_auth_request_rejects(claims: dict[str, Any], match: str) -> None:
    with pytest.raises(J.JWTError, match=match):
        J.parse_auth_request(J.encode(claims, SERVER))


def test_parse_auth_request_must_be_signed_by_a_server(issuer: J.Issuer) -> None:
    with pytest.raises(J.JWTError, match="role"):
        J.parse_auth_request(J.encode(request_claims(), issuer))


def test_machine_permissions_are_exactly_its_own_subjects() -> None:
    perms = J.machine_permissions(MID)
    assert perms["pub"] == {
        "allow": [
            f"machine.daemon-status-reported.{MID}",
            f"machine.heartbeat.{MID}",
            f"daemon.{MID}.output.*",
            f"daemon.{MID}.bytes-out.*",
        ]
    }
    assert perms["sub"] == {
        "allow": [f"daemon.{MID}.rpc", f"daemon.{MID}.bytes-in.*", f"_INBOX_{MID}.>"]
    }
    assert perms["resp"] == {"max": 1, "ttl": J.RESPONSE_TTL_S * 10**9}
    assert J.RESPONSE_TTL_S > 3600  # the longest exec a machine can be asked to run
    assert set(perms) == {"pub", "sub", "resp"}
    flat = json.dumps(perms)
    assert OTHER not in flat
    for wildcard in ('"machine.>"', '"_INBOX.>"', '">"', ".*."):
        assert wildcard not in flat


def test_user_jwt_binds_the_machine_to_the_account(issuer: J.Issuer) -> None:
    token = J.user_jwt(issuer, user_nkey=USER_NKEY, machine_id=MID, account="APP")
    claims = J.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    assert claims["iss"] == issuer.public_key
    assert claims["sub"] == USER_NKEY
    assert claims["aud"] == "APP"  # placement in non-operator mode
    assert claims["name"] == MID
    nats = claims["nats"]
    assert nats["type"] == "user"
    assert nats["version"] == 2
    assert (nats["subs"], nats["data"], nats["payload"]) == (-1, -1, J.DEFAULT_MACHINE_PAYLOAD)
    assert nats["allowed_connection_types"] == ["STANDARD"]
    assert {k: nats[k] for k in ("pub", "sub", "resp")} == J.machine_permissions(MID)
    assert "issuer_account" not in nats  # refused by the server in non-operator mode
    assert "exp" not in claims
    expiring = J.user_jwt(
        issuer, user_nkey=USER_NKEY, machine_id=MID, account="APP", expires_at=4_000_000_000
    )
    assert _parts(expiring)[1]["exp"] == 4_000_000_000


def test_authorization_response(issuer: J.Issuer) -> None:
    req = J.parse_auth_request(J.encode(request_claims(), SERVER))
    user = J.user_jwt(issuer, user_nkey=req.user_nkey, machine_id=MID, account="APP")
    ok = J.decode(
        J.authorization_response(issuer, req, jwt=user), issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT
    )
    assert ok["sub"] == req.user_nkey  # the nkey the server generated for this connection
    assert ok["aud"] == req.server_id
    assert ok["iss"] == issuer.public_key
    assert ok["nats"] == {"type": "authorization_response", "version": 2, "jwt": user}

    refused = J.decode(
        J.authorization_response(issuer, req, error="machine credentials refused"),
        issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT,
    )
    assert refused["nats"]["error"] == "machine credentials refused"
    assert "jwt" not in refused["nats"]
    with pytest.raises(ValueError, match="not both"):
        J.authorization_response(issuer, req, jwt=user, error="x")
    with pytest.raises(ValueError, match="not both"):
        J.authorization_response(issuer, req)


def test_b64url_roundtrip() -> None:
    for n in range(6):
        data = secrets.token_bytes(n)
        assert J.b64url_decode(J.b64url(data)) == data
        assert J.b64url(data) == base64.urlsafe_b64encode(data).decode().rstrip("=")
