"""SnapStart (tollgate.snapshot): an environment restored from the snapshot shares nothing unique or secret with
the others restored from it."""
from __future__ import annotations

import json
import random

import boto3
import pytest

from tollgate import snapshot, wiring


@pytest.fixture(autouse=True)
def _fresh_wiring():
    wiring.reset()
    yield
    wiring.reset()


def test_after_restore_reseeds_random():
    random.seed(1234)  # the state every environment restored from one snapshot starts with
    in_snapshot = random.getstate()
    snapshot.after_restore()
    one = [random.random() for _ in range(4)]
    random.setstate(in_snapshot)
    snapshot.after_restore()
    other = [random.random() for _ in range(4)]
    random.setstate(in_snapshot)
    assert one != other
    assert one != [random.random() for _ in range(4)]


def test_after_restore_drops_clients_and_credentials(monkeypatch):
    gateway, dynamodb, openai = wiring.gateway(), wiring.dynamodb(), wiring.providers()["openai"]
    assert boto3.DEFAULT_SESSION.get_credentials().access_key == "testing"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "after-restore")  # what this environment is given now

    snapshot.after_restore()

    assert wiring.gateway() is not gateway
    assert wiring.dynamodb() is not dynamodb
    assert wiring.providers()["openai"] is not openai  # and with it the SDK clients and their connections
    assert boto3.DEFAULT_SESSION.get_credentials().access_key == "after-restore"


def test_after_restore_forgets_cached_secrets():
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    DEFAULT_PROVIDERS["secrets"] = object()  # Powertools' provider, holding the platform keys it fetched
    snapshot.after_restore()
    assert "secrets" not in DEFAULT_PROVIDERS


def _call_app(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> int:
    """One request to the gateway's ASGI app, as the Web Adapter sends its lifecycle calls; the status answered."""
    return _answer(method, path, headers, body)[0]


def _answer(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) the gateway's ASGI app answers one request with."""
    import asyncio

    from handlers import gateway

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}
    asyncio.run(gateway.app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_app_runs_the_after_restore_hook_for_the_web_adapters_post_only():
    gateway = wiring.gateway()
    assert _call_app("POST", snapshot.AFTER_RESTORE_PATH) == 204  # the adapter fails the restore on a non-2xx
    assert wiring.gateway() is not gateway
    rebuilt = wiring.gateway()
    assert _call_app("GET", snapshot.AFTER_RESTORE_PATH) == 404  # not a route: nothing is reset
    assert wiring.gateway() is rebuilt


# The keep-active schedule's event, as the Web Adapter passes a non-HTTP event through: POSTed to
# AWS_LWA_PASS_THROUGH_PATH with the request context `null` (lambda_http's RequestContext::PassThrough).
_SCHEDULED_EVENT = json.dumps({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}).encode()
_PASS_THROUGH = {"x-amzn-request-context": "null", "content-type": "application/json"}


def test_the_keep_active_event_is_answered_without_the_ledger_or_a_provider(monkeypatch):
    def touched(*_args, **_kwargs):
        raise AssertionError("the keep-active event must not reach the ledger, a provider or AWS")

    for name in ("gateway", "providers", "settings"):
        monkeypatch.setattr(wiring, name, touched)
    monkeypatch.setattr(boto3, "client", touched)
    monkeypatch.setattr(boto3, "resource", touched)
    assert _answer("POST", snapshot.KEEP_ACTIVE_PATH, _PASS_THROUGH, _SCHEDULED_EVENT) == (200, b'{"active":true}')


def test_a_request_to_the_keep_active_path_through_api_gateway_is_routed_like_any_other():
    context = json.dumps({"requestId": "r-1", "path": snapshot.KEEP_ACTIVE_PATH,
                          "authorizer": {"principalId": "u-1", "userId": "u-1"}})
    status, body = _answer("POST", snapshot.KEEP_ACTIVE_PATH, {"x-amzn-request-context": context}, _SCHEDULED_EVENT)
    assert status == 404 and b"active" not in body
    assert _call_app("GET", snapshot.KEEP_ACTIVE_PATH, _PASS_THROUGH) == 404  # the adapter only POSTs events
