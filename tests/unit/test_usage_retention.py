"""Usage records expire (DynamoDB TTL) no sooner than 13 months after their request."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tollgate import schema
from tollgate.metering import UsageRecord
from tollgate.providers.base import Usage


def test_a_usage_record_carries_its_expiry_at_least_13_months_after_the_request():
    started = datetime(2026, 11, 30, 23, 59, tzinfo=timezone.utc)
    item = UsageRecord(user="u", request_id="r", started_at=started, principal="p", key_id="k", provider="openai",
                       model="gpt-4o-mini", usage=Usage(10, 5), cost=Decimal("0.01"), request_type="completion",
                       endpoint="/v1/chat/completions", user_agent="ua", duration_ms=5, byok=False, status="ok").item()
    expires = datetime.fromtimestamp(item[schema.USAGE.ttl_attribute], timezone.utc)
    assert expires == started + timedelta(days=schema.USAGE_RETENTION_DAYS)
    thirteen_months_later = datetime(2027, 12, 31, 23, 59, tzinfo=timezone.utc)  # the longest 13 months from it
    assert expires >= thirteen_months_later
