"""Escrow-sharded counters for a hot key: the items and the shard counts behind tollgate.store.ledger's
sharded reservations (issue 16).

DynamoDB serves at most 1,000 write units a second for one partition (Developer Guide, "Understanding
DynamoDB warm throughput": "each individual partition is limited to 1,000 write units per second"), and a
transaction on an item another transaction holds is cancelled with TransactionConflict. A counter written
twice per request in transactions (2 units each) so tops out near 250 requests a second, and well before.

The escrow transactional method: a counter (a budget level, or a rate window) keeps its item, the POOL,
and may have SLICE items (pk `SHARD#<k>#<pool pk>`, k = 1..N, the pool's sk). Each item holds part of the
counter's remaining allowance and the counter's remaining value is the SUM over its items. Every write
moves value between items or takes it on the condition that the item holds it, so the sum never goes
below zero: the hard cap holds whatever N is, and N is only each container's routing choice.
- A request reserves on one slice per counter (one random draw per request), so load spreads over N.
- A slice without enough BORROWS from the pool in the same transaction (REFILL_REQUESTS requests' worth,
  at most its share), on the condition that the pool keeps the counter's warning floor, until the counter
  is WARNED. So, until then, the pool holds at least the floor and the counter (pool + slices >= pool) is
  clear of its warning zone; a borrow proves it, as the single item's floor condition does.
- When the pool cannot lend a full borrow, the counter is REBALANCED from one strongly consistent read of
  all its items: refused if their total cannot fit the request (so nothing is refused while the counter
  has room for it: "the last cent is reachable"); else reserved on a slice that holds enough (drawn in
  proportion to what it holds, the same k for every counter of the request); else, when no one item
  holds enough (the counter's TAIL), the richest slices are DRAINED into the pool in the same transaction
  (each giving all it holds, on the condition it still holds it) and the request reserves on the pool,
  which then serves the requests after it from one item with its own condition. A reservation is retried
  (after a backoff when it met contention) until it is admitted or a total refuses it, within a time
  budget (tollgate.store.ledger).
  A read whose total, less this request, is inside the warning zone marks the pool WARNED in that
  transaction (the 80% warning is sent by that request), and a warned pool lends to its last cent.
A key never found contended stays at N = 1: its counters are exactly the single items they always were.
Only a counter whose own item met TransactionConflict (or throttling) grows. A budget level's pool no slice
has borrowed from for SHARD_MEMORY_S (its shardedAt) is collected and unmarked by the next single-item
reservation that finds it (unshard), and is a single item again.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tollgate.errors import Conflict
from tollgate.money import text as usd
from tollgate.store.dynamo import from_item, to_item, values

MAX_SHARDS = 32  # slices per counter; a rebalance reads them in one BatchGetItem (at most 100 keys)
FIRST_SHARDS = 8  # slices a counter gets when it is first found contended; doubles on each further signal
SHARD_MEMORY_S = 900  # a container keeps a grown shard count this long after its last contention signal
COLLECT_ROUNDS = 20  # rounds of moving slices back into the pool (each after a backoff) before a limit change gives up
REFILL_REQUESTS = 32  # a borrow takes this many requests' worth from the pool (at most its share of it)
# Actions per TransactWriteItems (DynamoDB API Reference, TransactWriteItems: "TransactItems ... Maximum number
# of 100 items"); a tail drained in the reservation itself stays within it (drain).
TRANSACT_MAX_ITEMS = 100
SHARDED = "sharded"  # on a pool: slices may hold part of its value
SHARDED_AT = "shardedAt"  # on a pool: when a slice last borrowed from it (epoch seconds)
SHARDS = "shards"  # on a pool: the slice count its last borrower used (a new container starts from it)
WARNED = "warned"  # on a pool: the counter was found in its warning zone; it now lends to its last cent


def slice_pk(pk: str, k: int) -> str:
    """The partition key of slice k (1..MAX_SHARDS) of the counter whose pool has partition key `pk`."""
    return f"SHARD#{k}#{pk}"


def now() -> int:
    """The wall clock, epoch seconds (a pool's shardedAt)."""
    return int(time.time())


def stale(pool: dict[str, Any]) -> bool:
    """Whether a sharded pool was last lent from more than SHARD_MEMORY_S ago (or before shardedAt existed)."""
    return now() - int(pool.get(SHARDED_AT, 0)) > SHARD_MEMORY_S


def _empty_slices(table: str, pk: str, sk: str) -> list[dict[str, Any]]:
    """ConditionChecks, for a transaction, that every possible slice of the counter holds no remainingUsd."""
    zero = values(zero=Decimal(0))
    return [{"ConditionCheck": {"TableName": table, "Key": to_item({"pk": slice_pk(pk, k), "sk": sk}),
                                "ConditionExpression": "attribute_not_exists(remainingUsd) OR remainingUsd <= :zero",
                                "ExpressionAttributeValues": zero}} for k in range(1, MAX_SHARDS + 1)]


@dataclass(frozen=True)
class Hot:
    """One counter of a reservation held in escrow. Amounts per attribute: `need` is what this request
    takes (USD, or requests and tokens), `start` the allowance of a counter never written (its limit),
    `floor` what the pool keeps until the counter is warned (a budget's warning floor; 0 for a rate
    window). `book`: a budget level (keeps reservedUsd and spentUsd beside its remaining value). `drop`:
    attributes a reservation or a lend removes from the item it writes (tollgate.store.counters.Window.drop)."""

    index: int
    pk: str
    sk: str
    need: dict[str, Any]
    start: dict[str, Any]
    floor: dict[str, Any]
    ttl: int | None
    book: bool
    drop: tuple[str, ...] = ()  # other counters' stale attributes on the same items (old minute windows), removed

    def chunk(self, shards: int, spare: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a short slice borrows: REFILL_REQUESTS requests' worth, but no more than its share of what the
        pool can lend (`spare`, else the counter's allowance less the floor), and never less than `need`."""
        out = {}
        for a, n in self.need.items():
            lendable = (spare or {}).get(a, self.start[a] - self.floor.get(a, 0))
            share = lendable / shards if isinstance(lendable, Decimal) else lendable // shards
            out[a] = max(n, min(n * REFILL_REQUESTS, share))
        return out

    def keep(self, warned: bool) -> dict[str, Any]:
        """What the pool must keep: its floor until the counter is warned, then nothing."""
        return {a: 0 * n if warned else self.floor.get(a, 0 * n) for a, n in self.need.items()}


@dataclass
class State:
    """What a container knows of one escrow counter: whether it is warned, its remaining values when last
    read (None: not known), and whether its pool could then no longer lend a full borrow (`poor`: near its
    limit, its value is in the slices, so a request reads where it is before it picks a slice)."""

    warned: bool = False
    left: dict[str, Any] | None = None
    poor: bool = False


def _ttl_set(h: Hot, vals: dict[str, Any]) -> str:
    if h.ttl is None:
        return ""
    vals["ttl"] = h.ttl
    return ", #ttl = if_not_exists(#ttl, :ttl)"


def _drop(h: Hot) -> str:
    return " REMOVE " + ", ".join(h.drop) if h.drop else ""


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
    """Reserve `need` on slice k. With `take`, the slice first receives that much (from the pool or other
    slices, given in the same transaction: pool_lend, slice_give); without, it must hold enough."""
    vals: dict[str, Any] = {"nothing": 0}
    sets, cond = [], []
    for n, (a, need) in enumerate(h.need.items()):
        got = (take or {}).get(a, 0 * need)
        vals[f"n{n}"] = need
        vals[f"t{n}"] = got
        sets.append(f"{a} = if_not_exists({a}, :nothing) + :t{n} - :n{n}")
        if need > got:  # the slice itself must hold the rest
            vals[f"m{n}"] = need - got
            cond.append(f"{a} >= :m{n}")
    update = "SET " + ", ".join(sets) + _book(h, vals) + _ttl_set(h, vals) + _drop(h)
    item = _update(table, slice_pk(h.pk, k), h.sk, update, " AND ".join(cond), vals, h.ttl is not None)
    if not cond:  # it receives at least `need` in this transaction
        del item["Update"]["ConditionExpression"], item["Update"]["ReturnValuesOnConditionCheckFailure"]
    return item


def slice_give(table: str, h: Hot, k: int, give: dict[str, Any]) -> dict[str, Any]:
    """Take `give` out of slice k (for another slice, in the same transaction), on the condition it holds it."""
    vals: dict[str, Any] = {}
    sets, cond = [], []
    for n, (a, amount) in enumerate(give.items()):
        vals[f"g{n}"] = amount
        sets.append(f"{a} = {a} - :g{n}")
        cond.append(f"{a} >= :g{n}")
    return _update(table, slice_pk(h.pk, k), h.sk, "SET " + ", ".join(sets), " AND ".join(cond), vals, False)


def pool_lend(table: str, h: Hot, take: dict[str, Any], shards: int, warned: bool, warn: bool = False) -> dict[str, Any]:
    """Take `take` from the pool for a slice: unless the counter is warned, on the condition that the pool
    keeps its floor and is not warned (so, until a counter is warned, its pool holds at least its floor and
    the counter, the pool plus its slices, is clear of its warning zone); once warned, down to its last
    cent. `warn`: mark it warned now (a read found it in its warning zone). Marks the pool sharded over
    `shards` slices, now (shardedAt). A pool never written starts at the counter's allowance."""
    return _pool(table, h, take, warned, warn, shards=shards)


def pool_reserve(table: str, h: Hot, got: dict[str, Any] | None, warned: bool, warn: bool = False) -> dict[str, Any]:
    """Reserve `need` on the pool itself (a counter whose value no longer fits in one slice: its tail),
    receiving `got` in the same transaction from slices drained into it (slice_give): on the conditions of
    pool_lend (its floor until the counter is warned), without marking it sharded."""
    return _pool(table, h, {a: n - (got or {}).get(a, 0 * n) for a, n in h.need.items()}, warned, warn)


def _pool(table: str, h: Hot, out: dict[str, Any], warned: bool, warn: bool, shards: int | None = None) -> dict[str, Any]:
    """The pool's update taking `out` (per attribute; negative: it receives) for a slice (`shards`: a lend,
    marking the pool sharded) or for this request's own reservation (shards None: booked as reserved)."""
    vals: dict[str, Any] = {"yes": True} if warn or shards is not None else {}
    sets = [f"{WARNED} = :yes"] if warn else []
    if shards is not None:
        vals.update(shards=shards, at=now())
        sets += [f"{SHARDED} = :yes", f"{SHARDS} = :shards", f"{SHARDED_AT} = :at"]
    cond = [] if warn else [f"attribute_exists({WARNED})" if warned else f"attribute_not_exists({WARNED})"]
    keep = h.keep(warned or warn)
    for n, (a, amount) in enumerate(out.items()):
        vals.update({f"s{n}": h.start[a], f"t{n}": amount})
        sets.append(f"{a} = if_not_exists({a}, :s{n}) - :t{n}")
        if amount + keep[a] > 0:  # the pool must hold it (what it receives here counts)
            vals[f"k{n}"] = amount + keep[a]
            fresh = h.start[a] >= amount + keep[a]
            cond.append(f"(attribute_not_exists({a}) OR {a} >= :k{n})" if fresh else f"{a} >= :k{n}")
    if h.book:
        vals.update(zero=Decimal(0), limit=h.start["remainingUsd"])
        reserved = "if_not_exists(reservedUsd, :zero)"
        if shards is None:  # this request's own reservation
            vals["cost"] = h.need["remainingUsd"]
            reserved += " + :cost"
        sets.append(f"reservedUsd = {reserved}, spentUsd = if_not_exists(spentUsd, :zero), "
                    "limitUsd = if_not_exists(limitUsd, :limit)")
    update = "SET " + ", ".join(sets) + _ttl_set(h, vals) + _drop(h)
    item = _update(table, h.pk, h.sk, update, " AND ".join(cond), vals, h.ttl is not None)
    if not cond:  # a warning marked now, and it receives at least what it gives
        del item["Update"]["ConditionExpression"], item["Update"]["ReturnValuesOnConditionCheckFailure"]
    return item


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
        return {a: self.pool_value(h)[a] + sum((s.get(a, 0 * n) for s in self.slices.values()), 0 * n)
                for a, n in h.need.items()}

    def held(self) -> Decimal:
        """The USD the slices hold (their positive remainingUsd), outside the pool."""
        return sum((max(Decimal(s.get("remainingUsd", 0)), Decimal(0)) for s in self.slices.values()), Decimal(0))

    def pool_value(self, h: Hot) -> dict[str, Any]:
        """The pool's remaining value per attribute of h.need: as stored, or the counter's allowance
        (`h.start`) if the pool was never written."""
        return {a: (self.pool or {}).get(a, h.start[a]) for a in h.need}

    def holders(self, h: Hot) -> dict[int, int]:
        """The slices that hold `need` on their own, each with how many times it holds it."""
        fits = {j: min((int(s.get(a, 0 * n) // n) if n else int(s.get(a, 0 * n) >= 0) for a, n in h.need.items()),
                       default=1) for j, s in self.slices.items()}
        return {j: times for j, times in fits.items() if times >= 1}

    def lends(self, h: Hot, keep: dict[str, Any]) -> bool:
        """Whether the pool can lend a full borrow (REFILL_REQUESTS requests' worth) beyond `keep`."""
        pool = self.pool_value(h)
        return all(pool[a] - keep[a] >= n * REFILL_REQUESTS for a, n in h.need.items())

    def plan(self, h: Hot, k: int, keep: dict[str, Any], shards: int
             ) -> tuple[int, dict[str, Any] | None, dict[int, dict[str, Any]]]:
        """Where a request whose slice k could not serve it takes `need` from this snapshot: (the item to
        reserve on, k >= 1 a slice or 0 the pool; what it receives; what each giver gives, 0 the pool).
        Slice k borrows a chunk (REFILL_REQUESTS requests' worth, at most its share of `shards`) if the pool
        can lend a full one beyond `keep` (what it must keep); else a slice that holds enough on its own,
        at random in proportion to what it holds (so the requests that rebalance do not pile onto one);
        else the counter's value is spread too thin for any one item (its tail): the richest slices are
        DRAINED into the pool, each giving all it holds, until the pool fits the request, which the pool
        then serves (and the requests after it: one item, its own condition). Assumes the total fits."""
        if self.lends(h, keep):
            chunk = h.chunk(shards, {a: v - keep[a] for a, v in self.pool_value(h).items()})
            return k, chunk, {0: chunk}
        holds = self.holders(h)
        if holds:
            return weighted(holds), None, {}
        pool = self.pool_value(h)
        want = {a: n + keep[a] - pool[a] for a, n in h.need.items()}
        gives: dict[int, dict[str, Any]] = {}
        for j, s in sorted(self.slices.items(), key=lambda js: tuple(js[1].get(a, 0) for a in h.need), reverse=True):
            if all(w <= 0 for w in want.values()):
                break
            give = {a: max(s.get(a, 0 * n), 0 * n) for a, n in h.need.items()}
            if any(give.values()):
                gives[j] = give
                want = {a: want[a] - give[a] for a in want}
        received = {a: sum((g[a] for g in gives.values()), 0 * n) for a, n in h.need.items()}
        return 0, received, gives


def weighted(times: dict[int, int]) -> int:
    """A slice drawn at random in proportion to the requests it can serve (`times`, by slice; not empty), so
    the requests that read where the value is spread over it as it lies, not onto its smallest crumbs."""
    return random.choices(sorted(times), weights=[times[k] for k in sorted(times)])[0]


def read_counter(client: Any, table: str, pk: str, sk: str) -> Snapshot:
    """The items of the counter whose pool is (pk, sk): one strongly consistent BatchGetItem."""
    keys = [{"pk": pk, "sk": sk}] + [{"pk": slice_pk(pk, k), "sk": sk} for k in range(1, MAX_SHARDS + 1)]
    found: list[dict[str, Any]] = []
    request = {table: {"Keys": [to_item(k) for k in keys], "ConsistentRead": True}}
    while request:
        got = client.batch_get_item(RequestItems=request)
        found += [from_item(i) for i in got.get("Responses", {}).get(table, [])]
        request = got.get("UnprocessedKeys") or {}
    pool = next((i for i in found if i["pk"] == pk), None)
    slices = {int(i["pk"].split("#", 2)[1]): i for i in found if i["pk"] != pk}
    return Snapshot(pool, slices)


def clock() -> float:
    """Seconds on a monotonic clock (a reservation's time budget)."""
    return time.monotonic()


def backoff(attempt: int) -> None:
    """Sleep before retry `attempt` (0-based): exponential backoff with full jitter, 5 ms to 480 ms (Developer
    Guide, "Error retries and exponential backoff")."""
    time.sleep(random.uniform(0.005, 0.03) * (2 ** min(attempt, 4)))


def collect(client: Any, table: str, pk: str, sk: str, rounds: int = COLLECT_ROUNDS) -> Decimal:
    """Move every slice's remainingUsd back into the pool of the counter (pk, sk). One two-item transaction
    per slice holding value, each on the condition the slice still holds it; a round that met a cancelled
    one (the slice changed, or a conflict) reads again after a backoff, for at most `rounds` rounds.
    Returns the USD the slices still hold when it stops (0: every slice is empty)."""
    for attempt in range(rounds):
        snap = read_counter(client, table, pk, sk)
        if snap.held() == 0:
            return Decimal(0)
        for k, item in snap.slices.items():
            value = Decimal(item.get("remainingUsd", 0))
            if value <= 0:
                continue
            try:
                client.transact_write_items(TransactItems=[
                    {"Update": {"TableName": table, "Key": to_item({"pk": slice_pk(pk, k), "sk": sk}),
                                "UpdateExpression": "SET remainingUsd = remainingUsd - :v",
                                "ConditionExpression": "remainingUsd >= :v", "ExpressionAttributeValues": values(v=value)}},
                    {"Update": {"TableName": table, "Key": to_item({"pk": pk, "sk": sk}),
                                "UpdateExpression": "SET remainingUsd = remainingUsd + :v",
                                "ExpressionAttributeValues": values(v=value)}}])
            except client.exceptions.TransactionCanceledException:
                pass  # read again next round
        if attempt < rounds - 1:
            backoff(attempt)
    return read_counter(client, table, pk, sk).held()


def drain(client: Any, table: str, h: Hot) -> None:
    """Move what every slice of counter h holds of its `need` attributes (USD, or requests and tokens) into
    its pool, ahead of a reservation that would drain more slices than one transaction holds
    (TRANSACT_MAX_ITEMS). One two-item transaction per slice holding value, on the condition the slice still
    holds it; one that meets a change is skipped (the reservation reads the counter again). Value only
    moves between the counter's own items: its total is unchanged."""
    for k, item in read_counter(client, table, h.pk, h.sk).slices.items():
        give = {a: item[a] for a, n in h.need.items() if item.get(a, 0 * n) > 0}
        if not give:
            continue
        vals: dict[str, Any] = {}
        for n, (a, amount) in enumerate(give.items()):
            vals.update({f"g{n}": amount, f"s{n}": h.start[a]})
        into = ", ".join(f"{a} = if_not_exists({a}, :s{n}) + :g{n}" for n, a in enumerate(give))
        try:
            client.transact_write_items(TransactItems=[
                slice_give(table, h, k, give),
                {"Update": {"TableName": table, "Key": to_item({"pk": h.pk, "sk": h.sk}),
                            "UpdateExpression": f"SET {into}", "ExpressionAttributeValues": values(**vals)}}])
        except client.exceptions.TransactionCanceledException:
            pass


def lower(client: Any, table: str, pk: str, sk: str, update: dict[str, Any], rounds: int = COLLECT_ROUNDS) -> bool:
    """Apply `update` (an UpdateItem's arguments, without TableName and Key: a lowered limit and the pool's
    remainingUsd moved by the difference) to the pool of a sharded counter only while every slice is empty,
    so no slice can spend value the new limit took away: collect the slices into the pool, then write the
    pool in one transaction with a ConditionCheck that each of the MAX_SHARDS slices holds nothing (a slice
    that borrowed meanwhile cancels it: collect again, after a backoff). After the write the pool holds the
    counter's whole remaining value and lends only what it holds (pool_lend's condition).
    Returns False when the update's own condition failed (the caller reads the pool again).
    Raises Conflict (409) when the slices still hold value after `rounds` tries: the limit is unchanged."""
    checks = _empty_slices(table, pk, sk)
    held = Decimal(0)
    for attempt in range(rounds):
        held = collect(client, table, pk, sk, 1)
        if held == 0:
            try:
                client.transact_write_items(TransactItems=[
                    {"Update": {"TableName": table, "Key": to_item({"pk": pk, "sk": sk}), **update}}, *checks])
                return True
            except client.exceptions.TransactionCanceledException as e:
                reasons = e.response.get("CancellationReasons") or []
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    return False
            backoff(attempt)
    raise Conflict(f"The limit was not changed: the counter's slices still hold ${usd(held)} that requests keep "
                   "borrowing; retry.", code="limit_change_conflict")


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
        """Whether a counter can ever be spread over more than one slice here (not fixed at 1)."""
        return self.forced is None or self.forced > 1

    def at_least(self, scope: tuple[str, str], n: int) -> None:
        """Spread the counter over at least n slices (learnt from its pool: what others use)."""
        if self.forced is not None:
            return
        with self._lock:
            self._drop_expired()
            have, until = self._n.get(scope, (1, 0.0))
            have = have if self._clock() < until else 1
            self._n[scope] = (min(MAX_SHARDS, max(have, n, 2)), self._clock() + SHARD_MEMORY_S)

    def get(self, scope: tuple[str, str]) -> int:
        """The slices counter `scope` (pool pk, counter kind) is spread over now: 1 when not remembered."""
        if self.forced is not None:
            return self.forced
        with self._lock:
            n, until = self._n.get(scope, (1, 0.0))
            return n if self._clock() < until else 1

    def grow(self, scope: tuple[str, str]) -> None:
        """Counter `scope` met contention: FIRST_SHARDS slices, or twice as many as now (at most MAX_SHARDS),
        remembered SHARD_MEMORY_S from now."""
        if self.forced is not None:
            return
        with self._lock:
            self._drop_expired()
            n, until = self._n.get(scope, (1, 0.0))
            n = n if self._clock() < until else 1
            self._n[scope] = (min(MAX_SHARDS, FIRST_SHARDS if n < FIRST_SHARDS else n * 2),
                              self._clock() + SHARD_MEMORY_S)


    def _drop_expired(self) -> None:
        """Forget the counts whose memory ended (called with the lock held, so the map stays bounded)."""
        now = self._clock()
        for scope in [s for s, (_, until) in self._n.items() if until <= now]:
            del self._n[scope]


def unshard(client: Any, table: str, pk: str, sk: str, sharded_at: Any) -> bool:
    """Return a budget level's counter (pool (pk, sk)) to its single item: collect its slices into the pool
    (two rounds at most), then remove the pool's sharded mark in one transaction on the condition that no
    slice borrowed since (shardedAt still `sharded_at`; None: absent) and every slice is empty. Returns
    whether it did; a slice's reservation still in flight settles on its slice (its refund stays there)."""
    if collect(client, table, pk, sk, 2) != 0:
        return False
    cond, vals = ("attribute_not_exists(#at)", None) if sharded_at is None else ("#at = :at", values(at=sharded_at))
    try:
        client.transact_write_items(TransactItems=[
            {"Update": {"TableName": table, "Key": to_item({"pk": pk, "sk": sk}),
                        "UpdateExpression": f"REMOVE {SHARDED}, {SHARDS}, #at", "ConditionExpression": cond,
                        "ExpressionAttributeNames": {"#at": SHARDED_AT}, **({"ExpressionAttributeValues": vals} if vals else {})}},
            *_empty_slices(table, pk, sk)])
        return True
    except client.exceptions.TransactionCanceledException:
        return False
