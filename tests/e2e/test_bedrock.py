"""End to end: Amazon Bedrock through the local stack with the real SDKs. The gateway's boto3
`bedrock-runtime` client (production code path) reaches the fake provider's Bedrock section through
TOLLGATE_BEDROCK_ENDPOINT_URL; ConverseStream and InvokeModelWithResponseStream come back in AWS
event-stream frames that botocore decodes."""
from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import openai
import pytest

from local.dev import REGION
from tollgate.pricing import Catalogue
from tollgate.providers.base import Usage
from tests.e2e.cli import tollgate

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


@pytest.fixture(scope="module")
def bedrock_key(local_stack):
    with local_stack.environment():
        return tollgate(local_stack, "keys", "create", "--user", "e2e-bedrock", "--scopes", "ai:complete")["key"]


def _records(local_stack, user):
    return tollgate(local_stack, "usage", "--user", user)["records"]


def _expected_cost(record) -> Decimal:
    catalogue = Catalogue.load()
    return catalogue.cost(catalogue.price(record["model"]), Usage(
        input_tokens=record["prompt_tokens"], output_tokens=record["completion_tokens"],
        cached_input_tokens=record["cached_tokens"], cache_write_tokens=record["cache_write_tokens"]))


def _bedrock_calls(local_stack):
    return [c for c in local_stack.fake.calls if c["wire"] == "bedrock"]


@pytest.mark.parametrize("model", [CLAUDE, NOVA])
def test_openai_sdk_on_bedrock_plain_streamed_and_a_tool_call_with_its_result(local_stack, bedrock_key, model):
    local_stack.fake.reset()
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bedrock_key, max_retries=0)
    chat = oai.chat.completions.create(model=model, max_tokens=20, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}])
    assert chat.choices[0].message.content and chat.usage.completion_tokens > 0
    assert chat.choices[0].finish_reason == "stop"

    chunks = list(oai.chat.completions.create(model=model, stream=True, max_tokens=20, stop=["END"],
                                              messages=[{"role": "user", "content": "Stream please"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all(c.usage is None for c in chunks)  # the client did not ask for the usage chunk

    asked = [{"role": "user", "content": "Weather in Paris? [[fake:tool_call]]"}]
    first = oai.chat.completions.create(model=model, max_tokens=50, tools=[WEATHER], tool_choice="auto",
                                        messages=asked)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "lorem"}
    answered = asked + [first.choices[0].message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
    second = oai.chat.completions.create(model=model, max_tokens=50, tools=[WEATHER], messages=answered)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content

    streamed = list(oai.chat.completions.create(model=model, stream=True, max_tokens=50, tools=[WEATHER],
                                                messages=asked, stream_options={"include_usage": True}))
    deltas = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "lorem"}
    assert streamed[-1].usage.prompt_tokens > 0  # asked for: the usage chunk is passed on

    calls = _bedrock_calls(local_stack)
    assert [c["operation"] for c in calls] == ["converse", "converse-stream", "converse", "converse",
                                               "converse-stream"]
    assert calls[0]["body"]["system"] == [{"text": "Be brief."}]
    assert calls[1]["body"]["inferenceConfig"] == {"maxTokens": 20, "stopSequences": ["END"]}
    assert calls[3]["body"]["messages"][-1]["content"][0]["toolResult"]["toolUseId"] == call.id

    records = [r for r in _records(local_stack, "e2e-bedrock") if r["model"] == model]
    assert len(records) >= 5
    for r in records:
        assert r["provider"] == "bedrock" and r["status"] == "ok"
        assert Decimal(r["cost_usd"]) == _expected_cost(r) > 0


def test_anthropic_sdk_on_bedrock_claude_through_messages(local_stack, bedrock_key):
    local_stack.fake.reset()
    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=bedrock_key, max_retries=0)
    msg = ant.messages.create(model=CLAUDE, max_tokens=30, system="Be brief.",
                              messages=[{"role": "user", "content": "Hello [[fake:cached_tokens=2]]"}])
    assert msg.content[0].text and msg.usage.output_tokens > 0 and msg.usage.cache_read_input_tokens == 2
    with ant.messages.stream(model=CLAUDE, max_tokens=30, messages=[{"role": "user", "content": "Stream"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.usage.output_tokens > 0

    calls = _bedrock_calls(local_stack)
    assert [c["operation"] for c in calls] == ["invoke", "invoke-with-response-stream"]
    assert all(c["body"]["anthropic_version"] == "bedrock-2023-05-31" and "model" not in c["body"] for c in calls)
    records = [r for r in _records(local_stack, "e2e-bedrock") if r["endpoint"].endswith("/messages")]
    assert len(records) == 2
    for r in records:
        assert r["provider"] == "bedrock" and Decimal(r["cost_usd"]) == _expected_cost(r) > 0
        assert r["deployment"] == f"bedrock@{REGION}"  # its own single deployment, and the region it was called in
    assert any(r["cached_tokens"] == 2 for r in records)


def test_bedrock_throttling_is_a_503_worth_retrying_and_nothing_is_charged(local_stack, bedrock_key):
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=bedrock_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model=NOVA, max_tokens=10,
                                    messages=[{"role": "user", "content": "hi [[fake:status=429]]"}])
    assert caught.value.status_code == 503 and caught.value.body["code"] == "provider_rate_limited"
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model=NOVA, max_tokens=10,
                                    messages=[{"role": "user", "content": "hi [[fake:status=403]]"}])
    assert caught.value.body["code"] == "bedrock_model_access" and "Model access" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=NOVA, max_tokens=10,
                                    messages=[{"role": "user", "content": "hi [[fake:status=400]]"}])
    failed = [r for r in _records(local_stack, "e2e-bedrock") if r["status"] != "ok"]
    assert len(failed) == 3 and all(Decimal(r["cost_usd"]) == 0 for r in failed)


PNG_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_openai_sdk_on_an_anthropic_api_claude_costs_what_the_same_request_through_messages_costs(local_stack):
    key = tollgate(local_stack, "keys", "create", "--user", "e2e-one-format", "--scopes", "ai:complete")["key"]
    local_stack.fake.reset()
    oai = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)
    ant = anthropic.Anthropic(base_url=local_stack.url, api_key=key, max_retries=0)
    model = "claude-haiku-4-5"
    prompt = "Describe this image, then the weather. [[fake:cached_tokens=3]] [[fake:cache_write_tokens=2]]"

    chat = oai.chat.completions.create(model=model, max_tokens=40, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": prompt},
                                     {"type": "image_url", "image_url": {"url": PNG_URL}}]}])
    assert chat.object == "chat.completion" and chat.choices[0].message.content
    assert chat.usage.prompt_tokens_details.cached_tokens == 3
    msg = ant.messages.create(model=model, max_tokens=40, system="Be brief.", messages=[
        {"role": "user", "content": [{"type": "text", "text": prompt},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": PNG_URL.split(",", 1)[1]}}]}])
    assert msg.type == "message" and msg.content[0].text

    chunks = list(oai.chat.completions.create(model=model, max_tokens=40, stream=True,
                                              stream_options={"include_usage": True},
                                              messages=[{"role": "user", "content": "Stream please"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens > 0
    with ant.messages.stream(model=model, max_tokens=40, messages=[{"role": "user", "content": "Stream please"}]) as s:
        s.get_final_message()

    conversation = [{"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "toolu_1", "type": "function", "function": {
                        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"}]
    tooled = oai.chat.completions.create(model=model, max_tokens=40, tools=[WEATHER], messages=conversation)
    assert tooled.choices[0].message.content

    sent = [c["body"] for c in local_stack.fake.calls if c["path"] == "/v1/messages"]
    assert sent[0]["system"] == "Be brief." and sent[0]["messages"][0]["content"][1]["type"] == "image"
    assert sent[-1]["tools"][0]["name"] == "get_weather"
    assert sent[-1]["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}

    records = sorted(_records(local_stack, "e2e-one-format"), key=lambda r: r["time"])
    assert len(records) == 5 and all(r["provider"] == "anthropic" and r["status"] == "ok" for r in records)
    fields = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_usd")
    plain_chat, plain_messages, stream_chat, stream_messages = records[:4]
    assert plain_chat["endpoint"].endswith("/chat/completions") and plain_messages["endpoint"].endswith("/messages")
    assert [plain_chat[f] for f in fields] == [plain_messages[f] for f in fields]
    assert [stream_chat[f] for f in fields] == [stream_messages[f] for f in fields]
    assert plain_chat["cached_tokens"] == 3 and plain_chat["cache_write_tokens"] == 2
    for r in records:
        assert Decimal(r["cost_usd"]) == _expected_cost(r) > 0
