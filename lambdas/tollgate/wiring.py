"""The composition root: builds each collaborator once per container, from settings.

Handlers ask here; tests build the classes directly with their own collaborators.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from tollgate.settings import settings


@lru_cache(maxsize=1)
def dynamodb() -> Any:
    from tollgate.store.dynamo import client

    return client()


@lru_cache(maxsize=1)
def key_store() -> Any:
    from tollgate.store.api_keys import ApiKeyStore

    return ApiKeyStore(settings().api_keys_table, dynamodb())


@lru_cache(maxsize=1)
def limits_store() -> Any:
    from tollgate.store.limits import LimitsStore

    return LimitsStore(settings().budgets_table, dynamodb())


@lru_cache(maxsize=1)
def usage_store() -> Any:
    from tollgate.store.usage import UsageStore

    return UsageStore(settings().usage_table, dynamodb())


@lru_cache(maxsize=1)
def ledger() -> Any:
    from tollgate.store.ledger import Ledger

    s = settings()
    return Ledger(s.budgets_table, s.usage_table, dynamodb())


@lru_cache(maxsize=1)
def catalogue() -> Any:
    from tollgate.pricing import Catalogue

    return Catalogue.load(settings().price_overrides)


@lru_cache(maxsize=1)
def providers() -> Any:
    from tollgate.providers.registry import providers as registry

    return registry(settings())


def user_context(user: str) -> dict[str, Any]:
    """What the authorizer adds about a user: their monthly limit and which providers they bring keys for."""
    limits = limits_store().user_limits(user)
    return {"user_monthly_usd": limits.get("monthlyUsd"), "byok_budget_exempt": bool(limits.get("byokBudgetExempt")),
            "log_prompts": bool(limits.get("logPrompts")), "cache_ttl_s": int(limits.get("cacheTtlS") or 0),
            "byok": provider_key_store().providers_of(user)}


_USER_CONTEXT_TTL_S = 30.0  # as long as the authorizer's answers are cached
_user_contexts: dict[str, tuple[float, dict[str, Any]]] = {}


def with_user_context(principal: Any) -> Any:
    """The principal with its user's settings, for callers no authorizer saw (IAM services acting for a
    user): the user's monthly limit, BYOK providers and exemption, cached per container for 30 s."""
    import time

    hit = _user_contexts.get(principal.user)
    if not hit or time.monotonic() > hit[0]:
        hit = (time.monotonic() + _USER_CONTEXT_TTL_S, user_context(principal.user))
        _user_contexts[principal.user] = hit
    return principal.with_user_settings(hit[1])


@lru_cache(maxsize=1)
def provider_key_store() -> Any:
    from tollgate.store.provider_keys import ProviderKeyStore

    return ProviderKeyStore(settings().provider_keys_table, dynamodb())


@lru_cache(maxsize=1)
def byok() -> Any:
    import boto3

    from tollgate.byok import ByokService

    return ByokService(provider_key_store(), boto3.client("kms"), settings().byok_kms_key_id, providers())


def jwt_secrets() -> Any:
    from tollgate.auth import jwt_secrets as secrets

    arn = settings().jwt_secret_arn
    if not arn:
        from tollgate.errors import AuthenticationFailed

        raise AuthenticationFailed("Service tokens are not configured.", code="invalid_token")
    return secrets.cached(arn)


@lru_cache(maxsize=1)
def authenticator() -> Any:
    from tollgate.auth import jwt_tokens
    from tollgate.auth.authenticate import Authenticator
    from tollgate.clock import utc_now

    return Authenticator(key_store(), user_context, jwt_verifier=jwt_tokens.verifier(jwt_secrets, utc_now))


def provider_key(principal: Any, provider: str) -> tuple[str, bool]:
    """(api key, byok?): the user's own key for this provider when they brought one, else the platform's."""
    if provider in principal.byok_providers:
        return byok().key_for(principal.user, provider), True
    from tollgate.platform_keys import platform_key

    return platform_key(provider, settings()), False


@lru_cache(maxsize=1)
def alerts() -> Any:
    import boto3

    from tollgate.alerts import Alerts

    s = settings()
    return Alerts(s.alert_topic_arn, s.budgets_table, dynamodb(), boto3.client("sns"), s.budget_alert_interval_s)


@lru_cache(maxsize=1)
def gateway() -> Any:
    from tollgate.observability import metrics
    from tollgate.service import MeteredGateway
    from tollgate.store.response_cache import ResponseCache

    return MeteredGateway(settings(), catalogue(), ledger(), providers(), provider_key, metrics=metrics,
                          alerts=alerts(), cache=ResponseCache(settings().budgets_table, dynamodb()))


@lru_cache(maxsize=1)
def admin() -> Any:
    from tollgate.admin import Admin
    from tollgate.store.daily_totals import DailyTotals
    from tollgate.store.loops import LoopStore

    return Admin(settings(), key_store(), limits_store(), usage_store(),
                 loops=LoopStore(settings().budgets_table, dynamodb()),
                 daily=DailyTotals(settings().budgets_table, dynamodb()))


@lru_cache(maxsize=1)
def runs() -> Any:
    import boto3

    from tollgate.runs import Runs, SqsRunQueue
    from tollgate.store.runs import RunStore

    s = settings()
    return Runs(s, RunStore(s.runs_table, s.budgets_table, dynamodb()), SqsRunQueue(s.runs_queue_url, boto3.client("sqs")),
                catalogue())


def reset() -> None:
    """Forget every built collaborator (tests change the environment between cases)."""
    from tollgate import settings as settings_module
    from tollgate.store import dynamo

    from tollgate.auth import iam
    from tollgate.auth import jwt_secrets as secrets

    iam._mapping.cache_clear()
    _user_contexts.clear()
    secrets._memo.clear()
    secrets._PROVIDER = None
    for fn in (dynamodb, key_store, limits_store, usage_store, ledger, catalogue, providers, authenticator, alerts,
               gateway, admin, byok, provider_key_store,
               runs):
        fn.cache_clear()
    settings_module.settings.cache_clear()
    dynamo.client.cache_clear()


@lru_cache(maxsize=1)
def stored_responses() -> Any:
    from tollgate.responses import StoredResponses
    from tollgate.store.responses import ResponseOwners

    return StoredResponses(ResponseOwners(settings().budgets_table, dynamodb()), providers()["openai"], provider_key)


@lru_cache(maxsize=1)
def count_tokens() -> Any:
    from tollgate.anthropic_api import CountTokens
    from tollgate.store.windows import RequestWindows

    return CountTokens(settings(), catalogue(), RequestWindows(settings().budgets_table, dynamodb()),
                       providers()["anthropic"], provider_key)
