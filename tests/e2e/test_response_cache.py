"""The response cache (issue 17 item 1) end to end: the official SDKs through the local stack to the fake
provider, whose call record says what reached the provider. A repeat is answered from the cache, plainly
and as a stream in the route's own format, recorded `cached: true` at $0 and spending nothing; another
user's identical request, an error, and a `no-store` request are not."""
from __future__ import annotations

import os
import time
import uuid
from decimal import Decimal

import anthropic
import boto3
import openai
import pytest
import requests

from tests.e2e.test_sdks import tollgate
from tollgate.schema import USAGE
from tollgate.store.usage import PENDING

OPT_IN = "e2e-cache-user"  # caching turned on by the operator (`tollgate users set --cache-ttl`)
OTHER = "e2e-cache-other"  # no setting: caches only what a request asks for with the header
PER_REQUEST = {"x-tollgate-cache": "ttl=600"}


@pytest.fixture(scope="module")
def keys(local_stack):
    with local_stack.environment():
        settings = tollgate(local_stack, "users", "set", "--user", OPT_IN, "--cache-ttl", "600")
        assert settings["cache_ttl_s"] == 600
        return {user: tollgate(local_stack, "keys", "create", "--user", user, "--scopes", "ai:complete")["key"]
                for user in (OPT_IN, OTHER)}


def _oai(local_stack, key):
    return openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)


def _calls_with(local_stack, path, marker):
    return [c for c in local_stack.fake.calls_to(path) if marker in str(c["body"])]


def _records(user, request_ids):
    items = boto3.client("dynamodb").query(
        TableName=os.environ[USAGE.env_var], KeyConditionExpression="pk = :u",
        ExpressionAttributeValues={":u": {"S": user}})["Items"]
    found = {i["requestId"]["S"]: i for i in items}
    return [found[r] for r in request_ids]


def _settled(user, timeout_s=15.0):
    """Wait until none of `user`'s usage records is still pending: a stream's settle, and the cache write it
    carries, runs after the stream's last byte reached the client, so a repeat sent at once may miss."""
    deadline = time.monotonic() + timeout_s
    while True:
        items = boto3.client("dynamodb").query(
            TableName=os.environ[USAGE.env_var], KeyConditionExpression="pk = :u",
            ExpressionAttributeValues={":u": {"S": user}})["Items"]
        if not any(i.get("status", {}).get("S") == PENDING for i in items) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _budget(local_stack, user):
    answer = requests.get(f"{local_stack.url}/admin/budgets", params={"user": user},
                          headers={"authorization": f"Bearer {local_stack.admin_key}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_repeat_is_answered_from_the_cache_plain_and_streamed_at_no_cost(local_stack, keys):
    client = _oai(local_stack, keys[OPT_IN])
    marker = uuid.uuid4().hex
    ask = dict(model="gpt-4o-mini", max_tokens=16, temperature=0, messages=[{"role": "user", "content": marker}])
    first = client.chat.completions.with_raw_response.create(**ask)
    again = client.chat.completions.with_raw_response.create(**ask)
    assert first.headers["x-tollgate-cache"] == "miss" and again.headers["x-tollgate-cache"] == "hit"
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    with client.chat.completions.with_streaming_response.create(
            **ask, stream=True, stream_options={"include_usage": True}) as streamed:
        assert streamed.headers["x-tollgate-cache"] == "hit"
        chunks = list(streamed.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        first.parse().choices[0].message.content
    assert chunks[-1].usage.total_tokens == first.parse().usage.total_tokens  # stream_options honoured
    assert len(_calls_with(local_stack, "/v1/chat/completions", marker)) == 1  # one provider call
    ids = [r.headers["x-request-id"] for r in (first, again, streamed)]
    paid, *hits = _records(OPT_IN, ids)
    assert Decimal(paid["costUsd"]["N"]) > 0 and "cached" not in paid
    for hit in hits:
        assert hit["cached"] == {"BOOL": True} and Decimal(hit["costUsd"]["N"]) == 0
        assert hit["totalTokens"] == {"N": "0"}  # no provider tokens: the provider's bill still reconciles
    assert hits[1]["stream"] == {"BOOL": True}
    budget = _budget(local_stack, OPT_IN)  # nothing left reserved; spend = the one paid call
    assert Decimal(budget["reserved_usd"]) == 0
    assert Decimal(budget["spent_usd"]) == Decimal(paid["costUsd"]["N"])  # this user's first request


def test_anthropic_messages_repeat_is_streamed_from_the_cache_in_messages_events(local_stack, keys):
    client = anthropic.Anthropic(base_url=local_stack.url, api_key=keys[OTHER], max_retries=0,
                                 default_headers=PER_REQUEST)
    marker = uuid.uuid4().hex
    ask = dict(model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": marker}])
    first = client.messages.create(**ask)
    with client.messages.stream(**ask) as stream:
        replayed = stream.get_final_message()
    assert [b.text for b in replayed.content] == [b.text for b in first.content]
    assert replayed.stop_reason == first.stop_reason and replayed.id == first.id
    assert replayed.usage.output_tokens == first.usage.output_tokens
    assert len(_calls_with(local_stack, "/v1/messages", marker)) == 1


def test_another_users_identical_request_is_a_miss(local_stack, keys):
    marker = uuid.uuid4().hex
    ask = dict(model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": marker}])
    mine = _oai(local_stack, keys[OPT_IN]).chat.completions.with_raw_response.create(**ask, extra_headers=PER_REQUEST)
    theirs = _oai(local_stack, keys[OTHER]).chat.completions.with_raw_response.create(**ask, extra_headers=PER_REQUEST)
    assert mine.headers["x-tollgate-cache"] == theirs.headers["x-tollgate-cache"] == "miss"
    assert len(_calls_with(local_stack, "/v1/chat/completions", marker)) == 2


def test_an_error_is_not_cached_and_no_store_skips_the_cache(local_stack, keys):
    client = _oai(local_stack, keys[OPT_IN])
    failing = f"{uuid.uuid4().hex} [[fake:status=400]]"
    for _ in range(2):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=16,
                                           messages=[{"role": "user", "content": failing}])
    assert len(_calls_with(local_stack, "/v1/chat/completions", failing)) == 2
    marker = uuid.uuid4().hex
    for _ in range(2):
        answer = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": marker}],
            extra_headers={"x-tollgate-cache": "no-store"})
        assert answer.headers["x-tollgate-cache"] == "no-store"
    assert len(_calls_with(local_stack, "/v1/chat/completions", marker)) == 2


def test_a_malformed_cache_header_is_a_clear_400(local_stack, keys):
    with pytest.raises(openai.BadRequestError, match="x-tollgate-cache"):
        _oai(local_stack, keys[OTHER]).chat.completions.create(
            model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-tollgate-cache": "forever"})


def test_a_whole_stream_is_stored_and_answers_a_plain_repeat(local_stack, keys):
    client = _oai(local_stack, keys[OPT_IN])
    marker = uuid.uuid4().hex
    ask = dict(model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": marker}])
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**ask, stream=True)
                       if c.choices)
    _settled(OPT_IN)
    plain = client.chat.completions.with_raw_response.create(**ask)
    assert plain.headers["x-tollgate-cache"] == "hit"
    answer = plain.parse()
    assert answer.choices[0].message.content == streamed and answer.usage.total_tokens > 0
    responses_marker = uuid.uuid4().hex
    request = dict(model="gpt-4o-mini", max_output_tokens=16, input=responses_marker)
    first = "".join(e.delta for e in client.responses.create(**request, stream=True)
                    if e.type == "response.output_text.delta")
    _settled(OPT_IN)
    again = client.responses.with_raw_response.create(**request)
    assert again.headers["x-tollgate-cache"] == "hit" and again.parse().output_text == first
    replayed = [e for e in client.responses.create(**request, stream=True)]
    assert replayed[-1].type == "response.completed" and replayed[-1].response.output_text == first
    assert len(_calls_with(local_stack, "/v1/chat/completions", marker)) == 1
    assert len(_calls_with(local_stack, "/v1/responses", responses_marker)) == 1
