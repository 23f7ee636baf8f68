"""Envelope encryption of BYOK keys and the data-key cache, against an in-memory KMS."""
from __future__ import annotations

import os
import types

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tollgate import crypto
from tollgate.byok import DataKeyCache
from tollgate.crypto import NONCE_BYTES, Envelope, Sealed, Unsealable

KEY = "sk-alice-own-openai-key-1234"


class InvalidCiphertextException(Exception):
    pass


class IncorrectKeyException(Exception):
    pass


class FakeKms:
    """Wraps data keys under one master key, binding the encryption context like KMS does.

    `careless=True` ignores the context on decrypt, to show the GCM associated data holds on its own.
    """

    exceptions = types.SimpleNamespace(InvalidCiphertextException=InvalidCiphertextException,
                                       IncorrectKeyException=IncorrectKeyException)

    def __init__(self, key_id: str = "arn:aws:kms:us-east-1:123456789012:key/test", careless: bool = False):
        self.key_id = key_id
        self.careless = careless
        self._master = AESGCM(os.urandom(32))
        self._issued: dict[bytes, bytes] = {}  # blob -> data key, for the careless mode
        self.calls: list[tuple[str, dict]] = []

    @staticmethod
    def _aad(context: dict) -> bytes:
        return repr(sorted(context.items())).encode()

    def generate_data_key(self, *, KeyId, KeySpec, EncryptionContext):  # noqa: N803 (boto3 names)
        assert KeyId == self.key_id and KeySpec == "AES_256"
        self.calls.append(("GenerateDataKey", EncryptionContext))
        plaintext, nonce = os.urandom(32), os.urandom(12)
        blob = nonce + self._master.encrypt(nonce, plaintext, self._aad(EncryptionContext))
        self._issued[blob] = plaintext
        return {"Plaintext": plaintext, "CiphertextBlob": blob, "KeyId": KeyId}

    def decrypt(self, *, CiphertextBlob, KeyId, EncryptionContext):  # noqa: N803
        if KeyId != self.key_id:
            raise IncorrectKeyException()
        self.calls.append(("Decrypt", EncryptionContext))
        blob = CiphertextBlob
        if self.careless and blob in self._issued:
            return {"Plaintext": self._issued[blob], "KeyId": KeyId}
        try:
            return {"Plaintext": self._master.decrypt(blob[:12], blob[12:], self._aad(EncryptionContext)),
                    "KeyId": KeyId}
        except Exception:
            raise InvalidCiphertextException() from None


@pytest.fixture
def kms():
    return FakeKms()


def _open(envelope: Envelope, sealed: Sealed, user: str, provider: str) -> str:
    return Envelope.open(envelope.opener(sealed.encrypted_data_key, user, provider), sealed, user, provider)


def test_round_trip_binds_the_owner_in_the_kms_context(kms):
    envelope = Envelope(kms, kms.key_id)
    sealed = envelope.seal(KEY, "alice", "openai")
    assert KEY.encode() not in sealed.ciphertext + sealed.nonce + sealed.encrypted_data_key
    assert len(sealed.nonce) == NONCE_BYTES == 12
    assert len(sealed.ciphertext) == len(KEY) + 16  # GCM tag
    assert _open(envelope, sealed, "alice", "openai") == KEY
    assert kms.calls == [("GenerateDataKey", {"user": "alice", "provider": "openai"}),
                         ("Decrypt", {"user": "alice", "provider": "openai"})]


@pytest.mark.parametrize("user, provider", [("bob", "openai"), ("alice", "anthropic")])
def test_another_owner_cannot_open_it(kms, user, provider):
    envelope = Envelope(kms, kms.key_id)
    sealed = envelope.seal(KEY, "alice", "openai")
    with pytest.raises(Unsealable):
        _open(envelope, sealed, user, provider)


@pytest.mark.parametrize("user, provider", [("bob", "openai"), ("alice", "anthropic")])
def test_the_associated_data_holds_even_if_kms_ignored_the_context(user, provider):
    kms = FakeKms(careless=True)
    envelope = Envelope(kms, kms.key_id)
    sealed = envelope.seal(KEY, "alice", "openai")
    opener = envelope.opener(sealed.encrypted_data_key, user, provider)  # the careless KMS lets it through
    with pytest.raises(Unsealable):
        Envelope.open(opener, sealed, user, provider)
    assert Envelope.open(opener, sealed, "alice", "openai") == KEY


def test_associated_data_cannot_collide_across_owners():
    assert crypto.associated_data("a|b", "c") != crypto.associated_data("a", "b|c")
    assert crypto.associated_data("a", "bc") != crypto.associated_data("ab", "c")


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


@pytest.mark.parametrize("field, index", [("ciphertext", 0), ("ciphertext", -1), ("nonce", 0), ("nonce", 11)])
def test_tampering_with_ciphertext_or_nonce_fails(kms, field, index):
    envelope = Envelope(kms, kms.key_id)
    sealed = envelope.seal(KEY, "alice", "openai")
    value = getattr(sealed, field)
    tampered = Sealed(**{**sealed.__dict__, field: _flip(value, index % len(value))})
    with pytest.raises(Unsealable):
        _open(envelope, tampered, "alice", "openai")


def test_a_truncated_nonce_or_a_tampered_data_key_fails(kms):
    envelope = Envelope(kms, kms.key_id)
    sealed = envelope.seal(KEY, "alice", "openai")
    with pytest.raises(Unsealable):
        _open(envelope, Sealed(sealed.ciphertext, sealed.nonce[:8], sealed.encrypted_data_key), "alice", "openai")
    with pytest.raises(Unsealable):
        _open(envelope, Sealed(sealed.ciphertext, sealed.nonce, _flip(sealed.encrypted_data_key, 20)),
              "alice", "openai")


def test_a_data_key_from_another_kms_key_fails(kms):
    sealed = Envelope(kms, kms.key_id).seal(KEY, "alice", "openai")
    with pytest.raises(Unsealable):
        _open(Envelope(kms, "arn:aws:kms:us-east-1:123456789012:key/other"), sealed, "alice", "openai")


def test_every_seal_uses_a_fresh_nonce_and_data_key(kms):
    envelope = Envelope(kms, kms.key_id)
    sealed = [envelope.seal(KEY, "alice", "openai") for _ in range(50)]
    assert len({s.nonce for s in sealed}) == 50
    assert len({s.encrypted_data_key for s in sealed}) == 50
    assert len({s.ciphertext for s in sealed}) == 50
    assert all(len(s.nonce) * 8 == 96 for s in sealed)


def test_encrypting_twice_with_one_data_key_never_reuses_a_nonce():
    aead = crypto.cipher(bytearray(os.urandom(32)))
    nonces = {crypto.encrypt(aead, b"same", b"aad")[0] for _ in range(1000)}
    assert len(nonces) == 1000


def test_the_plaintext_data_key_buffer_is_zeroed():
    buffer = bytearray(os.urandom(32))
    aead = crypto.cipher(buffer)
    assert buffer == bytearray(32)
    nonce, ciphertext = crypto.encrypt(aead, b"still works", b"")
    assert crypto.decrypt(aead, nonce, ciphertext, b"") == b"still works"
    short = bytearray(b"x" * 16)
    with pytest.raises(Unsealable):
        crypto.cipher(short)
    assert short == bytearray(16)


def test_no_kms_key_configured_is_a_clear_error(kms):
    with pytest.raises(ValueError, match="TOLLGATE_BYOK_KMS_KEY_ID"):
        Envelope(kms, "")


# --- the data-key cache ------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_entries_expire_after_the_ttl():
    clock = Clock()
    cache = DataKeyCache(ttl_s=300, monotonic=clock)
    key = DataKeyCache.key("alice", "openai", b"edk")
    cache.put(key, "opener")
    clock.now += 299
    assert cache.get(key) == "opener"
    clock.now += 1
    assert cache.get(key) is None and len(cache) == 0


def test_cache_is_bounded_and_drops_the_oldest():
    cache = DataKeyCache(max_entries=3, monotonic=Clock())
    keys = [DataKeyCache.key(f"user{i}", "openai", b"edk") for i in range(5)]
    for i, key in enumerate(keys):
        cache.put(key, i)
    assert len(cache) == 3
    assert [cache.get(k) for k in keys] == [None, None, 2, 3, 4]


def test_cache_keys_bind_owner_and_data_key_and_forget_drops_one_owner():
    cache = DataKeyCache(monotonic=Clock())
    mine = DataKeyCache.key("alice", "openai", b"edk-1")
    assert DataKeyCache.key("bob", "openai", b"edk-1") != mine
    assert DataKeyCache.key("alice", "openai", b"edk-2") != mine
    assert b"edk-1".decode() not in mine[2]  # a digest, not the blob
    cache.put(mine, "a")
    cache.put(DataKeyCache.key("alice", "anthropic", b"edk-3"), "b")
    cache.forget("alice", "openai")
    assert cache.get(mine) is None and len(cache) == 1
