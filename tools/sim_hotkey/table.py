"""An in-memory DynamoDB table set that evaluates the ledger's own requests: condition and update
expressions (the subset the ledger writes), TransactWriteItems' all-or-nothing semantics with
CancellationReasons (ALL_OLD items), and BatchGetItem. No timing here: tools.sim_hotkey.client adds it.

Expression grammar (DynamoDB Developer Guide, "Condition expressions" and "Update expressions"):
update    := (SET a = v[, ...] | REMOVE a[, ...] | ADD a :v[, ...])+ ; v := operand (+|- operand)*
operand   := if_not_exists(path, operand) | path | :value
condition := disjunction of conjunctions of [NOT] (condition) | f(path) | operand cmp operand,
             f in attribute_exists, attribute_not_exists; cmp in = <> < <= > >=
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

_de = TypeDeserializer()
_TOKEN = re.compile(r"\s*(<>|<=|>=|[=<>(),+\-]|[:#]?[A-Za-z_][A-Za-z0-9_]*)")
_KEYWORDS = {"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT"}


class ConditionFailed(Exception):
    pass


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot parse expression at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


class _Expr:
    def __init__(self, text: str, names: dict[str, str], vals: dict[str, Any], item: dict[str, Any]):
        self.t = _tokens(text)
        self.i = 0
        self.names, self.vals, self.item = names, vals, item

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.t[self.i]
        if want is not None and tok.upper() != want:
            raise ValueError(f"expected {want}, got {tok}")
        self.i += 1
        return tok

    def path(self) -> str:
        tok = self.take()
        return self.names[tok] if tok.startswith("#") else tok

    def operand(self) -> Any:
        tok = self.peek()
        if tok == "if_not_exists":
            self.take(), self.take("(")
            name = self.path()
            self.take(",")
            default = self.operand()
            self.take(")")
            return self.item.get(name, default)
        if tok.startswith(":"):
            return self.vals[self.take()]
        return self.item.get(self.path())

    def value(self) -> Any:
        out = self.operand()
        while self.peek() in ("+", "-"):
            op, rhs = self.take(), self.operand()
            out = out + rhs if op == "+" else out - rhs
        return out

    # -- conditions --
    def condition(self) -> bool:
        out = self.conjunction()
        while self.peek() and self.peek().upper() == "OR":
            self.take()
            rhs = self.conjunction()
            out = out or rhs
        return out

    def conjunction(self) -> bool:
        out = self.negation()
        while self.peek() and self.peek().upper() == "AND":
            self.take()
            rhs = self.negation()
            out = out and rhs
        return out

    def negation(self) -> bool:
        if self.peek().upper() == "NOT":
            self.take()
            return not self.negation()
        if self.peek() == "(":
            self.take()
            out = self.condition()
            self.take(")")
            return out
        if self.peek() in ("attribute_exists", "attribute_not_exists"):
            fn = self.take()
            self.take("(")
            name = self.path()
            self.take(")")
            return (name in self.item) == (fn == "attribute_exists")
        lhs, op, rhs = self.operand(), self.take(), self.operand()
        if lhs is None or rhs is None or type(lhs) is not type(rhs) and not (
                isinstance(lhs, Decimal) and isinstance(rhs, Decimal)):
            return op == "<>" and lhs != rhs
        return {"=": lhs == rhs, "<>": lhs != rhs, "<": lhs < rhs, "<=": lhs <= rhs,
                ">": lhs > rhs, ">=": lhs >= rhs}[op]


def _plain(values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in (values or {}).items()}


def check(expression: str | None, item: dict[str, Any], names: dict[str, str], vals: dict[str, Any]) -> bool:
    """Whether `item` (plain values; {} for absent) meets a condition expression (None: no condition)."""
    if not expression:
        return True
    e = _Expr(expression, names, vals, item)
    out = e.condition()
    if e.peek() is not None:
        raise ValueError(f"trailing tokens in {expression!r}")
    return out


def update(expression: str, item: dict[str, Any], names: dict[str, str], vals: dict[str, Any]) -> dict[str, Any]:
    """The item after an update expression (all values read from the item before it, as DynamoDB does)."""
    e = _Expr(expression, names, vals, item)
    new = dict(item)
    while e.peek() is not None:
        clause = e.take().upper()
        while True:
            if clause == "SET":
                name = e.path()
                e.take("=")
                new[name] = e.value()
            elif clause == "REMOVE":
                new.pop(e.path(), None)
            elif clause == "ADD":
                name = e.path()
                amount = e.operand()
                new[name] = item.get(name, Decimal(0)) + amount
            else:
                raise ValueError(f"unsupported clause {clause}")
            if e.peek() == ",":
                e.take()
                continue
            break
    return new


class Tables:
    """Items by (table, pk, sk) as plain Python values (numbers as Decimal)."""

    def __init__(self, key_names: dict[str, tuple[str, ...]]):
        self.key_names = key_names  # table -> its key attribute names
        self.items: dict[tuple[str, ...], dict[str, Any]] = {}
        self.sizes: dict[tuple[str, ...], int] = {}  # bytes of each item (tools.costing's item size rules)

    def key(self, table: str, wire: dict[str, Any]) -> tuple[str, ...]:
        plain = _plain(wire)
        return (table, *(str(plain[k]) for k in self.key_names[table]))

    def get(self, table: str, wire_key: dict[str, Any]) -> dict[str, Any] | None:
        return self.items.get(self.key(table, wire_key))

    def transact(self, actions: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Apply every action or none. Returns None on success, else CancellationReasons (wire format)."""
        planned: list[tuple[tuple[str, ...], dict[str, Any] | None]] = []
        reasons, failed = [], False
        keys = [self.key(b["TableName"], b.get("Key") or b["Item"]) for e in actions for b in e.values()]
        if len(set(keys)) != len(keys):
            raise ValueError("Transaction request cannot include multiple operations on one item")
        for entry in actions:
            (kind, body), = entry.items()
            table = body["TableName"]
            key = self.key(table, body.get("Key") or body["Item"])
            old = self.items.get(key) or {}
            names, vals = body.get("ExpressionAttributeNames", {}), _plain(body.get("ExpressionAttributeValues"))
            if not check(body.get("ConditionExpression"), old, names, vals):
                failed = True
                reason: dict[str, Any] = {"Code": "ConditionalCheckFailed"}
                if body.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and old:
                    from tollgate.store.dynamo import to_item

                    reason["Item"] = to_item(old)
                reasons.append(reason)
                continue
            reasons.append({"Code": "None"})
            if kind == "Put":
                planned.append((key, _plain(body["Item"])))
            elif kind == "Delete":
                planned.append((key, None))
            elif kind == "Update":
                base = dict(old) or {k: v for k, v in zip(self.key_names[table], key[1:])}
                planned.append((key, update(body["UpdateExpression"], base, names, vals)))
        if failed:
            return reasons
        from tollgate.store.dynamo import to_item
        from tools.costing.writes import item_size

        for key, new in planned:
            if new is None:
                self.items.pop(key, None)
                self.sizes.pop(key, None)
            else:
                self.items[key] = new
                self.sizes[key] = item_size(to_item(new))
        return None
