"""The reservation is the request's usage record, `pending` until settled (tollgate.store.ledger): a settle
and the sweeper's release of the same record race safely, and readers see final records only."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import boto3
import pytest

from tests.integration.concurrency import run_containers
from tollgate.store.counters import KEY_MONTH, USER_MONTH, Level, Window, month_sk, principal_pk, user_pk
from tollgate.store.dynamo import from_item
from tollgate.store.ledger import Ledger, Plan
from tollgate.store.usage import PENDING, RELEASED, UsageStore

LIMIT = Decimal("1.00")
WORST = Decimal("0.10")
ACTUAL = Decimal("0.03")
STARTED = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)
AFTER_EXPIRY = STARTED + timedelta(hours=1)


def _ledger(world) -> Ledger:
    return Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], boto3.client("dynamodb"))


def _levels(user: str) -> tuple[Level, ...]:
    return (Level(KEY_MONTH, principal_pk(f"key-{user}"), month_sk(STARTED), LIMIT, Decimal("0.2")),
            Level(USER_MONTH, user_pk(user), month_sk(STARTED), LIMIT, Decimal("0.2")))


def _plan(user: str, started: datetime = STARTED, idempotency_pk: str | None = None) -> Plan:
    rid = str(uuid.uuid4())
    return Plan(request_id=rid, user=user, principal_id=f"key-{user}", levels=_levels(user),
                window=Window(f"RATE#key-{user}", "MIN#2026-11-27T14:30", 100, 100_000, 55, 1_900_000_000),
                cost=WORST, tokens=500, started_at=started, expires_at=started + timedelta(minutes=15),
                usage_sk=f"{started.isoformat()}#{rid}", idempotency_pk=idempotency_pk)


def _usage(plan: Plan, status: str = "ok") -> dict:
    return {"pk": plan.user, "sk": plan.usage_sk, "requestId": plan.request_id, "status": status,
            "costUsd": ACTUAL, "totalTokens": 120}


def _records(world, user: str) -> list[dict]:
    return [from_item(i) for i in world.dynamodb.query(
        TableName=world.env["TOLLGATE_USAGE_TABLE"], KeyConditionExpression="pk = :u",
        ExpressionAttributeValues={":u": {"S": user}}, ConsistentRead=True)["Items"]]


def _level(world, lvl: Level) -> dict:
    return from_item(world.dynamodb.get_item(TableName=world.env["TOLLGATE_BUDGETS_TABLE"], ConsistentRead=True,
                                             Key={"pk": {"S": lvl.pk}, "sk": {"S": lvl.sk}})["Item"])


def _assert_charged_once(world, plan: Plan) -> None:
    """The request is metered exactly once, at its actual cost, and nothing stays reserved."""
    [record] = _records(world, plan.user)
    assert record["status"] == "ok" and record["costUsd"] == ACTUAL
    assert not {"pendingShard", "expiresAt", "levels", "reservedUsd"} & set(record)  # out of the sweeper's index
    for lvl in plan.levels:
        item = _level(world, lvl)
        assert (item["reservedUsd"], item["spentUsd"], item["remainingUsd"]) == (0, ACTUAL, LIMIT - ACTUAL)


def test_the_reservation_is_a_pending_usage_record_that_the_settle_makes_final(world):
    ledger = _ledger(world)
    plan = _plan("pia")
    res = ledger.reserve(plan)
    [pending] = _records(world, "pia")
    assert pending["status"] == PENDING and pending["reservedUsd"] == WORST and pending["pendingShard"]
    assert [lvl["pk"] for lvl in pending["levels"]] == [lvl.pk for lvl in plan.levels]
    assert pending["ttl"] >= int(STARTED.timestamp()) + 395 * 86_400  # kept as long as any usage record
    assert ledger.settle(res, _usage(plan), ACTUAL, 120)
    _assert_charged_once(world, plan)
    assert ledger.settle(res, _usage(plan), ACTUAL, 120) is False  # exactly once
    assert ledger.expired_reservations(AFTER_EXPIRY) == []


def test_a_settle_after_the_sweepers_release_charges_the_actual_cost_once(world):
    ledger = _ledger(world)
    plan = _plan("rue")
    res = ledger.reserve(plan)
    [expired] = ledger.expired_reservations(AFTER_EXPIRY)
    assert ledger.release(expired)
    assert [r["status"] for r in _records(world, "rue")] == [RELEASED]
    for lvl in plan.levels:
        assert _level(world, lvl)["reservedUsd"] == 0 and _level(world, lvl)["remainingUsd"] == LIMIT
    assert ledger.release(expired) is False  # released once
    assert ledger.settle(res, _usage(plan), ACTUAL, 120)  # the late settle: the provider was paid
    _assert_charged_once(world, plan)
    assert ledger.settle(res, _usage(plan), ACTUAL, 120) is False
    assert ledger.release(expired) is False and ledger.expired_reservations(AFTER_EXPIRY) == []



def test_a_late_settle_lands_through_as_much_contention_as_a_settle(world, monkeypatch):
    """A settle after the release is the only record of a paid provider call: like the settle, it is retried
    through transaction conflicts (_SETTLE_RETRIES), not given up after _CONFLICT_RETRIES as if settled before."""
    from tollgate.store import escrow

    monkeypatch.setattr(escrow, "backoff", lambda attempt: None)
    ledger = _ledger(world)
    plan = _plan("rhea")
    res = ledger.reserve(plan)
    [expired] = ledger.expired_reservations(AFTER_EXPIRY)
    assert ledger.release(expired)
    real, conflicts = ledger.client.transact_write_items, [6]

    def busy(**kwargs):
        if conflicts[0] and ":was" in str(kwargs) and RELEASED in str(kwargs["TransactItems"][0]):
            conflicts[0] -= 1  # the late settle's levels are hot (other containers' transactions hold them)
            raise ledger.client.exceptions.TransactionCanceledException(
                {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                 "CancellationReasons": [{"Code": "TransactionConflict"}] * len(kwargs["TransactItems"])},
                "TransactWriteItems")
        return real(**kwargs)

    monkeypatch.setattr(ledger.client, "transact_write_items", busy)
    assert ledger.settle(res, _usage(plan), ACTUAL, 120)
    _assert_charged_once(world, plan)

def test_the_sweeper_cannot_release_a_settled_record(world):
    ledger = _ledger(world)
    plan = _plan("sal")
    res = ledger.reserve(plan)
    [expired] = ledger.expired_reservations(AFTER_EXPIRY)
    assert ledger.settle(res, _usage(plan), ACTUAL, 120)
    assert ledger.release(expired) is False  # the settle won: nothing is given back twice
    _assert_charged_once(world, plan)


@pytest.mark.parametrize("rounds", [6])
def test_a_settle_racing_the_release_of_the_same_record_wins_or_loses_whole(world, rounds):
    """Settle and release at once, from two containers: exactly one of them takes the pending record, and
    whichever it is, the request is charged its actual cost once and nothing stays reserved."""
    for n in range(rounds):
        ledger, sweeper = _ledger(world), _ledger(world)
        plan = _plan(f"race{n}", idempotency_pk=f"IDEM#key-race{n}#k")
        res = ledger.reserve(plan)
        [expired] = sweeper.expired_reservations(AFTER_EXPIRY)
        start = threading.Barrier(2)
        outcome: dict[str, bool] = {}

        def container(i: int) -> None:
            start.wait()
            if i == 0:
                outcome["settled"] = ledger.settle(res, _usage(plan), ACTUAL, 120)
            else:
                outcome["released"] = sweeper.release(expired)

        run_containers(container, 2)
        assert outcome["settled"]  # settled either way: pending → final, or released → final (late)
        _assert_charged_once(world, plan)
        assert ledger.settle(res, _usage(plan), ACTUAL, 120) is False and sweeper.release(expired) is False


def test_usage_readers_skip_pending_and_released_records(world):
    ledger = _ledger(world)
    settled, pending, released = _plan("uma"), _plan("uma"), _plan("uma")
    assert ledger.settle(ledger.reserve(settled), _usage(settled), ACTUAL, 120)
    ledger.reserve(pending)
    ledger.reserve(released)
    assert ledger.release(next(r for r in ledger.expired_reservations(AFTER_EXPIRY)
                               if r["requestId"] == released.request_id))
    assert sorted(r["status"] for r in _records(world, "uma")) == ["ok", PENDING, RELEASED]
    store = UsageStore(world.env["TOLLGATE_USAGE_TABLE"], world.dynamodb)
    assert [r["requestId"] for r in store.for_user("uma", "2026-11-01", "2026-11-30")] == [settled.request_id]
    assert [r["requestId"] for r in store.for_user("uma", "2026-11-01", "2026-11-30", limit=1)] == [settled.request_id]
    assert [r["requestId"] for r in store.for_period("2026-11")] == [settled.request_id]
    assert [r["requestId"] for r in store.for_period("2026-11-27")] == [settled.request_id]
