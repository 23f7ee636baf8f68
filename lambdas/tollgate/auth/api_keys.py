"""API keys: `sk-` + 48 random characters; the key id (first 12 characters) is the lookup key and the
bcrypt hash of the whole key is all that is stored.

Shape is checked before anything else, so a malformed key (too long for bcrypt's 72 bytes, non-ASCII,
empty) never costs a table read or a bcrypt round.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tollgate.clock import iso, parse_iso, utc_now
from tollgate.errors import AuthenticationFailed, NotFound, redact_secrets
from tollgate.money import text as usd

PREFIX = "sk-"
SECRET_LENGTH = 48
KEY_ID_LENGTH = 12
_ALPHABET = string.ascii_letters + string.digits
_SHAPE = re.compile(rf"^sk-[A-Za-z0-9]{{{SECRET_LENGTH}}}$")
_ID_SHAPE = re.compile(rf"sk-[A-Za-z0-9]{{{KEY_ID_LENGTH - len(PREFIX)}}}")

ACTIVE = "active"
SUSPENDED = "suspended"
REVOKED = "revoked"
STATUSES = (ACTIVE, SUSPENDED, REVOKED)
EXPIRED = "expired"  # never stored: an active key past its expires_at is reported so (ApiKeyRecord.status_at)

# One message for every failure: which check failed is logged, never told to the caller.
INVALID = "Invalid API key."


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    user_id: str
    name: str
    scopes: tuple[str, ...]
    key_hash: str
    created_at: str
    status: str = ACTIVE
    expires_at: str | None = None
    last_used: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    monthly_budget_usd: Decimal | None = None
    hourly_budget_usd: Decimal | None = None
    lineage: str | None = None  # set on a rotated key: the id of the first key of its line
    cache_ttl_s: int | None = None  # response cache TTL for this key's answers (seconds, 0: off); None: the user's
    rotated_to: str | None = None  # set once the key is rotated: its successor's key id (a key is rotated once)

    def status_at(self, now: datetime) -> str:
        """The status to report at `now`: the stored one (active, suspended, revoked), or EXPIRED for an
        active key whose expires_at (its own, or a rotation's grace end) has passed. Never written."""
        if self.status == ACTIVE and self.expires_at and parse_iso(self.expires_at) <= now:
            return EXPIRED
        return self.status

    def public(self, now: datetime | None = None) -> dict:
        """What an operator may see: everything but the hash. `status` is as of `now` (status_at; default
        the current time), `rotated_to` the successor's key id once the key was rotated (else None)."""
        out = {
            "key_id": self.key_id, "user": self.user_id, "name": self.name, "scopes": list(self.scopes),
            "status": self.status_at(now or utc_now()), "created_at": self.created_at, "expires_at": self.expires_at,
            "last_used": self.last_used, "rpm": self.rpm, "tpm": self.tpm,
            "monthly_budget_usd": None if self.monthly_budget_usd is None else usd(self.monthly_budget_usd),
            "hourly_budget_usd": None if self.hourly_budget_usd is None else usd(self.hourly_budget_usd),
            "lineage": self.lineage, "cache_ttl_s": self.cache_ttl_s, "rotated_to": self.rotated_to,
        }
        return out


def key_id_of(raw: str) -> str:
    """The key id of a well-formed key; raises AuthenticationFailed (reason `malformed`) otherwise."""
    if not isinstance(raw, str) or not _SHAPE.match(raw):
        raise AuthenticationFailed(INVALID, code="invalid_api_key")
    return raw[:KEY_ID_LENGTH]


def is_key_id(text: object) -> bool:
    """True when `text` is shaped like a key id: `sk-` and KEY_ID_LENGTH - 3 letters or digits (what
    `issue` stores and `tollgate keys list` shows). Only such text is ever repeated in an error."""
    return isinstance(text, str) and _ID_SHAPE.fullmatch(text) is not None


# What an operator is told when no key has the id given and the id is not shaped like one: it may hold the
# secret itself (`Bearer sk-…`, the secret without `sk-`), so it is not repeated.
NOT_A_KEY_ID_MESSAGE = (f"No API key with that id: a key id is the {KEY_ID_LENGTH} characters `{PREFIX}` + "
                        f"{KEY_ID_LENGTH - len(PREFIX)} shown by `tollgate keys list`; never send the secret key itself.")


def named(key_id: str) -> str:
    """`key_id` as an error message may name it: itself when is_key_id, else "with that id" (never the text)."""
    return key_id if is_key_id(key_id) else "with that id"


def no_such_key(key_id: str, param: str | None = None) -> NotFound:
    """The 404 for a key id no key has: it names the id only when is_key_id, else NOT_A_KEY_ID_MESSAGE."""
    if is_key_id(key_id):
        return NotFound(f"No API key with id {key_id}.", param=param)
    return NotFound(NOT_A_KEY_ID_MESSAGE, param=param)


def looks_like_api_key(token: str) -> bool:
    return token.startswith(PREFIX)


# What an operator is told when a whole key arrives where a key id is expected (the key is never repeated).
WHOLE_KEY_MESSAGE = ("That is a whole secret API key, where a name or an id was expected; it is not repeated here. "
                     "Send a key only as the credential (Authorization or x-api-key). Where a key id is asked for, "
                     f"use the {KEY_ID_LENGTH}-character id shown by `tollgate keys list`.")


def is_whole_secret(text: str) -> bool:
    """True when `text` (an id from a path, query, header, body or CLI argument) is, or starts like, a whole
    secret key: `sk-` and longer than a key id (KEY_ID_LENGTH characters), surrounding spaces ignored. The
    one test the gateway and the CLI use to refuse it without echoing it."""
    value = text.strip()
    return value.startswith(PREFIX) and len(value) > KEY_ID_LENGTH


def masked(text: str) -> str:
    """`text` (e.g. a URL path) with every `/`-separated segment that is_whole_secret cut to its key id +
    "…", and any other credential-like run redacted (tollgate.errors.redact_secrets: `Bearer%20sk-…`, a secret
    without its prefix), for log lines and error messages."""
    return redact_secrets("/".join(f"{s.strip()[:KEY_ID_LENGTH]}…" if is_whole_secret(s) else s for s in text.split("/")))


def fingerprint(raw: str) -> str:
    """A fast digest to recognise a key already verified in this container (never stored)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def generate() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def issue(user_id: str, *, name: str, scopes: tuple[str, ...], now: datetime, rounds: int = 12,
          expires_at: datetime | None = None, rpm: int | None = None, tpm: int | None = None,
          monthly_budget_usd: Decimal | None = None, hourly_budget_usd: Decimal | None = None,
          lineage: str | None = None, cache_ttl_s: int | None = None) -> tuple[str, ApiKeyRecord]:
    """A new key: (raw key, to be shown once; the record to store)."""
    import bcrypt

    raw = generate()
    record = ApiKeyRecord(
        key_id=raw[:KEY_ID_LENGTH], user_id=user_id, name=name, scopes=tuple(scopes),
        key_hash=bcrypt.hashpw(raw.encode(), bcrypt.gensalt(rounds)).decode(),
        created_at=iso(now), expires_at=iso(expires_at) if expires_at else None,
        rpm=rpm, tpm=tpm, monthly_budget_usd=monthly_budget_usd, hourly_budget_usd=hourly_budget_usd,
        lineage=lineage, cache_ttl_s=cache_ttl_s,
    )
    return raw, record


def check_usable(record: ApiKeyRecord, now: datetime) -> str | None:
    """Why a stored key may not be used right now (None if it may)."""
    status = record.status_at(now)
    return None if status == ACTIVE else status


def secret_matches(raw: str, record: ApiKeyRecord) -> bool:
    import bcrypt

    return bcrypt.checkpw(raw.encode(), record.key_hash.encode())
