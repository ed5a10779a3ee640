"""Encryption of stored credentials: AES-256-GCM, bound to the (service, tenant) it belongs to.

Every value gets a fresh random 96-bit nonce, and its (service, tenant_id) is
the associated data: a row copied to another tenant or service fails to
authenticate there instead of decrypting. Each sealed value also records the
id of its key (a keyed fingerprint, which names the key without revealing it),
so a store can tell "wrong key" from "altered row" and knows what a key
rotation has to re-encrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import ConfigError

__all__ = ["SECRET_KEY_ENV", "CredentialCipher", "Sealed", "generate_key"]

SECRET_KEY_ENV = "CONNECTOR_SECRET_KEY"

_KEY_BYTES = 32
_NONCE_BYTES = 12
_AAD_PREFIX = b"nexus-connector/credentials/v1"
_KEY_ID_LABEL = b"nexus-connector/credential-key-id/v1"
_HIDDEN = "***"


def generate_key() -> str:
    """A new random 256-bit key in urlsafe base64, the form `CONNECTOR_SECRET_KEY` takes."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")


class Sealed(msgspec.Struct, frozen=True):
    """An encrypted value: ciphertext (with its tag), its nonce, and the id of its key."""

    ciphertext: bytes
    nonce: bytes
    key_id: str


class CredentialCipher:
    """Seals and opens secrets with one key.

    ``key`` is 32 bytes, raw or as urlsafe base64 (what `generate_key` returns;
    a Fernet key also fits). Errors name the key's source but never show it.
    """

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: str | bytes, *, source: str = "key") -> None:
        raw = _decode_key(key, source)
        self._aead = AESGCM(raw)
        self.key_id = hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CredentialCipher | None:
        """The cipher for `CONNECTOR_SECRET_KEY`, or None when it is not set."""
        value = (os.environ if environ is None else environ).get(SECRET_KEY_ENV)
        return None if value is None else cls(value, source=SECRET_KEY_ENV)

    def encrypt(self, plaintext: bytes, service: str, tenant_id: str | None) -> Sealed:
        # From the OS, not an injected Random: a nonce repeated under one key
        # breaks GCM, and no simulation needs to replay an encryption.
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, plaintext, _associated_data(service, tenant_id))
        return Sealed(ciphertext, nonce, self.key_id)

    def decrypt(self, sealed: Sealed, service: str, tenant_id: str | None) -> bytes:
        """The plaintext, or `ConfigError` if this key or this (service, tenant) does not fit."""
        if sealed.key_id != self.key_id:
            raise ConfigError(
                SECRET_KEY_ENV,
                _HIDDEN,
                f"does not decrypt the stored credentials of {_whose(service, tenant_id)}: "
                f"they were encrypted with key id {sealed.key_id}, this key's id is "
                f"{self.key_id}",
            )
        try:
            return self._aead.decrypt(
                sealed.nonce, sealed.ciphertext, _associated_data(service, tenant_id)
            )
        except InvalidTag:
            raise ConfigError(
                "credentials",
                (service, tenant_id),
                "the stored value fails authentication under the right key: it was altered, "
                "or copied from another (service, tenant)",
            ) from None

    def __repr__(self) -> str:
        return f"CredentialCipher(key_id={self.key_id!r})"


def _decode_key(key: str | bytes, source: str) -> bytes:
    reason = f"must be {_KEY_BYTES} bytes, raw or in urlsafe base64 (see generate_key())"
    if isinstance(key, bytes):
        raw = key
    elif isinstance(key, str):
        text = key.strip()
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(source, _HIDDEN, reason) from None
    else:
        raise ConfigError(source, type(key).__name__, "must be a str or bytes")
    if len(raw) != _KEY_BYTES:
        raise ConfigError(source, _HIDDEN, reason)
    return raw


def _associated_data(service: str, tenant_id: str | None) -> bytes:
    # JSON keeps the pair unambiguous: ("a", "b:c") and ("a:b", "c") differ.
    return _AAD_PREFIX + msgspec.json.encode([service, tenant_id])


def _whose(service: str, tenant_id: str | None) -> str:
    tenant = f"tenant '{tenant_id}'" if tenant_id is not None else "the default tenant"
    return f"service '{service}' and {tenant}"
