"""The provider keys table (BYOK): one item per (user, provider), holding only sealed key material.

Item: userId, provider, ciphertext, nonce, encryptedDataKey (binary), scheme, last4, createdAt,
updatedAt, validatedAt.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from tollgate.clock import iso
from tollgate.crypto import Sealed
from tollgate.store.dynamo import from_item, to_item, values


def _key(user: str, provider: str) -> dict[str, Any]:
    return to_item({"userId": user, "provider": provider})


def sealed_of(item: dict[str, Any]) -> Sealed:
    """The sealed key in an item read by `get` (binary attributes as bytes)."""
    return Sealed(ciphertext=bytes(item["ciphertext"]), nonce=bytes(item["nonce"]),
                  encrypted_data_key=bytes(item["encryptedDataKey"]))


class ProviderKeyStore:
    def __init__(self, table_name: str, client: Any):
        self.table = table_name
        self.client = client

    def put(self, user: str, provider: str, sealed: Sealed, *, scheme: str, last4: str,
            now: datetime) -> dict[str, Any]:
        """Create or replace the user's key for a provider; createdAt survives a replacement."""
        answer = self.client.update_item(
            TableName=self.table, Key=_key(user, provider),
            UpdateExpression="SET ciphertext = :c, nonce = :n, encryptedDataKey = :k, scheme = :s, last4 = :l, "
                             "createdAt = if_not_exists(createdAt, :now), updatedAt = :now, validatedAt = :now",
            ExpressionAttributeValues=values(c=sealed.ciphertext, n=sealed.nonce, k=sealed.encrypted_data_key,
                                             s=scheme, l=last4, now=iso(now)),
            ReturnValues="ALL_NEW")
        return _plain(answer["Attributes"])

    def get(self, user: str, provider: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table, Key=_key(user, provider), ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def delete(self, user: str, provider: str) -> dict[str, Any] | None:
        """Remove the item; returns what was removed, or None if there was nothing."""
        answer = self.client.delete_item(TableName=self.table, Key=_key(user, provider), ReturnValues="ALL_OLD")
        item = answer.get("Attributes")
        return _plain(item) if item else None

    def providers_of(self, user: str) -> set[str]:
        """The providers a user has stored keys for: one Query (paginated only past 1 MB, never in practice)."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="userId = :u", ProjectionExpression="provider",
            ExpressionAttributeValues=values(u=user), ConsistentRead=True)
        return {item["provider"]["S"] for page in pages for item in page["Items"]}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    data = from_item(item)
    for name in ("ciphertext", "nonce", "encryptedDataKey"):
        if name in data:
            data[name] = bytes(data[name])  # boto3's Binary wrapper -> bytes
    return data
