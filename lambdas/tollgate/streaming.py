"""Streamed metered answers: forward the provider's events as they arrive, settle once when the stream ends
or is cut.

Plain Python, no web framework or event type: the handler iterates `StreamingReply.events` and writes each
chunk to its client as it comes, and calls `cancel()` when the client goes away.

The cut-stream rule (docs/design-decisions.md, issue 11), `charged_usage`:
1. the provider's own final usage, if it sent it (OpenAI's usage chunk, Anthropic's message_delta);
2. else, if the provider sent any generated delta: an upper bound from what was generated — the input side
   as the provider reported it (Anthropic message_start) or the reserved input bound, and as output the
   UTF-8 bytes of the strings in every delta received (a token is at least one byte of text), at most the
   reserved output bound (max_tokens x n, which the provider cannot exceed);
3. else (nothing generated yet, or a request whose reasoning tokens are never streamed): the reserved worst
   case. Never less than the provider can bill; the reservation is always settled, exactly once.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterator

from tollgate import errors, estimate, metric_names
from tollgate.metering import ERROR, OK
from tollgate.money import text as usd
from tollgate.pricing import ModelPrice
from tollgate.providers.base import Usage
from tollgate.store.ledger import Replay, Reservation

if TYPE_CHECKING:  # the service imports this module; the gateway is only passed in
    from tollgate.service import MeteredGateway, MeteredRequest

log = logging.getLogger(__name__)

COST_COMMENT = b": x-tollgate-cost-usd=%s\n\n"  # an SSE comment line: both SDKs skip it
EVENT_STREAM = "text/event-stream"
CUT_BY_CLIENT = "stream_cut_by_client"
CUT_BY_PROVIDER = "stream_cut_by_provider"
CUT_BY_TIME_LIMIT = "stream_cut_by_time_limit"  # Settings.provider_timeout_s: before API Gateway and Lambda end it

PROVIDER_USAGE = "provider_usage"
GENERATED_BOUND = "generated_bound"
RESERVED_WORST_CASE = "reserved_worst_case"
CACHED = "cached"  # not the rule's: a stored answer replayed as a stream, at $0 (tollgate.response_cache)

# Request fields that make a model reason in tokens it bills but never streams (OpenAI reasoning models).
_HIDDEN_REASONING_FIELDS = ("reasoning_effort", "reasoning")

# (a whole stream's SSE bytes, its usage, the model) -> the settle write storing it in the response cache, or None
CachePut = Callable[[bytes, Usage, str], dict[str, Any] | None]


@dataclass
class StreamingReply:
    """A metered answer still being streamed: status and headers go out with the first byte, `events` yields
    the provider's SSE events unchanged (then, if the stream was cut short, an error event in the route's
    shape (cut_event), and one SSE comment with the cost), and the stream is settled exactly once before
    `events` is exhausted, whether it ended, the provider dropped it, or the client went away (`cancel`).
    `cost` (USD) and `basis` (which branch of the rule) are set once settled."""

    status: int
    content_type: str
    headers: dict[str, str]
    events: Iterator[bytes]
    cost: Decimal | None = None
    basis: str | None = None
    replayed: bool = False
    abort: Callable[[], None] = field(default=lambda: None, repr=False)  # hang up on the provider, any thread
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        """The client went away: hang up on the provider at once (it stops generating), forward nothing more,
        and settle. Thread-safe; `events` must still be iterated to its end by its own thread."""
        self._cancelled.set()
        self.abort()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


def charged_usage(meter: Any, bound: estimate.Bound, body: dict[str, Any]) -> tuple[Usage, str]:
    """The usage a stream is charged for, by the cut-stream rule of this module's docstring: (usage, basis).
    `meter` is a tollgate.providers._common.StreamMeter (final, reported, generated_bytes)."""
    final = meter.final
    if final is not None and final.total_tokens > 0:
        return final, PROVIDER_USAGE
    hidden_reasoning = any(k in body for k in _HIDDEN_REASONING_FIELDS)
    if meter.generated_bytes > 0 and not hidden_reasoning:
        reported = meter.reported
        base = reported if reported.input_tokens > 0 else Usage(input_tokens=bound.input_tokens)
        output = min(bound.output_tokens, max(reported.output_tokens, meter.generated_bytes))
        return replace(base, output_tokens=output), GENERATED_BOUND
    return Usage(input_tokens=bound.input_tokens, output_tokens=bound.output_tokens), RESERVED_WORST_CASE


def stream(gateway: "MeteredGateway", req: "MeteredRequest", price: ModelPrice, res: Reservation,
           upstream: Any, body: dict[str, Any], bound: estimate.Bound, lowered_from: int | None, byok: bool,
           started: float, cache_put: CachePut | None = None) -> StreamingReply:
    """Wrap an open provider stream (tollgate.providers._common.ProviderStream) as a StreamingReply. The
    headers are the metered answer's (request id, rate limits, budget state with the worst case still held);
    the cost is not known yet, so it goes out at the end of the stream instead. `cache_put`: given when the
    answer may be stored in the response cache, which happens only if the stream ends normally."""
    headers = gateway._headers(req, res, res.plan.cost, lowered_from, bound)
    headers.pop("x-tollgate-cost-usd", None)
    reply = StreamingReply(upstream.status, upstream.content_type, headers, iter(()), abort=upstream.abort)
    reply.events = _events(gateway, req, price, res, upstream, body, bound, byok, started, reply, cache_put)
    return reply


def _events(gateway: "MeteredGateway", req: "MeteredRequest", price: ModelPrice, res: Reservation, upstream: Any,
            body: dict[str, Any], bound: estimate.Bound, byok: bool, started: float,
            reply: StreamingReply, cache_put: CachePut | None) -> Iterator[bytes]:
    sent: list[bytes] = []  # kept for an idempotent replay or the response cache only (both cap what they store)
    keep = res.plan.idempotency_pk is not None or cache_put is not None
    outcome = CUT_BY_CLIENT  # until the loop below proves otherwise
    forwarded = 0
    try:
        for event in upstream:
            if reply.cancelled:
                break
            if not forwarded:
                gateway._metric(metric_names.TIME_TO_FIRST_TOKEN_MS, "Milliseconds",
                                (time.monotonic() - started) * 1000)
            forwarded += 1
            if keep:
                sent.append(event)
            yield event
            if reply.cancelled:
                break
            if time.monotonic() - started > gateway.settings.provider_timeout_s:
                outcome = CUT_BY_TIME_LIMIT
                break
        else:
            if not reply.cancelled:
                outcome = OK if _ended_normally(upstream) else CUT_BY_PROVIDER
    finally:
        upstream.close()
        if outcome in (CUT_BY_CLIENT, CUT_BY_TIME_LIMIT) and _ended_normally(upstream):
            outcome = OK  # the client hung up, or the limit passed, after the provider's last event: it was whole
        comment = _settle(gateway, req, price, res, upstream, body, bound, byok, started, reply, outcome, sent,
                          cache_put)
    if outcome in (CUT_BY_PROVIDER, CUT_BY_TIME_LIMIT) and not upstream.meter.error:
        yield cut_event(req.path, outcome, gateway.settings.provider_timeout_s, forwarded)
    if outcome != CUT_BY_CLIENT:
        yield comment


def cut_event(path: str, outcome: str, limit_s: float, sequence_number: int) -> bytes:
    """The SSE error event that ends a stream the provider dropped (CUT_BY_PROVIDER) or the gateway cut at its
    time limit (CUT_BY_TIME_LIMIT, `limit_s` seconds), in the route's own mid-stream error shape, so a client
    cannot take a truncated answer for a whole one (the openai SDK raises on the chat one, the anthropic SDK on
    the Messages one; a Responses client receives an `error` event, as from OpenAI itself):
    - /v1/messages: `event: error` with the route's error document (errors.body; Anthropic Messages streaming,
      "Error events": docs.anthropic.com/en/docs/build-with-claude/streaming);
    - /v1/responses: `event: error` with {"type": "error", "code", "message", "param", "sequence_number"}
      (OpenAI Responses streaming events, ResponseErrorEvent; `sequence_number`: the events before it);
    - /v1/chat/completions: `data:` with the route's error document, which the openai SDK raises as APIError."""
    if outcome == CUT_BY_TIME_LIMIT:
        message = (f"The answer took longer than the gateway's limit of {limit_s:g} s and was cut: it is incomplete. "
                   "It was charged for what was generated (x-tollgate-cost-usd in the stream's last comment).")
    else:
        message = ("The provider's stream ended before its last event: this answer is incomplete. It was charged "
                   "for what was generated (x-tollgate-cost-usd in the stream's last comment).")
    if path.endswith("/responses"):
        event = {"type": "error", "code": outcome, "message": message, "param": None,
                 "sequence_number": sequence_number}
        return b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n"
    anthropic = path.endswith("/messages")
    document = errors.body(errors.ProviderFailed(message, code=outcome), "anthropic" if anthropic else "openai")
    return (b"event: error\n" if anthropic else b"") + b"data: " + json.dumps(document).encode() + b"\n\n"


def _ended_normally(upstream: Any) -> bool:
    """True when the provider's stream reached its own end event without an error or a dropped connection."""
    meter = upstream.meter
    return bool(meter.complete and not meter.error and not upstream.dropped)


def _settle(gateway: "MeteredGateway", req: "MeteredRequest", price: ModelPrice, res: Reservation, upstream: Any,
            body: dict[str, Any], bound: estimate.Bound, byok: bool, started: float, reply: StreamingReply,
            outcome: str, sent: list[bytes], cache_put: CachePut | None) -> bytes:
    """Settle the stream once; returns the closing cost comment. A failing settle is logged, never raised:
    the provider has answered and billed, and the client already has the answer."""
    meter = upstream.meter
    usage, basis = charged_usage(meter, bound, body)
    cost, reported_cost = gateway._charge(req, price, res, bound, usage)
    reply.cost, reply.basis = cost, basis
    comment = COST_COMMENT % usd(cost).encode()
    status, error_code = (OK, None) if outcome == OK else (ERROR, outcome)
    if outcome != OK:
        log.warning("stream cut; charged by the cut-stream rule", extra={
            "request_id": req.request_id, "outcome": outcome, "basis": basis, "model": price.id})
    model = meter.model or price.id
    response_id = getattr(meter, "response_id", None)  # a Responses API stream's (tollgate.responses)
    replay = None
    if outcome == OK and res.plan.idempotency_pk is not None:
        replay_headers = {**reply.headers, "x-tollgate-cost-usd": usd(cost)}
        replay = Replay(upstream.status, (b"".join(sent) + comment).decode(), upstream.content_type, replay_headers)
    stored = cache_put(b"".join(sent), usage, model) if cache_put and outcome == OK and upstream.status == 200 else None
    gateway.settle_answered(req, price, res, usage, cost, started, byok, status, error_code, stream=True, model=model,
                            replay=replay, reported_cost=reported_cost, response_id=response_id, cache_put=stored)
    gateway._warn(req, res, cost)
    gateway._alert_anomaly(req, price, model, usage, cost, reported_cost)
    gateway._count(metric_names.REQUESTS)
    gateway._metric(metric_names.TOKENS, "Count", usage.total_tokens)
    gateway._metric(metric_names.COST_USD, "None", float(cost))
    gateway._metric(metric_names.PROVIDER_LATENCY_MS, "Milliseconds", (time.monotonic() - started) * 1000)
    return comment
