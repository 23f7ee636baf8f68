"""Fixes to moto's DynamoDB emulation where it differs from DynamoDB itself.

moto formats the result of `SET n = n - :x` with Python's default Decimal formatting, so an exact zero
with a scale (0.0000123 - 0.0000123) is stored as "0E-7"; its next arithmetic then fails with
`int("0E-7")`. DynamoDB normalises numbers. Formatting arithmetic results in plain notation makes the
emulator behave like the service.

moto's TransactWriteItems deep-copies every table it touches (once per operation) before it starts, to roll
back on failure: each transaction costs time in proportion to the size of its tables, so a long `make dev`
session slowed as usage records piled up (84 -> 300 ms of CPU per request over ~1,300 requests). The fix
saves only the items the transaction names, and rolls those back.

moto parses an UpdateExpression from its text twice per update (once to check the names it uses, once to
apply it), ~15% of its CPU per conditional write in the concurrency tests. Expressions repeat (the ledger
sends a few fixed ones), and every user of the parsed tree either only reads it or deep-copies it first
(moto's validator), so each distinct text is parsed once.
"""
from __future__ import annotations

import copy
import functools
from decimal import Decimal
from typing import Any

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
    _transactions_save_items_not_tables()
    _update_expressions_parsed_once()
    _applied = True


class _TablesByReference:
    """Stands in for the `copy` module inside moto.dynamodb.models, whose only deep copy of a Table is
    the transaction's backup: tables are passed by reference (the rollback is ours), anything else is
    copied as before."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _transactions_save_items_not_tables() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = models.DynamoDBBackend.transact_write_items

    def touched(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
        """(table, hash key, range key, a copy of the item or None) for every item the transaction names."""
        saved = []
        for entry in transact_items:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            attrs = op.get("Item" if op_type == "Put" else "Key") if table is not None else None
            if not isinstance(attrs, dict) or table.hash_key_attr not in attrs:
                continue
            if table.range_key_attr is not None and table.range_key_attr not in attrs:
                continue
            try:
                hash_value = DynamoType(attrs[table.hash_key_attr])
                range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            except Exception:  # noqa: BLE001 - a malformed key: moto's own validation answers it
                continue
            saved.append((table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value))))
        return saved

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = touched(self, transact_items)
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                table.delete_item(hash_value, range_value)
                if item is not None and range_value is not None:
                    table.items[hash_value][range_value] = item
                elif item is not None:
                    table.items[hash_value] = item
            raise

    models.copy = _TablesByReference  # type: ignore[attr-defined]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _update_expressions_parsed_once() -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    parse = functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make)  # a parse error is not cached
    UpdateExpressionParser.make = staticmethod(parse)  # type: ignore[method-assign,assignment]
