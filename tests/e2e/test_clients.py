"""End to end: what people point a gateway at in 2026 (issue 12) — the Responses API through the openai SDK,
stored responses that only their owner may touch, Anthropic's count_tokens and headers, the models routes —
against the whole local stack, on keys with the default limits."""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import requests

from local.dev import REGION
from tollgate.pricing import Catalogue
from tollgate.providers.openai_provider import usage_from
from tests.e2e.cli import tollgate


def _key(local_stack, user):
    with local_stack.environment():
        return tollgate(local_stack, "keys", "create", "--user", user, "--scopes", "ai:complete")["key"]


@pytest.fixture(scope="module")
def bob_key(local_stack):
    return _key(local_stack, "e2e-clients-bob")


@pytest.fixture(scope="module")
def eve_key(local_stack):
    return _key(local_stack, "e2e-clients-eve")


def _records(local_stack, user):
    return tollgate(local_stack, "usage", "--user", user)["records"]


def test_responses_create_and_stream_are_metered_at_the_catalogue_price(local_stack, bob_key):
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bob_key)
    plain = client.responses.create(model="gpt-4o-mini", input="Say hi", max_output_tokens=20)
    assert plain.output_text and plain.usage.output_tokens > 0
    with client.responses.stream(model="gpt-4o-mini", input=[{"role": "user", "content": "Stream please"}],
                                 instructions="Be brief.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.usage.input_tokens > 0
    ours = [r for r in _records(local_stack, "e2e-clients-bob") if r["endpoint"].endswith("/responses")]
    assert len(ours) >= 2 and all(r["status"] == "ok" for r in ours)
    catalogue = Catalogue.load()
    for response in (plain, final):
        record = next(r for r in ours if r["prompt_tokens"] == response.usage.input_tokens
                      and r["completion_tokens"] == response.usage.output_tokens)
        usage = usage_from(response.usage.model_dump(), response.model_dump())
        assert Decimal(record["cost_usd"]) == catalogue.cost(catalogue.price("gpt-4o-mini"), usage) > 0


def test_the_responses_stream_carries_its_event_types_and_usage(local_stack, bob_key):
    done = requests.post(f"{local_stack.url}/v1/responses", timeout=30, stream=True,
                         headers={"authorization": f"Bearer {bob_key}"},
                         json={"model": "gpt-4o-mini", "input": "events", "stream": True})
    assert done.status_code == 200, done.text
    kinds = [line[7:] for line in done.text.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-1] == "response.completed"
    completed = [json.loads(line[6:]) for line in done.text.splitlines() if line.startswith("data: ")][-1]
    assert completed["response"]["usage"]["output_tokens"] > 0
    assert "x-tollgate-cost-usd=" in done.text


def test_stored_responses_chain_and_are_visible_to_their_owner_only(local_stack, bob_key, eve_key):
    bob = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bob_key, max_retries=0)
    eve = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=eve_key, max_retries=0)
    first = bob.responses.create(model="gpt-4o-mini", input="Remember 42")
    second = bob.responses.create(model="gpt-4o-mini", input="What did I say?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    with bob.responses.stream(model="gpt-4o-mini", input="And now?", previous_response_id=second.id) as stream:
        third = stream.get_final_response()
    assert bob.responses.retrieve(third.id).id == third.id  # a streamed response's owner is recorded too
    assert [i.id for i in bob.responses.input_items.list(first.id)]

    calls = len(local_stack.fake.calls)
    for attempt in (lambda: eve.responses.retrieve(first.id), lambda: eve.responses.delete(first.id),
                    lambda: eve.responses.input_items.list(first.id), lambda: eve.responses.cancel(first.id),
                    lambda: eve.responses.create(model="gpt-4o-mini", input="steal",
                                                 previous_response_id=first.id)):
        with pytest.raises(openai.NotFoundError) as err:
            attempt()
        assert err.value.body["message"] == f"Response with id '{first.id}' not found."
    assert len(local_stack.fake.calls) == calls  # none of them reached the provider
    assert not any(r["endpoint"].endswith("/responses") for r in _records(local_stack, "e2e-clients-eve"))

    bob.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(first.id)  # the provider's own 404, forwarded


def test_background_responses_are_refused_with_a_clear_400(local_stack, bob_key):
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bob_key, max_retries=0)
    calls = len(local_stack.fake.calls)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt-4o-mini", input="later", background=True)
    assert err.value.body["param"] == "background" and "background" in err.value.body["message"]
    assert len(local_stack.fake.calls) == calls


def test_anthropic_version_and_betas_reach_the_provider_as_sent_and_unknown_betas_are_refused(local_stack, bob_key):
    import anthropic

    betas = "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
    client = anthropic.Anthropic(base_url=local_stack.url, api_key=bob_key, max_retries=0,
                                 default_headers={"anthropic-version": "2023-06-01", "anthropic-beta": betas})
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=10,
                                messages=[{"role": "user", "content": "stream"}]) as stream:
        stream.get_final_message()
    sent = [c["headers"] for c in local_stack.fake.calls_to("/v1/messages")[-2:]]
    assert all(h["anthropic-version"] == "2023-06-01" and h["anthropic-beta"] == betas for h in sent)
    assert all("authorization" not in h and "x-api-key" not in h for h in sent)  # the record holds no key

    calls = len(local_stack.fake.calls)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, extra_headers={"anthropic-beta": "mcp-x"},
                               messages=[{"role": "user", "content": "hi"}])
    assert "TOLLGATE_ANTHROPIC_BETAS" in err.value.message and len(local_stack.fake.calls) == calls


def test_count_tokens_is_forwarded_not_charged_on_both_base_urls(local_stack, bob_key):
    import anthropic

    before = len(_records(local_stack, "e2e-clients-bob"))
    counted = anthropic.Anthropic(base_url=local_stack.url, api_key=bob_key).messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "count me"}])
    assert counted.input_tokens > 0
    # x-api-key clients (Claude Code with ANTHROPIC_API_KEY) use the /anthropic base URL
    legacy = requests.post(f"{local_stack.url}/anthropic/v1/messages/count_tokens", timeout=30, headers={
        "x-api-key": bob_key, "anthropic-version": "2023-06-01", "anthropic-beta": "token-efficient-tools-2025-02-19"},
        json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]})
    assert legacy.status_code == 200, legacy.text
    assert local_stack.fake.calls_to("/v1/messages/count_tokens")[-1]["headers"]["anthropic-beta"] == \
        "token-efficient-tools-2025-02-19"
    assert len(_records(local_stack, "e2e-clients-bob")) == before  # not charged, no usage record


def test_count_tokens_takes_one_request_of_the_requests_per_minute_limit(local_stack):
    key = tollgate(local_stack, "keys", "create", "--user", "e2e-clients-rpm", "--scopes", "ai:complete",
                   "--rpm", "1")["key"]
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    first = requests.post(f"{local_stack.url}/v1/messages/count_tokens", json=body, headers=headers, timeout=30)
    second = requests.post(f"{local_stack.url}/v1/messages/count_tokens", json=body, headers=headers, timeout=30)
    # one minute boundary may fall between them: then both pass, and a third is refused
    third = requests.post(f"{local_stack.url}/v1/messages/count_tokens", json=body, headers=headers, timeout=30)
    assert first.status_code == 200 and 429 in (second.status_code, third.status_code)
    refused = second if second.status_code == 429 else third
    assert refused.json()["error"]["type"] == "rate_limit_error" and refused.headers["retry-after"]


def test_models_in_anthropic_shape_with_anthropic_version_and_openai_shape_otherwise(local_stack, bob_key):
    import anthropic

    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=bob_key)
    listed = list(ant.models.list())
    assert listed and all(m.type == "model" and m.display_name and m.created_at for m in listed)
    assert ant.models.retrieve("claude-haiku-4-5").id.startswith("claude-haiku-4-5")  # an alias: its model
    legacy = requests.get(f"{local_stack.url}/anthropic/v1/models", timeout=30,
                          headers={"x-api-key": bob_key, "anthropic-version": "2023-06-01"}).json()
    assert legacy["first_id"] == legacy["data"][0]["id"] and legacy["has_more"] is False

    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bob_key, max_retries=0)
    assert oai.models.retrieve("gpt-4o-mini").owned_by == "openai"
    assert {m.object for m in oai.models.list()} == {"model"}
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


def test_an_unknown_model_is_a_404_in_the_shape_of_the_sdk_that_asked(local_stack, bob_key):
    """The models routes answer in Anthropic's shape when anthropic-version is sent: their errors too."""
    import anthropic

    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=bob_key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as raised:
        ant.models.retrieve("nope")
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == "not_found_error"
    plain = requests.get(f"{local_stack.url}/v1/models/nope", timeout=30,
                         headers={"authorization": f"Bearer {bob_key}"}).json()
    assert set(plain) == {"error"} and {"message", "type", "param", "code"} <= set(plain["error"])


def test_models_and_the_cli_show_each_models_provider_and_deployments_in_order(local_stack, bob_key):
    """Issue 13 item 7: a public name with a fallback (pricing/deployments.json) lists both deployments, in the
    order tried, through both SDKs' shapes, one model or the list, and `tollgate models`."""
    import anthropic

    expected = [{"name": "anthropic", "provider": "anthropic", "model": "claude-sonnet-4-5-20250929"},
                {"name": "bedrock-us", "provider": "bedrock", "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                 "region": REGION}]
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bob_key, max_retries=0)
    one = oai.models.retrieve("claude-sonnet-4-5")
    assert (one.id, one.owned_by, one.provider, one.deployments) == ("claude-sonnet-4-5", "anthropic", "anthropic",
                                                                      expected)
    listed = {m.id: m for m in oai.models.list()}
    assert listed["claude-sonnet-4-5"].deployments == expected
    nova = listed["us.amazon.nova-lite-v1:0"]
    assert (nova.provider, [d["name"] for d in nova.deployments]) == ("bedrock", ["bedrock"])

    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=bob_key)
    assert ant.models.retrieve("claude-sonnet-4-5").deployments == expected
    assert {m.id: m for m in ant.models.list()}["claude-sonnet-4-5"].provider == "anthropic"

    assert tollgate(local_stack, "models", "claude-sonnet-4-5")["deployments"] == expected
    shown = subprocess.run([str(Path(sys.executable).parent / "tollgate"), "models", "claude-sonnet-4-5"],
                           env=local_stack.env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()[1:]]
    assert [r[2:4] for r in rows] == [["1", "anthropic"], ["2", "bedrock-us"]] and rows[1][-1] == REGION


def test_a_bad_key_is_a_401_both_sdks_read_on_their_own_routes(local_stack):
    """API Gateway's UNAUTHORIZED answer is one body for the whole API: it carries OpenAI's error fields and
    Anthropic's shape, so each SDK raises AuthenticationError with the message."""
    import anthropic

    bad = "sk-" + "x" * 48
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bad, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert {"message", "type", "param", "code"} <= set(raised.value.body)  # the SDK's body is `error`'s value
    assert "API key" in raised.value.message
    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=bad, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        ant.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == "authentication_error"
