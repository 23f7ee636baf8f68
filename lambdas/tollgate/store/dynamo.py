"""Low-level DynamoDB client and (de)serialisation helpers shared by the stores.

The low-level client (not the resource API) is used throughout: it is what TransactWriteItems needs,
and boto3's TypeSerializer keeps numbers as Decimal.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_ser = TypeSerializer()
_de = TypeDeserializer()


@lru_cache(maxsize=1)
def client() -> Any:
    import boto3

    return boto3.client("dynamodb")


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def values(**kwargs: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments: values(cost=Decimal(1)) -> {':cost': {...}}."""
    return {f":{k}": _ser.serialize(v) for k, v in kwargs.items()}
