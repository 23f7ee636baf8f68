"""End to end: a public model name with two deployments (pricing/deployments.json: claude-sonnet-4-5 ->
the Anthropic API, then Bedrock `us.`). A failure before any byte reached the client moves on to the next
deployment; the request is metered once, for the deployment that answered; never a fallback once a stream
has begun."""
from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest

from local.dev import REGION
from tollgate.pricing import Catalogue
from tollgate.providers.base import Usage
from tests.e2e.cli import tollgate

PUBLIC = "claude-sonnet-4-5"
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
ANTHROPIC_FAILS = "[[fake:status=503]] [[fake:retry_after_ms=1]] [[fake:bedrock_status=200]]"


def _new_user(local_stack, user):
    return tollgate(local_stack, "keys", "create", "--user", user, "--scopes", "ai:complete")["key"]


def _cost(record) -> Decimal:
    catalogue = Catalogue.load()
    return catalogue.cost(catalogue.price(record["model"]), Usage(
        input_tokens=record["prompt_tokens"], output_tokens=record["completion_tokens"],
        cached_input_tokens=record["cached_tokens"], cache_write_tokens=record["cache_write_tokens"]))


def _spent(local_stack, user) -> Decimal:
    return Decimal(tollgate(local_stack, "budgets", "show", "--user", user)["spent_usd"])


@pytest.mark.parametrize("stream", [False, True])
def test_the_first_deployment_fails_with_503_and_the_second_answers_metered_once(local_stack, stream):
    user = f"e2e-fallback-{'stream' if stream else 'plain'}"
    key = _new_user(local_stack, user)
    local_stack.fake.reset()
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)
    raw = oai.chat.completions.with_raw_response.create(
        model=PUBLIC, max_tokens=30, stream=stream, messages=[{"role": "user", "content": f"hi {ANTHROPIC_FAILS}"}])
    assert raw.status_code == 200 and raw.headers["x-tollgate-deployment"] == "bedrock-us"
    answer = raw.parse()
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    else:
        assert answer.choices[0].message.content

    tried = [(c["wire"], c["status"]) for c in local_stack.fake.calls]
    assert tried[0] == ("anthropic", 503) and tried[-1] == ("bedrock", 200)
    assert all(wire == "anthropic" for wire, _ in tried[:-1])  # the gateway's own retry of the first one
    records = tollgate(local_stack, "usage", "--user", user)["records"]
    assert len(records) == 1
    [record] = records
    assert (record["provider"], record["model"], record["status"]) == ("bedrock", BEDROCK_MODEL, "ok")
    assert record["deployment"] == f"bedrock-us@{REGION}"  # the second deployment, in the region it was called in
    assert Decimal(record["cost_usd"]) == _cost(record) > 0
    assert _spent(local_stack, user) == Decimal(record["cost_usd"])


def test_a_bedrock_throttling_exception_on_the_second_deployment_too_is_a_503_and_nothing_is_charged(local_stack):
    user = "e2e-fallback-both-fail"
    key = _new_user(local_stack, user)
    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        ant.messages.create(model=PUBLIC, max_tokens=20, messages=[{"role": "user", "content":
                            "hi [[fake:status=503]] [[fake:retry_after_ms=1]] [[fake:bedrock_status=429]]"}])
    assert caught.value.status_code == 503
    assert _spent(local_stack, user) == 0


def test_anthropic_sdk_messages_fall_back_to_bedrock_claude(local_stack):
    user = "e2e-fallback-messages"
    key = _new_user(local_stack, user)
    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=key, max_retries=0)
    raw = ant.messages.with_raw_response.create(model=PUBLIC, max_tokens=20,
                                                messages=[{"role": "user", "content": f"hi {ANTHROPIC_FAILS}"}])
    assert raw.headers["x-tollgate-deployment"] == "bedrock-us" and raw.parse().content[0].text
    [record] = tollgate(local_stack, "usage", "--user", user)["records"]
    assert record["provider"] == "bedrock" and _spent(local_stack, user) == Decimal(record["cost_usd"]) == _cost(record)


def test_no_fallback_once_a_stream_has_begun(local_stack):
    user = "e2e-fallback-cut"
    key = _new_user(local_stack, user)
    local_stack.fake.reset()
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)
    raw = oai.chat.completions.with_raw_response.create(
        model=PUBLIC, max_tokens=30, stream=True,
        messages=[{"role": "user", "content": "hi [[fake:drop_after=3]] [[fake:bedrock_status=200]]"}])
    assert raw.headers["x-tollgate-deployment"] == "anthropic"
    received = list(raw.parse())  # the provider cut it after 3 events: the stream ends early
    assert received and received[-1].choices[0].finish_reason is None
    assert [c["wire"] for c in local_stack.fake.calls] == ["anthropic"]  # Bedrock never asked
    [record] = tollgate(local_stack, "usage", "--user", user)["records"]
    assert (record["provider"], record["deployment"]) == ("anthropic", "anthropic") and record["status"] != "ok"
