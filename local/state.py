"""Local state that outlives a `make dev` session: the emulated tables, saved to the state directory.

moto keeps everything in memory. `LocalStack(persist=True)` restores the tables from `tables.json` at
start, and writes them back every SNAPSHOT_EVERY_S seconds and on stop, so a crash loses at most the last
interval. Items are kept in DynamoDB's typed JSON ({"S": ...}, {"N": ...}; binary values base64).

Kept apart, or not at all:
- the JWT signing secret: its value in `jwt-secret`, put back into the new secret, so service tokens
  issued before a restart still verify;
- BYOK provider keys are not kept: they are encrypted under a KMS key that moto creates anew at each
  start, so they could not be decrypted. Set them again after a restart (the README says so).

DynamoDB deletes items whose TTL attribute has passed; moto never does. `save` deletes them (rate-window,
loop and other expiring items of tables with a TTL attribute) before it writes, so the local tables stay
as small as the deployed ones.
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Mapping

from tollgate.schema import PROVIDER_KEYS, TABLES, Table

SNAPSHOT_FILE = "tables.json"
JWT_SECRET_FILE = "jwt-secret"
SNAPSHOT_EVERY_S = 10.0
_VERSION = 1
_KEPT = tuple(t for t in TABLES if t is not PROVIDER_KEYS)
_BATCH = 25  # BatchWriteItem's limit


def _to_json(value: Any) -> Any:
    """Binary attribute values (bytes) as base64 text; everything else as it is."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    """The inverse of _to_json for DynamoDB-typed values: B and BS back to bytes."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "B" and isinstance(v, str):
                out[k] = base64.b64decode(v)
            elif k == "BS" and isinstance(v, list):
                out[k] = [base64.b64decode(x) for x in v]
            else:
                out[k] = _from_json(v)
        return out
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _expired(table: Table, item: dict[str, Any], now_s: float) -> bool:
    ttl = item.get(table.ttl_attribute or "", {}).get("N")
    try:
        return ttl is not None and float(ttl) < now_s
    except ValueError:
        return False


def _key(table: Table, item: dict[str, Any]) -> dict[str, Any]:
    return {a: item[a] for a in (table.partition_key, table.sort_key) if a}


def save(dynamodb: Any, names: Mapping[str, str], state_dir: Path, now_s: float) -> dict[str, int]:
    """Delete TTL-expired items, then write every kept table's items to state_dir/tables.json (atomically:
    a crash mid-write leaves the previous file). `names`: table env var -> physical name. Returns the
    number of items written and deleted, {"written": n, "expired": m}."""
    tables: dict[str, list[dict[str, Any]]] = {}
    expired = 0
    for table in _KEPT:
        name = names.get(table.env_var)
        if not name:
            continue
        items = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
            for item in page["Items"]:
                if table.ttl_attribute and _expired(table, item, now_s):
                    try:  # only if still expired: a request may have renewed it since the scan
                        dynamodb.delete_item(TableName=name, Key=_key(table, item), ConditionExpression="#t < :now",
                                             ExpressionAttributeNames={"#t": table.ttl_attribute},
                                             ExpressionAttributeValues={":now": {"N": str(int(now_s))}})
                        expired += 1
                    except dynamodb.exceptions.ConditionalCheckFailedException:
                        items.append(item)
                else:
                    items.append(item)
        tables[table.logical_id] = _to_json(items)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / SNAPSHOT_FILE
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # key hashes and budgets: owner only
    with os.fdopen(fd, "w") as f:
        json.dump({"version": _VERSION, "tables": tables}, f)
    os.replace(partial, path)
    return {"written": sum(len(v) for v in tables.values()), "expired": expired}


def restore(dynamodb: Any, names: Mapping[str, str], state_dir: Path) -> int:
    """Put the items of state_dir/tables.json into the (empty, just created) tables; returns how many.
    No file: nothing to do. A file this code cannot read is an error (start clean: `make dev-reset`)."""
    path = state_dir / SNAPSHOT_FILE
    if not path.exists():
        return 0
    data = json.loads(path.read_text())
    if data.get("version") != _VERSION:
        raise ValueError(f"{path}: snapshot version {data.get('version')!r}, expected {_VERSION}")
    restored = 0
    for table in _KEPT:
        name = names.get(table.env_var)
        items = _from_json(data["tables"].get(table.logical_id) or [])
        for start in range(0, len(items) if name else 0, _BATCH):
            pending = {name: [{"PutRequest": {"Item": i}} for i in items[start:start + _BATCH]]}
            while pending:
                pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        restored += len(items) if name else 0
    return restored


def keep_jwt_secret(secretsmanager: Any, secret_arn: str, state_dir: Path) -> None:
    """Give the new local JWT signing secret the value kept from the last session, or keep this one's."""
    path = state_dir / JWT_SECRET_FILE
    if path.exists():
        secretsmanager.put_secret_value(SecretId=secret_arn, SecretString=path.read_text().strip())
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secretsmanager.get_secret_value(SecretId=secret_arn)["SecretString"]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def reset(state_dir: Path) -> None:
    """Forget the kept state (`make dev-reset`): the next start begins with empty tables."""
    for name in (SNAPSHOT_FILE, JWT_SECRET_FILE):
        (state_dir / name).unlink(missing_ok=True)
