"""Domain errors, and their one mapping to HTTP in each provider's error shape.

Handlers catch TollgateError and call `render`; nothing else builds an error body. The shapes are the
providers' own, so the official SDKs raise the matching exception class (AuthenticationError,
PermissionDeniedError, RateLimitError, BadRequestError, ...).
"""
from __future__ import annotations

import json
import re
from typing import Any

_ANTHROPIC_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}


# Longest piece of client input (an id, a model name, a path) repeated in an error message, in characters.
MAX_ECHO_CHARS = 64


def shown(text: object) -> str:
    """`text` as it may appear in an error message: its first MAX_ECHO_CHARS characters, then "…" when it
    was longer (a 3,000-character model id is not sent back whole), credential-like runs redacted."""
    value = redact_secrets(str(text))
    return value if len(value) <= MAX_ECHO_CHARS else value[:MAX_ECHO_CHARS] + "…"


# A run that looks like a credential rather than a name: 20 or more letters, digits, '_' or '-', with upper and
# lower case letters and digits in it (Tollgate's `sk-` keys, OpenAI and Anthropic keys, a JWT's parts). Model
# ids, routes, key ids (12 characters) and request ids are lower case, or shorter.
_RUN = re.compile(r"[A-Za-z0-9_\-]{20,}")
REDACTED = "[redacted]"


def _credential_like(run: str) -> bool:
    return any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)


def redact_secrets(text: str) -> str:
    """`text` with every credential-like run (see _RUN) replaced by REDACTED: applied to every error body
    (`body`) and to logged paths (tollgate.auth.api_keys.masked), so a secret sent where a name, an id or a
    path was expected (a key as `model`, `Bearer sk-…` as a key id) is never repeated back."""
    return _RUN.sub(lambda m: REDACTED if _credential_like(m.group()) else m.group(), text)


class TollgateError(Exception):
    status = 500
    type = "api_error"  # OpenAI `error.type`
    code = "internal_error"
    retryable: bool | None = None  # None: let the client decide; False sends x-should-retry: false

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.param = param
        self.headers = dict(headers or {})


class InvalidRequest(TollgateError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class UnknownModel(InvalidRequest):
    code = "model_not_priced"


class AuthenticationFailed(TollgateError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    retryable = False


class PermissionDenied(TollgateError):
    status = 403
    type = "invalid_request_error"
    code = "insufficient_scope"
    retryable = False


class NotFound(TollgateError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(TollgateError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class KeyRevoked(Conflict):
    """Revocation is final: a revoked API key is never resumed, suspended or rotated."""

    code = "key_revoked"
    retryable = False


class RateLimited(TollgateError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class BudgetExceeded(TollgateError):
    """The money is gone: retrying cannot help, so tell the SDKs not to."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"
    retryable = False


class LoopDetected(TollgateError):
    status = 429
    type = "insufficient_quota"
    code = "loop_detected"
    retryable = False


class ProviderFailed(TollgateError):
    """The upstream provider failed or timed out (after our bounded retries)."""

    status = 502
    type = "api_error"
    code = "provider_error"


class ProviderRejected(TollgateError):
    """The provider refused the request itself (4xx): pass its status and message on."""

    type = "invalid_request_error"
    code = "provider_rejected"
    retryable = False


class IdempotencyKeyReused(TollgateError):
    """An Idempotency-Key sent again with a different request (another route or body): 422, as the IETF
    draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header) says."""

    status = 422
    type = "invalid_request_error"
    code = "idempotency_key_reused"
    retryable = False


def body(error: TollgateError, wire: str) -> dict[str, Any]:
    """The error document in the route's wire format (Anthropic's or OpenAI's), credential-like runs of the
    message redacted (redact_secrets)."""
    message = redact_secrets(error.message)
    if wire == "anthropic":
        kind = _ANTHROPIC_TYPE_BY_STATUS.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message, "code": error.code}}
    return {"error": {"message": message, "type": error.type, "param": error.param, "code": error.code}}


def render(error: TollgateError, wire: str) -> tuple[int, dict[str, str], str]:
    """(status, headers, JSON body) for an error on a route of the given wire format."""
    headers = {"content-type": "application/json", **error.headers}
    if error.retryable is False:
        headers["x-should-retry"] = "false"
    return error.status, headers, json.dumps(body(error, wire))
