"""Bring your own key: a user's own provider keys, validated once, stored sealed, used by the gateway.

The raw key appears in no log line, error message, response or table item: only `last4` is kept in
clear, for the user to tell their keys apart.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

from tollgate import errors
from tollgate.clock import Clock, utc_now
from tollgate.crypto import SCHEME, Envelope, Unsealable
from tollgate.store.provider_keys import ProviderKeyStore, sealed_of

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 512
DATA_KEY_TTL_S = 300
DATA_KEY_CACHE_SIZE = 256


class ProviderKeyUnavailable(errors.Conflict):
    """The authorizer's (cached) answer said the user has a key, but it is gone: not a silent fallback to
    the platform's key, because this request's budgets were decided for a BYOK call."""

    code = "provider_key_unavailable"
    retryable = False


class ProviderKeyUnreadable(errors.TollgateError):
    code = "provider_key_unreadable"
    retryable = False


class DataKeyCache:
    """Unwrapped data keys (as AES-GCM cipher objects, never raw bytes) by (user, provider, digest of the
    encrypted data key), for a short while, so a BYOK request does not pay a KMS call each time.

    The digest makes a replaced key a miss; the owner in the cache key means a ciphertext copied onto
    another row never meets its real owner's cached key.
    """

    def __init__(self, ttl_s: float = DATA_KEY_TTL_S, max_entries: int = DATA_KEY_CACHE_SIZE,
                 monotonic: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.monotonic = monotonic
        self._entries: OrderedDict[tuple[str, str, str], tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(user: str, provider: str, encrypted_data_key: bytes) -> tuple[str, str, str]:
        return user, provider, hashlib.sha256(encrypted_data_key).hexdigest()

    def get(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self.monotonic() >= entry[1]:
                del self._entries[key]
                return None
            return entry[0]

    def put(self, key: tuple[str, str, str], opener: Any) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (opener, self.monotonic() + self.ttl_s)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)  # the oldest

    def forget(self, user: str, provider: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[:2] == (user, provider)]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class ByokService:
    def __init__(self, store: ProviderKeyStore, kms_client: Any, kms_key_id: str | None,
                 providers: Mapping[str, Any], clock: Clock = utc_now, validate_timeout_s: float = 5.0,
                 cache: DataKeyCache | None = None):
        self.store = store
        self.kms = kms_client
        self.kms_key_id = kms_key_id
        self.providers = providers
        self.clock = clock
        self.validate_timeout_s = validate_timeout_s
        self.cache = cache or DataKeyCache()

    @property
    def envelope(self) -> Envelope:
        return Envelope(self.kms, self.kms_key_id or "")

    # -- the user's routes ----------------------------------------------------------------------------
    def put(self, user: str, provider: str, body: dict[str, Any]) -> dict[str, Any]:
        self._known(provider)
        api_key = _api_key_from(body)
        self._validate(provider, api_key)
        sealed = self.envelope.seal(api_key, user, provider)
        item = self.store.put(user, provider, sealed, scheme=SCHEME, last4=api_key[-4:], now=self.clock())
        self.cache.forget(user, provider)
        log.info("provider key stored", extra={"user": user, "provider": provider})
        return _describe(item)

    def describe(self, user: str, provider: str) -> dict[str, Any]:
        self._known(provider)
        item = self.store.get(user, provider)
        if item is None:
            raise _not_found(provider)
        return _describe(item)

    def delete(self, user: str, provider: str) -> dict[str, Any]:
        self._known(provider)
        item = self.store.delete(user, provider)
        self.cache.forget(user, provider)
        if item is None:
            raise _not_found(provider)
        log.info("provider key deleted", extra={"user": user, "provider": provider})
        return {"provider": provider, "deleted": True}

    # -- the authorizer and the gateway ---------------------------------------------------------------
    def providers_of(self, user: str) -> set[str]:
        return self.store.providers_of(user)

    def key_for(self, user: str, provider: str) -> str:
        item = self.store.get(user, provider)
        if item is None:
            raise ProviderKeyUnavailable(
                f"Your {provider} key was removed; retry in a minute to use the platform's key.")
        sealed = sealed_of(item)
        cache_key = DataKeyCache.key(user, provider, sealed.encrypted_data_key)
        try:
            opener = self.cache.get(cache_key)
            if opener is None:
                opener = self.envelope.opener(sealed.encrypted_data_key, user, provider)
                api_key = Envelope.open(opener, sealed, user, provider)
                self.cache.put(cache_key, opener)  # cached only once it has opened this very item
                return api_key
            return Envelope.open(opener, sealed, user, provider)
        except Unsealable:
            log.warning("stored provider key cannot be opened", extra={"user": user, "provider": provider})
            raise ProviderKeyUnreadable(
                f"Your stored {provider} key cannot be decrypted; set it again "
                f"(PUT /v1/provider-keys/{provider}).") from None

    # -- helpers --------------------------------------------------------------------------------------
    def _known(self, provider: str) -> None:
        if provider not in self.providers:
            raise errors.InvalidRequest(
                f"Unknown provider {provider!r}; expected one of: {', '.join(sorted(self.providers))}.",
                code="unknown_provider", param="provider")

    def _validate(self, provider: str, api_key: str) -> None:
        """One direct call to the provider with a short timeout: never through the gateway, never retried."""
        try:
            accepted = self.providers[provider].validate_key(api_key, timeout_s=self.validate_timeout_s)
        except errors.ProviderFailed:
            raise errors.ProviderFailed(
                f"Could not reach {provider} to check the key; nothing was stored. Try again later.") from None
        if not accepted:
            raise errors.InvalidRequest(f"{provider} refused this key; nothing was stored.",
                                        code="invalid_provider_key", param="api_key")


def _api_key_from(body: dict[str, Any]) -> str:
    value = body.get("api_key")
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidRequest("Give the provider key as a non-empty string in 'api_key'.", param="api_key")
    value = value.strip()
    if len(value) > MAX_KEY_CHARS:
        raise errors.InvalidRequest(f"'api_key' is longer than {MAX_KEY_CHARS} characters.", param="api_key")
    if not (value.isascii() and value.isprintable()) or any(c.isspace() for c in value):
        # Such a key cannot go in an HTTP header anyway.
        raise errors.InvalidRequest("'api_key' must be printable ASCII without spaces.", param="api_key")
    return value


def _not_found(provider: str) -> errors.NotFound:
    return errors.NotFound(f"No {provider} key stored for you.", code="provider_key_not_found")


def _describe(item: dict[str, Any]) -> dict[str, Any]:
    return {"provider": item["provider"], "last4": item.get("last4"), "created_at": item.get("createdAt"),
            "updated_at": item.get("updatedAt"), "validated_at": item.get("validatedAt")}
