"""Operator actions behind the admin routes: keys, usage, budgets. Plain Python, no events."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from tollgate import budgets, metering, routes, scopes
from tollgate.auth import api_keys
from tollgate.clock import Clock, iso, parse_iso, utc_now
from tollgate.errors import Conflict, InvalidRequest, KeyRevoked
from tollgate.response_cache import MAX_TTL_S as MAX_CACHE_TTL_S
from tollgate.settings import Settings
from tollgate.store.api_keys import already_rotated
from tollgate.store.limits import month_of, summary
from tollgate.money import text as usd
from tollgate.plain_numbers import is_plain_integer

log = logging.getLogger(__name__)

# Seconds past the authorizer's cache TTL that a request admitted with a cached principal may still take to
# reach its reservation (a cold start, a slow read), covered by a budget change near a period's end.
_LIMIT_CHANGE_MARGIN_S = 15
_MAX_ROTATION_CHAIN = 1000  # keys followed through `rotated_to` (a guard: a chain is as long as its rotations)


def _money(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidRequest(f"'{name}' must be a decimal amount in USD.", param=name) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidRequest(f"'{name}' must be zero or more.", param=name)
    return amount


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return value


def _cache_ttl(value: Any) -> int | None:
    """A response cache TTL setting (tollgate.response_cache): seconds, 0 (off) to MAX_TTL_S, or None (unset)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CACHE_TTL_S):
        raise InvalidRequest(f"'cache_ttl_s' must be 0 to {MAX_CACHE_TTL_S} seconds.", param="cache_ttl_s")
    return value


MAX_USAGE_RECORDS = 10_000  # most usage records one GET /admin/usage returns


def _instant(text: str, name: str) -> datetime:
    """A query's day (YYYY-MM-DD) or ISO-8601 time, as a UTC datetime; InvalidRequest (400) otherwise."""
    try:
        if not text.isascii():
            raise ValueError
        return datetime.combine(date.fromisoformat(text), time(), timezone.utc) if len(text) == 10 else parse_iso(text)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a day (YYYY-MM-DD, e.g. 2026-01-31) or an ISO-8601 time "
                             "(e.g. 2026-01-31T12:00:00Z).", param=name) from None


def _query_int(text: str, name: str, most: int) -> int:
    """A query's whole number, 1 to `most`, in plain ASCII digits (tollgate.plain_numbers)."""
    if not is_plain_integer(text) or not 1 <= int(text) <= most:
        raise InvalidRequest(f"'{name}' must be a whole number from 1 to {most}, in plain digits.", param=name)
    return int(text)


class Admin:
    def __init__(self, settings: Settings, keys: Any, limits: Any, usage: Any, clock: Clock = utc_now,
                 loops: Any = None, daily: Any = None):
        self.settings = settings
        self.keys = keys
        self.limits = limits
        self.usage = usage
        self.clock = clock
        self.loops = loops  # store.loops.LoopStore
        self.daily = daily  # store.daily_totals.DailyTotals (the reconciliation's per-user daily totals)

    # -- keys ----------------------------------------------------------------------------------
    def create_key(self, body: dict[str, Any]) -> dict[str, Any]:
        user = body.get("user")
        if not isinstance(user, str) or not user.strip():
            raise InvalidRequest("'user' is required.", param="user")
        requested = body.get("scopes") or list(scopes.DEFAULT_KEY_SCOPES)
        if not isinstance(requested, list) or scopes.unknown(requested):
            raise InvalidRequest(f"Unknown scopes: {scopes.unknown(requested) if isinstance(requested, list) else requested}. "
                                 f"Known: {', '.join(scopes.ALL)}.", param="scopes")
        expires = body.get("expires_at")
        try:
            expires_at = parse_iso(expires) if expires else None
        except (TypeError, ValueError):
            raise InvalidRequest("'expires_at' must be an ISO-8601 time.", param="expires_at") from None
        raw, record = api_keys.issue(
            user.strip(), name=str(body.get("name") or "default"), scopes=tuple(requested), now=self.clock(),
            rounds=self.settings.bcrypt_rounds, expires_at=expires_at,
            rpm=_count(body.get("rpm"), "rpm"), tpm=_count(body.get("tpm"), "tpm"),
            monthly_budget_usd=_money(body.get("monthly_budget_usd"), "monthly_budget_usd"),
            hourly_budget_usd=_money(body.get("hourly_budget_usd"), "hourly_budget_usd"),
            cache_ttl_s=_cache_ttl(body.get("cache_ttl_s")))
        self.keys.put(record)
        return {"key": raw, **record.public()}

    def _record(self, key_id: str, param: str | None = None) -> api_keys.ApiKeyRecord:
        """The stored key `key_id`; NotFound (404) if none. An id not shaped like a key id is refused
        before any read, and never repeated: it may be the secret (api_keys.no_such_key)."""
        record = self.keys.get(key_id) if api_keys.is_key_id(key_id) else None
        if record is None:
            raise api_keys.no_such_key(key_id, param)
        return record

    def _rotation_chain(self, record: api_keys.ApiKeyRecord) -> list[str]:
        """The ids of the keys that share `record`'s budget items (budgets.principal_pk of its lineage): its
        rotation chain, from the first key through each `rotated_to`, `record` always among them (a key
        rotated before successors were recorded ends the walk early). One GetItem per key of the chain."""
        ids: list[str] = []
        key_id: str | None = record.lineage or record.key_id
        while key_id and key_id not in ids and len(ids) < _MAX_ROTATION_CHAIN:
            member = record if key_id == record.key_id else self.keys.get(key_id)
            if member is None:
                break
            ids.append(key_id)
            key_id = member.rotated_to
        return ids if record.key_id in ids else [*ids, record.key_id]

    def list_keys(self, user: str | None) -> dict[str, Any]:
        """Keys (one user's, or all), oldest first, as ApiKeyRecord.public shows them now (an active key
        past its expiry: `expired`)."""
        now = self.clock()
        records = self.keys.list_by_user(user) if user else self.keys.list_all()
        return {"keys": [r.public(now) for r in sorted(records, key=lambda r: r.created_at)]}

    def rotate_key(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new key for the same user, scopes, limits, budgets and own expiry; the old one works for
        `grace_s` more and records the new key's id (`rotated_to`). A key is rotated once: rotating it
        again is a Conflict (409, code `key_already_rotated`) naming its successor, so a successor never
        inherits a grace end as its expiry. KeyRevoked (409) for a revoked key, Conflict (409, code
        `key_expired`) for an expired one, NotFound (404) for no such key."""
        old = self._record(key_id)
        if old.status == api_keys.REVOKED:
            raise KeyRevoked(f"API key {key_id} is revoked; revocation is final. Create a new key.")
        if old.rotated_to:
            raise already_rotated(old)
        now = self.clock()
        if old.status_at(now) == api_keys.EXPIRED:
            raise Conflict(f"API key {key_id} has expired; its successor would be expired too. Create a new key.",
                           code="key_expired")
        grace = body.get("grace_s", 86400)
        if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= 30 * 86400:
            raise InvalidRequest("'grace_s' must be 0 to 2592000 seconds.", param="grace_s")
        raw, record = api_keys.issue(
            old.user_id, name=old.name, scopes=old.scopes, now=now, rounds=self.settings.bcrypt_rounds,
            expires_at=parse_iso(old.expires_at) if old.expires_at else None, rpm=old.rpm, tpm=old.tpm,
            monthly_budget_usd=old.monthly_budget_usd, hourly_budget_usd=old.hourly_budget_usd, cache_ttl_s=old.cache_ttl_s,
            lineage=old.lineage or old.key_id)
        self.keys.put(record)
        grace_end = now + timedelta(seconds=grace)
        shorter = iso(grace_end) if not old.expires_at or parse_iso(old.expires_at) > grace_end else None
        try:  # conditional: of two rotations racing, one wins; the loser's unseen key is removed
            old = self.keys.mark_rotated(key_id, record.key_id, shorter)
        except Exception:  # a lost race, or DynamoDB failing: no successor nobody holds the secret of
            try:
                self.keys.delete(record.key_id)
            except Exception:  # the original error is the one to report
                log.exception("rotation failed and its unseen successor key could not be removed",
                              extra={"key_id": record.key_id})
            raise
        return {"key": raw, **record.public(now), "previous": old.public(now)}

    def set_key_status(self, key_id: str, status: str) -> dict[str, Any]:
        """Set a key's stored status (active, suspended, revoked; see ApiKeyStore.set_status); its public view."""
        if not api_keys.is_key_id(key_id):
            raise api_keys.no_such_key(key_id)
        return self.keys.set_status(key_id, status).public(self.clock())

    def issue_token(self, body: dict[str, Any], secrets: Any) -> dict[str, Any]:
        from tollgate.auth import jwt_tokens

        ttl = body.get("ttl_s", jwt_tokens.DEFAULT_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise InvalidRequest("'ttl_s' must be an integer number of seconds.", param="ttl_s")
        requested = body.get("scopes") or []
        if not isinstance(requested, list):
            raise InvalidRequest("'scopes' must be a list.", param="scopes")
        current = next(s for s in secrets if s.current)
        token, expires = jwt_tokens.issue(current, service=str(body.get("service") or ""), scopes=requested,
                                          now=self.clock(), ttl_s=ttl, user=body.get("user"))
        return {"token": token, "service": body.get("service"), "scopes": requested, "expires_at": iso(expires)}

    # -- per-user settings ---------------------------------------------------------------------
    def user_settings(self, user: str) -> dict[str, Any]:
        limits = self.limits.user_limits(user)
        monthly = limits.get("monthlyUsd")
        return {"user": user, "monthly_usd": usd(monthly) if monthly is not None else None,
                "byok_budget_exempt": bool(limits.get("byokBudgetExempt")),
                "log_prompts": bool(limits.get("logPrompts")), "cache_ttl_s": int(limits.get("cacheTtlS") or 0)}

    def set_user_settings(self, user: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change a user's settings: log_prompts, byok_budget_exempt (true/false), cache_ttl_s (seconds the
        response cache keeps the user's answers, 0 to tollgate.response_cache.MAX_TTL_S; 0 turns it off)."""
        setters = {"log_prompts": self.limits.set_log_prompts, "byok_budget_exempt": self.limits.set_byok_budget_exempt,
                   "cache_ttl_s": self.limits.set_cache_ttl_s}
        unknown = set(body) - set(setters)
        if unknown or not body:
            raise InvalidRequest(f"Settable: {', '.join(sorted(setters))}.", param=next(iter(unknown), None))
        for name, value in body.items():
            if name == "cache_ttl_s":
                _cache_ttl(value)
            elif not isinstance(value, bool):
                raise InvalidRequest(f"'{name}' must be true or false.", param=name)
            setters[name](user, value)
        return self.user_settings(user)

    # -- loop guard ----------------------------------------------------------------------------
    def list_loops(self, user: str | None) -> dict[str, Any]:
        """A user's repeating request patterns in live loop windows (tollgate.loopguard): subject, pattern
        fingerprint and kind, hits, worst-case input spent (USD), window end, and whether it is refused."""
        if not user:
            raise InvalidRequest("'user' is required.", param="user")
        now = int(self.clock().timestamp())
        s = self.settings
        loops = []
        for item in sorted(self.loops.for_user(user), key=lambda i: i["sk"]):
            end = int(item.get("windowEnd", 0))
            if end <= now:
                continue
            hits, spent = int(item.get("hits", 0)), Decimal(item.get("spentUsd", 0))
            loops.append({"subject": item.get("subject"), "fingerprint": item.get("fingerprint"),
                          "kind": item.get("kind"), "hits": hits, "spent_usd": usd(spent),
                          "window_ends_at": iso(datetime.fromtimestamp(end, tz=timezone.utc)),
                          "last_at": item.get("lastAt"),
                          "refused": hits >= s.loop_max_repeats or (hits >= s.loop_min_repeats and spent >= s.loop_max_usd)})
        return {"user": user, "loops": loops}

    def clear_loops(self, user: str | None) -> dict[str, Any]:
        """Forget a user's loop counters: every pattern of theirs is served again."""
        if not user:
            raise InvalidRequest("'user' is required.", param="user")
        return {"user": user, "cleared": self.loops.clear(user)}

    # -- usage ---------------------------------------------------------------------------------
    def usage_for(self, user: str | None, start: str | None, end: str | None, limit: str | None) -> dict[str, Any]:
        """A user's usage records from `start` to `end` (query text: YYYY-MM-DD or an ISO-8601 time, UTC;
        default the last 31 days), at most `limit` (plain digits, 1 to MAX_USAGE_RECORDS; default 1000).
        Raises InvalidRequest (400, param = the query name) for a bad value or `from` after `to`."""
        if not user:
            raise InvalidRequest("'user' is required.", param="user")
        now = self.clock()
        first = _instant(start, "from") if start else None
        last = _instant(end, "to") if end else None
        if first and last and first > last:
            raise InvalidRequest("'from' is after 'to'.", param="from")
        # The records' sort keys are UTC times as tollgate.clock.iso writes them: compare like with like.
        start = iso(first) if first else (now - timedelta(days=31)).strftime("%Y-%m-%d")
        end = iso(last) if last else iso(now + timedelta(minutes=1))
        n = _query_int(limit, "limit", MAX_USAGE_RECORDS) if limit else 1000
        records = [metering.public(i) for i in self.usage.for_user(user, start, end, n)]
        return {"user": user, "from": start, "to": end, "records": records,
                "total_cost_usd": usd(sum((Decimal(r["cost_usd"]) for r in records), Decimal(0))),
                "total_tokens": sum(r["total_tokens"] for r in records),
                **({"reconciliation": self._reconciled(user, start[:10], end[:10])} if self.daily else {})}

    def _reconciled(self, user: str, first_day: str, last_day: str) -> dict[str, Any]:
        """The user's daily totals the reconciliation wrote (tollgate.reconcile): per day, provider and model,
        Tollgate's estimate and the provider's apportioned bill; a total without a bill is `missing`."""
        days = [{"day": t["sk"][:10], "provider": t["sk"].split("#")[1], "model": t["sk"].split("#", 2)[2],
                 "estimated_usd": usd(t["estimatedUsd"]),
                 "actual_usd": usd(t["actualUsd"]) if "actualUsd" in t else None}
                for t in self.daily.for_user(user, first_day, last_day)]
        billed = [d for d in days if d["actual_usd"] is not None]
        return {"days": days, "missing": len(days) - len(billed),
                "estimated_usd": usd(sum((Decimal(d["estimated_usd"]) for d in billed), Decimal(0))),
                "actual_usd": usd(sum((Decimal(d["actual_usd"]) for d in billed), Decimal(0)))}

    # -- chargeback ----------------------------------------------------------------------------
    def invoice(self, month: str, user: str | None, markup_pct: Decimal | None) -> dict[str, Any]:
        """The invoice of `month` (YYYY-MM), one user's or everyone's, with `markup_pct` percent on the
        provider cost (default tollgate.invoice.DEFAULT_MARKUP_PCT). Shape: tollgate.invoice.build."""
        from tollgate.invoice import DEFAULT_MARKUP_PCT, Invoices

        return Invoices(self.usage, self.limits).invoice(
            month, user, DEFAULT_MARKUP_PCT if markup_pct is None else markup_pct)

    # -- budgets -------------------------------------------------------------------------------
    def budget(self, user: str | None, key: str | None) -> dict[str, Any]:
        now = self.clock()
        if bool(user) == bool(key):
            raise InvalidRequest("Name exactly one of 'user' or 'key'.")
        if user:
            limit = self.limits.user_monthly_usd(user)
            default = limit is None
            limit = self.settings.default_user_monthly_usd if default else limit
            month = summary(self.limits.counter(budgets.user_pk(user), budgets.month_sk(now)), limit, month_of(now))
            exempt = bool(self.limits.user_limits(user).get("byokBudgetExempt"))
            return {"scope": "user", "id": user, **_monthly(month), "monthly_limit_is_default": default,
                    "hourly": None, "byok_budget_exempt": exempt}
        record = self._record(key, "key")
        monthly = record.monthly_budget_usd if record.monthly_budget_usd is not None else self.settings.default_key_monthly_usd
        hourly = record.hourly_budget_usd if record.hourly_budget_usd is not None else self.settings.default_key_hourly_usd
        account = budgets.principal_pk(record.lineage or key)
        month = summary(self.limits.counter(account, budgets.month_sk(now)), monthly, month_of(now))
        hour = summary(self.limits.counter(account, budgets.hour_sk(now)), hourly,
                       budgets.hour_sk(now).split("#", 1)[1])
        # *_is_default: no limit was set for this key (user), so the deployment's default applies
        return {"scope": "key", "id": key, **_monthly(month), "monthly_limit_is_default": record.monthly_budget_usd is None,
                "hourly": {**hour, "limit_is_default": record.hourly_budget_usd is None}}

    def set_budget(self, body: dict[str, Any]) -> dict[str, Any]:
        user, key = body.get("user"), body.get("key")
        if bool(user) == bool(key):
            raise InvalidRequest("Name exactly one of 'user' or 'key'.")
        monthly = _money(body.get("monthly_usd"), "monthly_usd")
        hourly = _money(body.get("hourly_usd"), "hourly_usd")
        now = self.clock()
        if user:
            exempt = body.get("byok_budget_exempt")
            if hourly is not None:
                raise InvalidRequest("The hourly cap is set per key ('key'), not per user.", param="hourly_usd")
            if monthly is None and exempt is None:
                raise InvalidRequest("Give 'monthly_usd' and/or 'byok_budget_exempt'.", param="monthly_usd")
            if exempt is not None:
                if not isinstance(exempt, bool):
                    raise InvalidRequest("'byok_budget_exempt' must be true or false.", param="byok_budget_exempt")
                self.limits.set_byok_budget_exempt(user, exempt)
            if monthly is not None:
                self.limits.set_user_monthly_usd(user, monthly)
                self._set_counter_limit(budgets.user_pk(user), budgets.month_sk, now, monthly)
            return self.budget(user, None)
        if monthly is None and hourly is None:
            raise InvalidRequest("Give 'monthly_usd' and/or 'hourly_usd'.")
        record = self._record(key, "key")
        for member in self._rotation_chain(record):  # they share the budget items: one limit for all of them
            self.keys.set_limits(member, monthly_budget_usd=monthly, hourly_budget_usd=hourly)
        account = budgets.principal_pk(record.lineage or key)
        if monthly is not None:
            self._set_counter_limit(account, budgets.month_sk, now, monthly)
        if hourly is not None:
            self._set_counter_limit(account, budgets.hour_sk, now, hourly, expiry=budgets.hour_expiry)
        return self.budget(None, key)

    def _set_counter_limit(self, pk: str, period_sk: Any, now: datetime, limit: Decimal,
                           expiry: Any = None) -> None:
        """Write `limit` (USD) on the budget item of the period holding `now` (`period_sk`: budgets.month_sk or
        hour_sk; `expiry`: the period's item TTL from a time in it, budgets.hour_expiry, or None), and on the
        next period's item too when that period begins within the authorizer's cache TTL
        (routes.AUTHORIZER_CACHE_TTL_S) plus a margin for a request already admitted: its first requests may
        still carry the old limit in their cached principal, and would create the item from it for the whole
        period."""
        soon = now + timedelta(seconds=routes.AUTHORIZER_CACHE_TTL_S + _LIMIT_CHANGE_MARGIN_S)
        self.limits.set_counter_limit(pk, period_sk(now), limit, expires=expiry(now) if expiry else None)
        if period_sk(soon) != period_sk(now):
            self.limits.set_counter_limit(pk, period_sk(soon), limit, expires=expiry(soon) if expiry else None)


def _monthly(month: dict[str, Any]) -> dict[str, Any]:
    return {"period": month["period"], "monthly_limit_usd": month["limit_usd"], "spent_usd": month["spent_usd"],
            "reserved_usd": month["reserved_usd"], "remaining_usd": month["remaining_usd"]}


