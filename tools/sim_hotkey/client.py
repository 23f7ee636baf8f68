"""A simulated DynamoDB client in virtual time: what the ledger's calls cost under DynamoDB's documented
limits. The semantics are tools.sim_hotkey.table's; this module adds the clock (tools.sim_hotkey.clock):
- each call takes a network round trip, a transaction also its service time, during which it holds its
  items: another transaction touching one of them meanwhile is cancelled with TransactionConflict;
- each item serves at most `item_wcu_per_s` write units a second (a token bucket holding `burst_s` of
  them); a transaction that would exceed one is cancelled with ThrottlingError on that item;
- a transactional write costs 2 write units per started KB of the item (item sizes by tools.costing).
Every parameter and its source: tools.sim_hotkey.params.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tools.costing.writes import item_size
from tools.sim_hotkey.clock import Clock
from tools.sim_hotkey.params import Params
from tools.sim_hotkey.table import Tables


class TransactionCanceledException(Exception):
    def __init__(self, reasons: list[dict[str, Any]]):
        super().__init__("Transaction cancelled")
        self.response = {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons}


class IdempotentParameterMismatchException(Exception):
    pass


class ConditionalCheckFailedException(Exception):
    pass


class _Exceptions:
    TransactionCanceledException = TransactionCanceledException
    IdempotentParameterMismatchException = IdempotentParameterMismatchException
    ConditionalCheckFailedException = ConditionalCheckFailedException


@dataclass
class Counts:
    """What a run's calls did: TransactWriteItems calls, those cancelled with TransactionConflict or
    ThrottlingError, write units consumed (2 per started KB per item written in a transaction), reads."""

    transactions: int = 0
    conflicts: int = 0
    throttled: int = 0
    write_units: int = 0
    reads: int = 0


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class SimClient:
    """The subset of boto3's DynamoDB client the ledger calls (transact_write_items, batch_get_item, get_item),
    in virtual time (`clock`) over in-memory `tables`, with DynamoDB's per-item limits from `params`;
    raises the client's TransactionCanceledException with CancellationReasons as DynamoDB does."""

    clock: Clock
    tables: Tables
    params: Params
    counts: Counts = field(default_factory=Counts)
    exceptions: Any = _Exceptions
    _held: dict[tuple[str, ...], float] = field(default_factory=dict)  # item -> end of the transaction holding it
    _buckets: dict[tuple[str, ...], _Bucket] = field(default_factory=dict)

    def _units(self, key: tuple[str, ...], body: dict[str, Any]) -> int:
        size = max(self.tables.sizes.get(key, 0), item_size(body.get("Item")))
        return 2 * max(1, math.ceil(size / 1024))

    def _take(self, key: tuple[str, ...], units: int, now: float) -> bool:
        cap = self.params.item_wcu_per_s * self.params.burst_s
        b = self._buckets.setdefault(key, _Bucket(cap, now))
        b.tokens = min(cap, b.tokens + (now - b.at) * self.params.item_wcu_per_s)
        b.at = now
        return b.tokens >= units

    def transact_write_items(self, TransactItems: list[dict[str, Any]], ClientRequestToken: str | None = None) -> dict:
        p = self.params
        self.clock.sleep(p.one_way_s)
        now = self.clock.now
        self.counts.transactions += 1
        keys = []
        for entry in TransactItems:
            (_, body), = entry.items()
            keys.append(self.tables.key(body["TableName"], body.get("Key") or body["Item"]))
        units = [self._units(k, next(iter(e.values()))) for k, e in zip(keys, TransactItems)]
        if any(self._held.get(k, -1.0) > now for k in keys):
            self.counts.conflicts += 1
            reasons = [{"Code": "TransactionConflict" if self._held.get(k, -1.0) > now else "None"} for k in keys]
            self.clock.sleep(p.one_way_s)
            raise TransactionCanceledException(reasons)
        short = [not self._take(k, u, now) for k, u in zip(keys, units)]
        if any(short):
            self.counts.throttled += 1
            self.clock.sleep(p.one_way_s)
            raise TransactionCanceledException([{"Code": "ThrottlingError" if s else "None"} for s in short])
        for k, u in zip(keys, units):
            self._buckets[k].tokens -= u
            self._held[k] = now + p.transaction_s
        self.counts.write_units += sum(units)
        self.clock.sleep(p.transaction_s)
        reasons = self.tables.transact(TransactItems)
        self.clock.sleep(p.one_way_s)
        if reasons is not None:
            raise TransactionCanceledException(reasons)
        return {}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict:
        from tollgate.store.dynamo import to_item

        self.clock.sleep(2 * self.params.one_way_s + self.params.read_s)
        self.counts.reads += 1
        out: dict[str, list[dict[str, Any]]] = {}
        for table, req in RequestItems.items():
            out[table] = [to_item(i) for k in req["Keys"] if (i := self.tables.get(table, k)) is not None]
        return {"Responses": out}

    def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict:
        from tollgate.store.dynamo import to_item

        self.clock.sleep(2 * self.params.one_way_s + self.params.read_s)
        self.counts.reads += 1
        item = self.tables.get(TableName, Key)
        return {"Item": to_item(item)} if item else {}
