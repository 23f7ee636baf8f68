"""Reconciliation against the fake provider's admin APIs (OpenAI Costs, Anthropic cost report), through
POST /admin/reconcile over emulated AWS: agreement is drift 0, a 5% over-bill crosses the alarm threshold,
a day without provider data is missing (never zero drift)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.integration.world import body_of
from tollgate import metric_names
from tollgate.clock import utc_now
from tollgate.schema import Env
from tollgate.store.daily_totals import DailyTotals

CHAT = "/v1/chat/completions"


@pytest.fixture
def reconciling(world, monkeypatch):
    """Admin keys for both providers, a recording metric emitter, and a day of traffic: alice and bob on
    OpenAI and Anthropic, carol with her own OpenAI key (BYOK: not on the platform's bill)."""
    from handlers import reconcile as handler

    monkeypatch.setenv(Env.OPENAI_ADMIN_KEY, "sk-admin-fake-openai")
    monkeypatch.setenv(Env.ANTHROPIC_ADMIN_KEY, "sk-ant-admin-fake")
    emitted: list[tuple[str, float, str]] = []
    monkeypatch.setattr(handler, "_emit", lambda name, unit, value, provider: emitted.append((name, value, provider)))
    handler.reconciler.cache_clear()
    world.fake.billing.reset()  # a fresh bill: the fake's account keeps what earlier tests were served
    world.fake.billing.org_keys = {world.env[Env.OPENAI_API_KEY], world.env[Env.ANTHROPIC_API_KEY]}
    for user, text in (("alice", "hello there"), ("bob", "a somewhat longer question about invoices")):
        p = world.principal(world.create_key(user)[0])
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 30}
        claude = {"model": "claude-haiku-4-5", "max_tokens": 30, "messages": [{"role": "user", "content": text}]}
        assert world.call("POST", CHAT, chat, principal=p)["statusCode"] == 200
        assert world.call("POST", "/v1/messages", claude, principal=p)["statusCode"] == 200
    carol, _ = world.create_key("carol", scopes=("ai:complete", "byok:manage"))
    assert world.call("PUT", "/v1/provider-keys/openai", {"api_key": "sk-carol-own-key-123456"},
                      principal=world.principal(carol))["statusCode"] == 200
    byok = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mine"}], "max_tokens": 30}
    assert world.call("POST", CHAT, byok, principal=world.principal(carol))["statusCode"] == 200
    admin = world.principal(world.create_key("root", scopes=("admin",))[0])
    yield admin, utc_now().date().isoformat(), emitted
    handler.reconciler.cache_clear()


def _run(world, admin, day):
    resp = world.call("POST", "/admin/reconcile", {"day": day}, principal=admin)
    assert resp["statusCode"] == 200, resp["body"]
    return {p["provider"]: p for p in body_of(resp)["providers"]}


def _daily(world, user, day):
    return DailyTotals(world.env["TOLLGATE_BUDGETS_TABLE"], world.dynamodb).for_user(user, day, day)


def test_exact_agreement_is_drift_zero_and_actuals_are_written_per_user(world, reconciling):
    admin, day, emitted = reconciling
    report = _run(world, admin, day)
    for provider in ("openai", "anthropic"):
        p = report[provider]
        assert p["status"] == "ok" and Decimal(p["drift_pct"]) == 0 and Decimal(p["drift_usd"]) == 0
        assert Decimal(p["actual_usd"]) == Decimal(p["estimated_usd"]) > 0
    assert sorted((n, v) for n, v, _ in emitted) == [(metric_names.RECONCILIATION_DRIFT_PCT, 0.0)] * 2
    for user in ("alice", "bob"):
        totals = _daily(world, user, day)
        assert len(totals) == 2 and all(Decimal(t["actualUsd"]) == Decimal(t["estimatedUsd"]) > 0 for t in totals)
    assert _daily(world, "carol", day) == []  # BYOK: billed to carol's own account, not reconciled here


def test_a_provider_billing_five_percent_more_crosses_the_alarm_threshold(world, reconciling):
    admin, day, emitted = reconciling
    world.fake.billing.scale = Decimal("1.05")
    report = _run(world, admin, day)
    for provider in ("openai", "anthropic"):
        assert report[provider]["status"] == "drift" and Decimal(report[provider]["drift_pct"]) == 5
    drift = [v for n, v, _ in emitted if n == metric_names.RECONCILIATION_DRIFT_PCT]
    assert drift == [5.0, 5.0] and all(v > metric_names.RECONCILIATION_DRIFT_ALARM_PCT for v in drift)
    alice = _daily(world, "alice", day)
    assert all(Decimal(t["actualUsd"]) == Decimal(t["estimatedUsd"]) * Decimal("1.05") for t in alice)


def test_a_day_without_provider_data_is_missing_not_zero_drift(world, reconciling):
    admin, day, emitted = reconciling
    world.fake.billing.withheld = {day}
    report = _run(world, admin, day)
    for provider in ("openai", "anthropic"):
        p = report[provider]
        assert p["status"] == "missing" and p["actual_usd"] is None and p["drift_pct"] is None
        assert Decimal(p["estimated_usd"]) > 0 and p["reason"]
    assert [n for n, _, _ in emitted] == [metric_names.RECONCILIATION_MISSING] * 2
    assert all("actualUsd" not in t for t in _daily(world, "alice", day))


def test_a_provider_without_an_admin_key_is_missing_as_not_configured(world, reconciling, monkeypatch):
    from handlers import reconcile as handler

    admin, day, _ = reconciling
    monkeypatch.delenv(Env.ANTHROPIC_ADMIN_KEY)
    handler.reconciler.cache_clear()
    report = _run(world, admin, day)
    assert report["anthropic"]["status"] == "missing" and report["anthropic"]["reason"] == "not configured"
    assert report["openai"]["status"] == "ok"


def test_a_bad_day_is_400(world, reconciling):
    admin, _, _ = reconciling
    resp = world.call("POST", "/admin/reconcile", {"day": "2026-02-30"}, principal=admin)
    assert resp["statusCode"] == 400 and body_of(resp)["error"]["param"] == "day"


def test_usage_shows_the_reconciled_figures_and_what_is_missing(world, reconciling):
    admin, day, _ = reconciling
    world.fake.billing.scale = Decimal("1.05")
    _run(world, admin, day)
    rec = body_of(world.call("GET", "/admin/usage", principal=admin, query={"user": "alice"}))["reconciliation"]
    assert len(rec["days"]) == 2 and rec["missing"] == 0
    assert Decimal(rec["actual_usd"]) == Decimal(rec["estimated_usd"]) * Decimal("1.05") > 0
    world.fake.billing.withheld = {day}
    _run(world, admin, day)
    rec = body_of(world.call("GET", "/admin/usage", principal=admin, query={"user": "alice"}))["reconciliation"]
    assert rec["missing"] == 2 and all(d["actual_usd"] is None for d in rec["days"]) and rec["actual_usd"] == "0"
