"""The API keys table."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tollgate.auth.api_keys import REVOKED, ApiKeyRecord, named, no_such_key
from tollgate.clock import iso
from tollgate.errors import Conflict, KeyRevoked
from tollgate.schema import API_KEYS
from tollgate.store.dynamo import from_item, to_item, values

_FIELDS = {  # record attribute -> table attribute
    "key_id": "keyId", "user_id": "userId", "name": "name", "scopes": "scopes", "key_hash": "keyHash",
    "created_at": "createdAt", "status": "status", "expires_at": "expiresAt", "last_used": "lastUsed",
    "rpm": "rpm", "tpm": "tpm", "monthly_budget_usd": "monthlyBudgetUsd", "hourly_budget_usd": "hourlyBudgetUsd",
    "lineage": "lineage", "cache_ttl_s": "cacheTtlS", "rotated_to": "rotatedTo",
}


def _to_record(item: dict[str, Any]) -> ApiKeyRecord:
    data = from_item(item)
    kwargs = {field: data.get(attr) for field, attr in _FIELDS.items() if attr in data}
    kwargs["scopes"] = tuple(sorted(kwargs.get("scopes") or ()))
    for name in ("rpm", "tpm", "cache_ttl_s"):
        if kwargs.get(name) is not None:
            kwargs[name] = int(kwargs[name])
    return ApiKeyRecord(**kwargs)


def already_rotated(record: ApiKeyRecord) -> Conflict:
    """The 409 for rotating a key that was rotated before (record.rotated_to set): it names the successor."""
    return Conflict(f"API key {named(record.key_id)} was already rotated to {named(record.rotated_to or '')}; a key "
                    f"is rotated once. To replace it again, rotate {named(record.rotated_to or '')}.",
                    code="key_already_rotated")


class ApiKeyStore:
    def __init__(self, table_name: str, client: Any):
        self.table = table_name
        self.client = client

    def put(self, record: ApiKeyRecord) -> None:
        item = {attr: getattr(record, field) for field, attr in _FIELDS.items()}
        item["scopes"] = set(record.scopes) if record.scopes else None
        self.client.put_item(TableName=self.table, Item=to_item(item),
                             ConditionExpression="attribute_not_exists(keyId)")

    def get(self, key_id: str) -> ApiKeyRecord | None:
        item = self.client.get_item(TableName=self.table, Key={"keyId": {"S": key_id}}, ConsistentRead=True).get("Item")
        return _to_record(item) if item else None

    def list_by_user(self, user_id: str) -> list[ApiKeyRecord]:
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table, IndexName=API_KEYS.indexes[0].name,
            KeyConditionExpression="userId = :u", ExpressionAttributeValues=values(u=user_id))
        return [_to_record(i) for page in pages for i in page["Items"]]

    def list_all(self) -> list[ApiKeyRecord]:
        pages = self.client.get_paginator("scan").paginate(TableName=self.table)
        return [_to_record(i) for page in pages for i in page["Items"]]

    def set_status(self, key_id: str, status: str) -> ApiKeyRecord:
        """Set a key's status. Revocation is final: one conditional write refuses to change a revoked key
        (KeyRevoked, 409), so a resume racing a revoke cannot bring the key back. NotFound if no such key."""
        condition, names, vals = "attribute_exists(keyId)", {"#s": "status"}, {"s": status}
        if status != REVOKED:
            condition += " AND #s <> :revoked"
            vals["revoked"] = REVOKED
        try:
            item = self.client.update_item(
                TableName=self.table, Key={"keyId": {"S": key_id}}, UpdateExpression="SET #s = :s",
                ConditionExpression=condition, ExpressionAttributeNames=names,
                ExpressionAttributeValues=values(**vals), ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD")["Attributes"]
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            if exc.response.get("Item"):
                raise KeyRevoked(f"API key {named(key_id)} is revoked; revocation is final. Create a new key.") from None
            raise no_such_key(key_id) from None
        return _to_record(item)

    def set_limits(self, key_id: str, *, monthly_budget_usd: Decimal | None = None,
                   hourly_budget_usd: Decimal | None = None, rpm: int | None = None,
                   tpm: int | None = None) -> None:
        changes = {"monthlyBudgetUsd": monthly_budget_usd, "hourlyBudgetUsd": hourly_budget_usd,
                   "rpm": rpm, "tpm": tpm}
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return
        names = {f"#{k}": k for k in changes}
        try:
            self.client.update_item(
                TableName=self.table, Key={"keyId": {"S": key_id}},
                UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in changes),
                ConditionExpression="attribute_exists(keyId)", ExpressionAttributeNames=names,
                ExpressionAttributeValues=values(**changes))
        except self.client.exceptions.ConditionalCheckFailedException:
            raise no_such_key(key_id) from None

    def delete(self, key_id: str) -> None:
        """Remove a key's item (e.g. a successor whose rotation lost a race before anyone was given it)."""
        self.client.delete_item(TableName=self.table, Key={"keyId": {"S": key_id}})

    def mark_rotated(self, key_id: str, successor_id: str, expires_at: str | None) -> ApiKeyRecord:
        """Record that `key_id` was rotated to `successor_id` and, if given, its new expires_at (ISO-8601: the
        grace end), in one conditional write: a key is rotated once. Returns the updated record. Raises
        KeyRevoked (409) for a revoked key, Conflict (409, code `key_already_rotated`, naming the successor
        already made) for a key rotated before, no_such_key's NotFound (404) for no such key."""
        update, vals = "SET rotatedTo = :to", {"to": successor_id, "revoked": REVOKED}
        if expires_at:
            update += ", expiresAt = :e"
            vals["e"] = expires_at
        try:
            item = self.client.update_item(
                TableName=self.table, Key={"keyId": {"S": key_id}}, UpdateExpression=update,
                ConditionExpression="attribute_exists(keyId) AND attribute_not_exists(rotatedTo) AND #s <> :revoked",
                ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues=values(**vals),
                ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")["Attributes"]
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item")
            if not old:
                raise no_such_key(key_id) from None
            record = _to_record(old)
            if record.status == REVOKED:
                raise KeyRevoked(f"API key {named(key_id)} is revoked; revocation is final. Create a new key.") from None
            raise already_rotated(record) from None
        return _to_record(item)

    def touch_last_used(self, key_id: str, now: datetime) -> bool:
        """Record use at most once a minute per key: a conditional write, shared by all containers."""
        try:
            self.client.update_item(
                TableName=self.table, Key={"keyId": {"S": key_id}}, UpdateExpression="SET lastUsed = :now",
                ConditionExpression="attribute_exists(keyId) AND (attribute_not_exists(lastUsed) OR lastUsed < :ago)",
                ExpressionAttributeValues=values(now=iso(now), ago=iso(now - timedelta(minutes=1))))
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
