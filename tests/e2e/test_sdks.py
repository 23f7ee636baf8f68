"""End to end: the official SDKs, unchanged but for base_url and api_key, against the whole local stack
(API Gateway emulator -> real authorizer and gateway handlers -> emulated AWS and the fake provider)."""
from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal

import anthropic
import requests
import openai
import pytest

from tollgate.pricing import Catalogue
from tollgate.providers.base import Usage
from tests.e2e.cli import tollgate


@pytest.fixture(scope="module")
def alice_key(local_stack):
    with local_stack.environment():
        created = tollgate(local_stack, "keys", "create", "--user", "e2e-alice", "--scopes", "ai:complete", "ai:embed")
    assert created["key"].startswith("sk-") and created["key_id"] == created["key"][:12]
    return created["key"]


def test_openai_sdk_chat_stream_embeddings_models_and_anthropic_sdk_are_metered(local_stack, alice_key):
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=alice_key)
    chat = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}],
                                       max_tokens=20)
    assert chat.choices[0].message.content and chat.usage.completion_tokens > 0

    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", stream=True, max_tokens=20,
                                              messages=[{"role": "user", "content": "Stream please"}]))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed

    emb = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2 and emb.usage.prompt_tokens > 0

    models = {m.id for m in oai.models.list()}
    assert {"gpt-4o-mini", "claude-haiku-4-5-20251001"} <= models

    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=alice_key)
    msg = ant.messages.create(model="claude-3-5-haiku-latest", max_tokens=30,
                              messages=[{"role": "user", "content": "Hello Claude"}])
    assert msg.content[0].text and msg.usage.output_tokens > 0
    with ant.messages.stream(model="claude-3-5-haiku-latest", max_tokens=30,
                             messages=[{"role": "user", "content": "Stream Claude"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0

    # x-api-key clients (older anthropic SDKs, Anthropic's curl examples) use the /anthropic base
    legacy = requests.post(f"{local_stack.url}/anthropic/v1/messages", timeout=30, headers={
        "x-api-key": alice_key, "anthropic-version": "2023-06-01"}, json={
        "model": "claude-3-5-haiku-latest", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert legacy.status_code == 200, legacy.text

    usage = tollgate(local_stack, "usage", "--user", "e2e-alice")
    records = usage["records"]
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    catalogue = Catalogue.load()
    for r in records:
        price = catalogue.price(r["model"])
        expected = catalogue.cost(price, Usage(input_tokens=r["prompt_tokens"], output_tokens=r["completion_tokens"],
                                               cached_input_tokens=r["cached_tokens"],
                                               cache_write_tokens=r["cache_write_tokens"]))
        assert Decimal(r["cost_usd"]) == expected > 0
    assert Decimal(usage["total_cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in records)
    assert {r["request_type"] for r in records} == {"completion", "embedding"}
    assert any(r["endpoint"].endswith("/messages") for r in records)


def test_curl_works_with_a_created_key(local_stack, alice_key):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl is not installed on this machine")
    done = subprocess.run([curl, "-sS", "-X", "POST", f"{local_stack.url}/v1/chat/completions",
                           "-H", f"Authorization: Bearer {alice_key}", "-H", "content-type: application/json",
                           "-d", json.dumps({"model": "gpt-4o-mini", "max_tokens": 5,
                                             "messages": [{"role": "user", "content": "curl"}]})],
                          capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["object"] == "chat.completion"


def test_wrong_keys_raise_the_sdks_authentication_error(local_stack):
    wrong = "sk-" + "x" * 48
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=wrong, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=local_stack.url, api_key=wrong, max_retries=0).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


def test_budget_refusal_is_not_retried_by_the_openai_sdk_and_never_reaches_the_provider(local_stack):
    key = tollgate(local_stack, "keys", "create", "--user", "e2e-broke", "--monthly-budget-usd", "0.000001")["key"]
    before = len(local_stack.fake.calls)
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key)  # default retry settings
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-4o", max_tokens=500, messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "insufficient_quota"
    assert err.value.response.headers["x-should-retry"] == "false"
    assert len(local_stack.fake.calls) == before
    usage = tollgate(local_stack, "usage", "--user", "e2e-broke")
    assert usage["records"] == []
