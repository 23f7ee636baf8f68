"""The fake provider: realistic, bounded usage; in-band controls; wire formats the official SDKs accept."""
from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import anthropic
import openai
import pytest

from local.fake_provider import FakeProvider, prompt_tokens

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"


def http(fake: FakeProvider, method: str, path: str, body: dict | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(fake.url + path, data=data, method=method,
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def oai(fake: FakeProvider, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fake.url}/v1", api_key=key, max_retries=0)


def claude(fake: FakeProvider, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key=key, max_retries=0)


def json_bytes(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def user(text) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- usage is bounded by the request ---------------------------------------------------------------

_ALPHABET = "abc xyz 0123 ,.!\n\t\"\\ é ß € 中文 🙂 \u0000"


def _random_messages(rng: random.Random) -> list[dict]:
    messages = []
    for _ in range(rng.randint(1, 6)):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 60)))
        if rng.random() < 0.3:
            content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "data:x"}}]
        else:
            content = text
        messages.append({"role": rng.choice(["user", "assistant", "system"]), "content": content})
    return messages


def test_prompt_tokens_never_exceed_the_json_bytes_of_the_messages():
    rng = random.Random(7)
    for _ in range(2000):
        messages = _random_messages(rng)
        assert 0 < prompt_tokens({"messages": messages}) <= json_bytes(messages)


def test_anthropic_system_prompt_is_counted_and_stays_within_its_json():
    messages = user("hi")
    alone = prompt_tokens({"messages": messages})
    with_system = prompt_tokens({"messages": messages, "system": "x" * 400})
    assert with_system == alone + 100
    assert with_system <= json_bytes(messages) + json_bytes("x" * 400)


def test_reported_usage_is_within_the_bound_over_the_wire(fake_provider):
    rng = random.Random(11)
    for _ in range(20):
        messages = _random_messages(rng)
        done = oai(fake_provider).chat.completions.create(model=GPT, messages=messages, max_tokens=3)
        assert done.usage.prompt_tokens == prompt_tokens({"messages": messages}) <= json_bytes(messages)
        anthropic_messages = [{**m, "role": "user"} for m in messages]
        msg = claude(fake_provider).messages.create(model=CLAUDE, max_tokens=3, messages=anthropic_messages)
        assert msg.usage.input_tokens <= json_bytes(anthropic_messages)


@pytest.mark.parametrize("limit, control, expected, finish", [
    (None, "", 16, "stop"), (100, "", 16, "stop"), (5, "", 5, "length"),
    (100, "[[fake:completion_tokens=40]]", 40, "stop"), (10, "[[fake:completion_tokens=40]]", 10, "length"),
])
def test_completion_tokens_default_to_16_and_never_exceed_max_tokens(fake_provider, limit, control, expected, finish):
    kwargs = {} if limit is None else {"max_tokens": limit}
    done = oai(fake_provider).chat.completions.create(model=GPT, messages=user(f"go {control}"), **kwargs)
    assert done.usage.completion_tokens == expected
    assert done.choices[0].finish_reason == finish
    assert len(done.choices[0].message.content.split()) == expected


def test_max_completion_tokens_caps_like_max_tokens(fake_provider):
    done = oai(fake_provider).chat.completions.create(model=GPT, messages=user("go"), max_completion_tokens=4)
    assert done.usage.completion_tokens == 4


def test_anthropic_output_never_exceeds_max_tokens(fake_provider):
    msg = claude(fake_provider).messages.create(model=CLAUDE, max_tokens=7,
                                                messages=user("[[fake:completion_tokens=500]]"))
    assert msg.usage.output_tokens == 7 and msg.stop_reason == "max_tokens"


# --- controls --------------------------------------------------------------------------------------

def test_forced_status_uses_the_openai_error_shape(fake_provider):
    status, _, body = http(fake_provider, "POST", "/v1/chat/completions",
                           {"model": GPT, "messages": user("[[fake:status=500]]")}, {"authorization": "Bearer k"})
    assert status == 500
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError):
        oai(fake_provider).chat.completions.create(model=GPT, messages=user("[[fake:status=400]]"))


def test_forced_status_uses_the_anthropic_error_shape(fake_provider):
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude(fake_provider).messages.create(model=CLAUDE, max_tokens=5, messages=user("[[fake:status=429]]"))
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError):
        claude(fake_provider).messages.create(model=CLAUDE, max_tokens=5, messages=user("[[fake:status=500]]"))


def test_retry_after_ms_is_sent_only_when_asked(fake_provider):
    body = {"model": GPT, "messages": user("[[fake:status=503]] [[fake:retry_after_ms=5]]")}
    _, headers, _ = http(fake_provider, "POST", "/v1/chat/completions", body, {"authorization": "Bearer k"})
    assert headers["retry-after-ms"] == "5"


def test_delay_holds_the_answer(fake_provider):
    started = time.monotonic()
    oai(fake_provider).chat.completions.create(model=GPT, messages=user("[[fake:delay_ms=300]]"))
    assert time.monotonic() - started >= 0.3


def test_empty_content(fake_provider):
    done = oai(fake_provider).chat.completions.create(model=GPT, messages=user("[[fake:empty]]"))
    assert done.choices[0].message.content == "" and done.usage.completion_tokens == 0
    msg = claude(fake_provider).messages.create(model=CLAUDE, max_tokens=9, messages=user("[[fake:empty]]"))
    assert msg.content == [] and msg.usage.output_tokens == 0


def test_cached_tokens_openai(fake_provider):
    done = oai(fake_provider).chat.completions.create(model=GPT, messages=user("x" * 400 + "[[fake:cached_tokens=64]]"))
    assert done.usage.prompt_tokens_details.cached_tokens == 64
    tiny = oai(fake_provider).chat.completions.create(model=GPT, messages=user("[[fake:cached_tokens=9999]]"))
    assert tiny.usage.prompt_tokens_details.cached_tokens == tiny.usage.prompt_tokens  # never more than the prompt


def test_cache_reads_and_writes_anthropic(fake_provider):
    messages = user("x" * 400 + "[[fake:cached_tokens=50]][[fake:cache_write_tokens=30]]")
    msg = claude(fake_provider).messages.create(model=CLAUDE, max_tokens=5, messages=messages)
    total = prompt_tokens({"messages": messages})
    assert msg.usage.cache_read_input_tokens == 50
    assert msg.usage.cache_creation_input_tokens == 30
    assert msg.usage.input_tokens == total - 80  # Anthropic's input_tokens excludes the cache


# --- auth --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["sk-fake-invalid", "bad-anything"])
def test_invalid_keys_get_401(fake_provider, key):
    with pytest.raises(openai.AuthenticationError):
        oai(fake_provider, key).chat.completions.create(model=GPT, messages=user("hi"))
    with pytest.raises(anthropic.AuthenticationError):
        claude(fake_provider, key).messages.create(model=CLAUDE, max_tokens=5, messages=user("hi"))


def test_missing_key_gets_401_and_x_api_key_is_accepted(fake_provider):
    body = {"model": CLAUDE, "max_tokens": 3, "messages": user("hi")}
    assert http(fake_provider, "POST", "/v1/messages", body)[0] == 401
    assert http(fake_provider, "POST", "/v1/chat/completions", {"model": GPT, "messages": user("hi")})[0] == 401
    status, _, raw = http(fake_provider, "POST", "/v1/messages", body, {"x-api-key": "sk-ant-k"})
    assert status == 200 and json.loads(raw)["type"] == "message"
    assert fake_provider.calls[-1]["api_key"] == "sk-ant-k"


def test_provider_validation(fake_provider):
    status, _, raw = http(fake_provider, "POST", "/v1/messages", {"model": CLAUDE, "messages": user("hi")},
                          {"x-api-key": "k"})
    assert status == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    assert http(fake_provider, "POST", "/v1/nope", {}, {"authorization": "Bearer k"})[0] == 404


# --- streams, parsed by the official SDKs -----------------------------------------------------------

def test_openai_stream_with_include_usage(fake_provider):
    stream = oai(fake_provider).chat.completions.create(
        model=GPT, messages=user("hi"), max_tokens=5, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.prompt_tokens == prompt_tokens({"messages": user("hi")})
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_openai_stream_without_include_usage_has_no_usage_chunk(fake_provider):
    status, headers, raw = http(fake_provider, "POST", "/v1/chat/completions",
                                {"model": GPT, "messages": user("hi"), "stream": True}, {"authorization": "Bearer k"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(e[6:]) for e in events[:-1])


def test_anthropic_stream_shape_and_usage(fake_provider):
    status, _, raw = http(fake_provider, "POST", "/v1/messages",
                          {"model": CLAUDE, "max_tokens": 3, "stream": True, "messages": user("hi")},
                          {"x-api-key": "k"})
    names = [block.split("\n")[0] for block in raw.decode().split("\n\n") if block]
    assert names == ["event: message_start", "event: content_block_start", "event: ping"] + \
        ["event: content_block_delta"] * 3 + ["event: content_block_stop", "event: message_delta", "event: message_stop"]
    with claude(fake_provider).messages.stream(model=CLAUDE, max_tokens=6, messages=user("hi")) as stream:
        final = stream.get_final_message()
    assert len(final.content[0].text.split()) == 6
    assert final.usage.output_tokens == 6 and final.usage.input_tokens == prompt_tokens({"messages": user("hi")})


# --- embeddings, models ------------------------------------------------------------------------------

def test_embeddings_float_and_base64(fake_provider):
    client = oai(fake_provider)
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["a", "bcd"])  # SDK asks for base64
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "bcd"], encoding_format="float")
    assert [len(d.embedding) for d in decoded.data] == [8, 8]
    assert decoded.data[1].embedding == pytest.approx(floats.data[1].embedding)
    assert floats.usage.prompt_tokens == 2 <= json_bytes(["a", "bcd"])
    assert len(client.embeddings.create(model="m", input="x", dimensions=3).data[0].embedding) == 3


def test_models_in_each_wire_format(fake_provider):
    assert "gpt-4o-mini" in [m.id for m in oai(fake_provider).models.list()]
    assert CLAUDE in [m.id for m in claude(fake_provider).models.list()]


# --- the call log --------------------------------------------------------------------------------------

def test_calls_are_recorded_in_memory_and_over_http(fake_provider):
    oai(fake_provider, "sk-one").chat.completions.create(model=GPT, messages=user("hi"), max_tokens=9, stream=True)
    claude(fake_provider, "sk-two").messages.create(model=CLAUDE, max_tokens=4, messages=user("hi"))
    first, second = fake_provider.calls
    assert (first["path"], first["model"], first["api_key"], first["stream"], first["max_tokens"], first["status"]) == \
        ("/v1/chat/completions", GPT, "sk-one", True, 9, 200)
    assert (second["path"], second["api_key"], second["stream"], second["max_tokens"]) == \
        ("/v1/messages", "sk-two", False, 4)
    assert json.loads(http(fake_provider, "GET", "/_fake/calls")[2]) == fake_provider.calls
    assert http(fake_provider, "POST", "/_fake/reset", {})[0] == 200
    assert fake_provider.calls == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runs_as_a_module():
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "local.fake_provider", "--port", str(port)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert f"127.0.0.1:{port}" in process.stdout.readline()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        assert client.chat.completions.create(model=GPT, messages=user("hi"), max_tokens=2).usage.completion_tokens == 2
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- pacing, drops and hang-ups (streaming tests rely on them) -------------------------------------------

def test_a_paced_stream_arrives_event_by_event(fake_provider):
    stream = oai(fake_provider).chat.completions.create(
        model=GPT, stream=True, messages=user("[[fake:completion_tokens=3]] [[fake:stream_interval_ms=150]]"))
    arrivals = [time.monotonic() for _ in stream]
    assert len(arrivals) == 5  # role, 3 words, finish
    assert arrivals[-1] - arrivals[0] >= 4 * 0.15 * 0.9  # spread out, not one burst at the end


def test_drop_after_ends_the_connection_mid_answer_without_usage(fake_provider):
    import httpx2

    with httpx2.Client() as client, client.stream(
            "POST", f"{fake_provider.url}/v1/chat/completions", headers={"authorization": "Bearer k"},
            json={"model": GPT, "stream": True, "stream_options": {"include_usage": True},
                  "messages": user("[[fake:drop_after=2]]")}) as response:
        received = b""
        with pytest.raises(httpx2.RemoteProtocolError):
            for chunk in response.iter_bytes():
                received += chunk
    events = [e for e in received.split(b"\n\n") if e]
    assert len(events) == 2 and b"usage\":{" not in received and b"[DONE]" not in received


def test_a_client_hanging_up_mid_stream_is_recorded_at_once(fake_provider):
    stream = oai(fake_provider).chat.completions.create(
        model=GPT, stream=True, messages=user("[[fake:completion_tokens=50]] [[fake:stream_interval_ms=300]]"))
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 5
    while not fake_provider.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    [gone] = fake_provider.disconnects
    assert gone["path"] == "/v1/chat/completions" and gone["events_sent"] < 5
