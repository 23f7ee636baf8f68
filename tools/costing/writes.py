"""DynamoDB capacity of one metered request, measured: the real gateway (and so the real ledger) serves a
chat completion against moto and the fake provider, and every DynamoDB call it makes is captured.

Units follow DynamoDB's rules (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
read-write-operations.html, .../transaction-apis.html, .../GSI.html#GSI.ThroughputConsiderations):
- a write costs 1 WRU per started KB of the larger of the item before and after it; in a transaction, 2;
- each global secondary index whose key attributes the item has (before or after) takes a write of the
  projected item (1 WRU per started KB): a put if the item enters the index, a delete if it leaves, both
  if its index key changes, one update if only projected attributes change, nothing otherwise. Index
  writes are not transactional (AWS applies them asynchronously), so they are not doubled;
- a read costs 1 RRU per started 4 KB (strongly consistent, 0.5 eventually consistent; 2 in a transaction).
Item sizes: UTF-8 lengths of attribute names and values, numbers at (significant digits / 2) + 1 bytes,
and 3 bytes plus 1 per element for lists and maps (the AWS "item size" rules).

The indexes (key schema, projection) come from the synthesised templates, not from tollgate.schema,
so what is priced is what CDK deploys.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tools.costing.assumptions import Assumptions
from tools.costing.templates import Templates

KB = 1024
WRITE_CALLS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    non_key: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """A table as the template declares it. `logical_id` is tollgate.schema's (e.g. "BudgetsTable")."""

    logical_id: str
    keys: tuple[str, ...]
    indexes: tuple[IndexSpec, ...]
    ttl_attribute: str | None


def table_specs(templates: Templates) -> dict[str, TableSpec]:
    """Every DynamoDB table in the templates, by schema logical id (CDK's logical id without its hash)."""
    from tollgate import schema

    out = {}
    for res in templates.resources("AWS::DynamoDB::Table"):
        spec = next((t for t in schema.TABLES if res.logical_id.startswith(t.logical_id)), None)
        if spec is None:
            continue
        p = res.properties
        indexes = tuple(
            IndexSpec(g["IndexName"], tuple(k["AttributeName"] for k in g["KeySchema"]),
                      g["Projection"].get("ProjectionType", "KEYS_ONLY"), tuple(g["Projection"].get("NonKeyAttributes", ())))
            for g in p.get("GlobalSecondaryIndexes", []))
        ttl = p.get("TimeToLiveSpecification") or {}
        out[spec.logical_id] = TableSpec(spec.logical_id, tuple(k["AttributeName"] for k in p["KeySchema"]), indexes,
                                         ttl.get("AttributeName") if ttl.get("Enabled") else None)
    return out


# -- item sizes ---------------------------------------------------------------------------------------------
def _value_size(value: Mapping[str, Any]) -> int:
    (kind, v), = value.items()
    if kind in ("S", "B"):
        return len(v.encode() if isinstance(v, str) else v)
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(e) for k, e in v.items())
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: e}) for e in v)
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of a DynamoDB item in wire format ({"name": {"S": "..."}}); 0 for no item."""
    return sum(len(k.encode()) + _value_size(v) for k, v in (item or {}).items())


def _units(size: int, unit: int = KB) -> int:
    return max(1, math.ceil(size / unit))


def _projected(item: Mapping[str, Any], table: TableSpec, index: IndexSpec) -> dict[str, Any]:
    if index.projection == "ALL":
        return dict(item)
    keep = set(table.keys) | set(index.keys) | set(index.non_key if index.projection == "INCLUDE" else ())
    return {k: v for k, v in item.items() if k in keep}


# -- what one request wrote ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    table: str  # schema logical id
    action: str  # Put | Update | Delete
    key: str
    size: int  # bytes: the larger of before and after
    units: int  # WRU
    transactional: bool


@dataclass(frozen=True)
class IndexWrite:
    table: str
    index: str
    action: str  # put | delete | update | move (delete + put)
    size: int
    units: int


@dataclass
class Measurement:
    """What one metered request cost in DynamoDB capacity and log bytes, and the usage item it wrote."""

    writes: list[Write] = field(default_factory=list)
    index_writes: list[IndexWrite] = field(default_factory=list)
    read_units: Decimal = Decimal(0)
    calls: list[str] = field(default_factory=list)
    log_bytes: int = 0  # the gateway's own log lines (JSON logs and EMF metric lines)
    metric_series: int = 0  # distinct (metric name, dimensions) the request emitted
    usage_item_bytes: int = 0
    # bytes the settled usage record holds in each usage index (0: not in it, e.g. a sparse index it left)
    usage_index_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def write_units(self) -> int:
        return sum(w.units for w in self.writes) + sum(i.units for i in self.index_writes)


def index_writes(table: TableSpec, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[IndexWrite]:
    """The index writes one item write causes (see the module docstring)."""
    out = []
    for index in table.indexes:
        was = bool(before) and all(k in before for k in index.keys)
        now = bool(after) and all(k in after for k in index.keys)
        if was and now:
            old, new = _projected(before, table, index), _projected(after, table, index)
            if any(before[k] != after[k] for k in index.keys):
                out.append(IndexWrite(table.logical_id, index.name, "move", item_size(new),
                                      _units(item_size(old)) + _units(item_size(new))))
            elif old != new:
                out.append(IndexWrite(table.logical_id, index.name, "update", item_size(new),
                                      _units(max(item_size(old), item_size(new)))))
        elif now:
            size = item_size(_projected(after, table, index))
            out.append(IndexWrite(table.logical_id, index.name, "put", size, _units(size)))
        elif was:
            size = item_size(_projected(before, table, index))
            out.append(IndexWrite(table.logical_id, index.name, "delete", size, _units(size)))
    return out


class _Capture:
    """Hooks on the gateway's DynamoDB client: each write's item before and after (read with a second,
    unhooked client), and each read's consumed units."""

    def __init__(self, client: Any, raw: Any, tables: Mapping[str, TableSpec], names: Mapping[str, str]):
        self.raw, self.tables, self.names = raw, tables, names  # names: physical name -> schema logical id
        self.m = Measurement()
        self._pending: list[tuple[str, str, dict, dict | None, bool]] = []
        client.meta.events.register("before-parameter-build.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _key(self, physical: str, item_or_key: Mapping[str, Any]) -> dict:
        spec = self.tables[self.names[physical]]
        return {k: item_or_key[k] for k in spec.keys}

    def _get(self, physical: str, key: Mapping[str, Any]) -> dict | None:
        return self.raw.get_item(TableName=physical, Key=dict(key), ConsistentRead=True).get("Item")

    def _before(self, model: Any, params: dict, **_: Any) -> None:
        self.m.calls.append(model.name)
        self._pending = []
        if model.name == "TransactWriteItems":
            ops = [(action, body, True) for entry in params["TransactItems"] for action, body in entry.items()]
        elif model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            ops = [(model.name.removesuffix("Item"), params, False)]
        elif model.name == "BatchWriteItem":
            ops = [("Put" if "PutRequest" in r else "Delete", {"TableName": t, **next(iter(r.values()))}, False)
                   for t, reqs in params["RequestItems"].items() for r in reqs]
        else:
            return
        for action, body, tx in ops:
            if action == "ConditionCheck":
                continue
            key = self._key(body["TableName"], body.get("Item") or body["Key"])
            self._pending.append((action, body["TableName"], key, self._get(body["TableName"], key), tx))

    def _after(self, model: Any, parsed: dict, **_: Any) -> None:
        if "Error" in parsed:
            self._pending = []
            return
        if model.name in WRITE_CALLS:
            for action, physical, key, before, tx in self._pending:
                after = self._get(physical, key)
                size = max(item_size(before), item_size(after))
                table = self.tables[self.names[physical]]
                self.m.writes.append(Write(table.logical_id, action, json.dumps(key, sort_keys=True), size,
                                           _units(size) * (2 if tx else 1), tx))
                self.m.index_writes += index_writes(table, before, after)
        elif model.name in ("GetItem", "Query", "BatchGetItem", "TransactGetItems", "Scan"):
            self.m.read_units += _read_units(model.name, parsed)
        self._pending = []


def _read_units(call: str, parsed: Mapping[str, Any]) -> Decimal:
    if call == "GetItem":
        items = [parsed.get("Item")] if parsed.get("Item") else []
    elif call in ("Query", "Scan"):
        return Decimal(_units(sum(item_size(i) for i in parsed.get("Items", [])), 4 * KB))
    elif call == "BatchGetItem":
        items = [i for found in parsed.get("Responses", {}).values() for i in found]
    else:
        return Decimal(2 * sum(_units(item_size(r.get("Item")), 4 * KB) for r in parsed.get("Responses", [])))
    return Decimal(sum(_units(item_size(i), 4 * KB) for i in items) or 1)


@contextlib.contextmanager
def _captured_output() -> Iterator[io.StringIO]:
    """stdout (EMF lines) and the Powertools logger's stream, into one buffer."""
    from tollgate.observability import logger

    buffer = io.StringIO()
    handler = logger.registered_handler
    stream = handler.stream
    handler.setStream(buffer)
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        handler.setStream(stream)


def measure(templates: Templates, assumptions: Assumptions) -> Measurement:
    """Serve one warm metered chat completion of the assumed shape and return what it cost.

    A first request of the same key warms the key's budget items and the process (clients, provider
    SDK); the second is measured, so the figures are those of a steady month, not of its first request.
    """
    import boto3

    from local.aws import serialised_mock_aws
    from local.emulator import ApiGatewayEmulator, HttpRequest
    from local.fake_provider import FakeProvider
    from local.tables import provision
    from tollgate import wiring
    from tollgate.auth import api_keys
    from tollgate.clock import utc_now
    from tollgate.schema import API_KEYS, TABLES, USAGE, Env
    from tollgate.store.api_keys import ApiKeyStore

    tables = table_specs(templates)
    fake = FakeProvider()
    url = fake.start()
    saved = dict(os.environ)
    try:
        os.environ.update({"AWS_DEFAULT_REGION": assumptions.region, "AWS_ACCESS_KEY_ID": "costing",
                           "AWS_SECRET_ACCESS_KEY": "costing", "POWERTOOLS_TRACE_DISABLED": "true"})
        with serialised_mock_aws():
            env = provision(boto3.client, prefix=f"cost{uuid.uuid4().hex[:6]}")
            env.update({Env.OPENAI_BASE_URL: f"{url}/v1", Env.OPENAI_API_KEY: "sk-fake-platform",
                        Env.ANTHROPIC_BASE_URL: url, Env.ANTHROPIC_API_KEY: "sk-fake-platform",
                        Env.BCRYPT_ROUNDS: "4", Env.PROVIDER_MAX_RETRIES: "0"})
            os.environ.update(env)
            wiring.reset()
            raw, record = api_keys.issue("costing-user", name="costing", scopes=("ai:complete",), now=utc_now(),
                                         rounds=4)
            ApiKeyStore(env[API_KEYS.env_var], boto3.client("dynamodb")).put(record)
            # The local API Gateway: the real authorizer (its answer cached for the key, as API Gateway caches
            # it, so the measured request is the gateway's alone), then the real gateway app.
            api = ApiGatewayEmulator(region=assumptions.region, quiet=True)
            names = {env[t.env_var]: t.logical_id for t in TABLES if t.logical_id in tables}

            def request(i: int) -> tuple[int, bytes]:
                prompt = (f"request {i} " + "x" * assumptions.prompt_chars)[:assumptions.prompt_chars]
                body = {"model": "gpt-4o-mini", "max_tokens": assumptions.max_tokens,
                        "messages": [{"role": "user", "content": prompt}]}
                answer = api.handle(HttpRequest("POST", "/v1/chat/completions", [
                    ("authorization", f"Bearer {raw}"), ("content-type", "application/json"),
                    ("user-agent", "OpenAI/Python 1.99.0")], json.dumps(body).encode()))
                return answer.status, answer.body or b"".join(answer.chunks or ())

            with _captured_output() as out:
                status, answer = request(0)
                if status != 200:
                    raise RuntimeError(f"the warm-up request failed: {answer!r}\n{out.getvalue()}")
            capture = _Capture(wiring.dynamodb(), boto3.client("dynamodb"), tables, names)
            with _captured_output() as out:
                status, answer = request(1)
            if status != 200:
                raise RuntimeError(f"the measured request failed: {answer!r}\n{out.getvalue()}")
            m = capture.m
            _read_logs(m, out.getvalue())
            usage = boto3.client("dynamodb").scan(TableName=env[USAGE.env_var])["Items"]
            m.usage_item_bytes = max(item_size(i) for i in usage)
            spec = tables[USAGE.logical_id]
            m.usage_index_bytes = {ix.name: max(item_size(_projected(i, spec, ix)) if all(k in i for k in ix.keys) else 0
                                                for i in usage) for ix in spec.indexes}
            wiring.reset()
            return m
    finally:
        fake.stop()
        os.environ.clear()
        os.environ.update(saved)


def _read_logs(m: Measurement, text: str) -> None:
    series = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        m.log_bytes += len(line.encode()) + 1
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        for directive in (doc.get("_aws") or {}).get("CloudWatchMetrics", []):
            for dims in directive.get("Dimensions", [[]]):
                dim_values = tuple((d, doc.get(d)) for d in dims)
                for metric in directive.get("Metrics", []):
                    series.add((metric["Name"], dim_values))
    m.metric_series = len(series)
