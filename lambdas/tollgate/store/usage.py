"""Reading the usage table (written only by the ledger)."""
from __future__ import annotations

from typing import Any

from tollgate.store.dynamo import from_item, values


class UsageStore:
    def __init__(self, table_name: str, client: Any):
        self.table = table_name
        self.client = client

    def for_user(self, user: str, start: str, end: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Records of one user with start <= time < end (ISO strings): one Query, newest first."""
        out: list[dict[str, Any]] = []
        kwargs = dict(TableName=self.table, KeyConditionExpression="pk = :u AND sk BETWEEN :a AND :b",
                      ExpressionAttributeValues=values(u=user, a=start, b=end + "\uffff"), ScanIndexForward=False)
        while len(out) < limit:
            page = self.client.query(**kwargs, Limit=min(1000, limit - len(out)))
            out += [from_item(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out

    def for_period(self, period: str) -> list[dict[str, Any]]:
        """Every user's records of a UTC period, "YYYY-MM" or "YYYY-MM-DD": a paginated Scan filtered on the
        sort key (the table has no index by time; for daily and monthly operator jobs, not requests)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table, FilterExpression="begins_with(sk, :p)", ExpressionAttributeValues=values(p=period))
        return [from_item(i) for page in pages for i in page["Items"]]
