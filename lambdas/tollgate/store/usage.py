"""The usage table: one record per metered request, written only by the ledger, read here.

A record is born PENDING in the reservation transaction (it is the reservation: what was reserved where,
and the sparse `pending` index keys the sweeper finds it by), becomes the request's final record in the
settle transaction (status ok or error: tollgate.metering), or RELEASED by the sweeper when its request
never settled. Readers see final records only: pending and released ones are no usage.
"""
from __future__ import annotations

from typing import Any

from tollgate.store.dynamo import from_item, values

PENDING = "pending"  # reserved, not settled yet
RELEASED = "released"  # never settled: the sweeper gave its reservation back
# Keep only final records (a record without a status predates the pending stage: final).
_FINAL_ONLY = dict(FilterExpression="attribute_not_exists(#status) OR (#status <> :pending AND #status <> :released)",
                   ExpressionAttributeNames={"#status": "status"})


def _final_values(**more: Any) -> dict[str, Any]:
    return values(pending=PENDING, released=RELEASED, **more)


class UsageStore:
    def __init__(self, table_name: str, client: Any):
        self.table = table_name
        self.client = client

    def for_user(self, user: str, start: str, end: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Final records of one user with start <= time < end (ISO strings): one Query, newest first."""
        out: list[dict[str, Any]] = []
        kwargs = dict(TableName=self.table, KeyConditionExpression="pk = :u AND sk BETWEEN :a AND :b",
                      ExpressionAttributeValues=_final_values(u=user, a=start, b=end + "\uffff"),
                      ScanIndexForward=False, **_FINAL_ONLY)
        while len(out) < limit:
            page = self.client.query(**kwargs, Limit=min(1000, limit - len(out)))
            out += [from_item(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out

    def for_period(self, period: str) -> list[dict[str, Any]]:
        """Every user's final records of a UTC period, "YYYY-MM" or "YYYY-MM-DD": a paginated Scan filtered on
        the sort key (the table has no index by time; for daily and monthly operator jobs, not requests)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table, FilterExpression=f"begins_with(sk, :p) AND ({_FINAL_ONLY['FilterExpression']})",
            ExpressionAttributeNames=_FINAL_ONLY["ExpressionAttributeNames"],
            ExpressionAttributeValues=_final_values(p=period))
        return [from_item(i) for page in pages for i in page["Items"]]
