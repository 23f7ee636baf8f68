"""Several counters on one item, in one transaction: their Updates sent as one.

A TransactWriteItems may hold one operation per item ("Transaction request cannot include multiple
operations on one item"), while the ledger writes each counter with its own Update. Where two counters
live on one item (a key's hourly cap and its minute windows: tollgate.store.counters.minute_window), `merge`
joins their Updates into one: the SET, REMOVE and ADD clauses side by side, the conditions joined with AND,
each Update's placeholders renamed apart. An attribute both set (the item's `ttl`, an escrow pool's marks)
is set once, to the larger of the two values. `spread` gives each original Update the cancellation reason
of the item it was sent in, so the callers read CancellationReasons as if nothing had been merged (a
merged Update that failed reports the failure, with the item's old values, for each counter on it).

Expression syntax: DynamoDB Developer Guide, "Update expressions" and "Condition expressions".
"""
from __future__ import annotations

import json
import re
from typing import Any

from tollgate.store.dynamo import from_item

_CLAUSES = ("SET", "REMOVE", "ADD", "DELETE")
_PLACEHOLDER = re.compile(r"[:#][A-Za-z0-9_]+")
_KEYWORD = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b")
_SIMPLE = re.compile(r"^(?:if_not_exists\(\s*([#A-Za-z0-9_]+)\s*,\s*)?(:[A-Za-z0-9_]+)\)?$")


def _split(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside parentheses ("|": at the keyword OR)."""
    if sep == "|":
        text = re.sub(r"\bOR\b", "|", text)
    out, depth, start = [], 0, 0
    for n, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == sep and depth == 0:
            out.append(text[start:n].strip())
            start = n + 1
    out.append(text[start:].strip())
    return [part for part in out if part]


def _clauses(expression: str) -> dict[str, list[str]]:
    """An update expression's actions by clause: {"SET": ["a = :x", ...], "REMOVE": ["b"], ...}."""
    out: dict[str, list[str]] = {c: [] for c in _CLAUSES}
    marks = [(m.start(), m.end(), m.group(1)) for m in _KEYWORD.finditer(expression)]
    for n, (_, end, clause) in enumerate(marks):
        body = expression[end:marks[n + 1][0] if n + 1 < len(marks) else len(expression)]
        out[clause] += _split(body)
    return out


def _renamed(update: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The Update with each placeholder (:value, #name) renamed to end in `suffix`."""
    def sub(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: m.group(0) + suffix, text)
    out = dict(update)
    for key in ("UpdateExpression", "ConditionExpression"):
        if key in update:
            out[key] = sub(update[key])
    for key in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
        if key in update:
            out[key] = {k + suffix: v for k, v in update[key].items()}
    return out


def _path(action: str, names: dict[str, str]) -> str:
    """The attribute an action writes (its left-hand side, names resolved)."""
    left = re.split(r"\s*=\s*|\s+", action.strip(), maxsplit=1)[0]
    return names.get(left, left)


def _value(rhs: str, values: dict[str, Any]) -> Any:
    """The value a plain `:v` or `if_not_exists(path, :v)` right-hand side sets; None for anything else."""
    m = _SIMPLE.match(rhs.strip())
    return from_item({"v": values[m.group(2)]})["v"] if m else None


def _operand(condition: str) -> str:
    """A condition as an operand of AND: in parentheses if it has an OR outside them (DynamoDB refuses
    redundant parentheses)."""
    return f"({condition})" if len(_split(condition, "|")) > 1 else condition


def _join(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two Updates of one item as one (b's placeholders already renamed apart from a's)."""
    names = {**a.get("ExpressionAttributeNames", {}), **b.get("ExpressionAttributeNames", {})}
    values = {**a.get("ExpressionAttributeValues", {}), **b.get("ExpressionAttributeValues", {})}
    ca, cb = _clauses(a["UpdateExpression"]), _clauses(b["UpdateExpression"])
    sets: dict[str, str] = {}
    for action in ca["SET"] + cb["SET"]:
        path = _path(action, names)
        if path in sets:
            old, new = (_value(x.split("=", 1)[1], values) for x in (sets[path], action))
            if old is None or new is None:
                raise ValueError(f"two counters on one item both compute attribute {path!r}")
            action = action if new > old else sets[path]
        sets[path] = action
    written = set(sets) | {_path(x, names) for x in ca["ADD"] + cb["ADD"]}
    removes = {}
    for action in ca["REMOVE"] + cb["REMOVE"]:
        path = _path(action, names)
        if path not in written:
            removes.setdefault(path, action)
    parts = [("SET", list(sets.values())), ("REMOVE", list(removes.values())),
             ("ADD", ca["ADD"] + cb["ADD"]), ("DELETE", ca["DELETE"] + cb["DELETE"])]
    update = " ".join(f"{clause} {', '.join(actions)}" for clause, actions in parts if actions)
    conditions = [_operand(u["ConditionExpression"]) for u in (a, b) if u.get("ConditionExpression")]
    out = {k: v for k, v in a.items() if k not in ("ExpressionAttributeNames", "ExpressionAttributeValues",
                                                     "ConditionExpression", "ReturnValuesOnConditionCheckFailure")}
    out["UpdateExpression"] = update
    if conditions:
        out["ConditionExpression"] = " AND ".join(conditions)
    if "ALL_OLD" in (a.get("ReturnValuesOnConditionCheckFailure"), b.get("ReturnValuesOnConditionCheckFailure")):
        out["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    used = set(_PLACEHOLDER.findall(update + " " + out.get("ConditionExpression", "")))
    if kept := {k: v for k, v in names.items() if k in used}:
        out["ExpressionAttributeNames"] = kept
    if kept := {k: v for k, v in values.items() if k in used}:
        out["ExpressionAttributeValues"] = kept
    return out


def merge(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """TransactItems with the Updates of one item joined: (the items to send, for each of them the indexes
    of the original items it carries). Items that share no item with another are sent as they are."""
    sent: list[dict[str, Any]] = []
    groups: list[list[int]] = []
    at: dict[str, int] = {}  # table and key of an Update -> its position in `sent`
    for n, item in enumerate(items):
        update = item.get("Update")
        where = json.dumps([update["TableName"], update["Key"]], sort_keys=True) if update else None
        if where is None or where not in at:
            if where is not None:
                at[where] = len(sent)
            sent.append(item)
            groups.append([n])
            continue
        p = at[where]
        sent[p] = {"Update": _join(sent[p]["Update"], _renamed(update, f"_{len(groups[p])}"))}
        groups[p].append(n)
    return sent, groups


def spread(reasons: list[dict[str, Any]], groups: list[list[int]]) -> list[dict[str, Any]]:
    """CancellationReasons of merged items, one per original item (each gets its item's reason)."""
    out: list[dict[str, Any]] = [{} for _ in range(sum(len(g) for g in groups))]
    for p, group in enumerate(groups):
        for n in group:
            out[n] = reasons[p] if p < len(reasons) else {}
    return out
