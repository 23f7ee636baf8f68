"""KMS envelope encryption of BYOK provider keys.

KMS issues a fresh AES-256 data key per seal (GenerateDataKey); the provider key is encrypted locally
with AES-256-GCM under a fresh 96-bit nonce. The owner (user, provider) is bound twice: as the KMS
encryption context of the data key, and as the GCM associated data of the ciphertext. A sealed value
copied onto another user's or provider's row therefore fails to open at both layers.

Python cannot wipe immutable `bytes`: a plaintext data key is copied into a bytearray, turned into an
AESGCM object (which keeps its own copy outside Python) and the bytearray zeroed at once. Callers hold
and cache the cipher object, never the key bytes. Nothing here logs.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12  # 96 bits: GCM's native nonce size
DATA_KEY_BYTES = 32  # AES-256
SCHEME = "kms-aes256gcm-v1"  # stored with each item, so a later format can be told apart


class Unsealable(Exception):
    """A sealed value cannot be opened: wrong owner, tampered, or not ours. Says nothing more on purpose."""


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes  # AES-GCM output, tag included
    nonce: bytes
    encrypted_data_key: bytes  # KMS ciphertext blob of the data key


def encryption_context(user: str, provider: str) -> dict[str, str]:
    return {"user": user, "provider": provider}


def associated_data(user: str, provider: str) -> bytes:
    # Canonical JSON, so no (user, provider) pair can collide with another ("a|b", "c" vs "a", "b|c").
    return SCHEME.encode() + b"\x00" + json.dumps(encryption_context(user, provider), sort_keys=True,
                                                   separators=(",", ":")).encode()


def zero(buffer: bytearray) -> None:
    for i in range(len(buffer)):
        buffer[i] = 0


def cipher(data_key: bytearray) -> AESGCM:
    """An AES-256-GCM cipher for a data key; the bytearray is zeroed whatever happens."""
    try:
        if len(data_key) != DATA_KEY_BYTES:
            raise Unsealable("unexpected data key length")
        return AESGCM(data_key)
    finally:
        zero(data_key)


def encrypt(aead: AESGCM, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """(nonce, ciphertext) under a fresh random nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, aead.encrypt(nonce, plaintext, aad)


def decrypt(aead: AESGCM, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    if len(nonce) != NONCE_BYTES:
        raise Unsealable("bad nonce length")
    try:
        return aead.decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise Unsealable("authentication failed") from None


class Envelope:
    """Seal and open provider keys with data keys from one KMS key."""

    def __init__(self, kms: Any, key_id: str):
        if not key_id:
            raise ValueError("no KMS key configured for BYOK (TOLLGATE_BYOK_KMS_KEY_ID)")
        self.kms = kms
        self.key_id = key_id

    def seal(self, plaintext: str, user: str, provider: str) -> Sealed:
        answer = self.kms.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                            EncryptionContext=encryption_context(user, provider))
        aead = cipher(bytearray(answer.pop("Plaintext")))
        nonce, ciphertext = encrypt(aead, plaintext.encode(), associated_data(user, provider))
        return Sealed(ciphertext=ciphertext, nonce=nonce, encrypted_data_key=answer["CiphertextBlob"])

    def opener(self, encrypted_data_key: bytes, user: str, provider: str) -> AESGCM:
        """The cipher of a stored data key, unwrapped by KMS under the owner's encryption context."""
        try:
            answer = self.kms.decrypt(CiphertextBlob=encrypted_data_key, KeyId=self.key_id,
                                      EncryptionContext=encryption_context(user, provider))
        except self.kms.exceptions.InvalidCiphertextException:
            raise Unsealable("KMS refused the data key for this owner") from None
        except self.kms.exceptions.IncorrectKeyException:
            raise Unsealable("the data key was sealed under another KMS key") from None
        return cipher(bytearray(answer.pop("Plaintext")))

    @staticmethod
    def open(aead: AESGCM, sealed: Sealed, user: str, provider: str) -> str:
        return decrypt(aead, sealed.nonce, sealed.ciphertext, associated_data(user, provider)).decode()
