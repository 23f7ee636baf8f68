"""Routing: which deployments serve a public model name, in the order they are tried.

A deployment is a priced model id of the catalogue (so its provider and prices are the catalogue's) plus a
name the client sees (`x-tollgate-deployment`) and, for Bedrock, an optional region. The table is
pricing/deployments.json, or TOLLGATE_DEPLOYMENTS (JSON, same shape as its `deployments` object) instead.
A model name with no entry has one deployment: the model itself, named after its provider.

Read lazily, once per process; invalid configuration raises ValueError (a bad deployment fails at start-up,
not on a request), and so does a deployment whose model is not priced (fail closed).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from tollgate.pricing import Catalogue, ModelPrice

DEPLOYMENTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pricing", "deployments.json")
_FIELDS = frozenset(("name", "model", "region"))


@dataclass(frozen=True)
class Deployment:
    """One place a model is served: `model` is the provider's model id (a catalogue id), `price` its entry."""

    name: str
    model: str
    price: ModelPrice
    region: str | None = None

    @property
    def provider(self) -> str:
        return self.price.provider

    def label(self, region: str | None = None) -> str:
        """How a usage record names the deployment that answered, in one short attribute: `name`, or
        `name@region` when it was called in an AWS region (Bedrock: `region` is the one the call went to).
        The provider and the provider's model id are attributes of the record already."""
        return f"{self.name}@{region}" if region else self.name


class Deployments:
    """Public model name -> deployments in the order they are tried."""

    def __init__(self, table: Mapping[str, tuple[Deployment, ...]]):
        self._table = dict(table)

    @classmethod
    def load(cls, catalogue: Catalogue, override_json: str | None = None) -> "Deployments":
        """From deployments.json, or from `override_json` (TOLLGATE_DEPLOYMENTS) when given. Raises ValueError."""
        return _load(catalogue, override_json or None)

    def for_model(self, model: str, price: ModelPrice) -> tuple[Deployment, ...]:
        """The deployments of a requested name (`price`: its catalogue entry), in order."""
        found = self._table.get(model)
        if found is None and price.id in self._table:
            found = self._table[price.id]
        return found or (Deployment(price.provider, model, price),)

    def table(self) -> Mapping[str, tuple[Deployment, ...]]:
        return dict(self._table)


@lru_cache(maxsize=4)
def _load(catalogue: Catalogue, override_json: str | None) -> Deployments:
    if override_json is not None:
        where = "TOLLGATE_DEPLOYMENTS"
        try:
            raw = json.loads(override_json)
        except ValueError as e:
            raise ValueError(f"{where}: not valid JSON ({e})") from None
    else:
        where = DEPLOYMENTS_FILE
        with open(DEPLOYMENTS_FILE, "rb") as f:
            raw = json.loads(f.read()).get("deployments")
    return Deployments(parse(raw, catalogue, where))


def parse(raw: Any, catalogue: Catalogue, where: str = "deployments") -> dict[str, tuple[Deployment, ...]]:
    """Validate a `deployments` object: name -> [{name, model, region?}, ...]. Raises ValueError."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object: model name -> list of deployments")
    out: dict[str, tuple[Deployment, ...]] = {}
    for public, entries in raw.items():
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{where}: '{public}': expected a non-empty list of deployments")
        found = []
        for e in entries:
            if not isinstance(e, dict) or set(e) - _FIELDS or not isinstance(e.get("name"), str) or \
                    not isinstance(e.get("model"), str) or not isinstance(e.get("region", ""), str):
                raise ValueError(f"{where}: '{public}': each deployment is {{name, model, region?}} of strings")
            if e["model"] not in catalogue:
                raise ValueError(f"{where}: '{public}': deployment '{e['name']}' names the unpriced model "
                                 f"'{e['model']}'; add its price first")
            found.append(Deployment(e["name"], e["model"], catalogue.price(e["model"]), e.get("region")))
        if len({d.name for d in found}) != len(found):
            raise ValueError(f"{where}: '{public}': deployment names must be distinct")
        out[public] = tuple(found)
    return out
