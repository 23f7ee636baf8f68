"""Daily totals, written by the reconciliation job (tollgate.reconcile) in the budgets table, no hot-path cost.

Per user, provider, model and UTC day: pk `DAILY#USER#<user>`, sk `<day>#<provider>#<model>`, with
estimatedUsd and tokens (Tollgate's, from the usage records) and actualUsd (the provider's bill apportioned
by tokens; absent while the bill is missing). One user's days are one Query (`tollgate usage`).
Per provider and day: pk `RECON#<day>`, sk `<provider>`, the provider's reconciliation summary.
Items expire with the usage records they summarise (schema.USAGE_RETENTION_DAYS).
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from tollgate.schema import BUDGETS, USAGE_RETENTION_DAYS
from tollgate.store.dynamo import from_item, to_item, values


def user_pk(user: str) -> str:
    return f"DAILY#USER#{user}"


def _expiry(day: str) -> int:
    end = date.fromisoformat(day) + timedelta(days=USAGE_RETENTION_DAYS + 1)
    return int((end - date(1970, 1, 1)).total_seconds())


class DailyTotals:
    def __init__(self, table_name: str, client: Any):
        self.table = table_name
        self.client = client

    def write(self, day: str, provider: str, model: str, estimates: dict[str, tuple[Decimal, int]],
              actual: dict[str, Decimal] | None) -> None:
        """Each user's (estimated USD, tokens) and apportioned actual USD (None: the bill is missing, and
        any earlier actual figure is removed rather than left standing)."""
        for user, (estimated, tokens) in estimates.items():
            update = "SET estimatedUsd = :e, tokens = :t, #ttl = :ttl"
            vals: dict[str, Any] = dict(e=estimated, t=tokens, ttl=_expiry(day))
            if actual is not None:
                update += ", actualUsd = :a"
                vals["a"] = actual[user]
            else:
                update += " REMOVE actualUsd"
            self.client.update_item(TableName=self.table,
                                    Key=to_item({"pk": user_pk(user), "sk": f"{day}#{provider}#{model}"}),
                                    UpdateExpression=update, ExpressionAttributeNames={"#ttl": BUDGETS.ttl_attribute},
                                    ExpressionAttributeValues=values(**vals))

    def write_summary(self, day: str, provider: str, summary: dict[str, Any]) -> None:
        """A provider's reconciliation of a day, as JSON text (money as exact strings)."""
        self.client.put_item(TableName=self.table, Item=to_item({
            "pk": f"RECON#{day}", "sk": provider, "report": json.dumps(summary, default=str),
            BUDGETS.ttl_attribute: _expiry(day)}))

    def for_user(self, user: str, first_day: str, last_day: str) -> list[dict[str, Any]]:
        """One user's daily totals from first_day to last_day (YYYY-MM-DD, inclusive): one Query."""
        out: list[dict[str, Any]] = []
        kwargs = dict(TableName=self.table, KeyConditionExpression="pk = :u AND sk BETWEEN :a AND :b",
                      ExpressionAttributeValues=values(u=user_pk(user), a=first_day, b=last_day + "#\uffff"))
        while True:
            page = self.client.query(**kwargs)
            out += [from_item(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
