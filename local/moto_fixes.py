"""Fixes to moto's DynamoDB emulation where it differs from DynamoDB itself.

moto formats the result of `SET n = n - :x` with Python's default Decimal formatting, so an exact zero
with a scale (0.0000123 - 0.0000123) is stored as "0E-7"; its next arithmetic then fails with
`int("0E-7")`. DynamoDB normalises numbers. Formatting arithmetic results in plain notation makes the
emulator behave like the service.
"""
from __future__ import annotations

from decimal import Decimal

_applied = False


def _number(text: str) -> Decimal | int:
    return Decimal(text) if any(c in text for c in ".eE") else int(text)


def _plain(value: Decimal | int) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb.models.dynamo_type import DDBType, DynamoType

    original_add, original_sub = DynamoType.__add__, DynamoType.__sub__

    def add(self: DynamoType, other: DynamoType) -> DynamoType:
        if self.type == other.type == DDBType.NUMBER:
            return DynamoType({DDBType.NUMBER: _plain(_number(self.value) + _number(other.value))})
        return original_add(self, other)

    def sub(self: DynamoType, other: DynamoType) -> DynamoType:
        if self.type == other.type == DDBType.NUMBER:
            return DynamoType({DDBType.NUMBER: _plain(_number(self.value) - _number(other.value))})
        return original_sub(self, other)

    DynamoType.__add__ = add  # type: ignore[method-assign]
    DynamoType.__sub__ = sub  # type: ignore[method-assign]
    _applied = True
