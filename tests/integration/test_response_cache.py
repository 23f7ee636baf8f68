"""The response cache through the ledger (issue 17 item 1): a hit is still a request for the rate limits and
the loop guard, spends nothing and leaves no reservation (usage = spend); a request without caching costs no
extra DynamoDB call; a failing settle is retried once without the stored replay and cache entry."""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.integration.concurrency import independent_gateway, principal
from tests.integration.test_budgets import _counter
from tollgate import budgets, response_cache
from tollgate.errors import LoopDetected, RateLimited
from tollgate.service import MeteredRequest
from tollgate.settings import Settings
from tollgate.store.dynamo import from_item
from tollgate.store.response_cache import ResponseCache

CHAT = "/v1/chat/completions"
FROZEN = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)
BODY = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "the same question"}]}


def _gateway(settings=None):
    settings = settings or Settings.from_env()
    gateway, provider = independent_gateway(settings, seed=17, clock=lambda: FROZEN)
    gateway.cache = ResponseCache(settings.budgets_table, gateway.ledger.client)
    return gateway, provider


def _ask(gateway, who, body=BODY, cache=None):
    return gateway.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, body, cache=cache))


def _calls(gateway):
    names: list[str] = []
    gateway.ledger.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: names.append(model.name))
    return names


def _items(world, table, user):
    return [from_item(i) for i in world.dynamodb.query(
        TableName=table, KeyConditionExpression="pk = :u", ExpressionAttributeValues={":u": {"S": user}})["Items"]]


def test_a_hit_spends_nothing_leaves_no_reservation_and_usage_equals_spend(world):
    gateway, provider = _gateway()
    who = replace(principal("cora", "sk-cachecora", key_monthly_usd=Decimal(5)), cache_ttl_s=600)
    miss, hit = _ask(gateway, who), _ask(gateway, who)
    assert provider.calls == 1 and hit.body == miss.body and hit.cost == 0 < miss.cost
    assert (miss.headers["x-tollgate-cache"], hit.headers["x-tollgate-cache"]) == ("miss", "hit")
    records = _items(world, world.env["TOLLGATE_USAGE_TABLE"], "cora")
    assert sorted((r.get("cached", False), r["costUsd"]) for r in records) == [(False, miss.cost), (True, 0)]
    key_month = _counter(world, budgets.principal_pk("sk-cachecora"), budgets.month_sk(FROZEN))
    assert key_month["reservedUsd"] == 0 and key_month["spentUsd"] == sum(r["costUsd"] for r in records)
    assert key_month["remainingUsd"] == Decimal(5) - miss.cost
    assert [r["status"] for r in records] == ["ok", "ok"]  # both settled: no reservation left pending
    assert not any("pendingShard" in r for r in records)


def test_a_hit_counts_against_the_rate_limit(world):
    gateway, provider = _gateway()
    who = replace(principal("rhea", "sk-cacherhea", rpm=3), cache_ttl_s=600)
    replies = [_ask(gateway, who) for _ in range(3)]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies] == ["2", "1", "0"]
    with pytest.raises(RateLimited):
        _ask(gateway, who)
    assert provider.calls == 1


def test_a_hit_counts_against_the_loop_guard(world):
    settings = replace(Settings.from_env(), loop_max_repeats=3)
    gateway, provider = _gateway(settings)
    who = replace(principal("lou", "sk-cachelou1"), cache_ttl_s=600)
    for _ in range(3):
        _ask(gateway, who)
    with pytest.raises(LoopDetected):
        _ask(gateway, who)
    assert provider.calls == 1


def test_a_miss_without_caching_adds_no_dynamodb_call_and_one_with_caching_adds_one_read(world):
    gateway, _ = _gateway()
    calls = _calls(gateway)
    _ask(gateway, principal("nell", "sk-cachenel1"), body={**BODY, "messages": [{"role": "user", "content": "a"}]})
    assert calls == ["TransactWriteItems", "TransactWriteItems"]  # reserve, settle
    calls.clear()
    _ask(gateway, principal("nell", "sk-cachenel1"), body={**BODY, "messages": [{"role": "user", "content": "b"}]},
         cache="ttl=60")
    assert calls == ["GetItem", "TransactWriteItems", "TransactWriteItems"]  # the answer is stored by the settle


def test_the_cache_is_scoped_to_the_user_and_no_store_bypasses_it(world):
    gateway, provider = _gateway()
    _ask(gateway, principal("ann", "sk-cacheann1"), cache="ttl=60")
    _ask(gateway, principal("bob", "sk-cachebob1"), cache="ttl=60")
    skipped = _ask(gateway, replace(principal("ann", "sk-cacheann1"), cache_ttl_s=60), cache=response_cache.NO_STORE)
    assert provider.calls == 3 and skipped.headers["x-tollgate-cache"] == "no-store"
    assert "x-tollgate-cache" not in _ask(gateway, principal("ann", "sk-cacheann1")).headers  # never asked for
    assert _ask(gateway, principal("ann", "sk-cacheann1"), cache="ttl=60").headers["x-tollgate-cache"] == "hit"


def test_a_requests_ttl_bounds_the_age_of_the_answer_it_accepts(world):
    """Like HTTP's max-age: an answer stored for 600 s is not served to a request asking ttl=1 three seconds
    later (nor to a user whose setting is 1 s), but still to one asking ttl=600."""
    settings = Settings.from_env()
    now = [FROZEN]
    gateway, provider = independent_gateway(settings, seed=18, clock=lambda: now[0])
    gateway.cache = ResponseCache(settings.budgets_table, gateway.ledger.client)
    who = principal("ada", "sk-cacheada1")
    assert _ask(gateway, who, cache="ttl=600").headers["x-tollgate-cache"] == "miss"
    now[0] = FROZEN + timedelta(seconds=3)
    assert _ask(gateway, who, cache="ttl=600").headers["x-tollgate-cache"] == "hit"
    assert _ask(gateway, who, cache="ttl=1").headers["x-tollgate-cache"] == "miss"
    assert provider.calls == 2
    other = {**BODY, "messages": [{"role": "user", "content": "another question"}]}
    _ask(gateway, who, body=other, cache="ttl=600")
    now[0] = FROZEN + timedelta(seconds=6)
    assert _ask(gateway, replace(who, cache_ttl_s=2), body=other).headers["x-tollgate-cache"] == "miss"
    assert provider.calls == 4


def test_an_answer_shortened_by_the_budget_is_not_stored(world):
    gateway, provider = _gateway()
    # 0.0004 USD covers the input and some hundreds of output tokens of gpt-4o-mini, not 20,000
    who = replace(principal("dora", "sk-cachedora", key_monthly_usd=Decimal("0.0004")), cache_ttl_s=600)
    long = {**BODY, "max_tokens": 20_000}
    first = _ask(gateway, who, body=long)
    assert "x-tollgate-max-tokens-lowered-from" in first.headers
    richer = replace(principal("dora", "sk-cachedor2", key_monthly_usd=Decimal(100)), cache_ttl_s=600)
    assert _ask(gateway, richer, body=long).headers["x-tollgate-cache"] == "miss"  # same user, other key
    assert provider.calls == 2


def test_a_failing_settle_is_retried_once_without_the_replay_and_cache_entry(world, monkeypatch):
    gateway, provider = _gateway()
    who = replace(principal("sam", "sk-cachesam1"), cache_ttl_s=600)
    settle, attempts = gateway.ledger.settle, []

    def fails_with_extras(res, item, cost, tokens, replay=None, extra=()):
        attempts.append((replay, extra))
        if replay is not None or extra:
            raise RuntimeError("item too large")
        return settle(res, item, cost, tokens, replay, extra)

    monkeypatch.setattr(gateway.ledger, "settle", fails_with_extras)
    reply = gateway.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, BODY, idempotency_key="k1"))
    assert reply.status == 200 and reply.cost > 0
    assert len(attempts) == 2 and attempts[0][1] and attempts[1] == (None, ())
    assert [r["costUsd"] for r in _items(world, world.env["TOLLGATE_USAGE_TABLE"], "sam")] == [reply.cost]
    _ask(gateway, who)
    assert provider.calls == 2  # nothing was stored


def test_the_user_setting_reaches_the_principal_through_the_authorizer_context(world):
    from tollgate import wiring

    wiring.admin().set_user_settings("tess", {"cache_ttl_s": 900})
    raw, _ = world.create_key("tess")
    who = world.principal(raw)
    assert who.cache_ttl_s == 900
    assert type(who).from_context(who.to_context()).cache_ttl_s == 900
    assert wiring.admin().user_settings("tess")["cache_ttl_s"] == 900


def test_a_keys_own_setting_wins_over_its_users_and_survives_rotation(world):
    from tollgate import wiring
    from tollgate.errors import InvalidRequest

    admin = wiring.admin()
    admin.set_user_settings("kim", {"cache_ttl_s": 900})
    off = admin.create_key({"user": "kim", "cache_ttl_s": 0})
    longer = admin.create_key({"user": "kim", "cache_ttl_s": 3600})
    inherits = admin.create_key({"user": "kim"})
    assert [world.principal(k["key"]).cache_ttl_s for k in (off, longer, inherits)] == [0, 3600, 900]
    rotated = admin.rotate_key(longer["key_id"], {})
    assert rotated["cache_ttl_s"] == 3600 and world.principal(rotated["key"]).cache_ttl_s == 3600
    for bad in (-1, True, "60", response_cache.MAX_TTL_S + 1):
        with pytest.raises(InvalidRequest, match="cache_ttl_s"):
            admin.create_key({"user": "kim", "cache_ttl_s": bad})
        with pytest.raises(InvalidRequest, match="cache_ttl_s"):
            admin.set_user_settings("kim", {"cache_ttl_s": bad})


def test_a_failing_cache_read_is_a_miss_and_the_request_is_served_and_metered(world):
    from botocore.exceptions import ClientError

    gateway, provider = _gateway()
    who = replace(principal("rita", "sk-cacherita"), cache_ttl_s=600)

    def throttled(**_):
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                          "GetItem")

    gateway.cache.client = type("Throttled", (), {"get_item": staticmethod(throttled)})()
    reply = _ask(gateway, who)
    assert reply.status == 200 and reply.cost > 0 and provider.calls == 1
    assert reply.headers["x-tollgate-cache"] == "miss"
    assert [r["costUsd"] for r in _items(world, world.env["TOLLGATE_USAGE_TABLE"], "rita")] == [reply.cost]
