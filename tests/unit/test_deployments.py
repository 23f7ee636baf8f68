"""Routing configuration: public model name -> deployments, validated against the price catalogue."""
from __future__ import annotations

import json

import pytest

from tollgate.deployments import Deployments, parse
from tollgate.errors import ProviderFailed, ProviderRejected
from tollgate.pricing import Catalogue
from tollgate.service import _worth_another_deployment


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.load()


def test_the_shipped_table_sends_claude_sonnet_to_the_anthropic_api_then_bedrock(catalogue):
    deployments = Deployments.load(catalogue)
    found = deployments.for_model("claude-sonnet-4-5", catalogue.price("claude-sonnet-4-5"))
    assert [(d.name, d.provider) for d in found] == [("anthropic", "anthropic"), ("bedrock-us", "bedrock")]
    assert found[1].model.startswith("us.anthropic.")
    for entries in deployments.table().values():
        assert all(d.price.id in catalogue for d in entries)


def test_a_model_without_an_entry_is_its_own_single_deployment(catalogue):
    price = catalogue.price("gpt-4o-mini")
    [only] = Deployments.load(catalogue).for_model("gpt-4o-mini", price)
    assert (only.name, only.model, only.price) == ("openai", "gpt-4o-mini", price)


def test_the_override_replaces_the_table(catalogue):
    override = json.dumps({"claude-sonnet-4-5": [
        {"name": "bedrock-eu", "model": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "region": "eu-west-1"}]})
    [only] = Deployments.load(catalogue, override).for_model("claude-sonnet-4-5", catalogue.price("claude-sonnet-4-5"))
    assert (only.provider, only.region) == ("bedrock", "eu-west-1")


@pytest.mark.parametrize("raw", [
    [],  # not an object
    {"m": []},  # no deployment
    {"m": [{"name": "a"}]},  # no model
    {"m": [{"name": "a", "model": "gpt-4o", "weight": 2}]},  # unknown field
    {"m": [{"name": "a", "model": "no-such-model"}]},  # unpriced: fail closed
    {"m": [{"name": "a", "model": "gpt-4o"}, {"name": "a", "model": "gpt-4o-mini"}]},  # duplicate names
])
def test_invalid_tables_are_refused_at_load(catalogue, raw):
    with pytest.raises(ValueError):
        parse(raw, catalogue)


def test_the_reservation_is_held_at_the_dearest_candidate(catalogue):
    from tollgate import estimate
    from tollgate.service import _held_at

    deployments = Deployments.load(catalogue).for_model("claude-sonnet-4-5", catalogue.price("claude-sonnet-4-5"))
    bound = estimate.chat_bound({"model": "claude-sonnet-4-5", "max_tokens": 100,
                                 "messages": [{"role": "user", "content": "hi"}]},
                                "claude-sonnet-4-5", 64000, 4096, anthropic=True, price=deployments[0].price)
    usable, held = _held_at(catalogue, deployments, bound)
    assert usable == deployments
    assert held.id == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # the regional profile: 10% dearer
    assert all(catalogue.worst_case_cost(held, bound.input_tokens, bound.output_tokens)
               >= catalogue.worst_case_cost(d.price, bound.input_tokens, bound.output_tokens) for d in deployments)


def test_a_candidate_that_cannot_price_a_server_tool_is_not_tried(catalogue):
    from tollgate import estimate
    from tollgate.service import _held_at

    deployments = Deployments.load(catalogue).for_model("claude-sonnet-4-5", catalogue.price("claude-sonnet-4-5"))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]}
    bound = estimate.chat_bound(body, "claude-sonnet-4-5", 64000, 4096, anthropic=True, price=deployments[0].price)
    usable, held = _held_at(catalogue, deployments, bound)
    assert [d.name for d in usable] == ["anthropic"] and held is deployments[0].price


def test_the_usage_record_names_the_deployment_that_answered_in_one_short_attribute(catalogue):
    from datetime import datetime, timezone
    from decimal import Decimal

    from tollgate.metering import UsageRecord, public
    from tollgate.providers.base import Usage

    first, second = Deployments.load(catalogue).for_model("claude-sonnet-4-5", catalogue.price("claude-sonnet-4-5"))
    assert (first.label(), second.label("us-west-2")) == ("anthropic", "bedrock-us@us-west-2")

    def record(**extra):
        return UsageRecord(user="u", request_id="r", started_at=datetime(2026, 12, 1, tzinfo=timezone.utc),
                           principal="p", key_id="k", provider=second.provider, model=second.model,
                           usage=Usage(10, 5), cost=Decimal("0.01"), request_type="completion",
                           endpoint="/v1/chat/completions", user_agent="ua", duration_ms=5, byok=False, status="ok",
                           **extra).item()

    item = record(deployment=second.label("us-west-2"))
    assert item["deployment"] == "bedrock-us@us-west-2" and public(item)["deployment"] == "bedrock-us@us-west-2"
    assert "deployment" not in record() and public(record())["deployment"] is None  # written only when known


@pytest.mark.parametrize("error, next_one", [
    (ProviderRejected("model: claude-sonnet-4-5-20250929", status=404), True),  # Anthropic: retired or unknown
    (ProviderRejected("The model `gpt-x` does not exist or you do not have access to it.", status=404,
                      code="model_not_found"), True),  # OpenAI
    (ProviderRejected("This model version has reached the end of its life.", status=404,
                      code="ResourceNotFoundException"), True),  # Bedrock
    (ProviderRejected("Previous response with id 'resp_1' not found.", status=404,
                      param="previous_response_id", code="previous_response_not_found"), False),  # the client's
    (ProviderRejected("Not found.", status=404), False),  # not about the model
    (ProviderRejected("max_tokens: too large for this model", status=400, param="max_tokens"), False),
    (ProviderRejected("rate limited", status=429), True),
    (ProviderFailed("the provider timed out"), True),
])
def test_only_a_failure_another_deployment_may_not_have_moves_on(error, next_one):
    assert _worth_another_deployment(error) is next_one
