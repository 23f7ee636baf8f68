"""The loop guard's counter items, for operators: list and clear one user's. The counters themselves
are written only by the ledger (store.ledger, in the reservation transaction)."""
from __future__ import annotations

import time
from typing import Any

from tollgate.store.counters import loop_pk
from tollgate.store.dynamo import from_item, values

_BATCH = 25  # BatchWriteItem's limit


class LoopStore:
    def __init__(self, budgets_table: str, client: Any):
        self.table = budgets_table
        self.client = client

    def for_user(self, user: str) -> list[dict[str, Any]]:
        """Every loop counter item of a user (live and not yet expired windows), as plain values."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table, ConsistentRead=True, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=values(pk=loop_pk(user)))
        return [from_item(i) for page in pages for i in page["Items"]]

    def clear(self, user: str) -> int:
        """Delete every loop counter of a user; returns how many were deleted."""
        keys = [{"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}} for item in self.for_user(user)]
        for start in range(0, len(keys), _BATCH):
            pending = {self.table: [{"DeleteRequest": {"Key": k}} for k in keys[start:start + _BATCH]]}
            for attempt in range(8):
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2 ** attempt)  # throttled: back off, as DynamoDB asks
        return len(keys)
