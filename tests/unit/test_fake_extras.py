"""The fake provider reports what is billed outside plain token counts the way the providers do (issue 12):
server-side tool calls, the service tier, reasoning tokens; read back by the real SDKs and by the gateway's
own usage parsers."""
from __future__ import annotations

import anthropic
import openai

from local.fake_provider import FakeProvider
from tollgate.providers import anthropic_provider, openai_provider
from tollgate.providers._common import sse_events
from tests.unit.test_fake_provider import http

CLAUDE = "claude-haiku-4-5"
SEARCH = {"type": "web_search_20250305", "name": "web_search"}
FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}


def _claude(fake: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)


def _oai(fake: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fake.url}/v1", api_key="sk-test", max_retries=0)


def test_anthropic_server_tools_are_reported_in_usage_and_content_capped_by_max_uses(fake_provider):
    message = _claude(fake_provider).messages.create(
        model=CLAUDE, max_tokens=50, tools=[{**SEARCH, "max_uses": 2}, FETCH],
        messages=[{"role": "user", "content": "news? [[fake:server_tool_calls=3]]"}])
    assert message.usage.server_tool_use.web_search_requests == 2  # capped by max_uses
    assert message.usage.server_tool_use.model_dump().get("web_fetch_requests") == 3
    kinds = [block.type for block in message.content]
    assert kinds == ["server_tool_use", "web_search_tool_result"] * 2 + \
        ["server_tool_use", "web_fetch_tool_result"] * 3 + ["text"]
    usage = anthropic_provider.usage_from(message.usage.model_dump(), {})
    assert usage.server_tool_calls == {"web_search": 2, "web_fetch": 3}


def test_anthropic_streamed_server_tool_calls_arrive_in_message_delta(fake_provider):
    body = {"model": CLAUDE, "max_tokens": 20, "stream": True, "tools": [SEARCH],
            "messages": [{"role": "user", "content": "news?"}]}
    status, _, raw = http(fake_provider, "POST", "/v1/messages", body, {"x-api-key": "k"})
    assert status == 200
    meter = anthropic_provider.MessagesStreamMeter("", body)
    for name, _, data in sse_events(raw):
        meter.feed(name, data)
    assert meter.complete and meter.final.server_tool_calls == {"web_search": 1}
    with _claude(fake_provider).messages.stream(model=CLAUDE, max_tokens=20, tools=[SEARCH],
                                                messages=[{"role": "user", "content": "news?"}]) as stream:
        final = stream.get_final_message()
    assert final.usage.server_tool_use.web_search_requests == 1
    assert [b.type for b in final.content] == ["server_tool_use", "web_search_tool_result", "text"]


def test_no_server_tool_offered_none_reported(fake_provider):
    message = _claude(fake_provider).messages.create(model=CLAUDE, max_tokens=5,
                                                     messages=[{"role": "user", "content": "hi"}])
    assert message.usage.server_tool_use is None and [b.type for b in message.content] == ["text"]


def test_responses_server_tool_calls_are_output_items_plain_and_streamed(fake_provider):
    client = _oai(fake_provider)
    tools = [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}},
             {"type": "function", "name": "f", "parameters": {"type": "object"}}]
    plain = client.responses.create(model="gpt-4o-mini", input="news? [[fake:server_tool_calls=2]]", tools=tools)
    assert [i.type for i in plain.output] == ["web_search_call"] * 2 + ["code_interpreter_call"] * 2 + ["message"]
    usage = openai_provider.usage_from(plain.usage.model_dump(), plain.model_dump())
    assert usage.server_tool_calls == {"web_search": 2, "code_interpreter": 2}
    with client.responses.stream(model="gpt-4o-mini", input="news?", tools=tools[:1]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds.count("response.output_item.done") == 2 and final.output_text
    assert [i.type for i in final.output] == ["web_search_call", "message"]


def test_the_service_tier_asked_for_is_reported_as_used(fake_provider):
    client = _oai(fake_provider)
    messages = [{"role": "user", "content": "hi"}]
    assert client.chat.completions.create(model="gpt-5", messages=messages,
                                          service_tier="priority").service_tier == "priority"
    assert client.chat.completions.create(model="gpt-5", messages=messages).service_tier == "default"
    assert client.responses.create(model="gpt-5", input="hi", service_tier="flex").service_tier == "flex"


def test_reasoning_tokens_are_reported_inside_the_output_and_within_max_tokens(fake_provider):
    client = _oai(fake_provider)
    messages = [{"role": "user", "content": "think"}]
    chat = client.chat.completions.create(model="o4-mini", messages=messages, reasoning_effort="low")
    assert chat.usage.completion_tokens_details.reasoning_tokens == 8 and chat.usage.completion_tokens == 16 + 8
    capped = client.chat.completions.create(model="o4-mini", messages=messages, reasoning_effort="low",
                                            max_completion_tokens=20)
    assert (capped.usage.completion_tokens, capped.usage.completion_tokens_details.reasoning_tokens) == (20, 4)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0
    response = client.responses.create(model="o4-mini", input="think [[fake:reasoning_tokens=30]]",
                                       reasoning={"effort": "high"})
    assert response.usage.output_tokens_details.reasoning_tokens == 30 and response.usage.output_tokens == 46
    assert [i.type for i in response.output] == ["reasoning", "message"]


def test_anthropic_cache_writes_are_split_by_lifetime(fake_provider):
    client = _claude(fake_provider)
    one_hour = {"type": "text", "text": "rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    for system, expected in (([one_hour], (0, 5)), ([{**one_hour, "cache_control": {"type": "ephemeral"}}], (5, 0))):
        message = client.messages.create(model=CLAUDE, max_tokens=5, system=system,
                                         messages=[{"role": "user", "content": "hi [[fake:cache_write_tokens=5]]"}])
        split = message.usage.cache_creation
        assert (split.ephemeral_5m_input_tokens, split.ephemeral_1h_input_tokens) == expected
        assert anthropic_provider.usage_from(message.usage.model_dump(), {}).cache_write_1h_tokens == expected[1]


def test_the_fakes_bill_counts_a_streamed_responses_call_and_its_server_tool_like_a_plain_one(fake_provider):
    client = _oai(fake_provider)
    with client.responses.stream(model="gpt-4o-mini", input="hi", tools=[{"type": "web_search"}]) as stream:
        stream.get_final_response()
    client.responses.create(model="gpt-4o-mini", input="hi", tools=[{"type": "web_search"}])
    streamed, plain = fake_provider.billing.lines[-2:]
    assert streamed["usage"] == plain["usage"] and streamed["usage"].server_tool_calls == {"web_search": 1}
    assert streamed["usd"] == plain["usd"] > 0
