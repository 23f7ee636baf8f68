"""A budget limit an operator changes applies to the next request, although API Gateway keeps serving the
authorizer's cached answer (the principal, with the limits it read) for up to 30 s: the principal below is
built once, before the change, and sent with every request, as that cache would."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import boto3
import pytest

from tests.integration.concurrency import principal
from tests.integration.world import body_of
from tollgate import budgets
from tollgate.errors import BudgetExceeded
from tollgate.settings import Settings
from tollgate.store import escrow
from tollgate.store.counters import KEY_MONTH
from tollgate.store.dynamo import from_item, to_item
from tollgate.store.ledger import Ledger, Plan
from tollgate.store.limits import LimitsStore

CHAT = "/v1/chat/completions"
TINY = Decimal("0.000001")
NOW = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)


def _chat(**extra):
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 100, **extra}


def _item(world, pk, sk):
    item = world.dynamodb.get_item(TableName=world.env["TOLLGATE_BUDGETS_TABLE"],
                                   Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
    return from_item(item) if item else None


def _admin(world):
    raw, _ = world.create_key(user="root", scopes=("admin",))
    return world.principal(raw)


def _key_with(world, level: str, limit: Decimal, user: str):
    """A key whose `level` (key_month, key_hour, user_month) has `limit`, the principal the authorizer made
    of it then, and that level's budget item (pk, sk) for this month or hour."""
    now = datetime.now(timezone.utc)
    if level == budgets.USER_MONTH:  # set before this month (no item for it yet)
        LimitsStore(world.env["TOLLGATE_BUDGETS_TABLE"], world.dynamodb).set_user_monthly_usd(user, limit)
        raw, record = world.create_key(user=user)
        return record, world.principal(raw), (budgets.user_pk(user), budgets.month_sk(now))
    field = "monthly_budget_usd" if level == budgets.KEY_MONTH else "hourly_budget_usd"
    raw, record = world.create_key(user=user, **{field: limit})
    sk = budgets.month_sk(now) if level == budgets.KEY_MONTH else budgets.hour_sk(now)
    return record, world.principal(raw), (budgets.principal_pk(record.key_id), sk)


def _set(world, level: str, record, limit: Decimal) -> None:
    """The operator's change (`tollgate budgets set`)."""
    body = ({"user": record.user_id, "monthly_usd": f"{limit:f}"} if level == budgets.USER_MONTH else
            {"key": record.key_id, ("monthly_usd" if level == budgets.KEY_MONTH else "hourly_usd"): f"{limit:f}"})
    assert world.call("PUT", "/admin/budgets", body, principal=_admin(world))["statusCode"] == 200


LEVELS = [budgets.KEY_MONTH, budgets.KEY_HOUR, budgets.USER_MONTH]


@pytest.mark.parametrize("level", LEVELS)
def test_a_raised_limit_admits_the_next_request_though_the_cached_principal_has_the_old_one(world, level):
    record, cached, (pk, sk) = _key_with(world, level, TINY, f"raise-{level}")
    refused = world.call("POST", CHAT, _chat(), principal=cached)
    assert refused["statusCode"] == 429 and "$0.000001 left of $0.000001" in body_of(refused)["error"]["message"]

    _set(world, level, record, Decimal("10"))
    resp = world.call("POST", CHAT, _chat(), principal=cached)
    assert resp["statusCode"] == 200, resp["body"]
    old = {budgets.KEY_MONTH: cached.limits.key_monthly_usd, budgets.KEY_HOUR: cached.limits.key_hourly_usd,
           budgets.USER_MONTH: cached.limits.user_monthly_usd}[level]
    assert old == TINY  # still the old limit, as API Gateway's cache would send it
    item = _item(world, pk, sk)
    assert item["limitUsd"] == Decimal("10") and item["spentUsd"] > 0
    assert item["remainingUsd"] == Decimal("10") - item["spentUsd"]
    assert len(world.fake.calls) == 1


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("used_before", [False, True], ids=["no-item-yet", "item-written"])
def test_a_lowered_limit_refuses_the_next_request_though_the_cached_principal_has_the_old_one(
        world, level, used_before):
    """Also before the period's item exists: the change writes it (set_counter_limit), so the reservation's
    if_not_exists(remainingUsd, :limit) never starts it from the cached, higher limit."""
    record, cached, (pk, sk) = _key_with(world, level, Decimal("10"), f"lower-{level}-{used_before}")
    if used_before:
        assert world.call("POST", CHAT, _chat(), principal=cached)["statusCode"] == 200
    assert (_item(world, pk, sk) is not None) == used_before
    _set(world, level, record, Decimal("0.0000001"))
    assert _item(world, pk, sk)["limitUsd"] == Decimal("0.0000001")
    calls = len(world.fake.calls)
    refused = world.call("POST", CHAT, _chat(), principal=cached)
    assert refused["statusCode"] == 429, refused["body"]
    assert body_of(refused)["error"]["code"] == "insufficient_quota"
    assert "of $0.0000001." in body_of(refused)["error"]["message"]
    assert len(world.fake.calls) == calls


# -- the ledger itself: the limit, warning floor and refusal a raised limit is judged by ------------------

def _ledger(world, shards=1) -> Ledger:
    return Ledger(world.env["TOLLGATE_BUDGETS_TABLE"], world.env["TOLLGATE_USAGE_TABLE"], boto3.client("dynamodb"),
                  shards=shards)


def _plan(settings: Settings, key_id: str, cost: Decimal) -> Plan:
    """A request's plan whose levels come from a principal with the old, cached key-month limit (TINY)."""
    rid = str(uuid.uuid4())
    levels = budgets.levels_for(principal(f"u-{key_id}", key_id, key_monthly_usd=TINY), NOW, settings)
    return Plan(request_id=rid, user=f"u-{key_id}", principal_id=key_id, levels=tuple(levels), window=None,
                cost=cost, tokens=100, started_at=NOW, expires_at=NOW + timedelta(minutes=15),
                usage_sk=f"{NOW.isoformat()}#{rid}")


def _raise(world, key_id: str, limit: Decimal) -> None:
    LimitsStore(world.env["TOLLGATE_BUDGETS_TABLE"], world.dynamodb).set_counter_limit(
        budgets.principal_pk(key_id), budgets.month_sk(NOW), limit)


def _settle(ledger: Ledger, res, actual: Decimal) -> None:
    plan = res.plan
    assert ledger.settle(res, {"pk": plan.user, "sk": plan.usage_sk, "requestId": plan.request_id, "costUsd": actual},
                         actual, 60)


def test_the_reservation_is_held_to_the_raised_limit_and_its_warning_floor(world):
    settings = Settings.from_env()
    _raise(world, "key-warn", Decimal("0.0001"))
    res = _ledger(world).reserve(_plan(settings, "key-warn", Decimal("0.00009")))
    [month] = [lvl for lvl in res.plan.levels if lvl.kind == KEY_MONTH]
    assert month.limit == Decimal("0.0001")
    assert month.warning_floor == Decimal("0.0001") * (1 - settings.warning_threshold)
    assert res.budget_remaining[KEY_MONTH] == Decimal("0.00001")
    assert [lvl.kind for lvl in res.near_limit(Decimal(0))] == [KEY_MONTH]  # $0.00001 left: warned, by $0.0001


def test_a_raised_limit_that_still_cannot_fit_names_itself_and_what_is_left_of_it(world):
    settings = Settings.from_env()
    ledger = _ledger(world)
    _raise(world, "key-short", Decimal("0.00005"))
    _settle(ledger, ledger.reserve(_plan(settings, "key-short", Decimal("0.00002"))), Decimal("0.00002"))
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(_plan(settings, "key-short", Decimal("0.0001")))
    assert refused.value.level.limit == Decimal("0.00005") and refused.value.remaining == Decimal("0.00003")
    assert "more than the $0.00003 left of $0.00005" in str(refused.value)


def test_a_raised_limit_applies_to_an_escrow_sharded_counter_and_its_refusal_counts_the_slices(world):
    settings = Settings.from_env()
    ledger = _ledger(world, shards=8)
    _raise(world, "key-hot", Decimal("0.01"))
    for _ in range(3):
        res = ledger.reserve(_plan(settings, "key-hot", Decimal("0.001")))
        assert res.slices  # held on a slice, by the raised limit
        _settle(ledger, res, Decimal("0.001"))

    table, pk, sk = world.env["TOLLGATE_BUDGETS_TABLE"], budgets.principal_pk("key-held"), budgets.month_sk(NOW)
    world.dynamodb.put_item(TableName=table, Item=to_item({  # $0.002 in the pool, $0.003 in three slices
        "pk": pk, "sk": sk, "limitUsd": Decimal("0.01"), "remainingUsd": Decimal("0.002"), "reservedUsd": Decimal(0),
        "spentUsd": Decimal("0.005"), escrow.SHARDED: True, escrow.SHARDS: 8}))
    for k in range(1, 4):
        world.dynamodb.put_item(TableName=table, Item=to_item({
            "pk": escrow.slice_pk(pk, k), "sk": sk, "remainingUsd": Decimal("0.001"), "reservedUsd": Decimal(0),
            "spentUsd": Decimal(0)}))
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(_plan(settings, "key-held", Decimal("0.02")))
    assert refused.value.level.limit == Decimal("0.01") and refused.value.remaining == Decimal("0.005")


@pytest.mark.parametrize("seconds_left, next_hour_written", [(10, True), (40, True), (50, False)])
def test_a_limit_lowered_just_before_the_hour_ends_holds_the_next_hour_too(world, seconds_left, next_hour_written):
    """A change within the authorizer's cache TTL of the hour's end is written on the next hour's item too:
    that hour's first requests may carry the old limit and would otherwise create its item from it."""
    from tollgate import wiring

    settings = Settings.from_env()
    hour_end = datetime(2026, 11, 27, 15, 0, 0, tzinfo=timezone.utc)
    before, after = hour_end - timedelta(seconds=seconds_left), hour_end + timedelta(seconds=5)
    raw, record = world.create_key(user=f"u-edge-{seconds_left}", hourly_budget_usd=Decimal("10"))
    admin = wiring.admin()
    admin.clock = lambda: before
    admin.set_budget({"key": record.key_id, "hourly_usd": "0.0001"})
    pk = budgets.principal_pk(record.key_id)
    assert _item(world, pk, budgets.hour_sk(before))["limitUsd"] == Decimal("0.0001")
    nxt = _item(world, pk, budgets.hour_sk(after))
    assert (nxt is not None) is next_hour_written
    if nxt is not None:  # an hour's item expires, as the ledger's do, even if no request of that hour comes
        assert nxt["ttl"] == budgets.hour_expiry(before + timedelta(seconds=45))  # TTL + margin past the change
    if not next_hour_written:
        return  # 50 s left: every principal cached before the change has expired by the next hour
    cached = principal(record.user_id, record.key_id, key_hourly_usd=Decimal("10"))  # as read before the change
    rid = str(uuid.uuid4())
    plan = Plan(request_id=rid, user=record.user_id, principal_id=record.key_id,
                levels=tuple(budgets.levels_for(cached, after, settings)), window=None, cost=Decimal("0.001"),
                tokens=100, started_at=after, expires_at=after + timedelta(minutes=15),
                usage_sk=f"{after.isoformat()}#{rid}")
    with pytest.raises(BudgetExceeded):
        _ledger(world).reserve(plan)
