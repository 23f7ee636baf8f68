"""GET /v1/models: each requestable name with its provider and its deployments in the order tried, in both
SDKs' shapes (tollgate.model_list), from the shipped catalogue and routing table."""
from __future__ import annotations

import json

import pytest

from tollgate import errors, model_list
from tollgate.deployments import Deployments
from tollgate.pricing import Catalogue


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.load()


@pytest.fixture(scope="module")
def routing(catalogue):
    return Deployments.load(catalogue)


def _by_id(doc):
    return {m["id"]: m for m in doc["data"]}


def test_a_public_name_with_a_fallback_lists_its_deployments_in_order(catalogue, routing):
    doc = model_list.document(model_list.models(catalogue, routing), anthropic=False, bedrock_region="us-east-1")
    sonnet = _by_id(doc)["claude-sonnet-4-5"]
    assert (sonnet["object"], sonnet["owned_by"], sonnet["provider"]) == ("model", "anthropic", "anthropic")
    assert sonnet["deployments"] == [
        {"name": "anthropic", "provider": "anthropic", "model": "claude-sonnet-4-5-20250929"},
        {"name": "bedrock-us", "provider": "bedrock", "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
         "region": "us-east-1"}]
    # the dated id has no routing entry of its own: a request naming it goes to the Anthropic API only
    assert [d["name"] for d in _by_id(doc)["claude-sonnet-4-5-20250929"]["deployments"]] == ["anthropic"]


def test_every_priced_model_is_listed_once_as_its_own_single_deployment_unless_routed(catalogue, routing):
    listed = model_list.models(catalogue, routing)
    ids = [m.id for m in listed]
    assert ids == sorted(set(ids)) and {p.id for p in catalogue.models()} <= set(ids)
    nova = next(m for m in listed if m.id == "us.amazon.nova-lite-v1:0")
    assert [(d.name, d.provider, d.model) for d in nova.deployments] == [("bedrock", "bedrock", nova.id)]


def test_anthropic_shape_carries_the_same_deployments(catalogue, routing):
    doc = model_list.document(model_list.models(catalogue, routing), anthropic=True, bedrock_region="eu-west-1")
    assert doc["has_more"] is False
    assert (doc["first_id"], doc["last_id"]) == (doc["data"][0]["id"], doc["data"][-1]["id"])
    sonnet = _by_id(doc)["claude-sonnet-4-5"]
    assert (sonnet["type"], sonnet["display_name"]) == ("model", "claude-sonnet-4-5")
    assert [(d["name"], d.get("region")) for d in sonnet["deployments"]] == [("anthropic", None),
                                                                          ("bedrock-us", "eu-west-1")]
    json.dumps(doc)  # plain JSON: no Decimal, no dataclass


def test_one_model_by_public_name_alias_or_unknown(catalogue, routing):
    one = model_list.document(model_list.model(catalogue, routing, "claude-sonnet-4-5"), anthropic=False,
                              bedrock_region=None)
    assert one["id"] == "claude-sonnet-4-5" and len(one["deployments"]) == 2
    assert "region" not in one["deployments"][1]  # no region known: none claimed
    alias = model_list.model(catalogue, routing, "claude-haiku-4-5")  # an alias: its catalogue id
    assert alias.id == catalogue.price("claude-haiku-4-5").id != "claude-haiku-4-5"
    with pytest.raises(errors.NotFound):
        model_list.model(catalogue, routing, "no-such-model")


def test_a_region_of_the_deployment_itself_wins_over_the_gateways(catalogue):
    routing = Deployments.load(catalogue, json.dumps({"claude-sonnet-4-5": [
        {"name": "bedrock-eu", "model": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "region": "eu-west-1"}]}))
    one = model_list.document(model_list.model(catalogue, routing, "claude-sonnet-4-5"), anthropic=False,
                              bedrock_region="us-east-1")
    assert one["deployments"] == [{"name": "bedrock-eu", "provider": "bedrock",
                                   "model": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "region": "eu-west-1"}]
