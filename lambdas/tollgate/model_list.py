"""GET /v1/models and /v1/models/{id}: the models a client may name, each with its provider and the
deployments that serve it (tollgate.deployments), in OpenAI's shape or in Anthropic's.

Which names: every model of the price catalogue (by its canonical id) and every public name of the routing
table that is not one (e.g. `claude-sonnet-4-5`: an alias with a fallback), each with the deployments a
request naming it is tried on, in that order. A model with no routing entry is its own single deployment.

Shapes (what the SDKs parse; both SDKs' model types keep extra fields):
- OpenAI (https://platform.openai.com/docs/api-reference/models/object): {id, object: "model", created,
  owned_by}; the list is {object: "list", data}.
- Anthropic (https://docs.anthropic.com/en/api/models-list), for a request carrying anthropic-version:
  {type: "model", id, display_name, created_at}; the list is {data, has_more, first_id, last_id}.
Both carry `provider` (the named model's provider) and `deployments`: [{name, provider, model, region?}]
in the order they are tried, `model` being the id the provider knows it by and `region` the AWS region a
Bedrock deployment is called in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollgate.deployments import Deployment, Deployments
from tollgate.errors import NotFound, shown
from tollgate.pricing import Catalogue, ModelPrice


@dataclass(frozen=True)
class ListedModel:
    """A name a client may request (`id`), its catalogue entry, and its deployments in the order tried."""

    id: str
    price: ModelPrice
    deployments: tuple[Deployment, ...]


def models(catalogue: Catalogue, routing: Deployments) -> list[ListedModel]:
    """Every requestable name with its deployments, sorted by id."""
    found = {p.id: ListedModel(p.id, p, routing.for_model(p.id, p)) for p in catalogue.models()}
    for name, deployments in routing.table().items():
        if name not in found and name in catalogue:
            found[name] = ListedModel(name, catalogue.price(name), deployments)
    return [found[name] for name in sorted(found)]


def model(catalogue: Catalogue, routing: Deployments, name: str) -> ListedModel:
    """One requested name: a public name of the routing table as it is, anything else as its catalogue id
    (an alias or dated snapshot resolves to it). Raises NotFound (404) for a name that is not priced."""
    if name not in catalogue:
        raise NotFound(f"The model '{shown(name)}' does not exist.", code="model_not_found", param="model")
    price = catalogue.price(name)
    return ListedModel(name if name in routing.table() else price.id, price, routing.for_model(name, price))


def document(listed: ListedModel | list[ListedModel], *, anthropic: bool, bedrock_region: str | None) -> dict[str, Any]:
    """The JSON answer for one model or a list, in Anthropic's shape or OpenAI's. `bedrock_region`: where a
    Bedrock deployment without a region of its own is called (the gateway's Bedrock region)."""
    if isinstance(listed, ListedModel):
        return _entry(listed, anthropic, bedrock_region)
    data = [_entry(m, anthropic, bedrock_region) for m in listed]
    if anthropic:
        return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}
    return {"object": "list", "data": data}


def _entry(m: ListedModel, anthropic: bool, bedrock_region: str | None) -> dict[str, Any]:
    served = {"provider": m.price.provider,
              "deployments": [_deployment(d, bedrock_region) for d in m.deployments]}
    if anthropic:
        return {"type": "model", "id": m.id, "display_name": m.id,
                "created_at": f"{m.price.as_of or '1970-01-01'}T00:00:00Z", **served}
    return {"id": m.id, "object": "model", "created": 0, "owned_by": m.price.provider, **served}


def _deployment(d: Deployment, bedrock_region: str | None) -> dict[str, Any]:
    out = {"name": d.name, "provider": d.provider, "model": d.model}
    if d.provider == "bedrock" and (d.region or bedrock_region):
        out["region"] = d.region or bedrock_region
    return out
