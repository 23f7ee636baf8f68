"""The ledger: reserve before the provider call, settle after it. Two DynamoDB calls per request.

reserve: ONE TransactWriteItems takes the rate-limit window and reserves the worst-case cost on every
budget level, each with its own condition, and writes a reservation item for the sweeper. Which
condition failed names the limit (CancellationReasons, with the item's old values).

settle: ONE TransactWriteItems deletes the reservation, writes the usage record (condition: no record
for this request yet, so it is written exactly once) and moves every level from reserved to spent,
returning the unused part.

A transaction returns no values on success, so the reservation is first tried with a margin: each
counter must keep at least its warning floor (budgets) or a fifth of its limit (rate windows) after
the reservation. Success proves the request is far from every limit; a failure returns the exact old
values, and the reservation is retried without the margin. The exact values are then known where they
matter: near a limit, where headers and warnings need them.
"""
from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from tollgate.clock import iso
from tollgate.errors import BudgetExceeded, Conflict, LoopDetected, RateLimited
from tollgate.store.counters import Level, LoopCounter, Window, margin
from tollgate.store.dynamo import from_item, to_item, values
from tollgate.money import text as usd

log = logging.getLogger(__name__)

PENDING_SHARDS = 8
RESERVATION_SK = "RESV"
FAILED = "error"  # a usage record's status when the provider call failed (tollgate.metering.ERROR)
_CONFLICT_RETRIES = 4
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
    plan: Plan
    remaining_requests: int = 0  # exact near the limit, else a lower bound
    remaining_tokens: int = 0
    budget_remaining: dict[str, Decimal] = field(default_factory=dict)  # level kind -> remaining after (or a lower bound)
    exact: set[str] = field(default_factory=set)  # level kinds whose remaining is exact, not a bound

    def near_limit(self, refund: Decimal) -> list[Level]:
        """Levels in their warning zone once `refund` (worst case minus actual cost) is given back."""
        return [lvl for lvl in self.plan.levels
                if lvl.kind in self.exact and self.budget_remaining[lvl.kind] + refund < lvl.warning_floor]


def reservation_pk(request_id: str) -> str:
    return f"RESV#{request_id}"


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
        return any(r.get("Code") == "TransactionConflict" for r in self.reasons)


class Ledger:
    def __init__(self, budgets_table: str, usage_table: str, client: Any):
        self.budgets = budgets_table
        self.usage = usage_table
        self.client = client

    # -- reserve -----------------------------------------------------------------------------
    def reserve(self, plan: Plan) -> Reservation:
        for level in plan.levels:
            if plan.cost > level.limit and not level.must_exist:
                self._replay_if_answered(plan)  # an earlier request with this key was paid for: answer it
                raise _budget_error(level, level.limit, plan.cost)
        if plan.window and plan.tokens > plan.window.tpm:
            raise RateLimited(
                f"This request may use up to {plan.tokens} tokens, more than the limit of {plan.window.tpm} "
                "tokens per minute. Lower max_tokens or shorten the input.",
                code="tokens_exceed_limit", headers={"x-should-retry": "false"})
        res = Reservation(plan)
        known_old: dict[int, dict[str, Any]] = {}
        with_margin = self._margin_fits(plan)
        if with_margin:
            try:
                self._transact(self._reserve_items(plan, with_margin=True), token=f"{plan.request_id}/r1")
                self._lower_bounds(res, plan)
                return res
            except _Cancelled as c:
                known_old = self._check_hard_limits(plan, c.reasons)
        try:
            self._transact(self._reserve_items(plan, with_margin=False), token=f"{plan.request_id}/r2")
        except _Cancelled as c:
            self._check_hard_limits(plan, c.reasons)
            log.warning("reservation cancelled for no known limit", extra={"codes": [r.get("Code") for r in c.reasons]})
            raise Conflict("Reservation failed; retry the request.", code="reservation_conflict") from None
        self._exact(res, plan, known_old, assume_fresh=not with_margin)
        unknown = [lvl for lvl in plan.levels if lvl.kind not in res.exact and not lvl.must_exist]
        if not with_margin and unknown:
            # This request is large next to a limit, so no margin attempt ran and taught us nothing:
            # read what is left (one call, only for such requests).
            self._read_remaining(res, unknown)
        return res

    def _read_remaining(self, res: Reservation, levels: list[Level]) -> None:
        keys = [to_item({"pk": lvl.pk, "sk": lvl.sk}) for lvl in levels]
        got = self.client.batch_get_item(RequestItems={self.budgets: {"Keys": keys, "ConsistentRead": True}})
        by_key = {(i["pk"]["S"], i["sk"]["S"]): from_item(i) for i in got["Responses"].get(self.budgets, [])}
        for lvl in levels:
            item = by_key.get((lvl.pk, lvl.sk))
            if item and "remainingUsd" in item:
                res.budget_remaining[lvl.kind] = Decimal(item["remainingUsd"])
                res.exact.add(lvl.kind)

    def _replay_if_answered(self, plan: Plan) -> None:
        if not plan.idempotency_pk:
            return
        item = self.client.get_item(TableName=self.budgets, ConsistentRead=True,
                                    Key=to_item({"pk": plan.idempotency_pk, "sk": IDEMPOTENCY_SK})).get("Item")
        if item and from_item(item).get("state") == "done":
            raise IdempotentReplay(_replay(from_item(item)))

    def _margin_fits(self, plan: Plan) -> bool:
        # A run's budget lives in its item only (limit unknown here): it takes no margin, only the cost.
        if any(plan.cost + lvl.warning_floor > lvl.limit for lvl in plan.levels if not lvl.must_exist):
            return False
        w = plan.window
        return w is None or (1 + margin(w.rpm) <= w.rpm and plan.tokens + margin(w.tpm) <= w.tpm)

    def _reserve_items(self, plan: Plan, *, with_margin: bool) -> list[dict[str, Any]]:
        items = []
        for lvl in plan.levels:
            need = plan.cost + (lvl.warning_floor if with_margin and not lvl.must_exist else ZERO)
            update = ("SET remainingUsd = if_not_exists(remainingUsd, :limit) - :cost, "
                      "reservedUsd = if_not_exists(reservedUsd, :zero) + :cost, "
                      "spentUsd = if_not_exists(spentUsd, :zero), limitUsd = if_not_exists(limitUsd, :limit)")
            vals = dict(limit=lvl.limit, cost=plan.cost, zero=ZERO, need=need)
            if lvl.expires:
                update += ", #ttl = if_not_exists(#ttl, :ttl)"
                vals["ttl"] = lvl.expires
            condition = ("attribute_exists(remainingUsd) AND remainingUsd >= :need" if lvl.must_exist
                         else "attribute_not_exists(remainingUsd) OR remainingUsd >= :need")
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
            rneed = 1 + (margin(w.rpm) if with_margin else 0)
            tneed = plan.tokens + (margin(w.tpm) if with_margin else 0)
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": w.pk, "sk": w.sk}),
                "UpdateExpression": ("SET remainingRequests = if_not_exists(remainingRequests, :rpm) - :one, "
                                     "remainingTokens = if_not_exists(remainingTokens, :tpm) - :tokens, "
                                     "#ttl = if_not_exists(#ttl, :ttl)"),
                "ConditionExpression": ("attribute_not_exists(remainingRequests) OR "
                                        "(remainingRequests >= :rneed AND remainingTokens >= :tneed)"),
                "ExpressionAttributeNames": {"#ttl": "ttl"},
                "ExpressionAttributeValues": values(rpm=w.rpm, tpm=w.tpm, one=1, tokens=plan.tokens,
                                                    ttl=w.expires, rneed=rneed, tneed=tneed),
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
                                 "state": "pending", "ttl": int(plan.started_at.timestamp()) + IDEMPOTENCY_TTL_S}),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }})
        items.append({"Put": {
            "TableName": self.budgets,
            "Item": to_item({
                "pk": reservation_pk(plan.request_id), "sk": RESERVATION_SK, "user": plan.user,
                "principal": plan.principal_id, "costUsd": plan.cost, "tokens": plan.tokens,
                "levels": [{"pk": lvl.pk, "sk": lvl.sk} for lvl in plan.levels],
                "window": {"pk": w.pk, "sk": w.sk} if w else None,
                "startedAt": iso(plan.started_at), "usageSk": plan.usage_sk, "idempotencyPk": plan.idempotency_pk,
                "pendingShard": pending_shard(plan.request_id), "expiresAt": iso(plan.expires_at),
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
                rem_req = int(item.get("remainingRequests", w.rpm))
                rem_tok = int(item.get("remainingTokens", w.tpm))
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

    def _lower_bounds(self, res: Reservation, plan: Plan) -> None:
        for lvl in plan.levels:
            if not lvl.must_exist:
                res.budget_remaining.setdefault(lvl.kind, lvl.warning_floor)  # at least
        if plan.window:
            res.remaining_requests = margin(plan.window.rpm)
            res.remaining_tokens = margin(plan.window.tpm)

    def _exact(self, res: Reservation, plan: Plan, old: dict[int, dict[str, Any]], assume_fresh: bool) -> None:
        for i, lvl in enumerate(plan.levels):
            if i in old:
                after = Decimal(old[i].get("remainingUsd", lvl.limit)) - plan.cost
            elif assume_fresh or lvl.must_exist:
                after = None
            else:
                after = lvl.warning_floor  # passed with margin: a lower bound
            if after is not None:
                res.budget_remaining[lvl.kind] = after
            if i in old:
                res.exact.add(lvl.kind)
        if plan.window:
            w = plan.window
            n = _layout(plan)["window"]
            if n in old:
                res.remaining_requests = int(old[n].get("remainingRequests", w.rpm)) - 1
                res.remaining_tokens = int(old[n].get("remainingTokens", w.tpm)) - plan.tokens
            else:
                res.remaining_requests, res.remaining_tokens = margin(w.rpm), margin(w.tpm)

    # -- settle ------------------------------------------------------------------------------
    def settle(self, res: Reservation, usage_item: dict[str, Any], actual_cost: Decimal, actual_tokens: int,
               replay: Replay | None = None, extra: tuple[dict[str, Any], ...] = ()) -> bool:
        """Record the usage and settle every level. Returns False if this request was already settled.

        With an Idempotency-Key, `replay` (the answer) is stored for later retries; without one (the
        request failed) the key is freed so the client may try again. `extra`: more writes for the same
        transaction (a stored response's owner: tollgate.store.responses)."""
        plan = res.plan
        refund = plan.cost - actual_cost
        items = [
            {"Delete": {"TableName": self.budgets,
                        "Key": to_item({"pk": reservation_pk(plan.request_id), "sk": RESERVATION_SK}),
                        "ConditionExpression": "attribute_exists(pk)"}},
            self._usage_put(usage_item),
        ]
        for lvl in plan.levels:
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": lvl.pk, "sk": lvl.sk}),
                "UpdateExpression": ("SET reservedUsd = reservedUsd - :cost, spentUsd = spentUsd + :actual, "
                                     "remainingUsd = remainingUsd + :refund"),
                "ExpressionAttributeValues": values(cost=plan.cost, actual=actual_cost, refund=refund),
            }})
        if plan.window and plan.tokens != actual_tokens:
            items.append(self._token_refund(plan.window, plan.tokens - actual_tokens))
        if plan.idempotency_pk:
            items.append(self._idempotency_outcome(plan.idempotency_pk, replay))
        if plan.loop and usage_item.get("status") == FAILED:
            items.append(self._loop_give_back(plan.loop))
        items += extra
        try:
            self._transact(items, token=f"{plan.request_id}/s")
            return True
        except _Cancelled as c:
            codes = [r.get("Code") for r in c.reasons]
            if codes[1] == "ConditionalCheckFailed":
                return False  # the usage record exists: settled before
            if codes[0] == "ConditionalCheckFailed":
                log.warning("late settle: reservation already released by the sweeper",
                            extra={"request_id": plan.request_id})
                return self._settle_without_reservation(plan, usage_item, actual_cost)
            raise

    def _settle_without_reservation(self, plan: Plan, usage_item: dict[str, Any], actual_cost: Decimal) -> bool:
        items = [self._usage_put(usage_item)]
        for lvl in plan.levels:
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": lvl.pk, "sk": lvl.sk}),
                "UpdateExpression": ("SET spentUsd = if_not_exists(spentUsd, :zero) + :actual, "
                                     "remainingUsd = if_not_exists(remainingUsd, :limit) - :actual"),
                "ExpressionAttributeValues": values(actual=actual_cost, zero=ZERO, limit=lvl.limit),
            }})
        try:
            self._transact(items, token=f"{plan.request_id}/late")
            return True
        except _Cancelled:
            return False

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

    def _usage_put(self, usage_item: dict[str, Any]) -> dict[str, Any]:
        return {"Put": {"TableName": self.usage, "Item": to_item(usage_item),
                        "ConditionExpression": "attribute_not_exists(pk)"}}

    def _token_refund(self, window: Window, tokens: int) -> dict[str, Any]:
        return {"Update": {"TableName": self.budgets, "Key": to_item({"pk": window.pk, "sk": window.sk}),
                           "UpdateExpression": "ADD remainingTokens :t",
                           "ExpressionAttributeValues": values(t=tokens)}}

    # -- sweeper -----------------------------------------------------------------------------
    def expired_reservations(self, now: datetime, index_name: str = "pending") -> list[dict[str, Any]]:
        found = []
        for shard in range(PENDING_SHARDS):
            pages = self.client.get_paginator("query").paginate(
                TableName=self.budgets, IndexName=index_name,
                KeyConditionExpression="pendingShard = :s AND expiresAt < :now",
                ExpressionAttributeValues=values(s=f"p{shard}", now=iso(now)))
            found += [from_item(i) for page in pages for i in page["Items"]]
        return found

    def release(self, reservation: dict[str, Any]) -> bool:
        """Give back a reservation whose request never settled. False if it was settled meanwhile."""
        cost = Decimal(reservation["costUsd"])
        items = [{"Delete": {"TableName": self.budgets,
                             "Key": to_item({"pk": reservation["pk"], "sk": reservation["sk"]}),
                             "ConditionExpression": "attribute_exists(pk)"}}]
        for key in reservation.get("levels", []):
            items.append({"Update": {
                "TableName": self.budgets, "Key": to_item({"pk": key["pk"], "sk": key["sk"]}),
                "UpdateExpression": "SET reservedUsd = reservedUsd - :cost, remainingUsd = remainingUsd + :cost",
                "ExpressionAttributeValues": values(cost=cost),
            }})
        if reservation.get("idempotencyPk"):  # free the key: the request it guarded never finished
            items.append(self._idempotency_outcome(reservation["idempotencyPk"], None))
        try:
            self._transact(items, token=f"{reservation['pk']}/release")
            return True
        except _Cancelled:
            return False

    # -- plumbing ----------------------------------------------------------------------------
    def _transact(self, items: list[dict[str, Any]], token: str) -> None:
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self.client.transact_write_items(TransactItems=items, ClientRequestToken=_token(token, str(attempt)))
                return
            except self.client.exceptions.TransactionCanceledException as e:
                cancelled = _Cancelled(e.response.get("CancellationReasons") or [])
                if not cancelled.conflict or attempt == _CONFLICT_RETRIES - 1:
                    raise cancelled from None
            except self.client.exceptions.IdempotentParameterMismatchException:
                raise Conflict("A request with this id was already reserved differently.",
                               code="duplicate_request") from None
            time.sleep(random.uniform(0.005, 0.03) * (2 ** attempt))


def _replay(item: dict[str, Any]) -> Replay:
    return Replay(int(item.get("status", 200)), str(item.get("body", "")), str(item.get("contentType", "application/json")),
                  {str(k): str(v) for k, v in (item.get("headers") or {}).items()})


def _token(name: str, attempt: str) -> str:
    """A ClientRequestToken (≤ 36 chars), so botocore's own retries of the same call are idempotent."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{attempt}"))


def _budget_error(level: Level, remaining: Decimal, cost: Decimal) -> BudgetExceeded:
    err = BudgetExceeded(
        f"The {level.label} is exhausted: ${usd(max(remaining, ZERO))} of ${usd(level.limit)} remains and this "
        f"request may cost up to ${usd(cost)}. Ask an operator to raise the budget, or wait for the next period.",
        headers={"x-tollgate-budget-remaining-usd": usd(max(remaining, ZERO)),
                 "x-tollgate-budget-level": level.kind})
    err.level = level  # type: ignore[attr-defined]
    err.remaining = max(remaining, ZERO)  # type: ignore[attr-defined]
    return err
