"""Stored answers of the response cache (tollgate.response_cache): items in the budgets table.

One item per (user, request key): pk `CACHE#<user>#<sha256 of the request>`, sk `ANSWER`, holding the
provider's status, body, content type, model, the request id that paid for it, `storedAt` (epoch seconds:
when the paying request started) and `ttl` (epoch seconds: storedAt + the storing request's TTL). DynamoDB's
TTL deletes an expired item within days, not at once, so a read also checks `ttl` itself; and a read bounds
the answer's age by the reading request's own TTL (`max_age_s`), like HTTP's Cache-Control: max-age.
The item is written inside the settle transaction of the request that paid for the answer (no extra round
trip on a miss) and read with one GetItem (eventually consistent: a stale miss costs one provider call).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tollgate.store.dynamo import from_item, to_item

log = logging.getLogger(__name__)

ANSWER_SK = "ANSWER"


@dataclass(frozen=True)
class Answer:
    """A stored answer: the provider's status, body (bytes, as sent) and content type; the model that
    answered; the request id that paid for it."""

    status: int
    body: bytes
    content_type: str
    model: str
    origin_request_id: str


def answer_pk(user: str, request_key: str) -> str:
    return f"CACHE#{user}#{request_key}"


def answer_put(table: str, user: str, request_key: str, answer: Answer, now: datetime, ttl_s: int) -> dict[str, Any]:
    """A TransactWriteItems Put storing `answer` for `user` until now + ttl_s seconds."""
    return {"Put": {"TableName": table, "Item": to_item({
        "pk": answer_pk(user, request_key), "sk": ANSWER_SK, "status": answer.status,
        "body": answer.body.decode("utf-8", "surrogatepass"), "contentType": answer.content_type,
        "model": answer.model, "requestId": answer.origin_request_id, "storedAt": int(now.timestamp()),
        "ttl": int(now.timestamp()) + ttl_s})}}


class ResponseCache:
    """Reads stored answers (one GetItem per lookup)."""

    def __init__(self, table: str, client: Any):
        self.table = table
        self.client = client

    def get(self, user: str, request_key: str, now: datetime, max_age_s: int) -> Answer | None:
        """`user`'s stored answer to the request with this key, or None: never stored, expired at `now`, or
        older than `max_age_s` seconds (the reading request's TTL; an item without `storedAt` has no known age,
        so it is a miss). A read that fails (throttled, unavailable) is a miss too: the cache is optional, and
        the request goes on to the provider, metered as any other."""
        try:
            item = self.client.get_item(TableName=self.table, Key=to_item(
                {"pk": answer_pk(user, request_key), "sk": ANSWER_SK})).get("Item")
        except (BotoCoreError, ClientError) as exc:
            log.warning("response cache read failed; treated as a miss", extra={"error": type(exc).__name__})
            return None
        if not item:
            return None
        data = from_item(item)
        if int(data.get("ttl", 0)) <= now.timestamp():
            return None
        if "storedAt" not in data or now.timestamp() - int(data["storedAt"]) >= max_age_s:
            return None
        return Answer(int(data["status"]), str(data["body"]).encode("utf-8", "surrogatepass"), str(data["contentType"]),
                      str(data.get("model", "")), str(data.get("requestId", "")))
