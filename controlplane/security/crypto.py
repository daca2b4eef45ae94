"""Machine tokens: minted here, encrypted at rest with FLEET_SECRET_KEY (Fernet)."""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken

from contracts.daemon.signing import CREDENTIAL_SEP


class SecretBox:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError(
                "FLEET_SECRET_KEY is not set; generate one with: python -c 'from cryptography"
                ".fernet import Fernet; print(Fernet.generate_key().decode())'"
            )
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"FLEET_SECRET_KEY is not a valid Fernet key: {exc}") from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError("cannot decrypt: wrong FLEET_SECRET_KEY or corrupt data") from None


def generate_secret_key() -> str:
    return Fernet.generate_key().decode()


def mint_machine_token() -> str:
    """32 random bytes, URL-safe base64 (no padding): a NATS password and an HMAC key."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def renew_connect_secret(credential: str) -> str:
    """The machine's credential with a new NATS password: its token (the signing key's, kept)
    and a fresh secret (contracts/daemon/signing.py CREDENTIAL_SEP); the old credential is refused
    once the new one is stored."""
    return f"{credential.partition(CREDENTIAL_SEP)[0]}{CREDENTIAL_SEP}{mint_machine_token()}"
