"""Issue 12's pure pieces: the Responses API's bound, anthropic-beta allow-list, the Responses stream meter,
and the fake provider's tool calls, choices and structured output."""
from __future__ import annotations

import json

import jsonschema
import pytest

from local.fake_provider import Controls, anthropic_messages, example_json, openai_chat, tool_to_call
from tollgate import anthropic_api, estimate, responses
from tollgate.errors import InvalidRequest
from tollgate.pricing import Catalogue
from tollgate.providers.openai_provider import ResponsesStreamMeter

GPT = Catalogue.load().price("gpt-4o-mini")


def _bound(body):
    return estimate.chat_bound(body, GPT.id, GPT.max_output_tokens, 4096, anthropic=False,
                               context_window=GPT.context_window, price=GPT, responses=True)


def test_the_responses_cap_is_max_output_tokens_and_is_set_when_absent():
    given = _bound({"model": GPT.id, "input": "hi", "max_output_tokens": 100, "max_tokens": 9000})
    assert (given.max_tokens, given.output_tokens, given.max_tokens_field, given.defaulted) == \
        (100, 100, "max_output_tokens", False)
    absent = _bound({"model": GPT.id, "input": "hi"})
    assert absent.defaulted and absent.max_tokens_field == "max_output_tokens"
    assert estimate.with_max_tokens({"input": "hi"}, absent, absent.max_tokens)["max_output_tokens"] == 4096


def test_a_chained_response_reserves_the_whole_context_window_for_the_conversation_it_cannot_see():
    chained = _bound({"model": GPT.id, "input": "and then?", "previous_response_id": "resp_1"})
    assert chained.input_tokens == GPT.context_window > _bound({"model": GPT.id, "input": "and then?"}).input_tokens


def test_background_responses_are_refused():
    with pytest.raises(InvalidRequest) as err:
        responses.check_request({"model": GPT.id, "input": "x", "background": True})
    assert err.value.param == "background"
    responses.check_request({"model": GPT.id, "input": "x", "background": False})


@pytest.mark.parametrize("betas", ["", "context-1m-2025-08-07", "claude-code-20250219, interleaved-thinking-2025-05-14"])
def test_allowed_betas_pass_as_sent(betas):
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": betas, "x-api-key": "sk-secret"}
    out = anthropic_api.provider_headers(headers)
    assert out == {"anthropic-version": "2023-06-01", **({"anthropic-beta": betas} if betas else {})}


def test_an_unknown_beta_is_a_400_naming_the_setting_and_the_operator_can_allow_it():
    headers = {"anthropic-beta": "claude-code-20250219,files-api-2025-04-14"}
    with pytest.raises(InvalidRequest) as err:
        anthropic_api.provider_headers(headers)
    assert "files-api-2025-04-14" in err.value.message and "TOLLGATE_ANTHROPIC_BETAS" in err.value.message
    assert anthropic_api.provider_headers(headers, ("files-api-*",))["anthropic-beta"] == headers["anthropic-beta"]


def _feed(meter, kind, **data):
    meter.feed(kind, json.dumps({"type": kind, **data}))


def test_the_responses_stream_meter_reads_the_id_deltas_and_the_completed_usage():
    meter = ResponsesStreamMeter("sk-test")
    _feed(meter, "response.created", response={"id": "resp_1", "model": "gpt-4o-mini"})
    _feed(meter, "response.output_text.delta", delta="hello")
    assert (meter.response_id, meter.generated_bytes, meter.final, meter.complete) == ("resp_1", 5, None, False)
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 7,
             "output_tokens_details": {"reasoning_tokens": 3}}
    _feed(meter, "response.completed", response={"id": "resp_1", "usage": usage, "service_tier": "priority",
                                                 "output": [{"type": "web_search_call"}]})
    assert meter.complete and not meter.error
    final = meter.final
    assert (final.input_tokens, final.cached_input_tokens, final.output_tokens, final.reasoning_tokens,
            final.service_tier, dict(final.server_tool_calls)) == (10, 4, 7, 3, "priority", {"web_search": 1})


def test_a_failed_responses_stream_is_not_complete():
    meter = ResponsesStreamMeter("sk-test")
    _feed(meter, "response.failed", response={"usage": {"input_tokens": 5, "output_tokens": 0},
                                              "error": {"message": "boom"}})
    assert not meter.complete and meter.error == "boom" and meter.final.input_tokens == 5


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                           "unit": {"enum": ["c", "f"]}, "tags": {"type": "array",
                                                                                  "items": {"type": "string"}}},
          "required": ["city", "days"], "additionalProperties": False}


def test_example_json_is_valid_for_its_schema():
    jsonschema.validate(example_json(SCHEMA), SCHEMA)


def test_the_fake_calls_an_offered_tool_only_when_asked_and_only_once():
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "go [[fake:tool_call]]"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": SCHEMA}}]}
    controls = Controls(tool_call=True)
    assert tool_to_call({**chat, "tools": []}, controls) is None
    assert tool_to_call(chat, Controls()) is None
    name, args = tool_to_call(chat, controls)
    jsonschema.validate(json.loads(args), SCHEMA)
    answered = {**chat, "messages": chat["messages"] + [{"role": "tool", "tool_call_id": "c", "content": "ok"}]}
    assert tool_to_call(answered, controls) is None

    reply = json.loads(openai_chat({**chat, "n": 2}, controls).body)
    assert [c["finish_reason"] for c in reply["choices"]] == ["tool_calls", "tool_calls"]
    assert reply["choices"][1]["message"]["tool_calls"][0]["function"]["name"] == "weather"

    claude = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": chat["messages"],
              "tools": [{"name": "weather", "input_schema": SCHEMA}]}
    message = json.loads(anthropic_messages(claude, controls).body)
    assert message["stop_reason"] == "tool_use" and message["content"][0]["type"] == "tool_use"
    streamed = b"".join(anthropic_messages({**claude, "stream": True}, controls).events)
    assert b"input_json_delta" in streamed and b'"stop_reason":"tool_use"' in streamed


def test_the_fake_answers_n_choices_and_json_schema_formats():
    body = {"model": "gpt-4o-mini", "n": 3, "messages": [{"role": "user", "content": "json"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}}
    reply = json.loads(openai_chat(body, Controls()).body)
    assert len(reply["choices"]) == 3
    for choice in reply["choices"]:
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
