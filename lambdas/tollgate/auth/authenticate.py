"""Turn a presented credential into a Principal: API key or JWT service token.

bcrypt (about 250 ms at cost 12) runs at most once per key per container per VERIFIED_TTL_S: a key
verified here is remembered by a SHA-256 fingerprint. The key's record is still read on every
authorizer invocation (API Gateway caches our answer for routes.AUTHORIZER_CACHE_TTL_S), so a revoked or
suspended key stops working within that TTL. Malformed keys and unknown key ids never reach bcrypt.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Callable

from tollgate.auth import api_keys
from tollgate.auth.principal import API_KEY, Limits, Principal
from tollgate.clock import Clock, utc_now
from tollgate.errors import AuthenticationFailed

log = logging.getLogger(__name__)

VERIFIED_TTL_S = 300
_TOUCH_EVERY_S = 60
_MAX_CACHED = 4096


class Authenticator:
    def __init__(self, keys: Any, user_context: Callable[[str], dict[str, Any]],
                 jwt_verifier: Callable[[str], Principal] | None = None, clock: Clock = utc_now,
                 monotonic: Callable[[], float] = time.monotonic):
        self.keys = keys
        self.user_context = user_context  # user -> {"user_monthly_usd", "byok": providers, "byok_budget_exempt"}
        self.jwt_verifier = jwt_verifier
        self.clock = clock
        self.monotonic = monotonic
        self.bcrypt_checks = 0
        self._verified: dict[str, tuple[str, str, float]] = {}  # key id -> (fingerprint, hash, when)
        self._touched: dict[str, float] = {}

    def authenticate(self, token: str | None) -> Principal:
        token = (token or "").strip()
        if api_keys.looks_like_api_key(token):
            return self._api_key(token)
        if token.count(".") == 2 and self.jwt_verifier is not None:
            principal = self.jwt_verifier(token)
            return principal.with_user_settings(self.user_context(principal.user))
        raise _fail("unrecognised credential")

    def _api_key(self, raw: str) -> Principal:
        try:
            key_id = api_keys.key_id_of(raw)
        except AuthenticationFailed:
            raise _fail("malformed api key") from None
        record = self.keys.get(key_id)
        if record is None:
            raise _fail("unknown key id", key_id)
        now = self.clock()
        reason = api_keys.check_usable(record, now)
        if reason:
            raise _fail(f"key {reason}", key_id)
        if not self._recently_verified(key_id, raw, record.key_hash):
            self.bcrypt_checks += 1
            if not api_keys.secret_matches(raw, record):
                raise _fail("wrong secret", key_id)
            self._remember(key_id, raw, record.key_hash)
        self._touch(key_id, now)
        principal = Principal(
            kind=API_KEY, id=key_id, user=record.user_id, scopes=frozenset(record.scopes),
            limits=Limits(rpm=record.rpm, tpm=record.tpm, key_monthly_usd=record.monthly_budget_usd,
                          key_hourly_usd=record.hourly_budget_usd),
            lineage=record.lineage,
        ).with_user_settings(self.user_context(record.user_id))
        if record.cache_ttl_s is not None:  # the key's own response cache setting wins over its user's
            principal = replace(principal, cache_ttl_s=record.cache_ttl_s)
        return principal

    def _recently_verified(self, key_id: str, raw: str, key_hash: str) -> bool:
        seen = self._verified.get(key_id)
        return bool(seen and seen[0] == api_keys.fingerprint(raw) and seen[1] == key_hash
                    and self.monotonic() - seen[2] < VERIFIED_TTL_S)

    def _remember(self, key_id: str, raw: str, key_hash: str) -> None:
        if len(self._verified) >= _MAX_CACHED:
            self._verified.clear()
        self._verified[key_id] = (api_keys.fingerprint(raw), key_hash, self.monotonic())

    def _touch(self, key_id: str, now: Any) -> None:
        last = self._touched.get(key_id)
        if last is not None and self.monotonic() - last < _TOUCH_EVERY_S:
            return
        self._touched[key_id] = self.monotonic()
        try:
            self.keys.touch_last_used(key_id, now)
        except Exception:  # lastUsed is informational: never fail a request over it
            log.warning("could not record lastUsed", extra={"key_id": key_id}, exc_info=True)


def _fail(reason: str, key_id: str | None = None) -> AuthenticationFailed:
    log.info("authentication refused", extra={"reason": reason, "key_id": key_id})
    return AuthenticationFailed(api_keys.INVALID)


def credential(headers: dict[str, str], header: str) -> str | None:
    """The credential in exactly one header (names case-insensitive): the one API Gateway keyed its
    cache on. Reading another header would cache one credential's answer under another's value."""
    value = {k.lower(): v for k, v in (headers or {}).items()}.get(header.lower())
    if value is None or header.lower() != "authorization":
        return value
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
