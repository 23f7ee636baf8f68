"""The metered request, end to end: price, reserve, call the provider, settle.

Plain Python: handlers build a MeteredRequest from their event and turn the Reply into a response.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable

from tollgate import budgets, estimate, idempotency, loopguard, metric_names, response_cache, streaming
from tollgate import responses as responses_api
from tollgate.auth.principal import IAM, Principal
from tollgate.clock import Clock, utc_now
from tollgate.deployments import Deployment, Deployments
from tollgate.errors import (BudgetExceeded, InvalidRequest, LoopDetected, ProviderFailed, ProviderRejected,
                             RateLimited, TollgateError)
from tollgate.metering import ERROR, OK, UsageRecord, usage_sk
from tollgate.pricing import Catalogue, ModelPrice
from tollgate.providers.base import CHAT, EMBEDDINGS, MESSAGES, RESPONSES, Usage
from tollgate.ratelimits import headers as rate_headers
from tollgate.ratelimits import window_for
from tollgate.settings import Settings
from tollgate.store.ledger import IdempotentReplay, Ledger, Plan, Replay, Reservation
from tollgate.store.response_cache import Answer, answer_put
from tollgate.store.responses import owner_put
from tollgate.money import text as usd

log = logging.getLogger(__name__)

# When the budget cannot cover the requested max_tokens, a smaller cap is used if at least this many
# output tokens fit; below it the request is refused.
MIN_USEFUL_MAX_TOKENS = 64

OPERATION_BY_SUFFIX = {"/chat/completions": CHAT, "/embeddings": EMBEDDINGS, "/messages": MESSAGES,
                       "/responses": RESPONSES}
WIRE_PROVIDER = {MESSAGES: "anthropic", CHAT: "openai", EMBEDDINGS: "openai", RESPONSES: "openai"}
KEYLESS_PROVIDERS = ("bedrock",)  # called with the gateway's IAM role: no platform key, no BYOK


@dataclass(frozen=True)
class MeteredRequest:
    request_id: str
    path: str
    principal: Principal
    body: dict[str, Any]
    user_agent: str = ""
    run_id: str | None = None
    idempotency_key: str | None = None
    # Headers forwarded to the provider as the client sent them (Anthropic's anthropic-version and allowed
    # anthropic-beta: tollgate.anthropic_api).
    provider_headers: dict[str, str] = field(default_factory=dict)
    # Set once a deployment has answered: the usage record names it (tollgate.deployments.Deployment.label).
    deployment: str | None = None
    cache: str | None = None  # the x-tollgate-cache header as sent (tollgate.response_cache)


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    cost: Decimal = Decimal(0)  # what this answer was charged (0 for a replay: charged the first time)
    replayed: bool = False


KeyResolver = Callable[[Principal, str], tuple[str, bool]]  # (principal, provider) -> (api key, byok?)


class MeteredGateway:
    def __init__(self, settings: Settings, catalogue: Catalogue, ledger: Ledger, providers: Any,
                 keys: KeyResolver, metrics: Any = None, clock: Clock = utc_now, alerts: Any = None,
                 cache: Any = None):
        self.settings = settings
        self.catalogue = catalogue
        self.ledger = ledger
        self.providers = providers
        self.keys = keys
        self.metrics = metrics
        self.clock = clock
        self.alerts = alerts
        self.cache = cache  # tollgate.store.response_cache.ResponseCache; None: no response cache

    def handle(self, req: MeteredRequest) -> Reply | streaming.StreamingReply:
        """A metered answer: a Reply, or for a streamed request (`stream: true`) a StreamingReply whose events
        are forwarded as the provider sends them. Raises TollgateError subclasses (mapped once to HTTP)."""
        operation = _operation(req.path)
        model = req.body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("'model' is required.", param="model")
        price = self.catalogue.price(model)
        deployments = self._deployments(operation, model, price)
        price = deployments[0].price
        _check_route_fits_model(operation, price)
        if self.metrics:
            self.metrics.add_dimension(name=metric_names.DIM_PROVIDER, value=price.provider)
        if operation == RESPONSES:
            responses_api.check_request(req.body)
        bound = self._bound(operation, price, req.body)
        deployments, held = _held_at(self.catalogue, deployments, bound)
        if _budget_exempt(req.principal, held):  # the plan holds no budget: only the caller's own keys may answer
            deployments = tuple(d for d in deployments if _budget_exempt(req.principal, d.price))
        plan = self._plan(req, held, bound, self.clock())
        if operation == RESPONSES:
            plan = replace(plan, checks=responses_api.chain_checks(self.ledger.budgets, req.principal, req.body))
        cache = response_cache.policy(operation, req.body, req.provider_headers, req.cache, req.principal.cache_ttl_s)
        hit = self._cached(req, operation, cache)
        if hit is not None:  # still a request for the rate limits and the loop guard; $0 and no provider tokens
            plan = replace(plan, cost=Decimal(0), tokens=0, loop=plan.loop and replace(plan.loop, cost=Decimal(0)))
        try:
            res, bound, lowered_from = self._reserve(plan, held, bound)
        except IdempotentReplay as replay:
            r = replay.replay
            return Reply(r.status, r.body.encode(), r.content_type, {**r.headers, "x-tollgate-idempotent-replay": "true"},
                         replayed=True)
        except RateLimited as exc:
            self._count(metric_names.RATE_LIMIT_REFUSALS)
            if plan.window and hasattr(exc, "remaining"):
                exc.headers.update(rate_headers(plan.window, *exc.remaining))
            raise
        except LoopDetected as exc:
            self._count(metric_names.LOOP_DETECTIONS)
            hits, spent = getattr(exc, "hits", 0), getattr(exc, "spent", Decimal(0))
            if self.alerts:
                self.alerts.loop_detected(principal=req.principal.id, user=req.principal.user, loop=plan.loop,
                                          hits=hits, spent_usd=spent)
            raise loopguard.refusal(plan.loop, req.principal.user, hits, spent) from None
        if hit is not None:
            return self._answer_from_cache(req, price, res, bound, *hit)
        body = req.body
        if bound.defaulted or lowered_from is not None:
            body = estimate.with_max_tokens(req.body, bound, bound.max_tokens)
        return self._call_and_settle(req, operation, price, res, body, bound, lowered_from, deployments, cache)

    # -- routing ---------------------------------------------------------------------------------
    def _deployments(self, operation: str, model: str, price: ModelPrice) -> tuple[Any, ...]:
        """The deployments (tollgate.deployments) that may answer this route for `model`, in order; the
        first one alone when none fits (the route check then says why)."""
        found = Deployments.load(self.catalogue, self.settings.deployments).for_model(model, price)
        fitting = tuple(d for d in found if _fits_route(operation, d.price))
        return fitting or found[:1]

    def _provider(self, operation: str, deployment: Any) -> Any:
        """The adapter that calls one deployment: its provider, in its region, speaking this route's format."""
        provider = self.providers[deployment.provider]
        if deployment.region:
            provider = provider.in_region(deployment.region)
        if operation == CHAT and deployment.provider == "anthropic":  # OpenAI format on the Anthropic API
            from tollgate.translate.openai_anthropic import ChatOverMessages

            provider = ChatOverMessages(provider)
        return provider

    # -- pricing and reservation ---------------------------------------------------------------
    def _bound(self, operation: str, price: ModelPrice, body: dict[str, Any]) -> estimate.Bound:
        if operation == EMBEDDINGS:
            return estimate.embedding_bound(body)
        return estimate.chat_bound(body, price.id, price.max_output_tokens, self.settings.default_max_tokens,
                                   anthropic=operation == MESSAGES, context_window=price.context_window, price=price,
                                   tool_call_bound=self.settings.server_tool_max_calls,
                                   tool_input_tokens=self.settings.server_tool_input_tokens,
                                   responses=operation == RESPONSES)

    def _plan(self, req: MeteredRequest, price: ModelPrice, bound: estimate.Bound, now: datetime) -> Plan:
        levels = budgets.levels_for(req.principal, now, self.settings, run_id=req.run_id)
        if _budget_exempt(req.principal, price):
            levels = [lvl for lvl in levels if lvl.kind == budgets.RUN]  # still metered, not held
        return Plan(
            request_id=req.request_id, user=req.principal.user, principal_id=req.principal.account,
            levels=tuple(levels), window=window_for(req.principal, now, self.settings),
            cost=_worst_case(self.catalogue, price, bound), tokens=bound.rate_tokens, started_at=now,
            expires_at=now + timedelta(seconds=self.settings.reservation_ttl_s),
            usage_sk=usage_sk(now, req.request_id),
            loop=loopguard.counter(_loop_subject(req), req.principal.user, req.body, now,
                                   self.catalogue.worst_case_cost(price, bound.input_tokens, 0),
                                   max_repeats=self.settings.loop_max_repeats,
                                   min_repeats=self.settings.loop_min_repeats,
                                   max_usd=self.settings.loop_max_usd, window_s=self.settings.loop_window_s),
            idempotency_pk=_idempotency_pk(req),
            request_hash=idempotency.request_hash(req.path, req.body) if req.idempotency_key else None)

    def _reserve(self, plan: Plan, price: ModelPrice,
                 bound: estimate.Bound) -> tuple[Reservation, estimate.Bound, int | None]:
        """Reserve the worst case; if the budget cannot cover max_tokens but covers a useful smaller
        cap, reserve that instead. Returns (reservation, the bound used, the cap it was lowered from)."""
        try:
            return self.ledger.reserve(plan), bound, None
        except BudgetExceeded as exc:
            smaller = self._affordable_max_tokens(exc, price, bound)
            if smaller is None:
                self._count(metric_names.BUDGET_REFUSALS)
                raise
        lowered = replace(bound, max_tokens=smaller, output_tokens=smaller * bound.choices)
        cheaper = replace(plan, cost=_worst_case(self.catalogue, price, lowered), tokens=lowered.rate_tokens)
        try:
            return self.ledger.reserve(cheaper), lowered, bound.max_tokens
        except BudgetExceeded:
            self._count(metric_names.BUDGET_REFUSALS)
            raise

    def _affordable_max_tokens(self, exc: BudgetExceeded, price: ModelPrice, bound: estimate.Bound) -> int | None:
        remaining = getattr(exc, "remaining", None)
        if remaining is None or bound.max_tokens_field is None or price.output <= 0:
            return None
        input_cost = _worst_case(self.catalogue, price, replace(bound, output_tokens=0))
        per_output_token = _worst_case(self.catalogue, price, replace(bound, output_tokens=1)) - input_cost
        affordable = math.floor((remaining - input_cost) / (per_output_token * bound.choices))
        if affordable < MIN_USEFUL_MAX_TOKENS or affordable >= bound.max_tokens:
            return None
        return affordable

    # -- response cache (tollgate.response_cache) -------------------------------------------------
    def _cached(self, req: MeteredRequest, operation: str,
                cache: response_cache.Policy | None) -> tuple[Answer, bytes, str] | None:
        """(stored answer, the body to send, its content type) when the cache answers this request, else None.
        One GetItem, only for a request whose policy caches it; a stored answer that cannot be replayed in
        the form asked for is a miss."""
        if cache is None or self.cache is None:
            return None
        found = self.cache.get(req.principal.user, cache.key, self.clock(), max_age_s=cache.ttl_s)
        hit = None
        if found is not None and not req.body.get("stream"):
            hit = (found, found.body, found.content_type)
        elif found is not None:
            try:
                events = response_cache.as_stream(operation, found, req.body)
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("stored answer cannot be streamed; calling the provider",
                            extra={"request_id": req.request_id, "cached_from": found.origin_request_id})
            else:
                cost_comment = streaming.COST_COMMENT % usd(Decimal(0)).encode()
                hit = (found, b"".join(events) + cost_comment, streaming.EVENT_STREAM)
        self._count(metric_names.CACHE_HITS if hit else metric_names.CACHE_MISSES)
        return hit

    def _answer_from_cache(self, req: MeteredRequest, price: ModelPrice, res: Reservation, bound: estimate.Bound,
                           found: Answer, body: bytes, content_type: str) -> Reply | streaming.StreamingReply:
        """Answer from the cache: settle the $0 reservation (usage record `cached: true`, no provider tokens;
        the pending record is made final, nothing is spent), then send the stored answer, as a stream if asked."""
        started = time.monotonic()
        stream = bool(req.body.get("stream"))
        headers = {**self._headers(req, res, Decimal(0), None, bound, tokens=0), response_cache.HEADER: "hit"}
        self.settle_answered(req, price, res, Usage(), Decimal(0), started, False, stream=stream, model=found.model,
                             replay=Replay(found.status, body.decode(), content_type, headers), cached=True)
        self._count(metric_names.REQUESTS)
        if stream:
            return streaming.StreamingReply(found.status, content_type, headers, iter((body,)), cost=Decimal(0),
                                            basis=streaming.CACHED)
        return Reply(found.status, body, content_type, headers, cost=Decimal(0))

    def _cache_put(self, req: MeteredRequest, cache: response_cache.Policy | None, res: Reservation, status: int,
                   body: bytes, content_type: str, model: str, lowered_from: int | None) -> dict[str, Any] | None:
        """The settle transaction's write storing a plain answer in the cache, or None when it is not stored
        (not cached, an error, too big, or shortened because the budget lowered max_tokens)."""
        if cache is None or self.cache is None or lowered_from is not None or not response_cache.storable(status, body):
            return None
        answer = Answer(status, body, content_type, model, req.request_id)
        return answer_put(self.ledger.budgets, req.principal.user, cache.key, answer, res.plan.started_at, cache.ttl_s)

    def _stream_cache_put(self, req: MeteredRequest, operation: str, cache: response_cache.Policy | None,
                          res: Reservation, lowered_from: int | None) -> streaming.CachePut | None:
        """For a streamed request that may be stored: (the stream's SSE bytes, its usage, model) -> the settle
        write storing the plain answer the events describe, or None when they describe none."""
        if cache is None or self.cache is None or lowered_from is not None:
            return None

        def put(events: bytes, usage: Usage, model: str) -> dict[str, Any] | None:
            try:  # never in the way of settling the stream
                doc = response_cache.from_stream(operation, events, usage)
                return doc and self._cache_put(req, cache, res, 200, doc, "application/json", model, None)
            except Exception:
                log.exception("streamed answer not stored in the response cache", extra={"request_id": req.request_id})
                return None
        return put

    # -- provider call and settlement ------------------------------------------------------------
    def _call_and_settle(self, req: MeteredRequest, operation: str, price: ModelPrice, res: Reservation,
                         body: dict[str, Any], bound: estimate.Bound, lowered_from: int | None,
                         deployments: tuple[Any, ...] = (),
                         cache: response_cache.Policy | None = None) -> Reply | streaming.StreamingReply:
        stream = bool(body.get("stream"))
        started = time.monotonic()
        requested = body
        try:
            # Deployments in order: a 429 / 5xx / throttling / timeout before any byte reached the client
            # moves on to the next one; the one that answers is metered (its price, its model).
            deployments = deployments or (Deployment(price.provider, requested.get("model", ""), price),)
            for attempt, deployment in enumerate(deployments):
                price, body = deployment.price, _for_deployment(requested, deployment,
                                                                self.catalogue.resolve(requested.get("model")))
                try:
                    api_key, byok = ("", False) if price.provider in KEYLESS_PROVIDERS else self.keys(
                        req.principal, price.provider)
                    provider = self._provider(operation, deployment)
                    # the client's anthropic-version / anthropic-beta, for the Anthropic API only
                    forwarded = {"headers": req.provider_headers} if (
                        req.provider_headers and price.provider == "anthropic") else {}
                    if stream:  # forwarded as it arrives, settled when it ends (tollgate.streaming)
                        upstream = provider.open_stream(operation, body, api_key=api_key, **forwarded)
                    else:
                        result = provider.call(operation, body, api_key=api_key, **forwarded)
                    break
                except (ProviderFailed, ProviderRejected) as exc:
                    if attempt + 1 == len(deployments) or not _worth_another_deployment(exc):
                        raise
                    log.warning("deployment failed before answering; trying the next", extra={
                        "request_id": req.request_id, "deployment": deployment.name, "error_code": exc.code})
            said = response_cache.answer_header(cache, req.cache)
            served_by = {"x-tollgate-deployment": deployment.name, **({response_cache.HEADER: said} if said else {})}
            req = replace(req, deployment=deployment.label(getattr(provider, "region", None)))
            if stream:
                reply = streaming.stream(self, req, price, res, upstream, body, bound, lowered_from, byok, started,
                                         self._stream_cache_put(req, operation, cache, res, lowered_from))
                reply.headers.update(served_by)
                return reply
        except BaseException as exc:  # release the reservation whatever went wrong, then re-raise
            self._settle(req, price, res, Usage(), Decimal(0), started, False, ERROR,
                         getattr(exc, "code", type(exc).__name__), stream=stream)
            self._count(metric_names.ERRORS)
            if isinstance(exc, ProviderRejected):
                raise _as_client_error(exc, price.provider, price.provider in req.principal.byok_providers) from None
            raise
        usage = result.usage
        if usage.total_tokens == 0:
            # A success with no usage must not be metered at $0: charge the reserved worst case.
            log.warning("provider reported no usage; charging the worst case",
                        extra={"request_id": req.request_id, "model": price.id})
            usage = Usage(input_tokens=bound.input_tokens, output_tokens=bound.output_tokens)
            cost, reported_cost = res.plan.cost, None
        else:
            cost, reported_cost = self._charge(req, price, res, bound, usage)
        headers = {**self._headers(req, res, cost, lowered_from, bound,
                                   tokens=_window_tokens(price, res, usage, reported_cost)), **served_by}
        replay = Replay(result.status, result.body.decode(), result.content_type, headers)
        self.settle_answered(req, price, res, usage, cost, started, byok, stream=stream, model=result.model or price.id,
                             replay=replay, reported_cost=reported_cost, response_id=result.response_id,
                             cache_put=self._cache_put(req, cache, res, result.status, result.body, result.content_type,
                                                       result.model or price.id, lowered_from))
        self._warn(req, res, cost)
        self._alert_anomaly(req, price, result.model or price.id, usage, cost, reported_cost)
        if self.metrics:
            self._count(metric_names.REQUESTS)
            self.metrics.add_metric(name=metric_names.TOKENS, unit="Count", value=usage.total_tokens)
            self.metrics.add_metric(name=metric_names.COST_USD, unit="None", value=float(cost))
            self.metrics.add_metric(name=metric_names.PROVIDER_LATENCY_MS, unit="Milliseconds",
                                    value=(time.monotonic() - started) * 1000)
        return Reply(result.status, result.body, result.content_type, headers, cost=cost)

    def _charge(self, req: MeteredRequest, price: ModelPrice, res: Reservation, bound: estimate.Bound,
                usage: Usage) -> tuple[Decimal, Decimal | None]:
        """(USD to charge, the reported cost if the usage is anomalous else None). A provider reporting
        more tokens than the request allowed (more output than max_tokens x n, more input than its bound)
        is charged at most the reserved worst case, so no budget is overdrawn by a provider's error."""
        cost = self.catalogue.cost(price, usage)
        if usage.input_tokens <= bound.input_tokens and usage.output_tokens <= bound.output_tokens \
                and cost <= res.plan.cost:
            return cost, None
        log.warning("provider reported more usage than the request allowed; charging the reserved worst case",
                    extra={"request_id": req.request_id, "model": price.id, "input_tokens": usage.input_tokens,
                           "output_tokens": usage.output_tokens, "input_bound": bound.input_tokens,
                           "output_bound": bound.output_tokens, "reported_cost_usd": usd(cost)})
        return min(cost, res.plan.cost), cost

    def _alert_anomaly(self, req: MeteredRequest, price: ModelPrice, model: str, usage: Usage, cost: Decimal,
                       reported_cost: Decimal | None) -> None:
        """One SNS alert (deduplicated in tollgate.alerts) when the provider reported more than was allowed."""
        if reported_cost is not None and self.alerts:
            self.alerts.usage_anomaly(provider=price.provider, model=model, principal=req.principal.id,
                                      user=req.principal.user, request_id=req.request_id,
                                      input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                                      reported_cost=reported_cost, charged=cost)

    def settle_answered(self, req: MeteredRequest, price: ModelPrice, res: Reservation, usage: Usage, cost: Decimal,
                        started: float, byok: bool, status: str = OK, error_code: str | None = None, *, stream: bool,
                        model: str, replay: Replay | None, reported_cost: Decimal | None = None,
                        response_id: str | None = None, cached: bool = False,
                        cache_put: dict[str, Any] | None = None) -> None:
        """Settle a request that was answered (plain, streamed — also cut — or from the cache). Never raises:
        the answer exists (the provider has answered and billed, or the cache has), so the client gets it
        rather than an error it would retry (and pay for again). A failing settle is tried once more without the stored idempotent replay
        and cache entry (the likeliest cause is their size); if that fails too, it is logged and the
        reservation stays held until the sweeper releases it."""
        try:
            self._settle(req, price, res, usage, cost, started, byok, status, error_code, stream=stream, model=model,
                         replay=replay, reported_cost=reported_cost, response_id=response_id, cached=cached,
                         cache_put=cache_put)
        except Exception:
            log.exception("settle failed; retrying without the idempotent replay and cache entry",
                          extra={"request_id": req.request_id, "stream": stream})
            self._count(metric_names.SETTLE_FAILURES)
            try:
                self._settle(req, price, res, usage, cost, started, byok, status, error_code, stream=stream,
                             model=model, reported_cost=reported_cost, response_id=response_id, cached=cached)
            except Exception:
                log.exception("settle failed twice; usage not recorded",
                              extra={"request_id": req.request_id, "stream": stream})

    def _settle(self, req: MeteredRequest, price: ModelPrice, res: Reservation, usage: Usage, cost: Decimal,
                started: float, byok: bool, status: str, error_code: str | None, *, stream: bool,
                model: str | None = None, replay: Replay | None = None,
                reported_cost: Decimal | None = None, response_id: str | None = None, cached: bool = False,
                cache_put: dict[str, Any] | None = None) -> None:
        """Record the usage and settle the reservation (tollgate.store.ledger). A stored Responses API answer
        (`response_id`, unless the request said `store: false`) has its owner recorded in the same transaction,
        and so has an answer stored in the response cache (`cache_put`)."""
        record = UsageRecord(
            user=req.principal.user, request_id=req.request_id, started_at=res.plan.started_at,
            principal=req.principal.id, key_id=req.principal.key_id, provider=price.provider,
            model=model or price.id, usage=usage, cost=cost,
            request_type="agent" if req.run_id else ("embedding" if price.kind == "embedding" else "completion"),
            endpoint=req.path, user_agent=req.user_agent, duration_ms=int((time.monotonic() - started) * 1000),
            byok=byok, status=status, stream=stream, error_code=error_code, run_id=req.run_id,
            reported_cost=reported_cost, deployment=req.deployment, cached=cached)
        extra = (cache_put,) if cache_put else ()
        if response_id and req.body.get("store") is not False:
            extra += (owner_put(self.ledger.budgets, response_id, req.principal.user, res.plan.started_at),)
        self.ledger.settle(res, record.item(), cost, _window_tokens(price, res, usage, reported_cost), replay,
                           **({"extra": extra} if extra else {}))

    def _warn(self, req: MeteredRequest, res: Reservation, cost: Decimal) -> None:
        if not self.alerts:
            return
        refund = res.plan.cost - cost
        for level in res.near_limit(refund):
            subject = level.pk.split("#", 1)[1]
            self.alerts.budget_warning(level_kind=level.kind, subject=subject, period=level.sk,
                                       limit=level.limit, remaining=res.remaining_as_known(level.kind) + refund)

    def _headers(self, req: MeteredRequest, res: Reservation, cost: Decimal, lowered_from: int | None,
                 bound: estimate.Bound, *, tokens: int | None = None) -> dict[str, str]:
        """The answer's metering headers; `tokens` is what the rate window settles to. Remaining values are
        exact (as of this request's reservation, its own settlement applied) or left out when the ledger
        could not prove them (tollgate.store.ledger)."""
        plan = res.plan
        out = {"x-request-id": req.request_id, "x-tollgate-cost-usd": usd(cost)}
        if plan.window:
            tokens_left = res.remaining_tokens
            if tokens_left is not None and tokens is not None:
                tokens_left += plan.tokens - tokens  # what settle gives back (or takes) on the window
            out.update(rate_headers(plan.window, res.remaining_requests, tokens_left))
        refund = plan.cost - cost
        if res.budget_remaining and res.all_budgets_known:
            remaining = min(res.budget_remaining.values()) + refund
            out["x-tollgate-budget-remaining-usd"] = usd(max(remaining, Decimal(0)))
        if res.near_limit(refund):
            out["x-tollgate-budget-state"] = "warning"
        elif res.warning_state_known:
            out["x-tollgate-budget-state"] = "ok"
        if lowered_from is not None:
            out["x-tollgate-max-tokens"] = str(bound.max_tokens)
            out["x-tollgate-max-tokens-lowered-from"] = str(lowered_from)
        return out

    def _count(self, name: str) -> None:
        if self.metrics:
            self.metrics.add_metric(name=name, unit="Count", value=1)

    def _metric(self, name: str, unit: str, value: float) -> None:
        if self.metrics:
            self.metrics.add_metric(name=name, unit=unit, value=value)


def _rate_limited_tokens(price: ModelPrice, usage: Usage) -> int:
    """What the tokens-per-minute window settles to, counted as the provider counts its own limit: for
    Anthropic, cache reads do not count towards input tokens per minute (its rate-limits docs); OpenAI
    counts every token."""
    if price.provider == "anthropic":
        return usage.total_tokens - usage.cached_input_tokens
    return usage.total_tokens


def _window_tokens(price: ModelPrice, res: Reservation, usage: Usage, reported_cost: Decimal | None) -> int:
    """What the tokens-per-minute window settles to: the provider's count, or for anomalous usage
    (reported_cost set) at most what was reserved, as the budgets are charged."""
    tokens = _rate_limited_tokens(price, usage)
    return min(tokens, res.plan.tokens) if reported_cost is not None else tokens


def _worst_case(catalogue: Catalogue, price: ModelPrice, bound: estimate.Bound) -> Decimal:
    """What to reserve for a bound: its tokens at the dearest rates of its tiers, plus its tool calls."""
    return catalogue.worst_case_cost(price, bound.input_tokens, bound.output_tokens, tiers=bound.service_tiers,
                                     tool_calls=bound.tool_calls)


def _loop_subject(req: MeteredRequest) -> str:
    """Whose repetitions count together: a key's, or for a service acting for users, one user's run
    (so an agent run keeps its own accounting)."""
    p = req.principal
    if p.kind == IAM:
        return f"{p.account}#{p.user}#{req.run_id or '-'}"
    return p.account


def _as_client_error(exc: ProviderRejected, provider: str, byok: bool) -> TollgateError:
    """A provider's refusal, as the client should see it: a provider refusing *our* credentials is not
    the client's authentication failing, and a provider's rate limit is worth a retry later."""
    if exc.status in (401, 403):
        if byok:
            return InvalidRequest(f"{provider} refused your own provider key; update it with "
                                  "PUT /v1/provider-keys/" + provider + ".", code="invalid_provider_key")
        return ProviderFailed(f"{provider} refused the platform's credentials; tell the operator.",
                              code="provider_auth_failed")
    if exc.status == 429:  # the provider's hint, both forms (tollgate.providers._common.retry_hint)
        return ProviderFailed(f"{provider} is rate limiting the gateway; retry later.", code="provider_rate_limited",
                              status=503, headers=dict(exc.headers))
    return exc


def _idempotency_pk(req: MeteredRequest) -> str | None:
    key = idempotency.checked(req.idempotency_key)
    if key is None:
        return None
    return f"IDEM#{req.principal.account}#{hashlib.sha256(key.encode()).hexdigest()}"


def _operation(path: str) -> str:
    for suffix, op in OPERATION_BY_SUFFIX.items():
        if path.endswith(suffix):
            return op
    raise InvalidRequest(f"{path} is not a metered route.")


def _check_route_fits_model(operation: str, price: ModelPrice) -> None:
    if operation == EMBEDDINGS and price.kind != "embedding":
        raise InvalidRequest(f"'{price.id}' is not an embedding model.", param="model")
    if operation != EMBEDDINGS and price.kind == "embedding":
        raise InvalidRequest(f"'{price.id}' is an embedding model; use /v1/embeddings.", param="model")
    if WIRE_PROVIDER[operation] != price.provider and not _serves_other_wire(operation, price):
        hint = "/v1/messages" if price.provider == "anthropic" else "/v1/chat/completions"
        raise InvalidRequest(f"'{price.id}' is served by {price.provider}; call it through {hint}.", param="model")


def _serves_other_wire(operation: str, price: ModelPrice) -> bool:
    """Whether a provider serves this route's wire format though it is not that format's own provider:
    Bedrock serves chat completions for every model (Converse) and messages for its Claude models; the
    Anthropic API serves chat completions too (tollgate.translate.openai_anthropic)."""
    if price.provider == "bedrock":
        from tollgate.providers.bedrock_provider import is_claude

        return operation == CHAT or (operation == MESSAGES and is_claude(price.id))
    return price.provider == "anthropic" and operation == CHAT


def _fits_route(operation: str, price: ModelPrice) -> bool:
    try:
        _check_route_fits_model(operation, price)
    except InvalidRequest:
        return False
    return True


def _held_at(catalogue: Catalogue, deployments: tuple[Any, ...],
             bound: estimate.Bound) -> tuple[tuple[Any, ...], ModelPrice]:
    """(the deployments that can price this request, the price to reserve at): the first deployment always;
    a later one only if it prices the request's service tiers and server-side tools. The reservation is the
    dearest worst case among them, so whichever answers is covered."""
    usable, held, most = [deployments[0]], deployments[0].price, _worst_case(catalogue, deployments[0].price, bound)
    for deployment in deployments[1:]:
        try:
            worst = _worst_case(catalogue, deployment.price, bound)
        except KeyError:  # an unpriced tier or server-side tool on this deployment: it cannot serve this request
            continue
        usable.append(deployment)
        if worst > most:
            held, most = deployment.price, worst
    return tuple(usable), held


def _budget_exempt(principal: Principal, price: ModelPrice) -> bool:
    """Whether a call priced at `price` is paid with the caller's own provider key (BYOK) and the caller's
    user is exempt from budgets for such calls (`byok_budget_exempt`): its plan holds no budget level. A
    deployment that is not so paid (another provider, the platform's key, Bedrock's IAM role) must then never
    answer for it: the platform would pay with nothing held."""
    return price.provider in principal.byok_providers and principal.byok_budget_exempt


def _for_deployment(body: dict[str, Any], deployment: Any, requested: str | None) -> dict[str, Any]:
    """The body sent to a deployment: the client's, with the deployment's model id unless the deployment
    serves the very model the client named (`requested`: its catalogue id; the client's spelling is kept)."""
    return body if deployment.price.id == requested else {**body, "model": deployment.model}


# What a provider answers when it does not serve the model at all (404): OpenAI's `model_not_found`, Anthropic's
# not_found_error "model: <id>" (no code: ProviderRejected's own), Bedrock's ResourceNotFoundException (the
# model, or its end of life).
_MODEL_NOT_SERVED_CODES = (ProviderRejected.code, "model_not_found", "ResourceNotFoundException")


def _worth_another_deployment(exc: TollgateError) -> bool:
    """A failure another deployment may not have: the provider failing (5xx, timeout, unreachable, Bedrock
    model access), rate limiting (429, Bedrock ThrottlingException), or not serving the model at all (a 404
    about the model: retired on that provider, as claude-sonnet-4-5 on the Claude API on 2026-11-30 (the
    anthropic SDK's deprecation table, anthropic/_data/deprecated_models.py) while Bedrock keeps its own
    schedule, or not offered in that account or region); never a refusal of the request itself (a 404 about
    something else, e.g. a Responses `previous_response_id`, is the client's)."""
    if isinstance(exc, ProviderFailed):
        return True
    if not isinstance(exc, ProviderRejected):
        return False
    return exc.status == 429 or (exc.status == 404 and exc.param in (None, "model")
                                 and exc.code in _MODEL_NOT_SERVED_CODES and "model" in exc.message.lower())
