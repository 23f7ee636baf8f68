"""Pieces both provider adapters share. Imports no provider SDK."""
from __future__ import annotations

import json
import math
import re
import socket
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from tollgate import errors
from tollgate.providers.base import Usage

T = TypeVar("T")

# Providers echo keys back half-masked ("Incorrect API key provided: sk-abc123**********wxyz").
_MASKED_KEY = re.compile(r"[\w\-.]*\*{3,}[\w\-.]*")
_KEY_LIKE = re.compile(r"\bsk-[\w\-]{6,}")


class ClientCache(Generic[T]):
    """A small LRU of SDK clients keyed by (api_key, base_url): BYOK means one client per user key."""

    def __init__(self, factory: Callable[[str, str | None], T], maxsize: int = 16):
        self._factory = factory
        self._maxsize = maxsize
        self._clients: OrderedDict[tuple[str, str | None], T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, api_key: str, base_url: str | None) -> T:
        cache_key = (api_key, base_url)
        with self._lock:
            client = self._clients.get(cache_key)
            if client is not None:
                self._clients.move_to_end(cache_key)
                return client
        client = self._factory(api_key, base_url)
        with self._lock:
            self._clients[cache_key] = client
            while len(self._clients) > self._maxsize:
                # Not closed here: another thread may still be using it; its pool closes when collected.
                self._clients.popitem(last=False)
        return client

    def __len__(self) -> int:
        return len(self._clients)


def redact(text: str, api_key: str | None) -> str:
    if api_key and len(api_key) >= 8:  # a shorter "key" would only match innocent text
        text = text.replace(api_key, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", _MASKED_KEY.sub("[redacted]", text))


def _provider_message(body: object) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            return _provider_message(inner)
        if isinstance(body.get("message"), str):
            return body["message"]
    return None


def _provider_field(body: object, name: str) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error")
        value = inner.get(name) if isinstance(inner, dict) else body.get(name)
        return value if isinstance(value, str) and value else None
    return None


def retry_hint(headers: Any, now: datetime | None = None) -> dict[str, str]:
    """A provider's retry hint in both forms clients read: {"retry-after": whole seconds (rounded up),
    "retry-after-ms": milliseconds}, from whichever it sent: `retry-after-ms` (OpenAI's and Anthropic's
    SDKs read it first), or `retry-after` as seconds or an HTTP date (RFC 9110 section 10.2.3). {} if none
    or unreadable."""
    ms: float | None = None
    raw_ms, raw = headers.get("retry-after-ms"), headers.get("retry-after")
    try:
        if raw_ms is not None:
            ms = float(raw_ms)
        elif raw is not None:
            ms = float(raw) * 1000
    except ValueError:
        try:
            ms = (parsedate_to_datetime(raw) - (now or datetime.now(timezone.utc))).total_seconds() * 1000
        except (TypeError, ValueError):
            ms = None
    if ms is None or not math.isfinite(ms):
        return {}
    ms = max(ms, 0.0)
    return {"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(math.ceil(ms))}


def translate(exc: Exception, sdk: ModuleType, api_key: str) -> errors.TollgateError:
    """An SDK (or transport) exception as our domain error. Messages never carry the key; a provider's
    retry hint is kept in both header forms (retry_hint)."""
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        message = redact(_provider_message(exc.body) or f"the provider answered HTTP {status}", api_key)
        hint = retry_hint(exc.response.headers)
        if status >= 500:
            return errors.ProviderFailed(f"provider error (HTTP {status}): {message}", headers=hint)
        return errors.ProviderRejected(message, status=status, code=_provider_field(exc.body, "code"),
                                       param=_provider_field(exc.body, "param"), headers=hint)
    if isinstance(exc, sdk.APITimeoutError):
        return errors.ProviderFailed("the provider timed out")
    if isinstance(exc, sdk.APIConnectionError):
        return errors.ProviderFailed("could not reach the provider")
    return errors.ProviderFailed(f"the provider call failed ({type(exc).__name__})")


def sdk_errors(sdk: ModuleType) -> tuple[type[BaseException], ...]:
    """What a provider call may raise: the SDK's errors, and transport errors while reading a stream."""
    import httpx2  # both SDKs are built on it; already imported by the SDK at this point

    return (sdk.APIError, httpx2.HTTPError, httpx2.StreamError)


def http_response_class() -> type:
    """The HTTP library's Response class: passed as an SDK's `cast_to`, the SDK returns the raw response."""
    import httpx2

    return httpx2.Response


def sse_events(raw: bytes) -> list[tuple[bytes, str | None, str]]:
    """Split a server-sent-event stream into (raw block, event name, data) per event."""
    events = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" ").decode())
        events.append((block, name, "\n".join(data)))
    return events


def json_or_none(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def json_document(raw: bytes) -> dict[str, Any]:
    doc = json_or_none(raw)
    if not isinstance(doc, dict):
        raise errors.ProviderFailed("the provider answered with something other than a JSON object")
    return doc


def int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) else 0


def key_verdict(exc: Exception, sdk: ModuleType, api_key: str) -> bool:
    """Whether a key is good, judged from the error a cheap authenticated call raised."""
    if isinstance(exc, sdk.APIStatusError) and exc.status_code < 500:
        return exc.status_code == 429  # rate limited means authenticated; any other 4xx means not usable
    raise translate(exc, sdk, api_key) from None


class SdkAdapter:
    """What both adapters share: the lazily imported SDK, a client per (key, base URL), listing models and
    validating a key. Subclasses name the SDK module and client class, their base URL and extra options."""

    name = ""
    sdk_module = ""
    client_class = ""
    models_page: dict[str, Any] = {}  # arguments that make models.list return one full page
    # The client attributes the adapter's calls reach: the SDK imports their modules on first access.
    client_paths: tuple[str, ...] = ()

    def __init__(self, settings: Any):
        self._settings = settings
        self._clients = ClientCache(self._new_client)

    def _sdk(self) -> ModuleType:
        import importlib

        return importlib.import_module(self.sdk_module)

    def preload(self) -> None:
        """Do the import work of a first call ahead of it (before a SnapStart snapshot, tollgate.snapshot): import
        the SDK, then build a client with a placeholder key, reach each of `client_paths` on it (which imports
        their resource modules and the HTTP transport) and close it. Nothing is sent and no key is read."""
        import operator

        client = self._new_client("placeholder-never-sent", self._base_url(), max_retries=0)
        try:
            for path in self.client_paths:
                operator.attrgetter(path)(client)
        finally:
            client.close()

    def _base_url(self) -> str | None:
        raise NotImplementedError

    def _client_options(self) -> dict[str, Any]:
        return {}

    def _new_client(self, api_key: str, base_url: str | None, *, timeout_s: float | None = None,
                    max_retries: int | None = None) -> Any:
        return getattr(self._sdk(), self.client_class)(
            api_key=api_key, base_url=base_url,
            timeout=self._settings.provider_timeout_s if timeout_s is None else timeout_s,
            max_retries=self._settings.provider_max_retries if max_retries is None else max_retries,
            **self._client_options())

    def _client(self, api_key: str) -> Any:
        return self._clients.get(api_key, self._base_url())

    def list_models(self, *, api_key: str) -> list[dict[str, Any]]:
        sdk = self._sdk()
        try:
            with self._client(api_key).models.with_streaming_response.list(**self.models_page) as resp:
                return list(json_document(resp.read()).get("data") or [])
        except sdk_errors(sdk) as exc:
            raise translate(exc, sdk, api_key) from None

    def validate_key(self, api_key: str, *, timeout_s: float) -> bool:
        """True if the key authenticates, False if the provider refuses it. Raises ProviderFailed when the
        provider cannot tell (5xx, timeout, unreachable), so an outage is not mistaken for a bad key. One
        call, no retries, never through the gateway."""
        sdk = self._sdk()
        client = self._new_client(api_key, self._base_url(), timeout_s=timeout_s, max_retries=0)
        try:
            with client.models.with_streaming_response.list() as resp:
                resp.read()
            return True
        except sdk_errors(sdk) as exc:
            return key_verdict(exc, sdk, api_key)
        finally:
            client.close()


# --- streamed answers -------------------------------------------------------------------------------

class StreamMeter:
    """What a provider's event stream says about its cost, fed one SSE event at a time.

    final: the provider's own final usage (OpenAI's usage chunk, Anthropic's message_delta), or None.
    reported: usage the provider reported before its final count (Anthropic message_start: the input side).
    generated_bytes: UTF-8 bytes of every string in every generated delta (text, tool-call arguments, thinking,
      and the small type/role names too), an upper bound on the output tokens received: a token is at least
      one byte of text.
    complete: the provider ended the stream itself ([DONE], message_stop).
    error: the provider's mid-stream error message (key redacted), if it sent one.
    """

    def __init__(self, api_key: str):
        self.api_key = api_key
        self.final: Usage | None = None
        self.reported = Usage()
        self.generated_bytes = 0
        self.complete = False
        self.error: str | None = None
        self.model: str | None = None

    def feed(self, name: str | None, data: str) -> bool:
        """Account for one event; True if it is forwarded to the client."""
        raise NotImplementedError

    def generated(self, delta: Any) -> None:
        self.generated_bytes += _string_bytes(delta)

    def failed(self, event: dict[str, Any]) -> None:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        self.error = redact(str(error.get("message", "stream error")), self.api_key)


def _string_bytes(node: Any) -> int:
    if isinstance(node, str):
        return len(node.encode())
    if isinstance(node, dict):
        return sum(_string_bytes(v) for v in node.values())
    if isinstance(node, list):
        return sum(_string_bytes(v) for v in node)
    return 0


class ProviderStream:
    """An open streamed answer. Iterate for the provider's SSE events exactly as they arrive (each block ends
    with a blank line), filtered by the meter; a transport failure ends the iteration (`dropped`, unless we
    aborted it), it does not raise. close() closes the provider's HTTP response, which makes the provider stop
    generating; it is idempotent and must be called from the thread that iterates. abort() may be called
    from any thread: it shuts the connection down at once, waking a read blocked on it."""

    def __init__(self, status: int, chunks: Iterable[bytes], meter: StreamMeter, close: Callable[[], None],
                 transport_errors: tuple[type[BaseException], ...], sock: socket.socket | None = None):
        self.status = status
        self.content_type = "text/event-stream"
        self.meter = meter
        self.dropped = False
        self.aborted = False
        self._chunks = chunks
        self._close = close
        self._closed = False
        self._errors = transport_errors
        self._socket = sock

    def abort(self) -> None:
        self.aborted = True
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass

    def __iter__(self) -> Iterator[bytes]:
        buffer = b""
        try:
            for chunk in self._chunks:
                buffer = (buffer + chunk).replace(b"\r\n", b"\n")
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    forwarded = self._feed(block)
                    if forwarded is not None:
                        yield forwarded
        except self._errors:
            self.dropped = not self.aborted
            return
        if buffer.strip():
            forwarded = self._feed(buffer)
            if forwarded is not None:
                yield forwarded

    def _feed(self, block: bytes) -> bytes | None:
        if not block.strip():
            return None
        parsed = sse_events(block)
        _, name, data = parsed[0]
        return block + b"\n\n" if self.meter.feed(name, data) else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()


def open_stream(sdk: ModuleType, create: Callable[..., Any], meter: StreamMeter, api_key: str,
                **arguments: Any) -> ProviderStream:
    """Send a streamed request through an SDK's `with_streaming_response` method and return once the provider
    has answered with its status and headers. Raises ProviderFailed / ProviderRejected (translate) when the
    provider refuses or cannot be reached, before any event."""
    manager = create(**arguments)
    try:
        response = manager.__enter__()
    except sdk_errors(sdk) as exc:
        raise translate(exc, sdk, api_key) from None
    return ProviderStream(response.status_code, response.iter_bytes(), meter,
                          lambda: manager.__exit__(None, None, None), sdk_errors(sdk), _socket_of(response))


def _socket_of(response: Any) -> socket.socket | None:
    """The connection's socket under an SDK response (httpx's `network_stream` extension), if exposed."""
    stream = getattr(getattr(response, "http_response", None), "extensions", {}).get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None
