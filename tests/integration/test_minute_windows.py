"""A key's requests- and tokens-per-minute window lives on its key-hour budget item, as attributes named
by the minute (tollgate.store.counters.minute_window): one item, one Update, for the hourly cap and the
window, on a single item and when the key is held in escrow slices."""
from __future__ import annotations

import random
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import boto3
import pytest

from tests.integration.concurrency import run_containers
from tollgate.errors import BudgetExceeded, RateLimited
from tollgate.store import escrow
from tollgate.store.counters import KEY_HOUR, Level, hour_sk, minute_attrs, minute_window, principal_pk
from tollgate.store.dynamo import from_item
from tollgate.store.ledger import Ledger, Plan

HOUR = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)
EXPIRES = 1_900_000_000


def _ledger(world, shards: int | None = None) -> Ledger:
    return Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], boto3.client("dynamodb"),
                  shards=shards)


def _plan(key: str, now: datetime, cost: Decimal, limit: Decimal, rpm: int, tpm: int, tokens: int = 100) -> Plan:
    rid = str(uuid.uuid4())
    level = Level(KEY_HOUR, principal_pk(key), hour_sk(now), limit, limit * Decimal("0.2"), EXPIRES)
    return Plan(request_id=rid, user=f"user-{key}", principal_id=key, levels=(level,),
                window=minute_window(key, now, rpm, tpm, 60 - now.second, EXPIRES), cost=cost, tokens=tokens,
                started_at=now, expires_at=now + timedelta(minutes=15), usage_sk=f"{now.isoformat()}#{rid}")


def _settle(ledger: Ledger, res, actual: Decimal, tokens: int) -> None:
    plan = res.plan
    assert ledger.settle(res, {"pk": plan.user, "sk": plan.usage_sk, "requestId": plan.request_id,
                               "status": "ok", "costUsd": actual}, actual, tokens)


def _hour_item(world, key: str) -> dict:
    return from_item(world.dynamodb.get_item(TableName=world.env["TOLLGATE_BUDGETS_TABLE"], ConsistentRead=True,
                                             Key={"pk": {"S": principal_pk(key)}, "sk": {"S": hour_sk(HOUR)}})["Item"])


def test_the_hourly_cap_and_the_minute_window_share_one_item_and_each_minute_starts_afresh(world):
    ledger = _ledger(world)
    calls: list[str] = []
    ledger.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    limit = Decimal("1.00")
    res = ledger.reserve(_plan("sk-minutes01", HOUR, Decimal("0.10"), limit, rpm=2, tpm=1000, tokens=300))
    assert (res.remaining_requests, res.remaining_tokens) == (1, 700)
    _settle(ledger, res, Decimal("0.04"), 120)
    assert calls == ["TransactWriteItems", "TransactWriteItems"]  # one item, one Update, each time
    requests, tokens = minute_attrs(30)
    item = _hour_item(world, "sk-minutes01")
    assert (item[requests], item[tokens]) == (1, 1000 - 120)  # the unused tokens given back
    assert (item["remainingUsd"], item["reservedUsd"], item["spentUsd"]) == (limit - Decimal("0.04"), 0, Decimal("0.04"))

    ledger.reserve(_plan("sk-minutes01", HOUR, Decimal("0.10"), limit, rpm=2, tpm=1000))
    with pytest.raises(RateLimited):  # 2 requests a minute
        ledger.reserve(_plan("sk-minutes01", HOUR, Decimal("0.10"), limit, rpm=2, tpm=1000))

    later = HOUR.replace(minute=33)
    res = ledger.reserve(_plan("sk-minutes01", later, Decimal("0.10"), limit, rpm=2, tpm=1000))
    assert res.remaining_requests == 1  # a new minute: a new window on the same item
    item = _hour_item(world, "sk-minutes01")
    assert requests not in item and tokens not in item  # the minutes before are removed as it is taken
    assert item[minute_attrs(33)[0]] == 1 and item["reservedUsd"] == Decimal("0.20")


@pytest.mark.parametrize("threads", [24])
def test_a_hot_key_on_8_slices_keeps_its_hourly_cap_and_window_on_shared_items(world, threads):
    """The escrow (tollgate.store.escrow) spreads the key-hour item over slices; the hourly cap and the window
    then take and borrow on the same slice items, in one Update each: the cap holds and nothing is lost."""
    limit, rpm, tpm = Decimal("0.30"), 1000, 1_000_000
    admitted: list[tuple[Decimal, int]] = []
    refused: list[Decimal] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def container(n: int) -> None:
        ledger, rng = _ledger(world, shards=8), random.Random(n)
        start.wait()
        for _ in range(2):
            cost = Decimal(rng.randint(500, 4000)) / Decimal(100_000)  # $0.005 to $0.04
            try:
                res = ledger.reserve(_plan("sk-hotminute", HOUR, cost, limit, rpm, tpm))
            except BudgetExceeded:
                with lock:
                    refused.append(cost)
                continue
            actual, tokens = (cost * Decimal(rng.randint(1, 100)) / 100).quantize(Decimal("0.0000001")), rng.randint(1, 100)
            _settle(ledger, res, actual, tokens)
            with lock:
                admitted.append((actual, tokens))

    run_containers(container, threads)

    snap = escrow.read_counter(world.dynamodb, world.env["TOLLGATE_BUDGETS_TABLE"], principal_pk("sk-hotminute"),
                               hour_sk(HOUR))
    items = [snap.pool or {}, *snap.slices.values()]
    assert snap.slices, "the key-hour item should have been spread over slices"
    spent = snap.sum("spentUsd")
    assert spent <= limit and refused, "the hourly cap should have run out, and held"
    assert spent == sum((a for a, _ in admitted), Decimal(0)) and spent + snap.sum("remainingUsd") == limit
    assert all(Decimal(i.get("reservedUsd", 0)) == 0 for i in items)
    requests, tokens = minute_attrs(HOUR.minute)
    assert rpm - snap.sum(requests) == len(admitted)  # one request taken per admitted request, none lost
    assert tpm - snap.sum(tokens) == sum(t for _, t in admitted)  # tokens settled to what was used


def test_an_hourly_cap_can_be_set_on_a_key_hour_item_that_so_far_holds_only_a_minute_window(world):
    """count_tokens takes a request from the window alone (tollgate.store.windows), so the key-hour item can
    exist without any budget attribute; an operator's hourly cap for that hour is still set at once."""
    from tollgate.store.limits import LimitsStore
    from tollgate.store.windows import RequestWindows

    table, client = world.env["TOLLGATE_BUDGETS_TABLE"], boto3.client("dynamodb")
    window = minute_window("sk-minutes03", HOUR, 5, 1000, 55, EXPIRES)
    assert RequestWindows(table, client).take_request(window) == 4
    LimitsStore(table, client).set_counter_limit(principal_pk("sk-minutes03"), hour_sk(HOUR), Decimal("2.50"))
    item = _hour_item(world, "sk-minutes03")
    assert (item["limitUsd"], item["remainingUsd"], item["reservedUsd"], item["spentUsd"]) == (
        Decimal("2.50"), Decimal("2.50"), 0, 0)
    assert item[window.requests_attr] == 4  # the window is kept
    ledger = _ledger(world)
    with pytest.raises(BudgetExceeded):  # the new cap holds
        ledger.reserve(_plan("sk-minutes03", HOUR, Decimal("2.60"), Decimal("9.00"), rpm=5, tpm=1000))


def test_a_settle_after_its_minute_ended_does_not_recreate_the_window_a_later_minute_removed(world, monkeypatch):
    """A long stream settles minutes after its window's minute: the next minutes' reservations have removed that
    minute's attributes from the key-hour item (counters.CLEARED_MINUTES), and its token refund must not write
    them back (each one left for the rest of the hour: the item outgrows the 1 KB write unit)."""
    now = [1000.0]
    monkeypatch.setattr(escrow, "clock", lambda: now[0])
    ledger = _ledger(world)
    limit = Decimal("5.00")
    stream = ledger.reserve(_plan("sk-minutes04", HOUR, Decimal("0.10"), limit, rpm=10, tpm=10_000, tokens=900))
    now[0] += 7 * 60
    later = HOUR + timedelta(minutes=1)  # the next minute's reservation removes minute 30's pair
    _settle(ledger, ledger.reserve(_plan("sk-minutes04", later, Decimal("0.10"), limit, rpm=10, tpm=10_000)),
            Decimal("0.01"), 10)
    _settle(ledger, stream, Decimal("0.04"), 100)  # the stream begun at 14:30 ends now
    item = _hour_item(world, "sk-minutes04")
    assert not set(minute_attrs(30)) & set(item)
    assert item["spentUsd"] == Decimal("0.05") and item["reservedUsd"] == 0  # the money is settled all the same
