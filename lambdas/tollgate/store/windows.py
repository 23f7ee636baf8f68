"""One request taken from a principal's requests-per-minute window, outside the ledger: for the routes that
are forwarded but not charged (Anthropic's count_tokens). One conditional UpdateItem on the same window item
the reservation transaction takes (tollgate.store.ledger), so both count against the same limit."""
from __future__ import annotations

from typing import Any

from tollgate.store.counters import Window
from tollgate.store.dynamo import from_item, to_item, values


class RequestWindows:
    def __init__(self, table: str, client: Any):
        self.table = table
        self.client = client

    def take_request(self, window: Window) -> int | None:
        """Take one request from `window`. Returns the requests remaining after it, or None if the window
        had none left (nothing is taken then)."""
        r, t = window.requests_attr, window.tokens_attr
        try:
            got = self.client.update_item(
                TableName=self.table, Key=to_item({"pk": window.pk, "sk": window.sk}),
                UpdateExpression=(f"SET {r} = if_not_exists({r}, :rpm) - :one, {t} = if_not_exists({t}, :tpm), "
                                  "#ttl = if_not_exists(#ttl, :ttl)" + window.remove_others),
                ConditionExpression=f"attribute_not_exists({r}) OR {r} >= :one",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues=values(rpm=window.rpm, tpm=window.tpm, one=1, ttl=window.expires),
                ReturnValues="UPDATED_NEW")
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return int(from_item(got.get("Attributes") or {}).get(r, 0))
