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
    received = []
    with pytest.raises(openai.APIError, match="incomplete"):  # the provider cut it after 3 events: said so
        for chunk in raw.parse():
            received.append(chunk)
    assert received and received[-1].choices[0].finish_reason is None
    assert [c["wire"] for c in local_stack.fake.calls] == ["anthropic"]  # Bedrock never asked
    [record] = tollgate(local_stack, "usage", "--user", user)["records"]
    assert (record["provider"], record["deployment"]) == ("anthropic", "anthropic") and record["status"] != "ok"


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_deployment_that_does_not_serve_the_model_is_skipped_for_the_next(local_stack, sdk):
    """The Claude API answers 404 "model: <id>" for a model it no longer serves (claude-sonnet-4-5 since its
    end of life there) while Bedrock keeps its own schedule: the next deployment answers, metered once."""
    user = f"e2e-fallback-404-{sdk}"
    key = _new_user(local_stack, user)
    local_stack.fake.reset()
    content = "hi [[fake:status=404]] [[fake:bedrock_status=200]]"
    if sdk == "openai":
        raw = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0).chat.completions \
            .with_raw_response.create(model=PUBLIC, max_tokens=20, messages=[{"role": "user", "content": content}])
    else:
        raw = anthropic.Anthropic(base_url=local_stack.url, api_key=key, max_retries=0).messages \
            .with_raw_response.create(model=PUBLIC, max_tokens=20, messages=[{"role": "user", "content": content}])
    assert raw.status_code == 200 and raw.headers["x-tollgate-deployment"] == "bedrock-us"
    assert [(c["wire"], c["status"]) for c in local_stack.fake.calls] == [("anthropic", 404), ("bedrock", 200)]
    [record] = tollgate(local_stack, "usage", "--user", user)["records"]
    assert (record["provider"], record["model"]) == ("bedrock", BEDROCK_MODEL)
    assert _spent(local_stack, user) == Decimal(record["cost_usd"]) == _cost(record) > 0


def test_a_404_about_the_model_on_the_last_deployment_is_the_clients_404_and_nothing_is_charged(local_stack):
    user = "e2e-fallback-404-both"
    key = _new_user(local_stack, user)
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0).chat.completions.create(
            model=PUBLIC, max_tokens=20, messages=[{"role": "user", "content": "hi [[fake:status=404]]"}])
    assert _spent(local_stack, user) == 0
