"""Low-level DynamoDB client and (de)serialisation helpers shared by the stores.

The low-level client (not the resource API) is used throughout: it is what TransactWriteItems needs,
and boto3's TypeSerializer keeps numbers as Decimal.
"""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

class _PlainNumbers(TypeSerializer):
    """Numbers in plain notation: Decimal arithmetic yields forms like 0E-7, which DynamoDB emulators
    (and humans reading a table) handle badly."""

    def _serialize_n(self, value: Any) -> str:
        text = super()._serialize_n(value)
        if "E" in text or "e" in text:
            text = format(Decimal(text), "f")
        return text


_ser = _PlainNumbers()
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
