"""The admin HTTP API over urllib (standard library only): JSON in, JSON out, one-line errors."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any, Mapping
from urllib.parse import quote, urlencode, urlsplit

from tollgate_cli import __version__
from tollgate_cli.errors import ApiError, CliError
from tollgate_cli.redaction import check_credential

DEFAULT_TIMEOUT_S = 30.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_REDACTED = "sk-…(redacted)"


def path_param(value: str) -> str:
    return quote(value, safe="")


def is_local(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


class AdminClient:
    """The gateway's HTTP API, authenticated with `admin_key` (or a user's key) as a bearer token.

    The key is checked first (redaction.check_credential: InputError, exit code 2, naming `key_source`),
    so a key that cannot go in a header (e.g. the README's `sk-…` placeholder) is refused in one line
    instead of failing inside http.client."""

    def __init__(self, endpoint: str, admin_key: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                 auth_hint: str | None = None, key_source: str = "the API key"):
        self.endpoint = endpoint.rstrip("/")
        self._admin_key = check_credential(admin_key, key_source)
        self.timeout = timeout
        self.auth_hint = auth_hint  # appended to 401/403 messages, e.g. where the key came from

    def __repr__(self) -> str:  # never show the key
        return f"AdminClient({self.endpoint!r})"

    def get(self, path: str, query: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body=body)

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        url = self.endpoint + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        headers = {"Authorization": f"Bearer {self._admin_key}", "Accept": "application/json",
                   "User-Agent": f"tollgate-cli/{__version__}"}
        data = None
        if body is not None or method in ("POST", "PUT"):
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise self._api_error(e) from None
        except urllib.error.URLError as e:
            raise self._unreachable(e.reason) from None
        except (TimeoutError, socket.timeout):
            raise CliError(f"no answer from {self.endpoint} within {self.timeout:g}s (try --timeout)") from None
        except (ConnectionError, OSError) as e:
            raise self._unreachable(e) from None
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise CliError(f"unexpected answer from {self.endpoint}{path}: not JSON") from None

    def _unreachable(self, reason: object) -> CliError:
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return CliError(f"no answer from {self.endpoint} within {self.timeout:g}s (try --timeout)")
        if is_local(self.endpoint):
            return CliError(f"cannot reach {self.endpoint}: is `make dev` running?")
        detail = getattr(reason, "strerror", None) or str(reason)
        return CliError(f"cannot reach {self.endpoint}: {detail} (check --endpoint or TOLLGATE_ENDPOINT)")

    def _api_error(self, e: urllib.error.HTTPError) -> ApiError:
        try:
            body = json.loads(e.read() or b"{}")
        except (ValueError, OSError):
            body = {}
        err = body.get("error") if isinstance(body, dict) else None
        message = type_ = code = None
        if isinstance(err, dict):
            message, type_, code = err.get("message"), err.get("type"), err.get("code")
        elif isinstance(err, str):
            message = err
        elif isinstance(body, dict) and isinstance(body.get("message"), str):  # API Gateway's own answers
            message = body["message"]
        message = str(message or e.reason or "request failed").strip()
        detail = f"HTTP {e.code}" + (f" {code}" if code else "")
        if e.code in (401, 403) and self.auth_hint:
            detail += f"; {self.auth_hint}"
        text = f"{message} ({detail})"
        if self._admin_key and self._admin_key in text:
            text = text.replace(self._admin_key, _REDACTED)
        return ApiError(text, status=e.code, type=type_, code=code)
