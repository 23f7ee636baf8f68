"""Provider adapters against the fake provider: the production code path, over real HTTP, via the SDKs."""
from __future__ import annotations

import json
import subprocess
import sys
import traceback

import pytest

from local.fake_provider import prompt_tokens
from tollgate import errors
from tollgate.providers import base
from tollgate.providers._common import ClientCache, redact
from tollgate.providers.anthropic_provider import AnthropicProvider
from tollgate.providers.openai_provider import OpenAIProvider
from tollgate.providers.registry import providers
from tollgate.settings import Settings

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
KEY = "sk-user-0123456789abcdef"
FAST_RETRY = "[[fake:retry_after_ms=1]]"  # keeps the SDK's backoff out of the test's run time


def settings_for(url: str, *, timeout_s: float = 5, retries: int = 2) -> Settings:
    return Settings.from_env({
        "TOLLGATE_OPENAI_BASE_URL": f"{url}/v1", "TOLLGATE_ANTHROPIC_BASE_URL": url,
        "TOLLGATE_PROVIDER_TIMEOUT_S": str(timeout_s), "TOLLGATE_PROVIDER_MAX_RETRIES": str(retries)})


@pytest.fixture
def openai_provider(fake_provider) -> OpenAIProvider:
    return OpenAIProvider(settings_for(fake_provider.url))


@pytest.fixture
def anthropic_provider(fake_provider) -> AnthropicProvider:
    return AnthropicProvider(settings_for(fake_provider.url))


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def sse_data(body: bytes) -> list[str]:
    blocks = [b for b in body.decode().split("\n\n") if b]
    return [line[6:] for b in blocks for line in b.split("\n") if line.startswith("data: ")]


def assert_key_hidden(exc: BaseException, key: str) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    assert key not in text
    assert key[-6:] not in text and key[:10] not in text  # nor the half-masked echo providers like to send


# --- OpenAI ------------------------------------------------------------------------------------------

def test_chat_returns_the_providers_json_and_its_usage(openai_provider, fake_provider):
    result = openai_provider.call(base.CHAT, {"model": GPT, "messages": user("hello"), "max_tokens": 7}, api_key=KEY)
    doc = json.loads(result.body)
    assert doc["object"] == "chat.completion" and result.content_type == "application/json"
    assert result.status == 200 and result.model == GPT
    assert result.usage == base.Usage(input_tokens=doc["usage"]["prompt_tokens"], output_tokens=7)
    call, = fake_provider.calls
    assert (call["api_key"], call["max_tokens"], call["stream"]) == (KEY, 7, False)


def test_chat_passes_unknown_fields_through(openai_provider, fake_provider):
    body = {"model": GPT, "messages": user("hi"), "max_tokens": 3, "temperature": 0.2, "some_future_field": {"a": 1}}
    openai_provider.call(base.CHAT, body, api_key=KEY)
    assert fake_provider.calls[0]["body"] == body


def test_cached_tokens_are_normalised(openai_provider):
    result = openai_provider.call(
        base.CHAT, {"model": GPT, "messages": user("x" * 400 + "[[fake:cached_tokens=40]]"), "max_tokens": 2},
        api_key=KEY)
    assert result.usage.cached_input_tokens == 40
    assert result.usage.uncached_input_tokens == result.usage.input_tokens - 40


def _streamed(provider, operation, body):
    """(the events joined, the stream) of a whole streamed call."""
    stream = provider.open_stream(operation, body, api_key=KEY)
    try:
        return b"".join(stream), stream
    finally:
        stream.close()


def test_stream_is_metered_and_the_usage_chunk_stripped_when_not_asked_for(openai_provider, fake_provider):
    body = {"model": GPT, "messages": user("hi [[fake:cached_tokens=2]]"), "max_tokens": 5, "stream": True}
    raw, stream = _streamed(openai_provider, base.CHAT, body)
    assert fake_provider.calls[0]["body"]["stream_options"] == {"include_usage": True}
    assert stream.content_type == "text/event-stream" and stream.meter.complete
    assert stream.meter.final == base.Usage(input_tokens=prompt_tokens(body), output_tokens=5, cached_input_tokens=2)
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["choices"] for c in chunks)  # no usage-only chunk
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).count(" ") == 4
    assert raw.endswith(b"data: [DONE]\n\n")


def test_stream_keeps_the_usage_chunk_when_the_client_asked(openai_provider, fake_provider):
    body = {"model": GPT, "messages": user("hi"), "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True, "include_obfuscation": False}}
    raw, stream = _streamed(openai_provider, base.CHAT, body)
    assert fake_provider.calls[0]["body"]["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    last = json.loads(sse_data(raw)[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 5 == stream.meter.final.output_tokens


def test_stream_body_is_what_the_openai_sdk_reads(openai_provider):
    """The forwarded events, served as they are, parse in the official SDK."""
    import openai

    raw, stream = _streamed(openai_provider, base.CHAT,
                            {"model": GPT, "messages": user("hi"), "max_tokens": 3, "stream": True})
    import httpx2

    transport = httpx2.MockTransport(lambda request: httpx2.Response(
        200, content=raw, headers={"content-type": stream.content_type}))
    client = openai.OpenAI(base_url="http://gateway/v1", api_key="k", http_client=httpx2.Client(transport=transport))
    chunks = list(client.chat.completions.create(model=GPT, messages=user("hi"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "lorem ipsum dolor"


def test_embeddings(openai_provider, fake_provider):
    result = openai_provider.call(base.EMBEDDINGS, {"model": "text-embedding-3-small", "input": ["ab", "cdef"]},
                                  api_key=KEY)
    doc = json.loads(result.body)
    assert isinstance(doc["data"][0]["embedding"], list)  # the API default, not the SDK's base64
    assert fake_provider.calls[0]["body"]["encoding_format"] == "float"
    assert result.usage == base.Usage(input_tokens=2, output_tokens=0)
    b64 = openai_provider.call(base.EMBEDDINGS, {"model": "m", "input": "x", "encoding_format": "base64"}, api_key=KEY)
    assert isinstance(json.loads(b64.body)["data"][0]["embedding"], str)


def test_list_models_and_validate_key(openai_provider):
    assert GPT in [m["id"] for m in openai_provider.list_models(api_key=KEY)]
    assert openai_provider.validate_key(KEY, timeout_s=2) is True
    assert openai_provider.validate_key("sk-fake-invalid", timeout_s=2) is False


def test_unsupported_operation(openai_provider):
    with pytest.raises(errors.InvalidRequest):
        openai_provider.call(base.MESSAGES, {"model": GPT}, api_key=KEY)


# --- Anthropic -----------------------------------------------------------------------------------------

def test_messages_plain(anthropic_provider, fake_provider):
    body = {"model": CLAUDE, "max_tokens": 6, "system": "be brief",
            "messages": user("x" * 200 + "[[fake:cached_tokens=10]][[fake:cache_write_tokens=20]]")}
    result = anthropic_provider.call(base.MESSAGES, body, api_key=KEY)
    doc = json.loads(result.body)
    assert doc["type"] == "message" and result.model == CLAUDE
    assert doc["usage"]["input_tokens"] == prompt_tokens(body) - 30
    assert result.usage == base.Usage(input_tokens=prompt_tokens(body), output_tokens=6,
                                      cached_input_tokens=10, cache_write_tokens=20)
    assert result.usage.uncached_input_tokens == doc["usage"]["input_tokens"]
    assert fake_provider.calls[0]["body"] == body


def test_messages_streamed(anthropic_provider):
    body = {"model": CLAUDE, "max_tokens": 4, "stream": True,
            "messages": user("hello [[fake:cached_tokens=3]][[fake:completion_tokens=9]]")}
    raw, stream = _streamed(anthropic_provider, base.MESSAGES, body)
    assert stream.content_type == "text/event-stream" and stream.meter.complete
    blocks = [b for b in raw.decode().split("\n\n") if b]
    assert blocks[0].startswith("event: message_start\ndata: {") and blocks[-1].startswith("event: message_stop")
    assert raw.endswith(b"\n\n")
    assert stream.meter.final == base.Usage(input_tokens=prompt_tokens(body), output_tokens=4, cached_input_tokens=3)


def test_list_models_and_validate_key_anthropic(anthropic_provider):
    assert CLAUDE in [m["id"] for m in anthropic_provider.list_models(api_key=KEY)]
    assert anthropic_provider.validate_key(KEY, timeout_s=2) is True
    assert anthropic_provider.validate_key("bad-key-123456", timeout_s=2) is False


# --- failures ------------------------------------------------------------------------------------------

CASES = [
    (OpenAIProvider, base.CHAT, lambda text: {"model": GPT, "messages": user(text)}),
    (AnthropicProvider, base.MESSAGES, lambda text: {"model": CLAUDE, "max_tokens": 5, "messages": user(text)}),
]


@pytest.mark.parametrize("adapter, operation, make_body", CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_5xx_fails_after_bounded_retries(fake_provider, adapter, operation, make_body, stream):
    provider = adapter(settings_for(fake_provider.url, retries=2))
    send = provider.open_stream if stream else provider.call
    with pytest.raises(errors.ProviderFailed) as caught:
        send(operation, {**make_body(f"[[fake:status=500]]{FAST_RETRY}"), "stream": stream}, api_key=KEY)
    assert len(fake_provider.calls) == 3  # the first try and max_retries more
    assert caught.value.status == 502
    assert_key_hidden(caught.value, KEY)


@pytest.mark.parametrize("adapter, operation, make_body", CASES)
def test_4xx_is_rejected_with_its_status_and_not_retried(fake_provider, adapter, operation, make_body):
    provider = adapter(settings_for(fake_provider.url))
    with pytest.raises(errors.ProviderRejected) as caught:
        provider.call(operation, make_body("[[fake:status=400]]"), api_key=KEY)
    assert caught.value.status == 400 and "forced HTTP 400" in caught.value.message
    assert len(fake_provider.calls) == 1
    assert_key_hidden(caught.value, KEY)


@pytest.mark.parametrize("adapter, operation, make_body", CASES)
def test_rejected_key_never_appears_in_the_error(fake_provider, adapter, operation, make_body):
    key = "bad-secret-key-0123456789"
    with pytest.raises(errors.ProviderRejected) as caught:
        adapter(settings_for(fake_provider.url)).call(operation, make_body("hi"), api_key=key)
    assert caught.value.status == 401
    assert_key_hidden(caught.value, key)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("adapter, operation, make_body", CASES)
def test_delay_beyond_the_timeout_fails(fake_provider, adapter, operation, make_body):
    provider = adapter(settings_for(fake_provider.url, timeout_s=0.3, retries=1))
    with pytest.raises(errors.ProviderFailed, match="timed out"):
        provider.call(operation, make_body("[[fake:delay_ms=1500]]"), api_key=KEY)
    assert len(fake_provider.calls) == 2


@pytest.mark.parametrize("adapter, operation, make_body", CASES)
def test_unreachable_provider_fails(adapter, operation, make_body):
    provider = adapter(settings_for("http://127.0.0.1:9", retries=0))
    with pytest.raises(errors.ProviderFailed):
        provider.call(operation, make_body("hi"), api_key=KEY)
    with pytest.raises(errors.ProviderFailed):  # an outage is not reported as a bad key
        provider.validate_key(KEY, timeout_s=1)


def test_redact_hides_exact_and_half_masked_keys():
    assert redact(f"key {KEY} is bad", KEY) == "key [redacted] is bad"
    assert "0123" not in redact("Incorrect API key provided: sk-user-***********cdef.", KEY)
    assert redact("fake provider", "k") == "fake provider"


# --- clients, registry, cold start ---------------------------------------------------------------------

def test_clients_are_cached_per_key_and_bounded():
    built = []
    cache = ClientCache(lambda key, url: built.append((key, url)) or object(), maxsize=2)
    a = cache.get("k1", "u")
    assert cache.get("k1", "u") is a and cache.get("k1", "v") is not a
    cache.get("k2", "u")
    cache.get("k3", "u")
    assert len(cache) == 2 and len(built) == 4


def test_adapter_reuses_its_client(openai_provider):
    assert openai_provider._client(KEY) is openai_provider._client(KEY)
    assert openai_provider._client(KEY) is not openai_provider._client("sk-other-key")


def test_registry_builds_lazily_and_once(fake_provider):
    registry = providers(settings_for(fake_provider.url))
    assert set(registry) == {"openai", "anthropic", "bedrock"} and "openai" in registry
    assert registry["openai"] is registry.get("openai")
    assert isinstance(registry["anthropic"], AnthropicProvider)
    assert registry.get("nope") is None
    with pytest.raises(KeyError):
        registry["nope"]
    fake = object()
    assert providers(settings_for(fake_provider.url), {"fake": lambda s: fake})["fake"] is fake


def test_importing_the_adapters_does_not_import_the_sdks():
    code = ("import sys; import tollgate.providers.registry, tollgate.providers.openai_provider, "
            "tollgate.providers.anthropic_provider; "
            "from tollgate.providers.registry import providers; from tollgate.settings import Settings; "
            "providers(Settings.from_env({})); "
            "loaded = [m for m in ('openai', 'anthropic', 'httpx2') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=".", env={"PYTHONPATH": "lambdas:."})


# --- stream metering edge cases (the meters, fed event by event) --------------------------------------

def _fed(meter, raw: bytes):
    from tollgate.providers._common import sse_events

    forwarded = [block for block, name, data in sse_events(raw) if meter.feed(name, data)]
    return forwarded, meter


def test_openai_stream_without_usage_reports_no_final_usage_for_the_gateway_to_bound():
    from tollgate.providers.openai_provider import ChatStreamMeter

    raw = b'data: {"model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    _, meter = _fed(ChatStreamMeter(KEY, keep_usage_chunk=False), raw)
    assert meter.model == "m" and meter.final is None and meter.complete and meter.generated_bytes == 2


def test_openai_error_mid_stream_is_forwarded_and_noted_with_the_key_redacted():
    from tollgate.providers.openai_provider import ChatStreamMeter

    raw = (b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\r\n\r\n'
           b'data: {"error":{"message":"overloaded for ' + KEY.encode() + b'"}}\r\n\r\n')
    forwarded, meter = _fed(ChatStreamMeter(KEY, keep_usage_chunk=False), raw)
    assert len(forwarded) == 2 and "overloaded" in meter.error and KEY not in meter.error and not meter.complete


def test_anthropic_message_delta_may_restate_input_usage():
    from tollgate.providers.anthropic_provider import MessagesStreamMeter

    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"c","usage":'
           b'{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":'
           b'{"input_tokens":12,"output_tokens":30,"cache_read_input_tokens":null}}\n\n'
           b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    forwarded, meter = _fed(MessagesStreamMeter(KEY), raw)
    assert len(forwarded) == 3 and meter.model == "c" and meter.complete
    assert meter.final == base.Usage(input_tokens=17, output_tokens=30, cached_input_tokens=5)


def test_anthropic_error_event_mid_stream_is_noted():
    from tollgate.providers.anthropic_provider import MessagesStreamMeter

    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"c","usage":{"input_tokens":3}}}\n\n'
           b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    _, meter = _fed(MessagesStreamMeter(KEY), raw)
    assert meter.error == "Overloaded" and meter.final is None and meter.reported.input_tokens == 3
