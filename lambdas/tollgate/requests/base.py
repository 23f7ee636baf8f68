"""The two kinds of request schema.

ProviderRequest: a metered route's body, in a provider's wire format. Only the fields the gateway (or
the provider call it makes) reads are typed; any other field passes through untouched, since providers
add fields every month. The body forwarded is the client's own dict, never a re-serialisation.

TollgateRequest: a body of the gateway's own API (admin, runs, BYOK). Every field is declared and an
unknown one is refused (a misspelt `monthly_budget_usd` must not be silently ignored); the domain gets
the validated values (Decimal for money).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProviderRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ProviderObject(BaseModel):
    """A nested object of a provider request (a message, a tool): typed fields, the rest passes."""

    model_config = ConfigDict(extra="allow", frozen=True)


class TollgateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
