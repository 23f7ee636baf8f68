"""The Idempotency-Key header, as every route that honours it reads it."""
from __future__ import annotations

from tollgate.errors import InvalidRequest

MAX_LENGTH = 255


def checked(key: str | None) -> str | None:
    if key is not None and not 1 <= len(key) <= MAX_LENGTH:
        raise InvalidRequest(f"The Idempotency-Key header must be 1 to {MAX_LENGTH} characters.")
    return key
