"""Who owns each stored OpenAI response: one item `RESPONSE#<id>` / `OWNER` in the budgets table.

Written inside the settle transaction of the request that created the response (no extra round trip);
checked by a ConditionCheck inside the reservation transaction of a request that chains it
(`previous_response_id`), and by one GetItem before a stored-response operation is forwarded. Kept 30
days, as OpenAI keeps a stored response (https://platform.openai.com/docs/api-reference/responses/create,
`store`).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from tollgate.store.dynamo import to_item, values

OWNER_SK = "OWNER"
RETENTION_S = 30 * 86_400


def owner_pk(response_id: str) -> str:
    return f"RESPONSE#{response_id}"


def owner_put(table: str, response_id: str, user: str, now: datetime) -> dict[str, Any]:
    """A TransactWriteItems Put recording `user` as the owner of `response_id`."""
    return {"Put": {"TableName": table, "Item": to_item({
        "pk": owner_pk(response_id), "sk": OWNER_SK, "user": user,
        "ttl": int(now.timestamp()) + RETENTION_S})}}


def owner_check(table: str, response_id: str, user: str) -> dict[str, Any]:
    """A TransactWriteItems ConditionCheck that fails unless `user` owns `response_id`."""
    return {"ConditionCheck": {
        "TableName": table, "Key": to_item({"pk": owner_pk(response_id), "sk": OWNER_SK}),
        "ConditionExpression": "#user = :user", "ExpressionAttributeNames": {"#user": "user"},
        "ExpressionAttributeValues": values(user=user)}}


class ResponseOwners:
    """Reads the owner items (one GetItem)."""

    def __init__(self, table: str, client: Any):
        self.table = table
        self.client = client

    def owner(self, response_id: str) -> str | None:
        """The user who created `response_id`, or None if no one here did (or its record expired)."""
        item = self.client.get_item(TableName=self.table, ConsistentRead=True, ProjectionExpression="#user",
                                    ExpressionAttributeNames={"#user": "user"},
                                    Key=to_item({"pk": owner_pk(response_id), "sk": OWNER_SK})).get("Item")
        return item["user"]["S"] if item and "S" in item.get("user", {}) else None
