"""Body of POST /v1/agents/runs. What the input must hold (reviews) is checked in tollgate.runs."""
from __future__ import annotations

from tollgate.requests.base import TollgateRequest
from tollgate.requests.types import JsonObject, Name, Text, Usd


class StartRun(TollgateRequest):
    agent: Text
    input: JsonObject
    budget_usd: Usd
    model: Name | None = None
