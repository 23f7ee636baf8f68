"""The Idempotency-Key header, as every route that honours it reads it, and the request it is bound to.

A key names one request: the first request's (route, body) hash is stored with the key, and a later
request with the same key is answered with the first one's answer only if its hash is the same; another
route or body is refused with 422 (IETF draft "The Idempotency-Key HTTP Header Field",
draft-ietf-httpapi-idempotency-key-header, section 2.7).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from tollgate.errors import InvalidRequest

MAX_LENGTH = 255


def checked(key: str | None) -> str | None:
    """The header's value, or None when absent. Raises InvalidRequest unless 1 to 255 characters."""
    if key is not None and not 1 <= len(key) <= MAX_LENGTH:
        raise InvalidRequest(f"The Idempotency-Key header must be 1 to {MAX_LENGTH} characters.")
    return key


def request_hash(path: str, body: dict[str, Any]) -> str:
    """SHA-256 hex of (route path, canonical JSON of the parsed body): equal for the same request whatever
    its key order or whitespace. Lone surrogates (already refused at parse) cannot make it raise."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()

