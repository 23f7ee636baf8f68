"""Escrow-sharded counters for a hot key: the items and the shard counts behind tollgate.store.ledger's
sharded reservations (issue 16).

DynamoDB serves about 1,000 write units a second for one partition (Developer Guide, "Burst and adaptive
capacity" / "Understanding DynamoDB warm throughput": each partition is limited to 1,000 write units per
second), and concurrent transactions on one item cancel each other with TransactionConflict. A counter
written twice per request in transactions (2 units each) so tops out near 250 requests a second.

The escrow transactional method: a counter (a budget level, or a rate window) keeps its item, the POOL,
and may have N SLICE items (pk `SHARD#<k>#<pool pk>`, k = 1..N, the pool's sk). Every item holds part of
the counter's remaining allowance, and the counter's remaining value is the SUM over its items; every
write moves value between items or takes it with a condition that the item holds enough, so the sum
never goes below zero: the hard cap holds whatever N is, and N is only a routing choice of each container.
- A request reserves on one slice per counter (chosen at random): one item of N, so load spreads.
- A slice without enough BORROWS from the pool in the same transaction (a chunk of REFILL_REQUESTS
  requests' worth), on the condition that the pool keeps the counter's warning floor. So while slices are
  open the pool holds at least the floor, and the counter (pool + slices >= pool) is clear of its warning
  zone: a slice reservation proves it, as the single item's floor condition does.
- When the pool cannot lend above its floor, the counter is DRAINED: its items are read, then one
  transaction moves every slice's value back into the pool, closes the slices (`closed`, no further
  reservation on them), marks the pool `drained` and reserves on it, each item conditioned on the value
  read. Success proves the counter's exact remaining value (the headers and the 80% warning use it). From
  then on the counter is one item again (the ledger's single-item path). A refund settling later on a
  closed slice stays there until the next refusal drains again, so a request that fits the counter's total
  remaining is never refused ("the last cent is reachable").
Quiet keys never leave N = 1: their counters are exactly the single items they always were.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tollgate.store.dynamo import from_item, to_item, values

MAX_SHARDS = 32  # slices per counter; a drain reads them in one BatchGetItem (at most 100 keys)
FIRST_SHARDS = 8  # slices a counter gets when it is first found contended; doubles on each further signal
SHARD_MEMORY_S = 900  # a container keeps a grown shard count this long after its last contention signal
REFILL_REQUESTS = 32  # a borrow takes this many requests' worth from the pool (at most its share of it)
SHARDED = "sharded"  # on a pool: slices may hold part of its value (it keeps its warning floor meanwhile)
SHARDS = "shards"  # on a pool: the slice count its last borrower used (a new container starts from it)
DRAINED = "drained"  # on a pool: its slices were drained and closed; it is the counter's one open item
CLOSED = "closed"  # on a slice: drained; it takes refunds but no reservation


def slice_pk(pk: str, k: int) -> str:
    return f"SHARD#{k}#{pk}"


@dataclass(frozen=True)
class Hot:
    """One counter of a reservation held in escrow. Amounts per attribute: `need` is what this request
    takes (USD, or requests and tokens), `start` the allowance of a counter never written (its limit),
    `floor` what the pool keeps while slices are open (a budget's warning floor; 0 for a rate window).
    `book`: a budget level (keeps reservedUsd and spentUsd beside its remaining value)."""

    index: int
    pk: str
    sk: str
    need: dict[str, Any]
    start: dict[str, Any]
    floor: dict[str, Any]
    ttl: int | None
    book: bool

    def chunk(self, shards: int, spare: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a short slice borrows: REFILL_REQUESTS requests' worth, but no more than its share of what the
        pool can lend (`spare`, else the counter's allowance, less the floor), and never less than `need`."""
        out = {}
        for a, n in self.need.items():
            lendable = (spare or {}).get(a, self.start[a] - self.floor.get(a, 0))
            share = lendable / shards if isinstance(lendable, Decimal) else lendable // shards
            out[a] = max(n, min(n * REFILL_REQUESTS, share))
        return out


def _ttl_set(h: Hot, vals: dict[str, Any]) -> str:
    if h.ttl is None:
        return ""
    vals["ttl"] = h.ttl
    return ", #ttl = if_not_exists(#ttl, :ttl)"


def _book(h: Hot, vals: dict[str, Any]) -> str:
    if not h.book:
        return ""
    vals.update(zero=Decimal(0), cost=h.need["remainingUsd"])
    return ", reservedUsd = if_not_exists(reservedUsd, :zero) + :cost, spentUsd = if_not_exists(spentUsd, :zero)"


def _update(table: str, pk: str, sk: str, update: str, condition: str, vals: dict[str, Any],
            ttl: bool) -> dict[str, Any]:
    names = {"#ttl": "ttl"} if ttl else {}
    return {"Update": {"TableName": table, "Key": to_item({"pk": pk, "sk": sk}), "UpdateExpression": update,
                       "ConditionExpression": condition, **({"ExpressionAttributeNames": names} if names else {}),
                       "ExpressionAttributeValues": values(**vals), "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}


def slice_reserve(table: str, h: Hot, k: int, take: dict[str, Any] | None) -> dict[str, Any]:
    """Reserve `need` on slice k; with `take`, the slice first receives it from the pool (pool_lend in the
    same transaction). A closed slice refuses; without `take`, so does one holding too little."""
    vals: dict[str, Any] = {"nothing": 0}
    sets, cond = [], [f"attribute_not_exists({CLOSED})"]
    for n, (a, need) in enumerate(h.need.items()):
        vals[f"n{n}"] = need
        vals[f"t{n}"] = (take or {}).get(a, 0)
        sets.append(f"{a} = if_not_exists({a}, :nothing) + :t{n} - :n{n}")
        if not take:
            cond.append(f"{a} >= :n{n}")
    update = "SET " + ", ".join(sets) + _book(h, vals) + _ttl_set(h, vals)
    return _update(table, slice_pk(h.pk, k), h.sk, update, " AND ".join(cond), vals, h.ttl is not None)


def pool_lend(table: str, h: Hot, take: dict[str, Any], shards: int) -> dict[str, Any]:
    """Take `take` from the pool for a slice, on the condition that the pool keeps its floor; marks it
    sharded over `shards` slices. A pool never written starts at the counter's allowance."""
    vals: dict[str, Any] = {"yes": True, "shards": shards}
    sets, cond = [f"{SHARDED} = :yes", f"{SHARDS} = :shards"], [f"attribute_not_exists({DRAINED})"]
    for n, (a, amount) in enumerate(take.items()):
        vals.update({f"s{n}": h.start[a], f"t{n}": amount, f"k{n}": amount + h.floor.get(a, 0)})
        sets.append(f"{a} = if_not_exists({a}, :s{n}) - :t{n}")
        fits_fresh = h.start[a] >= amount + h.floor.get(a, 0)
        cond.append(f"(attribute_not_exists({a}) OR {a} >= :k{n})" if fits_fresh else f"{a} >= :k{n}")
    if h.book:
        vals.update(zero=Decimal(0), limit=h.start["remainingUsd"])
        sets.append("reservedUsd = if_not_exists(reservedUsd, :zero), spentUsd = if_not_exists(spentUsd, :zero), "
                    "limitUsd = if_not_exists(limitUsd, :limit)")
    update = "SET " + ", ".join(sets) + _ttl_set(h, vals)
    return _update(table, h.pk, h.sk, update, " AND ".join(cond), vals, h.ttl is not None)


@dataclass(frozen=True)
class Snapshot:
    """A counter's items as one consistent read saw them: the pool (None: absent) and each slice by k."""

    pool: dict[str, Any] | None
    slices: dict[int, dict[str, Any]]

    def sum(self, attribute: str) -> Decimal:
        """An attribute summed over the pool and the slices (0 where absent)."""
        return sum((Decimal(i.get(attribute, 0)) for i in [self.pool or {}, *self.slices.values()]), Decimal(0))

    def total(self, h: Hot) -> dict[str, Any]:
        """The counter's remaining value per attribute: the pool's (its allowance if absent) plus the slices'."""
        out = {}
        for a in h.need:
            pool = (self.pool or {}).get(a, h.start[a])
            out[a] = pool + sum((s.get(a, 0) for s in self.slices.values()), type(pool)(0))
        return out


def read(client: Any, table: str, h: Hot) -> Snapshot:
    """One BatchGetItem (strongly consistent) of the pool and every possible slice of a counter."""
    return read_counter(client, table, h.pk, h.sk)


def read_counter(client: Any, table: str, pk: str, sk: str) -> Snapshot:
    """The items of the counter whose pool is (pk, sk): one strongly consistent BatchGetItem."""
    h = Hot(0, pk, sk, {}, {}, {}, None, False)
    keys = [{"pk": h.pk, "sk": h.sk}] + [{"pk": slice_pk(h.pk, k), "sk": h.sk} for k in range(1, MAX_SHARDS + 1)]
    found: list[dict[str, Any]] = []
    request = {table: {"Keys": [to_item(k) for k in keys], "ConsistentRead": True}}
    while request:
        got = client.batch_get_item(RequestItems=request)
        found += [from_item(i) for i in got.get("Responses", {}).get(table, [])]
        request = got.get("UnprocessedKeys") or {}
    pool = next((i for i in found if i["pk"] == h.pk), None)
    slices = {int(i["pk"].split("#", 2)[1]): i for i in found if i["pk"] != h.pk}
    return Snapshot(pool, slices)


def drain(table: str, h: Hot, snap: Snapshot) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the pool's update, the slices' updates) of one transaction that moves every slice's value into the
    pool, closes the slices, marks the pool drained and reserves `need` on it, each item conditioned on
    the value `snap` saw (so success proves the counter's total)."""
    vals: dict[str, Any] = {"yes": True}
    sets, cond = [f"{DRAINED} = :yes"], []
    slice_items = []
    for n, (a, need) in enumerate(h.need.items()):
        moved = sum((s.get(a, 0) for s in snap.slices.values()), type(need)(0))
        vals.update({f"n{n}": need, f"m{n}": moved, f"s{n}": h.start[a]})
        sets.append(f"{a} = if_not_exists({a}, :s{n}) + :m{n} - :n{n}")
        if snap.pool is None or a not in snap.pool:
            cond.append(f"attribute_not_exists({a})")
        else:
            vals[f"e{n}"] = snap.pool[a]
            cond.append(f"{a} = :e{n}")
    if h.book:
        vals["limit"] = h.start["remainingUsd"]
        sets.append("limitUsd = if_not_exists(limitUsd, :limit)")
    pool = _update(table, h.pk, h.sk, "SET " + ", ".join(sets) + _book(h, vals) + _ttl_set(h, vals) + f" REMOVE {SHARDED}",
                   " AND ".join(cond), vals, h.ttl is not None)
    for k, item in sorted(snap.slices.items()):
        svals: dict[str, Any] = {"yes": True}
        ssets, scond = [f"{CLOSED} = :yes"], []
        for n, a in enumerate(h.need):
            if a in item:
                svals[f"e{n}"] = item[a]
                ssets.append(f"{a} = {a} - :e{n}")
                scond.append(f"{a} = :e{n}")
            else:
                scond.append(f"attribute_not_exists({a})")
        slice_items.append(_update(table, slice_pk(h.pk, k), h.sk, "SET " + ", ".join(ssets), " AND ".join(scond),
                                   svals, False))
    return pool, slice_items


class Shards:
    """How many slices this container spreads each counter over, by (pool pk, counter kind): 1 until a
    transaction on it meets DynamoDB's own signal of an item at its limit (TransactionConflict, or a
    throttled item), then FIRST_SHARDS, doubling on each further signal up to MAX_SHARDS, back to 1
    SHARD_MEMORY_S after the last signal. A value changed by other containers between two of this one's
    requests is no such signal (it costs one retry, and the single item serves it). `forced` fixes the
    count (tests, the simulation). Thread-safe."""

    def __init__(self, forced: int | None = None, clock: Any = time.monotonic):
        self.forced = forced
        self._clock = clock
        self._lock = threading.Lock()
        self._n: dict[tuple[str, str], tuple[int, float]] = {}

    @property
    def may_grow(self) -> bool:
        return self.forced is None or self.forced > 1

    def at_least(self, scope: tuple[str, str], n: int) -> None:
        """Spread the counter over at least n slices (learnt from its pool: what others use)."""
        if self.forced is not None:
            return
        with self._lock:
            have, until = self._n.get(scope, (1, 0.0))
            have = have if self._clock() < until else 1
            self._n[scope] = (min(MAX_SHARDS, max(have, n, 2)), self._clock() + SHARD_MEMORY_S)

    def get(self, scope: tuple[str, str]) -> int:
        if self.forced is not None:
            return self.forced
        with self._lock:
            n, until = self._n.get(scope, (1, 0.0))
            return n if self._clock() < until else 1

    def grow(self, scope: tuple[str, str]) -> None:
        if self.forced is not None:
            return
        with self._lock:
            n, until = self._n.get(scope, (1, 0.0))
            n = n if self._clock() < until else 1
            self._n[scope] = (min(MAX_SHARDS, FIRST_SHARDS if n < FIRST_SHARDS else n * 2),
                              self._clock() + SHARD_MEMORY_S)
