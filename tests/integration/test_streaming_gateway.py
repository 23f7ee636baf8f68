"""The gateway function's streamed answers through the local Lambda Web Adapter (handlers.gateway's ASGI app):
the time limit, failures before the first byte, and idempotent replay of a stream."""
from __future__ import annotations

import json

from datetime import datetime, timezone
from decimal import Decimal

from tests.integration.world import body_of, headers_of
from tollgate import budgets, wiring
from tollgate.store.dynamo import from_item

CHAT = "/v1/chat/completions"


def _stream_body(text, **extra):
    return {"model": "gpt-4o-mini", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": text}], **extra}


def _usage(world, user="alice"):
    items = world.dynamodb.query(TableName=world.env["TOLLGATE_USAGE_TABLE"], KeyConditionExpression="pk = :u",
                                 ExpressionAttributeValues={":u": {"S": user}})["Items"]
    return [from_item(i) for i in items]


def _month_reserved(world, key_id):
    item = world.dynamodb.get_item(TableName=world.env["TOLLGATE_BUDGETS_TABLE"], Key={
        "pk": {"S": budgets.principal_pk(key_id)}, "sk": {"S": budgets.month_sk(datetime.now(timezone.utc))}})["Item"]
    return from_item(item)["reservedUsd"]


def test_a_stream_outliving_the_time_limit_is_cut_by_the_gateway_and_settled_by_the_rule(world, monkeypatch):
    monkeypatch.setenv("TOLLGATE_PROVIDER_TIMEOUT_S", "0.5")
    wiring.reset()
    raw, record = world.create_key()
    resp = world.call("POST", CHAT, _stream_body("[[fake:completion_tokens=40]] [[fake:stream_interval_ms=50]]"),
                      principal=world.principal(raw))
    assert resp["statusCode"] == 200
    text = resp["body"]
    assert "[DONE]" not in text and text.rstrip().endswith(tuple("0123456789"))  # ends with the cost comment
    cut = json.loads(text.split("\n\n")[-3][len("data: "):])["error"]  # the error event just before it
    assert cut["code"] == "stream_cut_by_time_limit" and "limit of 0.5 s" in cut["message"]
    [usage] = _usage(world)
    assert usage["errorCode"] == "stream_cut_by_time_limit" and usage["costUsd"] > 0
    assert _month_reserved(world, record.key_id) == 0


def test_a_stream_whose_last_event_arrives_after_the_time_limit_is_whole_not_cut(world, monkeypatch):
    """The limit is checked after each event: when the one that crosses it is the provider's own end, the
    answer is whole, metered ok, with no cut-stream error after it. The stream's clock jumps past the limit
    exactly at its last event (its first monotonic() call is the time to first token, then one per event)."""
    import time as real_time

    from tollgate import streaming

    raw, _ = world.create_key()
    body = _stream_body("count [[fake:completion_tokens=2]]")
    plain = world.call("POST", CHAT, body, principal=world.principal(raw))
    n_events = len([e for e in plain["body"].split("\n\n") if e.startswith("data:")])
    calls = []

    class Clock:
        @staticmethod
        def monotonic() -> float:
            calls.append(1)
            return real_time.monotonic() + (10_000 if len(calls) > n_events else 0)

    monkeypatch.setattr(streaming, "time", Clock)
    resp = world.call("POST", CHAT, body, principal=world.principal(raw))
    assert len(calls) > n_events  # the jump happened, after the last event
    assert resp["statusCode"] == 200 and "data: [DONE]" in resp["body"] and "stream_cut" not in resp["body"]
    assert sorted(u["status"] for u in _usage(world)) == ["ok", "ok"]


def test_a_provider_error_before_the_first_byte_is_an_error_document_and_releases_the_reservation(world):
    raw, record = world.create_key()
    resp = world.call("POST", CHAT, _stream_body("[[fake:status=500]] hi"), principal=world.principal(raw))
    assert resp["statusCode"] == 502
    assert headers_of(resp)["content-type"] == "application/json" and body_of(resp)["error"]["message"]
    assert [(u["status"], u["costUsd"]) for u in _usage(world)] == [("error", Decimal(0))]
    assert _month_reserved(world, record.key_id) == 0


def test_an_idempotent_stream_replays_the_same_events(world):
    raw, _ = world.create_key()
    principal = world.principal(raw)
    first = world.call("POST", CHAT, _stream_body("replay me"), principal=principal,
                       headers={"Idempotency-Key": "stream-1"})
    again = world.call("POST", CHAT, _stream_body("replay me"), principal=principal,
                       headers={"Idempotency-Key": "stream-1"})
    assert first["statusCode"] == again["statusCode"] == 200
    assert again["body"] == first["body"] and "data: [DONE]" in first["body"]
    assert headers_of(again)["x-tollgate-idempotent-replay"] == "true"
    assert headers_of(again)["content-type"].startswith("text/event-stream")
    assert len(_usage(world)) == 1 and len(world.fake.calls) == 1


def test_a_client_that_hangs_up_after_the_last_event_got_a_whole_answer(world):
    """The ASGI layer may see the client leave after the provider's last event but before the generator
    resumes: the answer was whole, so it is settled as ok (not as cut by the client)."""
    from tollgate.service import MeteredRequest

    raw, record = world.create_key()
    reply = wiring.gateway().handle(MeteredRequest(
        request_id="hang-up-at-the-end", path=CHAT, principal=world.principal(raw),
        body=_stream_body("[[fake:completion_tokens=5]] bye"), user_agent="pytest"))
    events = iter(reply.events)
    for event in events:
        if b"[DONE]" in event:
            reply.cancel()
            break
    list(events)  # the generator runs to its end, as the ASGI layer drives it
    [usage] = _usage(world)
    assert (usage["status"], usage.get("errorCode")) == ("ok", None) and usage["costUsd"] > 0
    assert _month_reserved(world, record.key_id) == 0
