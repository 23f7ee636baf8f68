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

from tollgate.pricing import Catalogue
from tollgate.providers.openai_provider import usage_from


def tollgate(local_stack, *args):
    done = subprocess.run([str(Path(sys.executable).parent / "tollgate"), *args, "--json"], env=local_stack.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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
    before = len(_records(local_stack, "e2e-clients-bob"))
    plain = client.responses.create(model="gpt-4o-mini", input="Say hi", max_output_tokens=20)
    assert plain.output_text and plain.usage.output_tokens > 0
    with client.responses.stream(model="gpt-4o-mini", input=[{"role": "user", "content": "Stream please"}],
                                 instructions="Be brief.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.usage.input_tokens > 0
    records = _records(local_stack, "e2e-clients-bob")[before:] or _records(local_stack, "e2e-clients-bob")
    ours = [r for r in records if r["endpoint"].endswith("/responses")]
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
