"""Streaming end to end (issue 11): the official SDKs through the API Gateway emulator, the local Lambda Web
Adapter and the gateway's ASGI app, to the fake provider pacing its events. Tokens reach the client as the
provider produces them; cut streams are settled once, by the rule in tollgate.streaming."""
from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import anthropic
import boto3
import openai
import pytest
import requests

from tollgate.schema import USAGE

USER = "e2e-streamer"
HELD = "[[fake:completion_tokens=30]] [[fake:hold_after=4]]"  # the provider pauses after 4 events until released


@pytest.fixture(scope="module")
def key(local_stack):
    with local_stack.environment():
        created = requests.post(f"{local_stack.url}/admin/keys", headers=_admin(local_stack),
                                json={"user": USER, "name": "streaming", "scopes": ["ai:complete"]}, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["key"]


def _admin(local_stack):
    return {"authorization": f"Bearer {local_stack.admin_key}"}


def _oai(local_stack, key):
    return openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)


def _usage_record(request_id):
    items = boto3.client("dynamodb").query(
        TableName=os.environ[USAGE.env_var], KeyConditionExpression="pk = :u",
        ExpressionAttributeValues={":u": {"S": USER}})["Items"]
    return [i for i in items if i["requestId"]["S"] == request_id]


def _reserved(local_stack):
    budget = requests.get(f"{local_stack.url}/admin/budgets", params={"user": USER}, headers=_admin(local_stack),
                          timeout=30)
    return Decimal(budget.json()["reserved_usd"])


def _eventually(check, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _warm(local_stack, key):
    """One small call first, so SDK imports and clients do not count against the first token."""
    _oai(local_stack, key).chat.completions.create(model="gpt-4o-mini", max_tokens=2,
                                                   messages=[{"role": "user", "content": "warm"}])


def test_openai_stream_delivers_the_first_tokens_while_the_provider_is_still_answering(local_stack, key):
    """The fake holds its stream after a few events until the test lets it go: the test can only see a token
    before releasing it if the gateway passed the token on while the provider was mid-answer (a buffering
    gateway would deliver nothing until the hold timed out, and release() would find nobody held)."""
    stream = _oai(local_stack, key).chat.completions.create(
        model="gpt-4o-mini", max_tokens=64, stream=True, messages=[{"role": "user", "content": f"go {HELD}"}])
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if not pieces:
                assert local_stack.fake.release() == 1  # the provider was still holding the rest
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) == 30
    assert stream.response.headers["x-tollgate-budget-state"] == "ok"  # metered headers with the first byte


def test_anthropic_stream_delivers_the_first_tokens_while_the_provider_is_still_answering(local_stack, key):
    client = anthropic.Anthropic(base_url=local_stack.url, api_key=key, max_retries=0)
    pieces = []
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": f"go {HELD}"}]) as stream:
        for text in stream.text_stream:
            if not pieces:
                assert local_stack.fake.release() == 1
            pieces.append(text)
        final = stream.get_final_message()
    assert len(pieces) == 30 and final.usage.output_tokens == 30


def test_the_cost_comes_at_the_end_as_an_sse_comment_and_matches_the_usage_record(local_stack, key):
    with requests.post(f"{local_stack.url}/v1/chat/completions", stream=True, timeout=60,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "gpt-4o-mini", "max_tokens": 20, "stream": True,
                             "messages": [{"role": "user", "content": "cost please"}]}) as resp:
        raw = b"".join(resp.iter_content(None))
        request_id = resp.headers["x-request-id"]
    last = raw.rstrip().split(b"\n\n")[-1]
    assert last.startswith(b": x-tollgate-cost-usd=")
    [record] = _eventually(lambda: _usage_record(request_id))
    assert Decimal(last.split(b"=", 1)[1].decode()) == Decimal(record["costUsd"]["N"]) > 0
    assert record["status"]["S"] == "ok" and record["stream"]["BOOL"] is True


@pytest.mark.parametrize("interval_ms", [200, 2000])  # 2 s: the provider is hung up on between its events
def test_a_client_closing_after_three_chunks_closes_the_provider_stream_and_settles_once(local_stack, key,
                                                                                         interval_ms):
    _warm(local_stack, key)
    local_stack.fake.reset()
    paced = f"[[fake:completion_tokens=30]] [[fake:stream_interval_ms={interval_ms}]]"
    stream = _oai(local_stack, key).chat.completions.create(
        model="gpt-4o-mini", max_tokens=400, stream=True, messages=[{"role": "user", "content": f"cut {paced}"}])
    request_id = stream.response.headers["x-request-id"]
    chunks = iter(stream)
    received = [next(chunks) for _ in range(3)]
    closed_at = time.monotonic()
    stream.close()

    disconnects = _eventually(lambda: list(local_stack.fake.disconnects))
    assert disconnects, "the provider stream was never closed"
    assert disconnects[0]["at"] - closed_at < 1.0  # the provider stops generating within a second
    assert disconnects[0]["events_sent"] < 10  # long before the 34 events of the whole answer

    [record] = _eventually(lambda: _usage_record(request_id))
    assert record["errorCode"]["S"] == "stream_cut_by_client"
    generated = sum(len(c.choices[0].delta.content or "") for c in received if c.choices)
    assert 400 > int(record["completionTokens"]["N"]) >= generated  # a bound from what was generated
    assert Decimal(record["costUsd"]["N"]) > 0
    assert _eventually(lambda: _reserved(local_stack) == 0)
    time.sleep(0.3)
    assert len(_usage_record(request_id)) == 1  # settled exactly once


@pytest.mark.parametrize("drop_after, charged_as_worst_case", [(5, False), (0, True)])
def test_a_provider_dropping_without_usage_is_charged_by_the_rule_never_zero(local_stack, key, drop_after,
                                                                            charged_as_worst_case):
    with requests.post(f"{local_stack.url}/v1/chat/completions", stream=True, timeout=60,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "gpt-4o-mini", "max_tokens": 40, "stream": True, "messages": [
                           {"role": "user", "content": f"drop [[fake:drop_after={drop_after}]] "
                                                       "[[fake:stream_interval_ms=20]]"}]}) as resp:
        raw = b"".join(resp.iter_content(None))
        request_id = resp.headers["x-request-id"]
    *events, cut = [e for e in raw.split(b"\n\n") if e.startswith(b"data:")]
    assert len(events) == drop_after and b"[DONE]" not in raw
    assert json.loads(cut[len(b"data: "):])["error"]["code"] == "stream_cut_by_provider"  # told, not left guessing
    [record] = _eventually(lambda: _usage_record(request_id))
    assert record["errorCode"]["S"] == "stream_cut_by_provider"
    assert Decimal(record["costUsd"]["N"]) > 0
    assert (int(record["completionTokens"]["N"]) == 40) is charged_as_worst_case
    assert _eventually(lambda: _reserved(local_stack) == 0)


def test_a_35_second_stream_completes_plain_and_with_an_idempotency_key_which_replays_it(local_stack, key):
    long = "[[fake:completion_tokens=175]] [[fake:stream_interval_ms=200]]"  # 35 s of events
    idempotency_key = f"long-{uuid.uuid4()}"

    def call(extra_headers):
        with requests.post(f"{local_stack.url}/v1/chat/completions", stream=True, timeout=120,
                           headers={"authorization": f"Bearer {key}", **extra_headers},
                           json={"model": "gpt-4o-mini", "max_tokens": 200, "stream": True,
                                 "messages": [{"role": "user", "content": f"long {long}"}]}) as resp:
            return resp.status_code, dict(resp.headers), b"".join(resp.iter_content(None))

    with ThreadPoolExecutor(2) as pool:  # concurrently: the suite pays 35 s once
        plain, keyed = pool.map(call, [{}, {"idempotency-key": idempotency_key}])
    for status, _, raw in (plain, keyed):
        assert status == 200 and b"data: [DONE]" in raw
        assert raw.count(b'"content":') >= 175
    status, headers, replayed = call({"idempotency-key": idempotency_key})
    assert status == 200 and headers["x-tollgate-idempotent-replay"] == "true"
    assert replayed == keyed[2]  # the same events, cost comment included
    assert json.loads(replayed.split(b"data: ")[2].split(b"\n")[0])["object"] == "chat.completion.chunk"


def test_a_dropped_stream_raises_in_each_sdk_instead_of_ending_as_if_whole(local_stack, key):
    """A truncated answer must not look finished: each route ends a dropped stream with its own mid-stream
    error event, which the openai SDK (chat) and the anthropic SDK raise, and a Responses client reads as an
    `error` event; the events before it arrive unchanged, and the request is still charged by the rule."""
    drop = "[[fake:completion_tokens=30]] [[fake:drop_after=3]]"
    got: list = []
    with pytest.raises(openai.APIError) as chat_error:
        for chunk in _oai(local_stack, key).chat.completions.create(
                model="gpt-4o-mini", max_tokens=40, stream=True, messages=[{"role": "user", "content": f"a {drop}"}]):
            got.append(chunk)
    assert len(got) == 3 and "incomplete" in chat_error.value.message
    assert chat_error.value.body["code"] == "stream_cut_by_provider"

    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as messages_error:
        with ant.messages.stream(model="claude-haiku-4-5", max_tokens=40,
                                 messages=[{"role": "user", "content": f"b {drop}"}]) as stream:
            for _ in stream:
                pass
    assert "incomplete" in str(messages_error.value)

    events = list(_oai(local_stack, key).responses.create(model="gpt-4o-mini", input=f"c {drop}", stream=True))
    assert [e.type for e in events][-1] == "error" and "response.completed" not in [e.type for e in events]
    assert events[-1].code == "stream_cut_by_provider" and events[-1].sequence_number == len(events) - 1
