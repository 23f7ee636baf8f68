"""Escrow-sharded counters (tollgate.store.escrow) over emulated DynamoDB, every call serialised: many
containers on one hot key, each spreading the key's budget and rate window over 8 slices."""
from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from dataclasses import replace
from decimal import Decimal

import boto3
import pytest

from tests.integration.concurrency import run_containers

from tollgate.errors import BudgetExceeded, Conflict
from tollgate.store import escrow, ledger as ledger_module
from tollgate.store.counters import USER_MONTH, Level, Window, month_sk, user_pk
from tollgate.store.ledger import Ledger, Plan
from tollgate.store.dynamo import from_item

THREADS = 64
SHARDS = 8
LIMIT = Decimal("0.50")
FLOOR = LIMIT * Decimal("0.2")
RPM = 100_000
NOW = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)


def _ledger(world, shards=SHARDS) -> Ledger:
    return Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], boto3.client("dynamodb"),
                  shards=shards)


def _plan(user: str, cost: Decimal, *, window: bool = True) -> Plan:
    rid = str(uuid.uuid4())
    level = Level(USER_MONTH, user_pk(user), month_sk(NOW), LIMIT, FLOOR)
    return Plan(request_id=rid, user=user, principal_id=f"key-{user}", levels=(level,),
                window=Window(f"RATE#key-{user}", "MIN#2026-11-27T14:30", RPM, 10 * RPM, 55, 1_900_000_000)
                if window else None,
                cost=cost, tokens=100, started_at=NOW, expires_at=NOW + timedelta(minutes=15),
                usage_sk=f"{NOW.isoformat()}#{rid}")


def _settle(ledger: Ledger, res, actual: Decimal) -> None:
    plan = res.plan
    assert ledger.settle(res, {"pk": plan.user, "sk": plan.usage_sk, "requestId": plan.request_id, "costUsd": actual},
                         actual, 60)


def _items(world, user: str) -> list[dict]:
    """The user-month level's pool and every slice (one strongly consistent read)."""
    level = Level(USER_MONTH, user_pk(user), month_sk(NOW), LIMIT, FLOOR)
    h = ledger_module._hot(_plan(user, Decimal("0.01"), window=False))[0]
    assert (h.pk, h.sk) == (level.pk, level.sk)
    snap = escrow.read_counter(world.dynamodb, world.env["TOLLGATE_BUDGETS_TABLE"], h.pk, h.sk)
    return [snap.pool or {}, *snap.slices.values()]


def _usage(world, user: str) -> list[dict]:
    pages = world.dynamodb.get_paginator("query").paginate(
        TableName=world.env["TOLLGATE_USAGE_TABLE"], KeyConditionExpression="pk = :u",
        ExpressionAttributeValues={":u": {"S": user}})
    return [from_item(i) for p in pages for i in p["Items"]]


def test_64_containers_on_8_slices_never_overshoot_and_every_slice_balances(world):
    admitted: list[Decimal] = []
    refused: list[Decimal] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def container(n: int) -> None:
        ledger, rng = _ledger(world), random.Random(n)
        start.wait()
        for _ in range(2):
            cost = Decimal(rng.randint(500, 4000)) / Decimal(1_000_000) * 10  # $0.005 to $0.04
            try:
                res = ledger.reserve(_plan("hot", cost))
            except BudgetExceeded:
                with lock:
                    refused.append(cost)
                continue
            actual = (cost * Decimal(rng.randint(1, 100)) / 100).quantize(Decimal("0.0000001"))
            _settle(ledger, res, actual)
            with lock:
                admitted.append(actual)

    run_containers(container, THREADS)

    items = _items(world, "hot")
    assert len(items) > 2, "the level should have been spread over slices"
    spent = sum((Decimal(i.get("spentUsd", 0)) for i in items), Decimal(0))
    remaining = sum((Decimal(i.get("remainingUsd", 0)) for i in items), Decimal(0))
    usage = _usage(world, "hot")
    assert spent <= LIMIT
    assert spent == sum((Decimal(u["costUsd"]) for u in usage), Decimal(0)) == sum(admitted, Decimal(0))
    assert len(usage) == len(admitted)
    assert all(Decimal(i.get("reservedUsd", 0)) == 0 for i in items)  # every slice's reservations settled
    assert spent + remaining == LIMIT  # value only moved between the items
    assert refused, "the budget should have run out under this load"
    # the rate window: one request taken from the window's total per admitted request, none lost
    w = ledger_module._hot(_plan("hot", Decimal("0.01")))[1]
    window = escrow.read_counter(world.dynamodb, world.env["TOLLGATE_BUDGETS_TABLE"], w.pk, w.sk)
    requests_left = sum(int(i.get("remainingRequests", 0)) for i in [window.pool or {}, *window.slices.values()])
    assert requests_left == RPM - len(admitted)


class _Contended:
    """A DynamoDB client on which, while `on`, a share `rate` of transactions is cancelled with
    TransactionConflict (what DynamoDB answers when another transaction holds one of the items; the
    emulator, serialising every call, never does). Seeded: one per container."""

    def __init__(self, client, seed: int, rate: float):
        self._client, self._rng, self._rate, self.on = client, random.Random(seed), rate, False
        self.exceptions = client.exceptions

    def __getattr__(self, name):
        return getattr(self._client, name)

    def transact_write_items(self, **kw):
        if self.on and self._rng.random() < self._rate:
            reasons = [{"Code": "None"}] * len(kw["TransactItems"])
            reasons[0] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            raise self._client.exceptions.TransactionCanceledException(
                {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                 "CancellationReasons": reasons}, "TransactWriteItems")
        return self._client.transact_write_items(**kw)


def test_64_containers_are_refused_only_when_the_levels_total_cannot_fit_them(world, monkeypatch):
    """Half the reservations' transactions meet a TransactionConflict, as on a hot key. Every request
    settles at its worst case, so the level's remaining value only ever falls: a request refused at some
    moment, because the total then could not fit it, cannot fit what is left at the end either. A refusal
    while the level had room for it (a 409, or a budget refusal on one slice's word) fails."""
    monkeypatch.setattr(escrow, "backoff", lambda attempt: time.sleep(0.001))
    admitted: list[Decimal] = []
    refused: list[tuple[Decimal, Decimal]] = []  # (worst case, the remaining the refusal stated)
    conflicts: list[Exception] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def container(n: int) -> None:
        client, rng = _Contended(boto3.client("dynamodb"), n, 0.5), random.Random(1000 + n)
        ledger = Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], client, shards=SHARDS)
        start.wait()
        for _ in range(2):
            cost = Decimal(rng.randint(2, 25)) / Decimal(1000)  # $0.002 to $0.025
            try:
                client.on = True
                res = ledger.reserve(_plan("tail", cost))
            except BudgetExceeded as e:
                with lock:
                    refused.append((cost, e.remaining))
                continue
            except Conflict as e:
                with lock:
                    conflicts.append(e)
                continue
            finally:
                client.on = False
            _settle(ledger, res, cost)
            with lock:
                admitted.append(cost)

    run_containers(container, THREADS)

    assert not conflicts, [str(e) for e in conflicts]
    items = _items(world, "tail")
    assert len(items) > 2, "the level should have been spread over slices"
    spent = sum((Decimal(i.get("spentUsd", 0)) for i in items), Decimal(0))
    assert spent <= LIMIT
    assert spent == sum(admitted, Decimal(0)) == sum((Decimal(u["costUsd"]) for u in _usage(world, "tail")), Decimal(0))
    assert all(Decimal(i.get("reservedUsd", 0)) == 0 for i in items)
    assert sum((Decimal(i.get("remainingUsd", 0)) for i in items), Decimal(0)) == LIMIT - spent
    assert refused, "the budget should have run out during the test"
    for cost, stated in refused:
        assert stated < cost  # the refusal named a total that could not fit it ...
        assert LIMIT - spent < cost  # ... and it cannot fit what is left now (which only fell since)


def test_the_last_cent_is_reachable_when_the_requests_slice_is_empty(world, monkeypatch):
    ledger = _ledger(world)
    picks = iter(range(10_000))
    monkeypatch.setattr(ledger_module.random, "random", lambda: (next(picks) % (SHARDS - 1) + 0.5) / SHARDS)  # never slice 8
    for _ in range(12):
        res = ledger.reserve(_plan("last", Decimal("0.03"), window=False))
        _settle(ledger, res, Decimal("0.02"))
    items = _items(world, "last")
    assert not any(i["pk"] == escrow.slice_pk(user_pk("last"), SHARDS) for i in items)  # slice 8 is empty
    left = sum((Decimal(i.get("remainingUsd", 0)) for i in items), Decimal(0))
    assert left == LIMIT - 12 * Decimal("0.02")
    assert max(Decimal(i.get("remainingUsd", 0)) for i in items) < left  # no single item holds it all

    monkeypatch.setattr(ledger_module.random, "random", lambda: 0.99)  # slice 8, empty
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(_plan("last", left + Decimal("0.0000001"), window=False))
    assert refused.value.remaining == left  # refused with the level's total, not the slice's
    res = ledger.reserve(_plan("last", left, window=False))  # exactly the level's total: admitted
    _settle(ledger, res, left)
    items = _items(world, "last")
    assert sum((Decimal(i.get("spentUsd", 0)) for i in items), Decimal(0)) == LIMIT
    assert sum((Decimal(i.get("remainingUsd", 0)) for i in items), Decimal(0)) == 0
    assert all(Decimal(i.get("reservedUsd", 0)) == 0 for i in items)


def test_a_tail_no_single_item_holds_is_drained_into_the_pool_which_serves_it(world):
    from tollgate.store.dynamo import to_item

    table, level = world.env["TOLLGATE_BUDGETS_TABLE"], Level(USER_MONTH, user_pk("thin"), month_sk(NOW), LIMIT, FLOOR)
    cent = Decimal("0.01")  # $0.09 left of $0.50: a cent in the pool and in each of the 8 slices
    world.dynamodb.put_item(TableName=table, Item=to_item({
        "pk": level.pk, "sk": level.sk, "limitUsd": LIMIT, "remainingUsd": cent, "reservedUsd": Decimal(0),
        "spentUsd": LIMIT - 9 * cent, escrow.SHARDED: True, escrow.SHARDS: SHARDS, escrow.WARNED: True}))
    for k in range(1, SHARDS + 1):
        world.dynamodb.put_item(TableName=table, Item=to_item({
            "pk": escrow.slice_pk(level.pk, k), "sk": level.sk, "remainingUsd": cent}))
    ledger = _ledger(world)
    res = ledger.reserve(_plan("thin", Decimal("0.035"), window=False))  # fits the total, no single item
    assert res.key(0) == (level.pk, level.sk)  # reserved on the pool, which three slices gave all they held
    items = _items(world, "thin")
    assert items[0]["remainingUsd"] == Decimal("0.005") and items[0]["reservedUsd"] == Decimal("0.035")
    assert sorted(Decimal(i["remainingUsd"]) for i in items[1:]) == [0, 0, 0] + [cent] * 5
    _settle(ledger, res, Decimal("0.03"))
    items = _items(world, "thin")
    assert sum(Decimal(i["remainingUsd"]) for i in items) == Decimal("0.06")  # 0.09 - 0.03 spent
    assert all(Decimal(i.get("reservedUsd", 0)) == 0 for i in items)


def test_a_quiet_key_stays_on_its_one_item(world):
    ledger = Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], boto3.client("dynamodb"))
    for _ in range(3):
        res = ledger.reserve(_plan("quiet", Decimal("0.01")))
        assert not res.slices and res.budget_remaining  # one item, exact values
        _settle(ledger, res, Decimal("0.005"))
    [pool] = _items(world, "quiet")
    assert pool["spentUsd"] == Decimal("0.015") and pool["remainingUsd"] == LIMIT - Decimal("0.015")


def test_a_lowered_limit_takes_back_what_the_slices_hold(world):
    from tollgate.store.limits import LimitsStore

    ledger = _ledger(world)
    for _ in range(4):
        _settle(ledger, ledger.reserve(_plan("lower", Decimal("0.01"), window=False)), Decimal("0.01"))
    assert sum(Decimal(i.get("remainingUsd", 0)) for i in _items(world, "lower")[1:]) > 0  # slices hold some
    LimitsStore(world.env["TOLLGATE_BUDGETS_TABLE"], world.dynamodb).set_counter_limit(
        user_pk("lower"), month_sk(NOW), Decimal("0.045"))
    items = _items(world, "lower")
    assert all(Decimal(i.get("remainingUsd", 0)) == 0 for i in items[1:])  # every slice emptied into the pool
    assert sum(Decimal(i.get("remainingUsd", 0)) for i in items) == Decimal("0.005")
    with pytest.raises(BudgetExceeded):
        ledger.reserve(_plan("lower", Decimal("0.006"), window=False))
    _settle(ledger, ledger.reserve(_plan("lower", Decimal("0.005"), window=False)), Decimal("0.005"))


class _Interleaving:
    """A DynamoDB client that, before each of the first `times` transactions moving a slice back into its
    pool (escrow.collect), runs `meanwhile(k)` with k that slice: a request landing between two of the
    limit change's calls, made deterministic (moto serialises every call)."""

    def __init__(self, client, meanwhile, times: int):
        self._client, self._meanwhile, self.left = client, meanwhile, times
        self.exceptions = client.exceptions

    def __getattr__(self, name):
        return getattr(self._client, name)

    def transact_write_items(self, **kw):
        first = kw["TransactItems"][0].get("Update", {})
        if self.left and first.get("UpdateExpression") == "SET remainingUsd = remainingUsd - :v":
            self.left -= 1
            self._meanwhile(int(from_item(first["Key"])["pk"].split("#")[1]))
        return self._client.transact_write_items(**kw)


def test_a_lowered_limit_is_not_overspent_by_slices_reserving_during_the_change(world, monkeypatch):
    from tollgate.store.limits import LimitsStore

    monkeypatch.setattr(escrow, "backoff", lambda attempt: None, raising=False)
    ledger, slice_k = _ledger(world), [1]
    monkeypatch.setattr(ledger_module.random, "random", lambda: (slice_k[0] - 0.5) / SHARDS)
    for k in (1, 2):  # slices 1 and 2 each borrow $0.05 from the pool and spend $0.01 of it
        slice_k[0] = k
        _settle(ledger, ledger.reserve(_plan("busy", Decimal("0.01"), window=False)), Decimal("0.01"))

    def spend_on(k: int) -> None:  # a request on the slice the change is about to empty
        slice_k[0] = k
        _settle(ledger, ledger.reserve(_plan("busy", Decimal("0.001"), window=False)), Decimal("0.001"))

    new_limit = Decimal("0.05")
    limits = LimitsStore(world.env["TOLLGATE_BUDGETS_TABLE"], _Interleaving(world.dynamodb, spend_on, times=6))
    limits.set_counter_limit(user_pk("busy"), month_sk(NOW), new_limit)
    assert all(Decimal(i.get("remainingUsd", 0)) <= 0 for i in _items(world, "busy")[1:])  # no slice kept value

    for n in range(40):  # spend what is left, on the slices that held value
        slice_k[0] = 1 + n % 2
        try:
            _settle(ledger, ledger.reserve(_plan("busy", Decimal("0.005"), window=False)), Decimal("0.005"))
        except BudgetExceeded:
            break
    items = _items(world, "busy")
    spent = sum((Decimal(i.get("spentUsd", 0)) for i in items), Decimal(0))
    remaining = sum((Decimal(i.get("remainingUsd", 0)) for i in items), Decimal(0))
    assert spent <= new_limit
    assert spent + remaining == new_limit  # value only moved between the items
    assert spent == sum((Decimal(u["costUsd"]) for u in _usage(world, "busy")), Decimal(0))


def test_a_lowered_limit_is_refused_with_409_while_the_slices_keep_borrowing(world, monkeypatch):
    from tollgate.store.limits import LimitsStore

    monkeypatch.setattr(escrow, "backoff", lambda attempt: None, raising=False)
    ledger, slice_k = _ledger(world), [1]
    monkeypatch.setattr(ledger_module.random, "random", lambda: (slice_k[0] - 0.5) / SHARDS)
    _settle(ledger, ledger.reserve(_plan("busier", Decimal("0.01"), window=False)), Decimal("0.01"))

    def spend_on(k: int) -> None:
        slice_k[0] = k
        _settle(ledger, ledger.reserve(_plan("busier", Decimal("0.0001"), window=False)), Decimal("0.0001"))

    limits = LimitsStore(world.env["TOLLGATE_BUDGETS_TABLE"], _Interleaving(world.dynamodb, spend_on, times=10_000))
    with pytest.raises(Conflict) as refused:
        limits.set_counter_limit(user_pk("busier"), month_sk(NOW), Decimal("0.05"))
    assert refused.value.status == 409 and "still hold $" in str(refused.value)
    items = _items(world, "busier")
    assert items[0]["limitUsd"] == LIMIT  # the limit is unchanged
    assert sum(Decimal(i.get(a, 0)) for i in items for a in ("spentUsd", "remainingUsd")) == LIMIT


class _CancelOnce:
    """A DynamoDB client whose first transaction is cancelled with TransactionConflict on item `at` only."""

    def __init__(self, client, at: int):
        self._client, self._at, self.done = client, at, False
        self.exceptions = client.exceptions

    def __getattr__(self, name):
        return getattr(self._client, name)

    def transact_write_items(self, **kw):
        if not self.done:
            self.done = True
            reasons = [{"Code": "None"}] * len(kw["TransactItems"])
            reasons[self._at] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            raise self._client.exceptions.TransactionCanceledException(
                {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                 "CancellationReasons": reasons}, "TransactWriteItems")
        return self._client.transact_write_items(**kw)


def test_a_conflict_spreads_only_the_counter_that_met_it(world):
    ledger = Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"],
                    _CancelOnce(boto3.client("dynamodb"), at=1))  # item 1: the rate window
    plan = _plan("windowy", Decimal("0.01"))
    res = ledger.reserve(plan)
    assert set(res.slices) == {1}  # the window went to a slice; the budget level stayed on its item
    assert ledger._shards.get(ledger_module._scope(plan, 0)) == 1
    assert ledger._shards.get(ledger_module._scope(plan, 1)) == escrow.FIRST_SHARDS
    _settle(ledger, res, Decimal("0.01"))


def test_a_conflict_on_an_item_that_is_no_counter_spreads_nothing(world):
    ledger = Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"],
                    _CancelOnce(boto3.client("dynamodb"), at=1))  # item 1: the reservation item
    plan = _plan("elsewhere", Decimal("0.01"), window=False)
    res = ledger.reserve(plan)
    assert not res.slices and ledger._shards.get(ledger_module._scope(plan, 0)) == 1
    _settle(ledger, res, Decimal("0.01"))


def test_a_pool_no_slice_borrowed_from_for_the_memory_window_returns_to_one_item(world, monkeypatch):
    ledger = _ledger(world)
    for _ in range(3):
        _settle(ledger, ledger.reserve(_plan("cooled", Decimal("0.01"), window=False)), Decimal("0.01"))
    assert _items(world, "cooled")[0].get(escrow.SHARDED)
    later = int(time.time()) + escrow.SHARD_MEMORY_S + 1
    monkeypatch.setattr(escrow, "now", lambda: later, raising=False)

    cold = Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], boto3.client("dynamodb"))
    res = cold.reserve(_plan("cooled", Decimal("0.01"), window=False))
    assert not res.slices  # held on the pool itself
    _settle(cold, res, Decimal("0.01"))
    items = _items(world, "cooled")
    assert not items[0].get(escrow.SHARDED) and all(Decimal(i.get("remainingUsd", 0)) == 0 for i in items[1:])
    assert items[0]["remainingUsd"] == LIMIT - 4 * Decimal("0.01")
    again = Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], boto3.client("dynamodb"))
    res = again.reserve(_plan("cooled", Decimal("0.01"), window=False))
    assert not res.slices and res.budget_remaining  # exact values again, as any quiet key


def test_a_raised_limit_clears_the_warned_mark_so_the_new_limit_warns_in_its_turn(world, monkeypatch):
    from tollgate.store.limits import LimitsStore

    ledger = _ledger(world)
    for _ in range(20):
        _settle(ledger, ledger.reserve(_plan("raised", Decimal("0.03"), window=False)), Decimal("0.03"))
        if _items(world, "raised")[0].get(escrow.WARNED):
            break
    assert _items(world, "raised")[0].get(escrow.WARNED)  # inside the $0.50 limit's warning zone
    LimitsStore(world.env["TOLLGATE_BUDGETS_TABLE"], world.dynamodb).set_counter_limit(
        user_pk("raised"), month_sk(NOW), Decimal("1.00"))
    assert not _items(world, "raised")[0].get(escrow.WARNED)

    new = Level(USER_MONTH, user_pk("raised"), month_sk(NOW), Decimal("1.00"), Decimal("0.20"))
    held = escrow.read_counter(world.dynamodb, world.env["TOLLGATE_BUDGETS_TABLE"], new.pk, new.sk).slices
    poorest = min(range(1, SHARDS + 1), key=lambda k: Decimal(held.get(k, {}).get("remainingUsd", 0)))
    monkeypatch.setattr(ledger_module.random, "random", lambda: (poorest - 0.5) / SHARDS)
    cost = Decimal(held.get(poorest, {}).get("remainingUsd", 0)) + Decimal("0.01")  # more than the slice holds
    plan = replace(_plan("raised", cost, window=False), levels=(new,))
    res = ledger.reserve(plan)  # the same container, which saw the counter warned: borrows as it now is
    assert USER_MONTH in res.clear_of_warning  # an unwarned pool lent: clear of the new limit's warning zone
    _settle(ledger, res, cost)


def test_a_tail_spread_over_more_slices_than_one_transaction_takes_is_drained_first(world):
    """Three budget levels and the rate window, each spread thin over all MAX_SHARDS slices: draining them
    into their pools in the reservation itself would take 4 x 33 items, past DynamoDB's 100 per
    TransactWriteItems (moto refuses it as DynamoDB does). The slices are drained first, on their own."""
    from tollgate.store.counters import KEY_HOUR, KEY_MONTH, hour_sk, principal_pk
    from tollgate.store.dynamo import to_item

    table, shards, cent = world.env["TOLLGATE_BUDGETS_TABLE"], escrow.MAX_SHARDS, Decimal("0.01")
    pid = "key-wide"
    levels = (Level(KEY_MONTH, principal_pk(pid), month_sk(NOW), LIMIT, FLOOR),
              Level(USER_MONTH, user_pk("wide"), month_sk(NOW), LIMIT, FLOOR),
              Level(KEY_HOUR, principal_pk(pid), hour_sk(NOW), LIMIT, FLOOR))
    for lvl in levels:  # nothing in the pool, a cent in each slice: $0.32 left
        world.dynamodb.put_item(TableName=table, Item=to_item({
            "pk": lvl.pk, "sk": lvl.sk, "limitUsd": LIMIT, "remainingUsd": Decimal(0), "reservedUsd": Decimal(0),
            "spentUsd": LIMIT - shards * cent, escrow.SHARDED: True, escrow.SHARDS: shards, escrow.WARNED: True}))
        for k in range(1, shards + 1):
            world.dynamodb.put_item(TableName=table, Item=to_item({
                "pk": escrow.slice_pk(lvl.pk, k), "sk": lvl.sk, "remainingUsd": cent}))
    window = Window(f"RATE#{pid}", "MIN#2026-11-27T14:30", 1000, 1000, 55, 1_900_000_000)
    world.dynamodb.put_item(TableName=table, Item=to_item({  # 32 requests and 128 tokens left, 4 per slice
        "pk": window.pk, "sk": window.sk, "remainingRequests": 0, "remainingTokens": 0, escrow.SHARDED: True,
        escrow.SHARDS: shards}))
    for k in range(1, shards + 1):
        world.dynamodb.put_item(TableName=table, Item=to_item({
            "pk": escrow.slice_pk(window.pk, k), "sk": window.sk, "remainingRequests": 1, "remainingTokens": 4}))
    rid = str(uuid.uuid4())
    cost = Decimal("0.315")  # fits each level's total, needs every one of its slices
    plan = Plan(request_id=rid, user="wide", principal_id=pid, levels=levels, window=window, cost=cost,
                tokens=100, started_at=NOW, expires_at=NOW + timedelta(minutes=15), usage_sk=f"{NOW.isoformat()}#{rid}")
    ledger = _ledger(world, shards)
    res = ledger.reserve(plan)
    for i, lvl in enumerate(levels):
        assert res.key(i) == (lvl.pk, lvl.sk)  # served by its pool, which the slices were drained into
        snap = escrow.read_counter(world.dynamodb, table, lvl.pk, lvl.sk)
        assert snap.pool["reservedUsd"] == cost and snap.pool["remainingUsd"] == shards * cent - cost
        assert snap.held() == 0  # every slice emptied into the pool, none lost
    snap = escrow.read_counter(world.dynamodb, table, window.pk, window.sk)
    assert snap.pool["remainingRequests"] + sum(s["remainingRequests"] for s in snap.slices.values()) == shards - 1
    assert snap.pool["remainingTokens"] + sum(s["remainingTokens"] for s in snap.slices.values()) == 4 * shards - 100
    _settle(ledger, res, Decimal("0.3"))
    for lvl in levels:
        snap = escrow.read_counter(world.dynamodb, table, lvl.pk, lvl.sk)
        assert snap.sum("remainingUsd") == shards * cent - Decimal("0.3")
        assert snap.sum("reservedUsd") == 0 and snap.pool["spentUsd"] == LIMIT - shards * cent + Decimal("0.3")
