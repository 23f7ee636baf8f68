"""The ledger: reserve before the provider call, settle after it. Two DynamoDB calls per request.

reserve: ONE TransactWriteItems takes the rate-limit window and reserves the worst-case cost on every
budget level, each with its own condition, and puts the request's usage record as `pending`: the
reservation itself (what was reserved on which items, until when), found by the sweeper through the
usage table's sparse `pending` index. Which condition failed names the limit (CancellationReasons, with
the item's old values).

settle: ONE TransactWriteItems turns the pending usage record into the final one (condition: it is still
pending, so it is settled exactly once, and never after the sweeper released it) and moves every level
from reserved to spent, returning the unused part. The sweeper's release is the same record's other
exit (condition: still pending, then `released`), so a settle and a release of one request race safely:
exactly one of them wins. A settle that finds its record released charges the actual cost afresh.

A transaction returns no values on success, yet the answer reports exact remaining values (rate-limit
and budget headers, warnings). So each counter's condition checks the value this container EXPECTS
(what it last saw, plus its own changes since; absent for an item it never saw) as well as the limit:
success proves the exact value, in the same one call. A wrong expectation cancels the transaction with
the item's exact old value (ReturnValuesOnConditionCheckFailure=ALL_OLD), and the retry expects that.
A counter that other containers keep changing (mismatched twice in one reservation) is no longer
guessed, for this and this container's next few reservations: the hard cap holds the same, but its value
is then unknown and the answer omits it rather than report a wrong number. Such a budget level is held
with its warning floor left over (success proves it is clear of the warning zone; a failure reveals its
value, so a warning is still sent when due), then by its limit alone. A rate window, and an agent run's
budget (never guessed: it has no warning floor), are held by their limit alone.

A hot key's budget levels and rate window are held in escrow (tollgate.store.escrow): a container that meets
a TransactionConflict on them, or finds them sharded by others, reserves on one slice of each instead of
the single item, borrowing from the counter's pool or rebalancing its slices when short. Settle and the
sweeper write to the item the reservation took (Reservation.slices; the pending usage record records it).
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from tollgate.clock import iso
from tollgate.errors import BudgetExceeded, Conflict, IdempotencyKeyReused, LoopDetected, RateLimited
from tollgate.store import escrow, same_item
from tollgate.schema import USAGE, USAGE_RETENTION_DAYS
from tollgate.store.counters import Level, LoopCounter, Window
from tollgate.store.dynamo import from_item, to_item, values
from tollgate.store.usage import PENDING, RELEASED
from tollgate.money import text as usd

log = logging.getLogger(__name__)

PENDING_SHARDS = 8
# Attributes a usage record holds only while it is a reservation (the sweeper's index keys and what to
# give back); the settle and the release remove them.
_RESERVATION_ONLY = ("pendingShard", "expiresAt", "levels", "window", "idempotencyPk", "reservedUsd", "reservedTokens")
FAILED = "error"  # a usage record's status when the provider call failed (tollgate.metering.ERROR)
_CONFLICT_RETRIES = 4
_SETTLE_RETRIES = 12  # a settle must land: the provider was paid for (exactly once, by the usage record's condition)
# An escrow reservation is tried until it is admitted or a limit refuses it, each contention after a backoff,
# for at most this many seconds; then 409 (the counters were too busy, not short: logged)
_SHARDED_BUDGET_S = 5.0
# CancellationReasons codes worth retrying (transaction-apis.html, "Transaction conflict handling";
# ThrottlingError: an item over its partition's throughput)
_RETRYABLE = ("TransactionConflict", "ThrottlingError")
_EXACT_TRIES = 2  # wrong expectations of one counter before its condition falls back to the plain limit
_PLAIN_FOR = 8  # reservations a counter that fell back is then held by the plain limit, without guessing
_SEEN_MAX = 4096  # counter items whose values one container remembers
ZERO = Decimal(0)


@dataclass(frozen=True)
class Plan:
    """What one request wants to take."""

    request_id: str
    user: str
    principal_id: str
    levels: tuple[Level, ...]
    window: Window | None
    cost: Decimal  # worst case, USD
    tokens: int  # worst case, for the tokens-per-minute window
    started_at: datetime
    expires_at: datetime  # after this the sweeper may release the reservation
    usage_sk: str  # the usage record's sort key, fixed now so a late settle hits the same record
    loop: LoopCounter | None = None
    idempotency_pk: str | None = None  # set when the client sent an Idempotency-Key
    request_hash: str | None = None  # of (route, body), bound to the Idempotency-Key (tollgate.idempotency)
    # Extra ConditionChecks for the reservation transaction, each with the error raised when it fails
    # (e.g. a chained response must belong to the caller: tollgate.store.responses).
    checks: tuple[tuple[dict[str, Any], Exception], ...] = ()


@dataclass(frozen=True)
class Replay:
    """The stored answer to an earlier request with the same Idempotency-Key."""

    status: int
    body: str
    content_type: str
    headers: dict[str, str]


@dataclass
class Reservation:
    """A reservation taken, and what it proved. Exact values are as of this reservation (this request's
    own change included); a counter whose value is not known exactly is absent (None / no entry)."""

    plan: Plan
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    budget_remaining: dict[str, Decimal] = field(default_factory=dict)  # level kind -> USD remaining, exact
    clear_of_warning: set[str] = field(default_factory=set)  # level kinds proved to keep their warning floor
    # level kind -> USD remaining as a failed attempt of this reservation saw it (a contended level near its
    # warning floor): good enough to warn, not exact enough to report
    seen_remaining: dict[str, Decimal] = field(default_factory=dict)
    # counter index (levels, then the window) -> (pk, sk) of the item reserved on, where it is not the
    # counter's own item (a slice of an escrow-sharded counter: tollgate.store.escrow)
    slices: dict[int, tuple[str, str]] = field(default_factory=dict)
    taken_at: float = field(default_factory=lambda: escrow.clock())  # seconds (escrow.clock) it began: Ledger.reserve

    @property
    def window_over(self) -> bool:
        """Whether the rate window's minute has ended: a token refund then frees nothing, and a later minute's
        reservation may have removed the attribute it would re-create on the key-hour item for good
        (tollgate.store.counters.minute_window), growing the item past the 1 KB write unit."""
        return self.plan.window is not None and escrow.clock() - self.taken_at >= self.plan.window.resets_in_s

    def key(self, i: int) -> tuple[str, str]:
        """The item counter i was reserved on (settle and release write there)."""
        return self.slices.get(i) or _counter_keys(self.plan)[i]

    @property
    def all_budgets_known(self) -> bool:
        return all(lvl.kind in self.budget_remaining for lvl in self.plan.levels)

    @property
    def warning_state_known(self) -> bool:
        """Whether every level that can warn is known to be in or out of its warning zone."""
        return all(lvl.kind in self.budget_remaining or lvl.kind in self.clear_of_warning
                   or lvl.kind in self.seen_remaining for lvl in self.plan.levels if lvl.warning_floor > 0)

    def remaining_as_known(self, kind: str) -> Decimal | None:
        """USD remaining on a level after this reservation: exact, else as a failed attempt saw it, else None."""
        return self.budget_remaining.get(kind, self.seen_remaining.get(kind))

    def near_limit(self, refund: Decimal) -> list[Level]:
        """Levels in their warning zone once `refund` (worst case minus actual cost) is given back."""
        return [lvl for lvl in self.plan.levels
                if (left := self.remaining_as_known(lvl.kind)) is not None and left + refund < lvl.warning_floor]


_CONTENDED = "#contended"  # in a _Seen entry: reservations left to hold the counter by the plain limit


class _Seen:
    """What this container last knew of each counter item (its values after its own last change), keyed
    by (pk, sk). Only a guess: a wrong one costs a retry, never a wrong answer. Thread-safe, bounded."""

    def __init__(self, maxsize: int = _SEEN_MAX):
        self._items: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def get(self, key: tuple[str, str]) -> dict[str, Any]:
        """The expected values; {} (the item is absent) for an item never seen."""
        with self._lock:
            return {k: v for k, v in self._items.get(key, {}).items() if k != _CONTENDED}

    def contended(self, key: tuple[str, str]) -> bool:
        """Whether this reservation should hold the counter by the plain limit without guessing: it fell
        back recently, so other containers keep changing it and a guess would cost a wasted call. Counts
        one use; after _PLAIN_FOR the counter is forgotten, so the next reservation guesses (and learns)."""
        with self._lock:
            left = self._items.get(key, {}).get(_CONTENDED, 0)
            if left <= 1:
                if left:
                    del self._items[key]
                return left == 1
            self._items[key][_CONTENDED] = left - 1
            return True

    def mark_contended(self, key: tuple[str, str]) -> None:
        self.set(key, {_CONTENDED: _PLAIN_FOR})

    def set(self, key: tuple[str, str], known: dict[str, Any], names: tuple[str, ...] | None = None) -> None:
        """Remember values (a counter still marked contended stays so: values learnt from a cancellation
        do not make it worth guessing again). `names`: the attributes `known` speaks for (absent from it:
        absent from the item), where the item holds other counters too (a key-hour item and its minute
        windows); the item's other values are kept. None: `known` is all the item holds."""
        with self._lock:
            old = self._items.get(key, {})
            left = old.get(_CONTENDED)
            if names is not None:
                known = {**{k: v for k, v in old.items() if k not in names and k != _CONTENDED}, **known}
            self._items[key] = {**known, _CONTENDED: left} if left and _CONTENDED not in known else known
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def add(self, key: tuple[str, str], name: str, delta: Any) -> None:
        """Apply this container's own change to a value it knows."""
        with self._lock:
            known = self._items.get(key)
            if known is not None and name in known:
                known[name] += delta

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._items.pop(key, None)


def pending_shard(request_id: str) -> str:
    return f"p{int(hashlib.sha256(request_id.encode()).hexdigest(), 16) % PENDING_SHARDS}"


IDEMPOTENCY_SK = "IDEM"
IDEMPOTENCY_TTL_S = 24 * 3600
_MAX_REPLAY_BYTES = 300_000  # of UTF-8: DynamoDB items hold at most 400 KB


class IdempotentReplay(Exception):
    def __init__(self, replay: Replay):
        self.replay = replay


def _layout(plan: Plan) -> dict[str, int]:
    """Index of each item kind in the reservation transaction (CancellationReasons follow it)."""
    at = len(plan.levels)
    out = {}
    for kind, present in (("window", plan.window), ("loop", plan.loop), ("idempotency", plan.idempotency_pk)):
        if present:
            out[kind] = at
            at += 1
    out["reservation"] = at
    return out


class _Cancelled(Exception):
    def __init__(self, reasons: list[dict[str, Any]]):
        self.reasons = reasons

    @property
    def conflict(self) -> bool:
        """Cancelled for contention, not for a condition: worth the same transaction again after a backoff."""
        return any(r.get("Code") in _RETRYABLE for r in self.reasons) and not any(
            r.get("Code") == "ConditionalCheckFailed" for r in self.reasons)


class Ledger:
    def __init__(self, budgets_table: str, usage_table: str, client: Any, shards: int | None = None):
        """`shards`: a fixed number of escrow slices for every budget level and rate window (1: never
        sharded); None (production): per counter, from the contention this container observes
        (tollgate.store.escrow.Shards)."""
        self.budgets = budgets_table
        self.usage = usage_table
        self.client = client
        self._seen = _Seen()
        self._shards = escrow.Shards(shards)
        self._escrow: OrderedDict[tuple[str, str], escrow.State] = OrderedDict()  # by counter item (pk, sk)

    # -- reserve -----------------------------------------------------------------------------
    def reserve(self, plan: Plan) -> Reservation:
        """Reserve the plan's worst case on every level and its tokens in the rate window: _reserve_plan."""
        began = escrow.clock()
        res = self._reserve_plan(plan)
        res.taken_at = began
        return res

    def _reserve_plan(self, plan: Plan) -> Reservation:
        """Reserve the plan's worst case on every level and its tokens in the rate window, in one
        transaction when this container's expectations are right (module docstring).

        Raises BudgetExceeded, RateLimited, LoopDetected, IdempotentReplay (an earlier request with this
        Idempotency-Key was answered), IdempotencyKeyReused (422: the key was used for another request),
        Conflict (409: the key's request or this request id is in progress; an unexplained cancellation)."""
        plan = self._current_limits(plan)
        if plan.window and plan.tokens > plan.window.tpm:
            raise RateLimited(
                f"This request may use up to {plan.tokens} tokens, more than the limit of {plan.window.tpm} "
                "tokens per minute. Lower max_tokens or shorten the input.",
                code="tokens_exceed_limit", headers={"x-should-retry": "false"})
        if plan.window and plan.window.rpm < 1:
            raise RateLimited("This key may send no requests (its limit is 0 requests per minute).",
                              code="requests_exceed_limit", headers={"x-should-retry": "false"})
        keys = _counter_keys(plan)
        n_levels = len(plan.levels)
        hot = _hot(plan)
        for h in hot.values():
            self._refuse_if_short(plan, h)
        sliced = {i for i in hot if self._shards.get(_scope(plan, i)) > 1}
        if sliced:
            return self._reserve_sharded(plan, hot, sliced, set())
        # Each counter is held one of three ways: by its expected value (exact); a budget level contended
        # by other containers by its limit plus its warning floor ("floor": proves it is clear of the
        # warning zone), and failing that, or for a run's budget or a rate window, by its limit alone.
        plain = {i for i in keys if i < n_levels and plan.levels[i].must_exist}
        floor: set[int] = set()
        for i, key in keys.items():
            if i not in plain and self._seen.contended(key):
                self._fall_back(plan, i, plain, floor)
        wrong: dict[int, int] = {}  # counter index -> expectations that proved wrong in this reservation
        seen_remaining: dict[str, Decimal] = {}
        for attempt in range(3 * len(keys) * _EXACT_TRIES + 1):  # each retry follows one more wrong guess
            expect = {i: self._seen.get(key) for i, key in keys.items() if i not in plain and i not in floor}
            try:
                # A container that may shard takes the first conflict as the signal to (tollgate.store.escrow)
                self._transact(self._reserve_items(plan, expect, floor), token=f"{plan.request_id}/r{attempt}",
                               retries=1 if hot and self._shards.may_grow else _CONFLICT_RETRIES)
            except _Cancelled as c:
                sliced = self._escrowed(plan, hot, c.reasons)
                if sliced:  # a counter others hold in escrow: hold it on a slice too
                    return self._reserve_sharded(plan, hot, sliced, set())
                if c.conflict:  # another transaction holds a counter: spread that counter over slices
                    self._contended(plan, hot, c.reasons)
                    sliced = {i for i in hot if self._shards.get(_scope(plan, i)) > 1}
                    if sliced:
                        return self._reserve_sharded(plan, hot, sliced, set())
                    if hot and self._shards.may_grow:  # tried once only: the conflict was on another item
                        self._backoff(attempt)  # (the loop guard...), so the same transaction again
                        continue
                self._learn(plan, keys, c.reasons)
                old = self._check_hard_limits(plan, c.reasons)
                progressed = [i for i in old if i in expect or i in floor]
                if not progressed:
                    log.warning("reservation cancelled for no known limit",
                                extra={"codes": [r.get("Code") for r in c.reasons]})
                    raise Conflict("Reservation failed; retry the request.", code="reservation_conflict") from None
                for i in progressed:
                    if i in floor:  # inside its warning zone: say so, then hold it by its limit alone
                        floor.discard(i)
                        plain.add(i)
                        lvl = plan.levels[i]
                        seen_remaining[lvl.kind] = Decimal(old[i].get("remainingUsd", lvl.limit)) - plan.cost
                        continue
                    wrong[i] = wrong.get(i, 0) + 1
                    if wrong[i] >= _EXACT_TRIES:
                        self._seen.mark_contended(keys[i])
                        self._fall_back(plan, i, plain, floor)
                continue
            res = self._reserved(plan, keys, expect)
            res.clear_of_warning = {plan.levels[i].kind for i in floor}
            res.seen_remaining = seen_remaining
            return res
        raise Conflict("Reservation failed; retry the request.", code="reservation_conflict")

    def _current_limits(self, plan: Plan) -> Plan:
        """The plan, each level whose limit cannot fit the worst case judged by the limit its budget item holds.

        A level's limit comes with the principal, which API Gateway caches with the authorizer's answer for
        up to routes.AUTHORIZER_CACHE_TTL_S; an operator's change is written to the period's item at once
        (limitUsd, remainingUsd: tollgate.store.limits.set_counter_limit). A lowered limit needs nothing here
        (the transaction's conditions read the item's remainingUsd); a raised one would be refused from the
        stale limit, so a level whose limit is below the cost is read (one strongly consistent GetItem, only
        then: the hot path makes no call here) and, if its item holds a limit, held to that one (and its
        warning floor: Level.with_limit) for the whole reservation. The returned plan is the reservation's.

        Raises BudgetExceeded, naming the item's limit and what is left of it, when that limit (or, with no
        item or no limit on it yet, the principal's) cannot fit the cost either; IdempotentReplay first when
        an earlier request with this Idempotency-Key was answered (it was paid for)."""
        levels = list(plan.levels)
        for i, level in enumerate(levels):
            if plan.cost <= level.limit or level.must_exist:
                continue
            got = self.client.get_item(TableName=self.budgets, ConsistentRead=True,
                                       Key=to_item({"pk": level.pk, "sk": level.sk})).get("Item")
            item = from_item(got) if got else {}
            if "limitUsd" in item:
                level = levels[i] = level.with_limit(Decimal(item["limitUsd"]))
            if plan.cost > level.limit:
                self._replay_if_answered(plan)  # an earlier request with this key was paid for: answer it
                if item.get(escrow.SHARDED):  # slices hold part of what is left: count them too
                    left = escrow.read_counter(self.client, self.budgets, level.pk, level.sk).sum("remainingUsd")
                else:
                    left = Decimal(item.get("remainingUsd", level.limit))
                raise _budget_error(level, min(left, level.limit), plan.cost)
        return plan if levels == list(plan.levels) else replace(plan, levels=tuple(levels))

    # -- escrow-sharded counters (tollgate.store.escrow) -------------------------------------------
    def _contended(self, plan: Plan, hot: dict[int, escrow.Hot], reasons: list[dict[str, Any]],
                   extras: list[tuple[int, int]] | None = None, base: int = 0) -> None:
        """A transaction of this plan was cancelled for contention: spread over more slices each counter in
        `hot` whose own item (reasons[i]; or one of its givers, reasons[base + n] for extras[n] = (i, giver))
        met TransactionConflict or throttling. Other counters, and the loop guard's item, are no signal."""
        busy = {i for i in hot if i < len(reasons) and reasons[i].get("Code") in _RETRYABLE}
        busy |= {i for n, (i, _) in enumerate(extras or [])
                 if base + n < len(reasons) and reasons[base + n].get("Code") in _RETRYABLE}
        for i in busy:
            self._shards.grow(_scope(plan, i))

    def _escrowed(self, plan: Plan, hot: dict[int, escrow.Hot], reasons: list[dict[str, Any]]) -> set[int]:
        """The counters of a failed single-item reservation that others hold in escrow (their pool
        `sharded`): this container holds them on slices from now on. A budget level's pool no container
        has lent from for SHARD_MEMORY_S is unsharded instead (escrow.unshard) and held on its own item."""
        sliced: set[int] = set()
        for i, h in hot.items():
            if i >= len(reasons) or reasons[i].get("Code") != "ConditionalCheckFailed":
                continue
            old = from_item(reasons[i].get("Item") or {})
            fits = all(old.get(a, h.start[a]) >= n for a, n in h.need.items())  # the pool alone: else sliced, read
            if old.get(escrow.SHARDED) and h.book and fits and escrow.stale(old) and escrow.unshard(
                    self.client, self.budgets, h.pk, h.sk, old.get(escrow.SHARDED_AT)):
                self._seen.forget((h.pk, h.sk))  # its value moved: learn it anew
                continue  # no container lent from it for SHARD_MEMORY_S: back to its single item
            if old.get(escrow.SHARDED):
                self._shards.at_least(_scope(plan, i), int(old.get(escrow.SHARDS, escrow.FIRST_SHARDS)))
                self._state(h).warned = bool(old.get(escrow.WARNED))
                sliced.add(i)
        return sliced

    def _state(self, h: escrow.Hot) -> escrow.State:
        key = (h.pk, h.sk)
        st = self._escrow.get(key)
        if st is None:
            st = self._escrow[key] = escrow.State()
            while len(self._escrow) > _SEEN_MAX:
                self._escrow.popitem(last=False)  # the least recently used
        else:
            self._escrow.move_to_end(key)
        return st

    def _reserve_sharded(self, plan: Plan, hot: dict[int, escrow.Hot], sliced: set[int],
                         rebalance: set[int]) -> Reservation:
        """Reserve with the counters in `sliced` held on one slice each: as it is while the slice holds
        enough; else borrowing from the pool in the same transaction; else, when the pool cannot lend,
        REBALANCED from one read of each sliced counter (_rebalance): onto a slice that holds enough, or,
        when none does (the counter's tail), with the richest slices drained into the pool, which serves it;
        or refused when a counter's total cannot fit. A borrow or rebalance that met contention is
        rebalanced again (the pool and the givers are the busiest items; another slice may hold enough), and
        a container that last found a counter's pool unable to lend (escrow.State.poor: near its limit, most
        slices are empty) rebalances before its first try. Every other counter is held on its own item by
        its limit (a budget level first with its warning floor left over). Two calls (one transaction)
        while the slice holds enough or the pool lends; a borrow the pool refuses adds one, a rebalance a
        read per sliced counter and a transaction. Drains that would not fit in one transaction
        (escrow.TRANSACT_MAX_ITEMS) are done first, on their own (escrow.drain), and the counters read again.
        Tried again after each cancellation (after a backoff when it was contention) until it is admitted
        or refused by a limit, for at most _SHARDED_BUDGET_S; then the counters are read once more, so a
        refusal still names the limit that cannot fit, and only otherwise Conflict (409)."""
        n_levels = len(plan.levels)
        keys = _counter_keys(plan)
        floor: set[int] = set()
        plain: set[int] = set()
        for i in keys:
            if i not in sliced:
                self._fall_back(plan, i, plain, floor)
        pick = self._pick(plan, sliced)
        if any(self._state(hot[i]).poor for i in sliced):  # near a limit: read where the value is first
            rebalance |= sliced
        take: dict[int, dict[str, Any] | None] = {i: None for i in sliced}  # what the item reserved on receives
        gives: dict[int, dict[int, dict[str, Any]]] = {}  # counter -> giver (0: the pool) -> amounts
        warn: set[int] = set()  # counters this reservation marks warned
        seen_remaining: dict[str, Decimal] = {}
        deadline = escrow.clock() + _SHARDED_BUDGET_S
        attempt = busy = 0
        while True:
            if rebalance:  # every sliced counter: gives[i] set (maybe empty), chosen by a rebalance
                self._rebalance(plan, {i: hot[i] for i in sliced}, pick, take, gives, warn, seen_remaining)
            rebalance.clear()
            at = {i: (escrow.slice_pk(hot[i].pk, pick[i]) if pick[i] else hot[i].pk, hot[i].sk) for i in sliced}
            items = self._reserve_items(plan, {}, floor, at=at)
            extras: list[tuple[int, int]] = []  # (counter, giver) of each item after the plan's own
            lent_clear: set[int] = set()  # counters an unwarned pool lent to: proved clear of the warning zone
            for i in sliced:
                h, st = hot[i], self._state(hot[i])
                if pick[i]:
                    items[i] = escrow.slice_reserve(self.budgets, h, pick[i], take[i])
                    givers = gives[i] if i in gives else ({0: take[i]} if take[i] else {})
                    if i in warn and 0 not in givers:
                        givers = {**givers, 0: {a: 0 * n for a, n in h.need.items()}}
                else:  # on the pool itself (the counter's tail), which marks the warning if due
                    items[i] = escrow.pool_reserve(self.budgets, h, take[i], st.warned, warn=i in warn)
                    givers = gives.get(i, {})
                    if not st.warned and i not in warn:
                        lent_clear.add(i)
                for j, amounts in sorted(givers.items()):
                    extras.append((i, j))
                    if j:
                        items.append(escrow.slice_give(self.budgets, h, j, amounts))
                    else:
                        items.append(escrow.pool_lend(self.budgets, h, amounts, self._shards.get(_scope(plan, i)),
                                                      st.warned, warn=i in warn))
                        if not st.warned and i not in warn:
                            lent_clear.add(i)
            base = len(items) - len(extras)
            if len(items) > escrow.TRANSACT_MAX_ITEMS:  # tails spread over too many slices (before same_item merges)
                for i in sorted(sliced):
                    if len(gives.get(i, {})) > 1:
                        escrow.drain(self.client, self.budgets, hot[i])
                rebalance |= sliced
                take, gives = {i: None for i in sliced}, {}
                if escrow.clock() >= deadline:
                    break
                continue
            try:
                self._transact(items, token=f"{plan.request_id}/e{attempt}", retries=1)
            except _Cancelled as c:
                attempt += 1
                if escrow.clock() >= deadline:
                    break
                if c.conflict:  # contended even so: more slices; after a backoff, another pick or a new read
                    self._contended(plan, {i: hot[i] for i in sliced}, c.reasons, extras, base)
                    if any(i in gives or take[i] or self._state(hot[i]).poor for i in sliced):
                        rebalance |= sliced
                    else:
                        pick = self._pick(plan, sliced)
                    take, gives = {i: None for i in sliced}, {}
                    self._backoff(busy)
                    busy += 1
                    continue
                reasons = list(c.reasons) + [{}] * (len(items) - len(c.reasons))
                handled = self._escrow_failed(plan, hot, sliced, extras, base, reasons, take, gives, rebalance)
                for i in self._escrowed(plan, {i: h for i, h in hot.items() if i not in sliced}, reasons[:base]):
                    sliced.add(i)  # others hold it in escrow: its pool alone is not its value
                    floor.discard(i)
                    plain.discard(i)
                    pick[i], take[i] = self._pick(plan, {i})[i], None
                    handled.add(i)
                for i, r in enumerate(reasons[:base]):
                    if i in keys and i not in sliced and r.get("Code") == "ConditionalCheckFailed" and i < n_levels:
                        lvl = plan.levels[i]
                        left = Decimal(from_item(r.get("Item") or {}).get("remainingUsd", lvl.limit))
                        if left >= plan.cost:  # it fits: inside its warning zone (say so) or unsharded since
                            if i in floor:
                                seen_remaining[lvl.kind] = left - plan.cost
                                floor.discard(i)
                                plain.add(i)
                            handled.add(i)
                self._check_hard_limits(plan, [{} if i in handled else r for i, r in enumerate(reasons[:base])])
                if not handled:
                    log.warning("sharded reservation cancelled for no known limit",
                                extra={"codes": [r.get("Code") for r in c.reasons]})
                    raise Conflict("Reservation failed; retry the request.", code="reservation_conflict") from None
                continue
            for i in warn:
                self._state(hot[i]).warned = True
            res = Reservation(plan, slices=at)
            res.clear_of_warning = {plan.levels[i].kind for i in floor | lent_clear if i < n_levels}
            res.seen_remaining = seen_remaining
            return res
        for i in sorted(sliced):  # out of time: a counter short of this request is the answer, not contention
            self._refuse_if_short(plan, hot[i], read=True)
        log.warning("escrow reservation out of time", extra={"seconds": _SHARDED_BUDGET_S, "attempts": attempt})
        raise Conflict(f"The key's budget and rate counters were too busy to reserve this request within "
                       f"{_SHARDED_BUDGET_S:g} s; retry the request.", code="reservation_conflict")

    def _escrow_failed(self, plan: Plan, hot: dict[int, escrow.Hot], sliced: set[int], extras: list[tuple[int, int]],
                       base: int, reasons: list[dict[str, Any]], take: dict[int, dict[str, Any] | None],
                       gives: dict[int, dict[int, dict[str, Any]]], rebalance: set[int]) -> set[int]:
        """Learn from a cancelled escrow reservation and choose each failed counter's next step: borrow (its
        slice was short), borrow less or as a warned counter (the pool could not lend that much), or
        rebalance (a rebalance's giver had changed, or the pool cannot lend). Returns the counters handled."""
        handled: set[int] = set()
        for n, (i, j) in enumerate(extras):
            r = reasons[base + n]
            if r.get("Code") != "ConditionalCheckFailed" or i in handled:
                continue
            handled.add(i)
            h, st, old = hot[i], self._state(hot[i]), from_item(r.get("Item") or {})
            if i in gives:  # a rebalance met a change: read again
                rebalance.add(i)
                continue
            was = st.warned
            st.warned = bool(old.get(escrow.WARNED))
            if st.warned != was:
                continue  # borrow again, as the pool is now known (warned or not)
            spare = {a: old.get(a, h.start[a]) - k for a, k in h.keep(st.warned).items()}
            full = {a: n_ * escrow.REFILL_REQUESTS for a, n_ in h.need.items()}
            if all(spare[a] >= full[a] for a in full):
                take[i] = full
            else:  # the pool is running dry: lending crumbs would make it the hot item; read the counter
                st.poor = True
                rebalance.add(i)
        for i in sliced - handled:
            if reasons[i].get("Code") == "ConditionalCheckFailed":  # the slice is short: borrow
                handled.add(i)
                if i in gives:  # the item a rebalance chose (a slice, or the pool) changed since: read again
                    rebalance.add(i)
                    continue
                take[i] = hot[i].chunk(self._shards.get(_scope(plan, i)))
        return handled

    def _rebalance(self, plan: Plan, hot: dict[int, escrow.Hot], pick: dict[int, int],
                   take: dict[int, dict[str, Any] | None], gives: dict[int, dict[int, dict[str, Any]]],
                   warn: set[int], seen_remaining: dict[str, Decimal]) -> None:
        """Read each counter in `hot` (one strongly consistent read each) and choose where this request takes
        its `need` from, into pick/take/gives (and `warn`: counters to mark warned now). A slice k is chosen
        for all of them, so the transaction still touches the k-th slice of each: at random among the slices
        that hold enough in every counter whose pool can no longer lend a full borrow (near its limit: the
        value is in the slices, and a pick blind to it lands on empty ones), else at random. Each counter
        then reserves on slice k if it holds enough, else as escrow.Snapshot.plan says (a borrow into k,
        another slice that holds enough, or its tail drained into the pool).
        Raises the refusal when a counter's total cannot fit this request."""
        snaps: dict[int, escrow.Snapshot] = {}
        keep: dict[int, dict[str, Any]] = {}
        for i, h in hot.items():
            snap = snaps[i] = escrow.read_counter(self.client, self.budgets, h.pk, h.sk)
            total = snap.total(h)
            st = self._state(h)
            st.left = total
            st.warned = bool((snap.pool or {}).get(escrow.WARNED))
            self._short(plan, h, total, snap.pool)
            if i < len(plan.levels):
                seen_remaining[plan.levels[i].kind] = total["remainingUsd"] - plan.cost
            warn.discard(i)
            if not st.warned and any(total[a] - n < h.floor.get(a, 0 * n) for a, n in h.need.items()):
                warn.add(i)
            keep[i] = h.keep(st.warned or i in warn)
        poor = [i for i, h in hot.items() if not snaps[i].lends(h, keep[i])]
        for i, h in hot.items():
            self._state(h).poor = i in poor
        holds = [snaps[i].holders(hot[i]) for i in poor]
        common = {k: min(h[k] for h in holds) for k in set.intersection(*map(set, holds))} if poor else {}
        k = escrow.weighted(common) if common else max(self._pick(plan, set(hot)).values())
        for i, h in hot.items():
            if i in poor and k in common or i not in poor and k in snaps[i].holders(h):
                pick[i], take[i], gives[i] = k, None, {}
            else:
                pick[i], take[i], gives[i] = snaps[i].plan(h, k, keep[i], self._shards.get(_scope(plan, i)))

    def _pick(self, plan: Plan, sliced: set[int]) -> dict[int, int]:
        """The slice of each counter: one draw for the request, so its transaction touches the k-th slice of
        each (the requests on one slice conflict with each other only, not with a product of choices)."""
        u = random.random()
        return {i: 1 + int(u * max(1, self._shards.get(_scope(plan, i)))) for i in sliced}

    def _refuse_if_short(self, plan: Plan, h: escrow.Hot, read: bool = False) -> None:
        """A counter this container last saw short of this request (or any, with `read`): read its items (one
        strongly consistent read, no transaction on the hot pool) and refuse if their total is short too."""
        st = self._state(h) if read else self._escrow.get((h.pk, h.sk))
        if not read and (st is None or not st.left or all(st.left.get(a, n) >= n for a, n in h.need.items())):
            return
        snap = escrow.read_counter(self.client, self.budgets, h.pk, h.sk)
        st.left = snap.total(h)
        self._short(plan, h, st.left, snap.pool)

    def _short(self, plan: Plan, h: escrow.Hot, total: dict[str, Any], pool: dict[str, Any] | None) -> None:
        """Raise the refusal when counter h's `total` remaining cannot fit this request."""
        if h.index < len(plan.levels):
            lvl = plan.levels[h.index]
            if total["remainingUsd"] < plan.cost:
                limit = Decimal((pool or {}).get("limitUsd", lvl.limit))
                raise _budget_error(replace(lvl, limit=limit), total["remainingUsd"], plan.cost)
        elif any(total[a] < n for a, n in h.need.items()):  # the window's requests or tokens
            self._check_hard_limits(plan, [{}] * h.index + [{"Code": "ConditionalCheckFailed", "Item": to_item(total)}])

    def _reserved(self, plan: Plan, keys: dict[int, tuple[str, str]], expect: dict[int, dict[str, Any]]) -> Reservation:
        """The exact values a successful reservation proved (those it held by their expected value)."""
        res = Reservation(plan)
        for i, key in keys.items():
            if i not in expect:
                continue
            old = expect[i]
            if i < len(plan.levels):
                lvl = plan.levels[i]
                after = Decimal(old.get("remainingUsd", lvl.limit)) - plan.cost
                res.budget_remaining[lvl.kind] = after
                self._seen.set(key, {"remainingUsd": after}, _values_of(plan, i))
            else:
                w = plan.window
                res.remaining_requests = int(old.get(w.requests_attr, w.rpm)) - 1
                res.remaining_tokens = int(old.get(w.tokens_attr, w.tpm)) - plan.tokens
                self._seen.set(key, {w.requests_attr: res.remaining_requests, w.tokens_attr: res.remaining_tokens},
                               _values_of(plan, i))
        return res

    @staticmethod
    def _fall_back(plan: Plan, i: int, plain: set[int], floor: set[int]) -> None:
        """Stop guessing counter i: a budget level goes to "floor" if its warning floor can fit at all."""
        if i < len(plan.levels) and plan.cost + plan.levels[i].warning_floor <= plan.levels[i].limit:
            floor.add(i)
        else:
            plain.add(i)

    def _learn(self, plan: Plan, keys: dict[int, tuple[str, str]], reasons: list[dict[str, Any]]) -> None:
        """Remember every counter value a cancellation revealed: exact as of that transaction."""
        for i, key in keys.items():
            if i < len(reasons) and reasons[i].get("Code") == "ConditionalCheckFailed":
                item = from_item(reasons[i].get("Item") or {})
                names = _values_of(plan, i)
                self._seen.set(key, {k: item[k] for k in names if k in item}, names)

    def _replay_if_answered(self, plan: Plan) -> None:
        if not plan.idempotency_pk:
            return
        item = self.client.get_item(TableName=self.budgets, ConsistentRead=True,
                                    Key=to_item({"pk": plan.idempotency_pk, "sk": IDEMPOTENCY_SK})).get("Item")
        if item:
            _check_same_request(from_item(item), plan)
        if item and from_item(item).get("state") == "done":
            raise IdempotentReplay(_replay(from_item(item)))

    def _reserve_items(self, plan: Plan, expect: dict[int, dict[str, Any]], floor: set[int],
                       at: dict[int, tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """The reservation transaction. A counter whose index is in `expect` must hold exactly the expected
        values (none: be absent) and fit; a level in `floor` must fit with its warning floor left; the
        others must only fit. A counter held in escrow by others (its item `sharded`) is never held by an
        expected value, and keeps its warning floor (tollgate.store.escrow). `at`: counters reserved on
        another item than their own (a slice), for the pending usage record."""
        items = []
        for i, lvl in enumerate(plan.levels):
            update = ("SET remainingUsd = if_not_exists(remainingUsd, :limit) - :cost, "
                      "reservedUsd = if_not_exists(reservedUsd, :zero) + :cost, "
                      "spentUsd = if_not_exists(spentUsd, :zero), limitUsd = if_not_exists(limitUsd, :limit)")
            vals = dict(limit=lvl.limit, cost=plan.cost, zero=ZERO)
            if lvl.expires:
                update += ", #ttl = if_not_exists(#ttl, :ttl)"
                vals["ttl"] = lvl.expires
            if i in floor:
                condition = "attribute_not_exists(remainingUsd) OR remainingUsd >= :need"
                vals["need"] = plan.cost + lvl.warning_floor
            elif i not in expect:
                condition = ("attribute_exists(remainingUsd) AND remainingUsd >= :cost" if lvl.must_exist
                             else f"attribute_not_exists(remainingUsd) OR (remainingUsd >= :cost AND "
                                  f"(attribute_not_exists({escrow.SHARDED}) OR attribute_exists({escrow.WARNED}) "
                                  "OR remainingUsd >= :guard))")
                if not lvl.must_exist:
                    vals["guard"] = plan.cost + lvl.warning_floor
            elif "remainingUsd" in expect[i]:
                condition = f"remainingUsd = :expected AND remainingUsd >= :cost AND attribute_not_exists({escrow.SHARDED})"
                vals["expected"] = expect[i]["remainingUsd"]
            else:
                condition = "attribute_not_exists(remainingUsd)"  # and the limit covers the cost (checked above)
            names = {"#ttl": "ttl"} if lvl.expires else {}
            if lvl.owner is not None:
                condition = f"({condition}) AND #owner = :owner"
                names["#owner"] = "user"
                vals["owner"] = lvl.owner
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": lvl.pk, "sk": lvl.sk}),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                **({"ExpressionAttributeNames": names} if names else {}),
                "ExpressionAttributeValues": values(**vals),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }})
        w = plan.window
        if w:
            vals = dict(rpm=w.rpm, tpm=w.tpm, one=1, tokens=plan.tokens, ttl=w.expires)
            window_expected = expect.get(len(plan.levels))
            r, t = w.requests_attr, w.tokens_attr
            if window_expected is None:
                condition = f"attribute_not_exists({r}) OR ({r} >= :one AND {t} >= :tokens)"
            elif r in window_expected:
                condition = (f"{r} = :erequests AND {t} = :etokens AND {r} >= :one AND {t} >= :tokens AND "
                             f"attribute_not_exists({escrow.SHARDED})")
                vals.update(erequests=window_expected[r], etokens=window_expected.get(t, w.tpm))
            else:
                condition = f"attribute_not_exists({r})"  # and the limits cover it (checked above)
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": w.pk, "sk": w.sk}),
                "UpdateExpression": (f"SET {r} = if_not_exists({r}, :rpm) - :one, {t} = if_not_exists({t}, :tpm) - :tokens, "
                                     "#ttl = if_not_exists(#ttl, :ttl)" + w.remove_others),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#ttl": "ttl"},
                "ExpressionAttributeValues": values(**vals),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }})
        if plan.loop:
            loop = plan.loop
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": loop.pk, "sk": loop.sk}),
                "UpdateExpression": ("SET hits = if_not_exists(hits, :zero) + :one, "
                                     "spentUsd = if_not_exists(spentUsd, :zero) + :cost, #ttl = if_not_exists(#ttl, :ttl), "
                                     "subject = :subject, fingerprint = :fp, kind = :kind, windowEnd = :end, lastAt = :now"),
                "ConditionExpression": ("attribute_not_exists(hits) OR "
                                        "(hits < :max AND (hits < :min OR spentUsd < :usd))"),
                "ExpressionAttributeNames": {"#ttl": "ttl"},
                "ExpressionAttributeValues": values(zero=0, one=1, cost=loop.cost, ttl=loop.expires, max=loop.max_hits,
                                                    min=loop.min_hits, usd=loop.max_usd, subject=loop.subject,
                                                    fp=loop.fingerprint, kind=loop.kind, end=loop.window_end,
                                                    now=iso(plan.started_at)),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }})
        if plan.idempotency_pk:
            items.append({"Put": {
                "TableName": self.budgets,
                "Item": to_item({"pk": plan.idempotency_pk, "sk": IDEMPOTENCY_SK, "requestId": plan.request_id,
                                 "requestHash": plan.request_hash, "state": "pending",
                                 "ttl": int(plan.started_at.timestamp()) + IDEMPOTENCY_TTL_S}),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }})
        items.append({"Put": {  # the pending usage record: the reservation (module docstring)
            "TableName": self.usage,
            "Item": to_item({
                "pk": plan.user, "sk": plan.usage_sk, "requestId": plan.request_id, "status": PENDING,
                "principal": plan.principal_id,
                "reservedUsd": plan.cost, "reservedTokens": plan.tokens,
                "levels": [dict(zip(("pk", "sk"), (at or {}).get(i, (lvl.pk, lvl.sk)))) for i, lvl in enumerate(plan.levels)],
                "window": dict(zip(("pk", "sk"), (at or {}).get(len(plan.levels), (w.pk, w.sk)))) if w else None,
                "idempotencyPk": plan.idempotency_pk,
                "pendingShard": pending_shard(plan.request_id), "expiresAt": iso(plan.expires_at),
                USAGE.ttl_attribute: int(plan.started_at.timestamp()) + USAGE_RETENTION_DAYS * 86_400,
            }),
            "ConditionExpression": "attribute_not_exists(pk)",
        }})
        return items + [item for item, _ in plan.checks]

    def _check_hard_limits(self, plan: Plan, reasons: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """Raise for a limit this request cannot fit; return the old values the failure revealed."""
        old: dict[int, dict[str, Any]] = {}
        n_levels = len(plan.levels)
        layout = _layout(plan)
        idem = layout.get("idempotency")
        if idem is not None and idem < len(reasons) and reasons[idem].get("Code") == "ConditionalCheckFailed":
            # An earlier request with this key decides first: its answer was paid for, whatever the budget now.
            item = from_item(reasons[idem].get("Item") or {})
            _check_same_request(item, plan)
            if item.get("state") == "done":
                raise IdempotentReplay(_replay(item))
            raise Conflict("A request with this Idempotency-Key is still in progress.", code="idempotency_in_progress")
        for i, reason in enumerate(reasons):
            if reason.get("Code") != "ConditionalCheckFailed":
                continue
            item = from_item(reason.get("Item") or {})
            old[i] = item
            if i < n_levels:
                remaining = Decimal(item.get("remainingUsd", 0 if plan.levels[i].must_exist else plan.levels[i].limit))
                level = plan.levels[i]
                if level.owner is not None and item and item.get("user") != level.owner:
                    raise Conflict("This agent run belongs to another user.", code="run_owner_mismatch", status=403)
                if remaining < plan.cost:
                    level = replace(level, limit=Decimal(item.get("limitUsd", level.limit)))
                    raise _budget_error(level, remaining, plan.cost)
            elif i == layout.get("window"):
                w = plan.window
                rem_req = int(item.get(w.requests_attr, w.rpm))
                rem_tok = int(item.get(w.tokens_attr, w.tpm))
                if rem_req < 1 or rem_tok < plan.tokens:
                    kind = "requests" if rem_req < 1 else "tokens"
                    limit = w.rpm if rem_req < 1 else w.tpm
                    err = RateLimited(f"Rate limit reached: {limit} {kind} per minute. Retry after {w.retry_after} s.",
                                      headers={"retry-after": w.retry_after})
                    err.remaining = (max(0, rem_req), max(0, rem_tok))  # type: ignore[attr-defined]
                    raise err
            elif i == layout.get("loop"):
                # The domain (tollgate.loopguard.refusal) words the answer from the item's counts.
                err = LoopDetected("Loop detected: this request pattern was repeated too often.")
                err.hits, err.spent = int(item.get("hits", 0)), Decimal(item.get("spentUsd", 0))  # type: ignore[attr-defined]
                raise err
            elif i > layout["reservation"]:
                raise plan.checks[i - layout["reservation"] - 1][1]
            else:
                raise Conflict("A request with this id is already in progress.", code="duplicate_request")
        return old

    # -- settle ------------------------------------------------------------------------------
    def settle(self, res: Reservation, usage_item: dict[str, Any], actual_cost: Decimal, actual_tokens: int,
               replay: Replay | None = None, extra: tuple[dict[str, Any], ...] = ()) -> bool:
        """Record the usage and settle every level. Returns False if this request was already settled.

        With an Idempotency-Key, `replay` (the answer) is stored for later retries; without one (the
        request failed) the key is freed so the client may try again. `extra`: more writes for the same
        transaction (a stored response's owner: tollgate.store.responses)."""
        plan = res.plan
        refund = plan.cost - actual_cost
        items = [self._usage_final(plan, usage_item, PENDING)]
        for i, lvl in enumerate(plan.levels):
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item(dict(zip(("pk", "sk"), res.key(i)))),
                "UpdateExpression": ("SET reservedUsd = reservedUsd - :cost, spentUsd = spentUsd + :actual, "
                                     "remainingUsd = remainingUsd + :refund"),
                "ExpressionAttributeValues": values(cost=plan.cost, actual=actual_cost, refund=refund),
            }})
        refund_tokens = plan.window is not None and plan.tokens != actual_tokens and not res.window_over
        if refund_tokens:
            items.append(self._token_refund(res.key(len(plan.levels)), plan.window.tokens_attr,
                                            plan.tokens - actual_tokens))
        if plan.idempotency_pk:
            items.append(self._idempotency_outcome(plan.idempotency_pk, replay))
        if plan.loop and usage_item.get("status") == FAILED:
            items.append(self._loop_give_back(plan.loop))
        items += extra
        try:
            self._transact(items, token=f"{plan.request_id}/s", retries=_SETTLE_RETRIES)
        except _Cancelled as c:
            if c.reasons and c.reasons[0].get("Code") == "ConditionalCheckFailed":
                if from_item(c.reasons[0].get("Item") or {}).get("status") != RELEASED:
                    return False  # settled before (or never reserved)
                log.warning("late settle: reservation already released by the sweeper",
                            extra={"request_id": plan.request_id})
                for key in _counter_keys(plan).values():  # the sweeper changed them: no longer known
                    self._seen.forget(key)
                return self._settle_without_reservation(res, usage_item, actual_cost)
            raise
        for i in range(len(plan.levels)):  # this container's own change to values it knows
            self._seen.add(res.key(i), "remainingUsd", refund)
        if refund_tokens:
            self._seen.add(res.key(len(plan.levels)), plan.window.tokens_attr, plan.tokens - actual_tokens)
        return True

    def _settle_without_reservation(self, res: Reservation, usage_item: dict[str, Any], actual_cost: Decimal) -> bool:
        """Settle a request whose reservation the sweeper released: the record, from `released`, becomes final
        (once: its condition) and every level is charged the actual cost afresh."""
        plan = res.plan
        items = [self._usage_final(plan, usage_item, RELEASED)]
        for i, lvl in enumerate(plan.levels):
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item(dict(zip(("pk", "sk"), res.key(i)))),
                "UpdateExpression": ("SET spentUsd = if_not_exists(spentUsd, :zero) + :actual, "
                                     "remainingUsd = if_not_exists(remainingUsd, :limit) - :actual"),
                "ExpressionAttributeValues": values(actual=actual_cost, zero=ZERO, limit=lvl.limit),
            }})
        try:
            self._transact(items, token=f"{plan.request_id}/late", retries=_SETTLE_RETRIES)
            return True
        except _Cancelled as c:
            if c.reasons and c.reasons[0].get("Code") == "ConditionalCheckFailed":
                return False  # made final meanwhile (once: its condition)
            raise  # still contended: the caller logs it, never "settled before"

    def _idempotency_outcome(self, pk: str, replay: Replay | None) -> dict[str, Any]:
        key = to_item({"pk": pk, "sk": IDEMPOTENCY_SK})
        if replay is None or len(replay.body.encode()) > _MAX_REPLAY_BYTES:
            return {"Delete": {"TableName": self.budgets, "Key": key}}
        return {"Update": {
            "TableName": self.budgets, "Key": key,
            "UpdateExpression": "SET #state = :done, #status = :status, body = :body, contentType = :ct, headers = :h",
            "ExpressionAttributeNames": {"#state": "state", "#status": "status"},
            "ExpressionAttributeValues": values(done="done", status=replay.status, body=replay.body,
                                                ct=replay.content_type, h=replay.headers),
        }}

    def _loop_give_back(self, loop: LoopCounter) -> dict[str, Any]:
        """A failed provider call does not count toward its loop: its hit and spend are given back.
        ADD, not a condition: an item cleared meanwhile must not cancel the settle (a negative count
        left behind expires with its window)."""
        return {"Update": {"TableName": self.budgets, "Key": to_item({"pk": loop.pk, "sk": loop.sk}),
                           "UpdateExpression": "ADD hits :minus, spentUsd :refund SET #ttl = if_not_exists(#ttl, :ttl)",
                           "ExpressionAttributeNames": {"#ttl": "ttl"},
                           "ExpressionAttributeValues": values(minus=-1, refund=-loop.cost, ttl=loop.expires)}}

    def _usage_final(self, plan: Plan, usage_item: dict[str, Any], was: str) -> dict[str, Any]:
        """The Update that makes the request's usage record final (`usage_item`'s attributes; the reservation's
        removed), on the condition that its status is still `was` (PENDING, or RELEASED for a late settle):
        exactly once. A failed condition returns the record as it is (ALL_OLD)."""
        final = {k: v for k, v in usage_item.items() if k not in ("pk", "sk") and v is not None}
        gone = (*_RESERVATION_ONLY, *(() if "status" in final else ("status",)))  # a record without one is final
        names = {f"#{k}": k for k in (*final, *gone, "status")}
        return {"Update": {
            "TableName": self.usage, "Key": to_item({"pk": plan.user, "sk": plan.usage_sk}),
            "UpdateExpression": ("SET " + ", ".join(f"#{k} = :v_{k}" for k in final)
                                 + " REMOVE " + ", ".join(f"#{k}" for k in gone)),
            "ConditionExpression": "#status = :was",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values(was=was, **{f"v_{k}": v for k, v in final.items()}),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }}

    def _token_refund(self, key: tuple[str, str], attr: str, tokens: int) -> dict[str, Any]:
        return {"Update": {"TableName": self.budgets, "Key": to_item({"pk": key[0], "sk": key[1]}),
                           "UpdateExpression": f"ADD {attr} :t",
                           "ExpressionAttributeValues": values(t=tokens)}}

    # -- sweeper -----------------------------------------------------------------------------
    def expired_reservations(self, now: datetime, index_name: str = "pending") -> list[dict[str, Any]]:
        """Pending usage records whose reservation expired before `now`: one Query per shard of the usage
        table's sparse `pending` index."""
        found = []
        for shard in range(PENDING_SHARDS):
            pages = self.client.get_paginator("query").paginate(
                TableName=self.usage, IndexName=index_name,
                KeyConditionExpression="pendingShard = :s AND expiresAt < :now",
                ExpressionAttributeValues=values(s=f"p{shard}", now=iso(now)))
            found += [from_item(i) for page in pages for i in page["Items"]]
        return found

    def release(self, reservation: dict[str, Any]) -> bool:
        """Give back the reservation of a pending usage record whose request never settled: the record
        becomes `released` (condition: still pending, so a settle racing it wins or loses as a whole) and
        every level it reserved on gets the worst case back. False if it was settled or released meanwhile."""
        cost = Decimal(reservation["reservedUsd"])
        items = [{"Update": {
            "TableName": self.usage, "Key": to_item({"pk": reservation["pk"], "sk": reservation["sk"]}),
            "UpdateExpression": "SET #status = :released REMOVE " + ", ".join(f"#{k}" for k in _RESERVATION_ONLY),
            "ConditionExpression": "#status = :pending",
            "ExpressionAttributeNames": {f"#{k}": k for k in (*_RESERVATION_ONLY, "status")},
            "ExpressionAttributeValues": values(released=RELEASED, pending=PENDING),
        }}]
        for key in reservation.get("levels", []):
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": key["pk"], "sk": key["sk"]}),
                "UpdateExpression": "SET reservedUsd = reservedUsd - :cost, remainingUsd = remainingUsd + :cost",
                "ExpressionAttributeValues": values(cost=cost),
            }})
        if reservation.get("idempotencyPk"):  # free the key: the request it guarded never finished
            items.append(self._idempotency_outcome(reservation["idempotencyPk"], None))
        try:
            self._transact(items, token=f"{reservation['requestId']}/release")
            return True
        except _Cancelled:
            return False

    # -- plumbing ----------------------------------------------------------------------------
    def _transact(self, items: list[dict[str, Any]], token: str, retries: int = _CONFLICT_RETRIES) -> None:
        """One transaction, tried up to `retries` times with backoff on TransactionConflict (and a throttled
        item); raises _Cancelled, its reasons one per item of `items`. Updates of one item (a key-hour cap
        and its minute window) are sent as one (tollgate.store.same_item)."""
        sent, groups = same_item.merge(items)
        for attempt in range(retries):
            try:
                self.client.transact_write_items(TransactItems=sent, ClientRequestToken=_token(token, str(attempt)))
                return
            except self.client.exceptions.TransactionCanceledException as e:
                cancelled = _Cancelled(same_item.spread(e.response.get("CancellationReasons") or [], groups))
                if not cancelled.conflict or attempt == retries - 1:
                    raise cancelled from None
            except self.client.exceptions.IdempotentParameterMismatchException:
                raise Conflict("A request with this id was already reserved differently.",
                               code="duplicate_request") from None
            self._backoff(attempt)

    @staticmethod
    def _backoff(attempt: int) -> None:
        """Sleep before retry `attempt`: tollgate.store.escrow.backoff."""
        escrow.backoff(attempt)


def _values_of(plan: Plan, i: int) -> tuple[str, ...]:
    """The attributes holding counter i's value: a budget level's remainingUsd, the window's two counts."""
    if i < len(plan.levels):
        return ("remainingUsd",)
    return plan.window.requests_attr, plan.window.tokens_attr  # type: ignore[union-attr]


def _scope(plan: Plan, i: int) -> tuple[str, str]:
    """What a container's shard count is kept by: the counter's pool pk and kind (across its periods)."""
    if i < len(plan.levels):
        return plan.levels[i].pk, plan.levels[i].kind
    return plan.window.pk, "window"  # type: ignore[union-attr]


def _hot(plan: Plan) -> dict[int, escrow.Hot]:
    """The plan's counters that may be held in escrow: budget levels (not a run's) and the rate window."""
    out = {i: escrow.Hot(i, lvl.pk, lvl.sk, {"remainingUsd": plan.cost}, {"remainingUsd": lvl.limit},
                         {"remainingUsd": lvl.warning_floor}, lvl.expires, True)
           for i, lvl in enumerate(plan.levels) if not lvl.must_exist}
    if plan.window:
        w = plan.window
        out[len(plan.levels)] = escrow.Hot(len(plan.levels), w.pk, w.sk,
                                           {w.requests_attr: 1, w.tokens_attr: plan.tokens},
                                           {w.requests_attr: w.rpm, w.tokens_attr: w.tpm}, {}, w.expires, False,
                                           w.drop)
    return out


def _counter_keys(plan: Plan) -> dict[int, tuple[str, str]]:
    """(pk, sk) of each counter whose value the reservation can learn, by its index in the transaction."""
    keys = {i: (lvl.pk, lvl.sk) for i, lvl in enumerate(plan.levels)}
    if plan.window:
        keys[len(plan.levels)] = (plan.window.pk, plan.window.sk)
    return keys


def _check_same_request(item: dict[str, Any], plan: Plan) -> None:
    """Raise IdempotencyKeyReused (422) if the stored key was first used for another request. An item
    without a hash (written before keys were bound to requests; at most a day old) counts as the same."""
    stored = item.get("requestHash")
    if stored and plan.request_hash and stored != plan.request_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request (another route or body). "
            "Use a new key for a new request; send the same request again to get its answer.")


def _replay(item: dict[str, Any]) -> Replay:
    return Replay(int(item.get("status", 200)), str(item.get("body", "")), str(item.get("contentType", "application/json")),
                  {str(k): str(v) for k, v in (item.get("headers") or {}).items()})


def _token(name: str, attempt: str) -> str:
    """A ClientRequestToken (≤ 36 chars), so botocore's own retries of the same call are idempotent."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{attempt}"))


def _budget_error(level: Level, remaining: Decimal, cost: Decimal) -> BudgetExceeded:
    err = BudgetExceeded(
        f"Refused by the {level.label}: this request may cost up to ${usd(cost)} (its worst case, with "
        f"max_tokens), more than the ${usd(max(remaining, ZERO))} left of ${usd(level.limit)}. Lower max_tokens "
        "or shorten the input, ask an operator to raise the budget, or wait for the next period.",
        headers={"x-tollgate-budget-remaining-usd": usd(max(remaining, ZERO)),
                 "x-tollgate-budget-level": level.kind})
    err.level = level  # type: ignore[attr-defined]
    err.remaining = max(remaining, ZERO)  # type: ignore[attr-defined]
    return err
