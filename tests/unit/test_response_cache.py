"""tollgate.response_cache: the request key, the policy, and a stored answer replayed as each route's stream
(and a whole stream folded back into the plain answer it describes)."""
from __future__ import annotations

import json

import pytest

from local.fake_provider import FakeProvider
from tollgate import response_cache as rc
from tollgate.errors import InvalidRequest
from tollgate.providers.base import CHAT, EMBEDDINGS, MESSAGES, RESPONSES, Usage
from tollgate.store.response_cache import Answer

CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def test_the_key_ignores_delivery_and_key_order_but_not_content_or_forwarded_headers():
    base = rc.key(CHAT, CHAT_BODY, {})
    assert rc.key(CHAT, {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}, {}) == base
    assert rc.key(CHAT, dict(reversed(list(CHAT_BODY.items()))), {}) == base
    assert rc.key(CHAT, {**CHAT_BODY, "temperature": 1}, {}) != base
    assert rc.key(CHAT, {**CHAT_BODY, "tools": [{"type": "function", "function": {"name": "f"}}]}, {}) != base
    assert rc.key(RESPONSES, CHAT_BODY, {}) != base
    beta = rc.key(MESSAGES, CHAT_BODY, {"anthropic-beta": "x"})
    assert beta != rc.key(MESSAGES, CHAT_BODY, {}) and beta == rc.key(MESSAGES, CHAT_BODY, {"Anthropic-Beta": "x"})


@pytest.mark.parametrize("header, user_ttl, expected", [
    (None, 0, None), (None, 600, 600), ("ttl=60", 0, 60), ("ttl=60", 600, 60), ("no-store", 600, None),
    (" TTL=5 ", 0, 5), (None, 10**9, rc.MAX_TTL_S)])
def test_policy_header_wins_over_the_users_setting(header, user_ttl, expected):
    policy = rc.policy(CHAT, CHAT_BODY, {}, header, user_ttl)
    assert (policy.ttl_s if policy else None) == expected


@pytest.mark.parametrize("header", ["ttl=0", "ttl=-1", f"ttl={rc.MAX_TTL_S + 1}", "ttl=abc", "forever", "",
                                    "ttl=\u00b2", "ttl=99999999999999999999"])
def test_a_malformed_header_is_a_clear_400(header):
    with pytest.raises(InvalidRequest, match="x-tollgate-cache"):
        rc.policy(CHAT, CHAT_BODY, {}, header, 0)


def test_only_small_successes_are_storable():
    assert rc.storable(200, b"{}") and not rc.storable(400, b"{}") and not rc.storable(500, b"{}")
    assert not rc.storable(200, b"x" * (rc.MAX_BODY_BYTES + 1))


def _fake_answer(path: str, body: dict, stream: bool) -> bytes:
    reply = FakeProvider().handle("POST", path, {"authorization": "Bearer sk-fake"}, json.dumps(
        {**body, "stream": stream}).encode())
    return b"".join(reply.events) if stream else reply.body


CASES = [
    (CHAT, "/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 12,
                                    "messages": [{"role": "user", "content": "hello"}]}),
    (CHAT, "/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 12, "tool_choice": "required",
                                    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
                                    "messages": [{"role": "user", "content": "call it"}]}),
    (MESSAGES, "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 12,
                                "messages": [{"role": "user", "content": "hello"}]}),
    (MESSAGES, "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 12, "tool_choice": {"type": "any"},
                                "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
                                "messages": [{"role": "user", "content": "call it"}]}),
    (RESPONSES, "/v1/responses", {"model": "gpt-4o-mini", "max_output_tokens": 12, "input": "hello"}),
]


@pytest.mark.parametrize("operation, path, body", CASES)
def test_a_stored_answer_replayed_as_a_stream_folds_back_into_the_same_answer(operation, path, body):
    plain = _fake_answer(path, body, stream=False)
    options = {"stream_options": {"include_usage": True}} if operation == CHAT else {}
    events = b"".join(rc.as_stream(operation, Answer(200, plain, "application/json", body["model"], "r1"),
                                   {**body, "stream": True, **options}))
    assert json.loads(rc.from_stream(operation, events, Usage())) == json.loads(plain)


@pytest.mark.parametrize("operation, path, body", CASES)
def test_a_providers_whole_stream_folds_into_a_plain_answer_that_replays(operation, path, body):
    body = {**body, **({"stream_options": {"include_usage": True}} if operation == CHAT else {})}
    doc = rc.from_stream(operation, _fake_answer(path, body, stream=True), Usage(input_tokens=3, output_tokens=4))
    assert doc is not None
    again = b"".join(rc.as_stream(operation, Answer(200, doc, "application/json", body["model"], "r1"),
                                  {**body, "stream": True}))
    assert json.loads(rc.from_stream(operation, again, Usage(input_tokens=3, output_tokens=4))) == json.loads(doc)


def test_a_chat_stream_without_its_usage_chunk_is_stored_with_the_metered_usage():
    body = CASES[0][2]
    streamed = _fake_answer("/v1/chat/completions", body, stream=True)
    doc = json.loads(rc.from_stream(CHAT, streamed, Usage(input_tokens=3, output_tokens=4)))
    assert doc["usage"]["total_tokens"] == 7 and doc["object"] == "chat.completion"


def test_events_that_make_no_answer_are_not_stored():
    assert rc.from_stream(CHAT, b"data: not json\n\n", Usage()) is None
    assert rc.from_stream(RESPONSES, b'event: response.created\ndata: {"type": "response.created"}\n\n', Usage()) is None
    with pytest.raises(InvalidRequest):
        rc.as_stream(EMBEDDINGS, Answer(200, b"{}", "application/json", "m", "r"), {})
