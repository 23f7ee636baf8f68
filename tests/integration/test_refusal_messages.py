"""Refusals say which limit refused and why (issue 10): a budget refusal names its level and the reason,
the request's worst case against what is left, even when nothing was spent yet."""
from __future__ import annotations

from decimal import Decimal

from tests.integration.world import body_of

CHAT = "/v1/chat/completions"


def test_a_budget_refusal_names_the_level_and_the_worst_case_against_what_is_left(world):
    raw, _ = world.create_key(monthly_budget_usd=Decimal("0.000001"))
    resp = world.call("POST", CHAT, {"model": "gpt-4o-mini", "max_tokens": 1000,
                                     "messages": [{"role": "user", "content": "hello"}]},
                      principal=world.principal(raw))
    assert resp["statusCode"] == 429
    message = body_of(resp)["error"]["message"]
    assert message.startswith("Refused by the monthly budget of this API key: this request may cost up to $")
    assert "worst case" in message and "more than the $0.000001 left of $0.000001" in message
    assert "exhausted" not in message  # nothing was spent
