"""A stored usage record leaves out the fields that are zero or false, and reads back the same."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from tollgate import metering
from tollgate.metering import UsageRecord
from tollgate.providers.base import Usage


def _record(usage: Usage, **extra) -> UsageRecord:
    return UsageRecord(user="u", request_id="r1", started_at=datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc),
                       principal="sk-p", key_id="sk-p", provider="openai", model="gpt-4o-mini", usage=usage,
                       cost=Decimal("0.0002"), request_type="completion", endpoint="/v1/chat/completions",
                       user_agent="ua", duration_ms=5, status="ok", **{"byok": False, **extra})


def test_zero_and_false_fields_are_left_out_and_read_back_as_zero_and_false():
    item = _record(Usage(260, 256)).item()
    assert not set(metering.OMITTED_WHEN_ZERO) & set(item)
    assert (item["promptTokens"], item["completionTokens"], item["costUsd"]) == (260, 256, Decimal("0.0002"))
    shown = metering.public(item)
    assert "time" not in item and shown["time"] == "2026-11-27T14:30:00.000Z"  # from the sort key
    assert (shown["cached_tokens"], shown["cache_write_tokens"], shown["cache_write_1h_tokens"],
            shown["reasoning_tokens"], shown["byok"]) == (0, 0, 0, 0, False)


def test_fields_that_are_set_are_kept():
    item = _record(Usage(260, 256, cached_input_tokens=100, cache_write_tokens=50, cache_write_1h_tokens=20,
                         reasoning_tokens=30), byok=True, stream=True).item()
    assert {k: item[k] for k in metering.OMITTED_WHEN_ZERO} == {
        "cachedTokens": 100, "cacheWriteTokens": 50, "cacheWrite1hTokens": 20, "reasoningTokens": 30,
        "byok": True, "stream": True}
    assert metering.public(item)["byok"] is True
