"""Bring your own key through the handlers over emulated AWS (moto KMS and DynamoDB, the fake provider)."""
from __future__ import annotations

import json
import logging
import socket
import sys
from decimal import Decimal

import pytest

from tests.integration.world import body_of
from tollgate import wiring
from tollgate.byok import ProviderKeyUnavailable, ProviderKeyUnreadable
from tollgate.schema import PROVIDER_KEYS, TABLES, Env
from tollgate.store.dynamo import from_item

ALICE_KEY = "sk-alice-own-openai-key-1234"
PATH = "/v1/provider-keys/openai"
CHAT = "/v1/chat/completions"
MANAGE = ("ai:complete", "byok:manage")


def _chat(text="hello"):
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 50}


def _messages(text="hello"):
    return {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}


def _items(world, env_var=PROVIDER_KEYS.env_var):
    return world.dynamodb.scan(TableName=world.env[env_var])["Items"]


def _usage(world, user):
    items = world.dynamodb.query(TableName=world.env["TOLLGATE_USAGE_TABLE"], KeyConditionExpression="pk = :u",
                                 ExpressionAttributeValues={":u": {"S": user}})["Items"]
    return [from_item(i) for i in items]


def _with_key(world, user="alice", key=ALICE_KEY, provider="openai"):
    """(raw API key, principal re-authenticated after storing `key`)."""
    raw, _ = world.create_key(user, scopes=MANAGE)
    resp = world.call("PUT", f"/v1/provider-keys/{provider}", {"api_key": key}, principal=world.principal(raw))
    assert resp["statusCode"] == 200, resp["body"]
    return raw, world.principal(raw)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Counting:
    """A boto3 client that counts the operations called through it."""

    def __init__(self, client):
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name == "exceptions" or not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls.append(args[0] if name == "get_paginator" else name)
            return attr(*args, **kwargs)
        return counted


# --- the routes --------------------------------------------------------------------------------------

def test_put_validates_once_stores_sealed_and_get_and_delete_work(world):
    raw, _ = world.create_key("alice", scopes=MANAGE)
    who = world.principal(raw)
    put = world.call("PUT", PATH, {"api_key": ALICE_KEY}, principal=who)
    assert put["statusCode"] == 200, put["body"]
    shown = body_of(put)
    assert shown["provider"] == "openai" and shown["last4"] == "1234"
    assert shown["created_at"] == shown["updated_at"] == shown["validated_at"]
    [validation] = world.fake.calls  # once, directly to the provider, with the user's key
    assert (validation["method"], validation["path"], validation["api_key"]) == ("GET", "/v1/models", ALICE_KEY)

    [item] = _items(world)
    assert set(item) == {"userId", "provider", "ciphertext", "nonce", "encryptedDataKey", "scheme", "last4",
                         "createdAt", "updatedAt", "validatedAt"}
    assert len(item["nonce"]["B"]) == 12

    got = world.call("GET", PATH, principal=who)
    assert got["statusCode"] == 200 and body_of(got) == shown

    deleted = world.call("DELETE", PATH, principal=who)
    assert deleted["statusCode"] == 200 and body_of(deleted) == {"provider": "openai", "deleted": True}
    assert _items(world) == []
    for method in ("GET", "DELETE"):
        gone = world.call(method, PATH, principal=who)
        assert gone["statusCode"] == 404 and body_of(gone)["error"]["code"] == "provider_key_not_found"


def test_replacing_a_key_keeps_created_at_and_updates_the_rest(world):
    raw, who = _with_key(world)
    first = body_of(world.call("GET", PATH, principal=who))
    second = body_of(world.call("PUT", PATH, {"api_key": "sk-alice-second-key-abcd"}, principal=who))
    assert second["created_at"] == first["created_at"] and second["last4"] == "abcd"
    assert second["updated_at"] >= first["updated_at"]
    assert wiring.byok().key_for("alice", "openai") == "sk-alice-second-key-abcd"


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_a_key_without_byok_manage_is_refused(world, method):
    raw, _ = world.create_key("alice", scopes=("ai:complete", "ai:embed"))
    resp = world.call(method, PATH, {"api_key": ALICE_KEY} if method == "PUT" else None,
                      principal=world.principal(raw))
    assert resp["statusCode"] == 403 and body_of(resp)["error"]["code"] == "insufficient_scope"
    assert world.fake.calls == [] and _items(world) == []


@pytest.mark.parametrize("path, body, code", [
    ("/v1/provider-keys/mistral", {"api_key": ALICE_KEY}, "unknown_provider"),
    (PATH, {"api_key": ""}, "invalid_request"),
    (PATH, {"api_key": "   "}, "invalid_request"),
    (PATH, {"api_key": 1234}, "invalid_request"),
    (PATH, {}, "invalid_request"),
    (PATH, {"api_key": "sk-" + "x" * 510}, "invalid_request"),
    (PATH, {"api_key": "sk-with space-1234"}, "invalid_request"),
    (PATH, {"api_key": "sk-line\nbreak-1234"}, "invalid_request"),
])
def test_bad_requests_are_400_in_openai_shape_and_reach_no_provider(world, path, body, code):
    raw, _ = world.create_key("alice", scopes=MANAGE)
    resp = world.call("PUT", path, body, principal=world.principal(raw))
    assert resp["statusCode"] == 400, resp["body"]
    error = body_of(resp)["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert world.fake.calls == [] and _items(world) == []


def test_unknown_provider_on_get_and_delete_is_400(world):
    raw, _ = world.create_key("alice", scopes=MANAGE)
    for method in ("GET", "DELETE"):
        resp = world.call(method, "/v1/provider-keys/mistral", principal=world.principal(raw))
        assert resp["statusCode"] == 400 and body_of(resp)["error"]["code"] == "unknown_provider"


def test_a_key_the_provider_refuses_is_400_without_echoing_it(world):
    raw, _ = world.create_key("alice", scopes=MANAGE)
    refused_key = "bad-alice-typo-key-9876"
    resp = world.call("PUT", PATH, {"api_key": refused_key}, principal=world.principal(raw))
    assert resp["statusCode"] == 400
    assert body_of(resp)["error"]["code"] == "invalid_provider_key"
    assert refused_key not in resp["body"] and "9876" not in resp["body"]
    assert len(world.fake.calls) == 1 and _items(world) == []


def test_an_unreachable_provider_is_502_and_nothing_is_stored(world, monkeypatch):
    monkeypatch.setenv(Env.OPENAI_BASE_URL, f"http://127.0.0.1:{_closed_port()}/v1")
    wiring.reset()
    raw, _ = world.create_key("alice", scopes=MANAGE)
    resp = world.call("PUT", PATH, {"api_key": ALICE_KEY}, principal=world.principal(raw))
    assert resp["statusCode"] == 502 and body_of(resp)["error"]["code"] == "provider_error"
    assert ALICE_KEY not in resp["body"] and _items(world) == []


def test_validation_is_one_direct_call_with_the_short_timeout(world):
    class Recording:
        def __init__(self):
            self.calls = []

        def validate_key(self, api_key, *, timeout_s):
            self.calls.append(timeout_s)
            return True

    provider = Recording()
    service = wiring.byok()
    service.providers = {"openai": provider}
    service.validate_timeout_s = 2.5
    service.put("alice", "openai", {"api_key": ALICE_KEY})
    assert provider.calls == [2.5] and world.fake.calls == []


# --- sealing -------------------------------------------------------------------------------------------

def test_ciphertext_copied_onto_another_users_row_does_not_decrypt(world):
    _with_key(world)
    assert wiring.byok().key_for("alice", "openai") == ALICE_KEY  # alice's data key is now cached
    [item] = _items(world)
    world.dynamodb.put_item(TableName=world.env[PROVIDER_KEYS.env_var], Item={**item, "userId": {"S": "bob"}})
    assert wiring.byok().providers_of("bob") == {"openai"}

    with pytest.raises(ProviderKeyUnreadable) as refused:
        wiring.byok().key_for("bob", "openai")
    assert "cannot be decrypted" in refused.value.message and ALICE_KEY not in refused.value.message

    bob_raw, _ = world.create_key("bob", scopes=MANAGE)
    world.fake.reset()
    resp = world.call("POST", CHAT, _chat(), principal=world.principal(bob_raw))
    assert resp["statusCode"] == 500 and body_of(resp)["error"]["code"] == "provider_key_unreadable"
    assert ALICE_KEY not in resp["body"] and world.fake.calls == []
    [record] = _usage(world, "bob")  # the reservation was released and the failure recorded
    assert record["status"] != "ok" and Decimal(record["costUsd"]) == 0


def test_ciphertext_moved_to_another_provider_does_not_decrypt(world):
    _with_key(world)
    [item] = _items(world)
    world.dynamodb.put_item(TableName=world.env[PROVIDER_KEYS.env_var],
                            Item={**item, "provider": {"S": "anthropic"}})
    with pytest.raises(ProviderKeyUnreadable):
        wiring.byok().key_for("alice", "anthropic")


def test_data_keys_are_cached_and_a_replaced_key_is_not_served_from_the_cache(world):
    _with_key(world)
    service = wiring.byok()
    service.kms = Counting(service.kms)
    assert [service.key_for("alice", "openai") for _ in range(3)] == [ALICE_KEY] * 3
    assert service.kms.calls == ["decrypt"]
    raw, _ = world.create_key("alice", scopes=MANAGE)
    world.call("PUT", PATH, {"api_key": "sk-alice-new-openai-key-5678"}, principal=world.principal(raw))
    assert service.key_for("alice", "openai") == "sk-alice-new-openai-key-5678"


def test_providers_of_is_one_query(world):
    _with_key(world)
    _with_key(world, key="sk-ant-alice-own-key-0001", provider="anthropic")
    service = wiring.byok()
    counting = Counting(service.store.client)
    service.store.client = counting
    assert service.providers_of("alice") == {"openai", "anthropic"}
    assert service.providers_of("nobody") == set()
    assert counting.calls == ["query", "query"]


# --- the gateway -------------------------------------------------------------------------------------

def _scan_everything(world) -> str:
    return json.dumps([_items(world, t.env_var) for t in TABLES], default=str)


class _CurrentStdout:
    """Writes to whatever sys.stdout is now (pytest swaps it between phases; capsys's during the test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def all_logs(caplog, capsys, monkeypatch):
    """Every log record at DEBUG (caplog), and the Powertools JSON lines on stdout (capsys)."""
    from tollgate.observability import logger

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=logger.name)
    # Powertools' handler keeps the stdout it found when the logger was created.
    monkeypatch.setattr(logger.registered_handler, "stream", _CurrentStdout())

    def collected() -> str:
        out, err = capsys.readouterr()
        records = [f"{r.getMessage()} {r.__dict__!r} {r.exc_text or ''}" for r in caplog.records]
        assert records and '"level"' in out, "no logs were captured"
        return "\n".join([out, err, *records])
    return collected


def test_a_byok_request_uses_the_users_key_and_it_leaks_nowhere(world, all_logs):
    raw, _ = world.create_key("alice", scopes=MANAGE)
    before = world.principal(raw)
    assert before.byok_providers == frozenset()
    responses = [world.call("PUT", PATH, {"api_key": ALICE_KEY}, principal=before)]
    who = world.principal(raw)  # the authorizer's context now names the provider
    assert who.byok_providers == frozenset({"openai"})
    assert ALICE_KEY not in json.dumps(who.to_context())

    responses.append(world.call("POST", CHAT, _chat(), principal=who))
    assert responses[-1]["statusCode"] == 200, responses[-1]["body"]
    assert world.fake.calls[-1]["path"] == CHAT and world.fake.calls[-1]["api_key"] == ALICE_KEY
    [record] = _usage(world, "alice")
    assert record["byok"] is True and record["status"] == "ok" and Decimal(record["costUsd"]) > 0

    responses.append(world.call("POST", CHAT, {**_chat(), "stream": True}, principal=who))
    responses.append(world.call("GET", PATH, principal=who))
    responses.append(world.call("POST", "/v1/messages", _messages(), principal=who))  # platform key for anthropic
    assert world.fake.calls[-1]["api_key"] == "sk-fake-platform-anthropic"
    assert {r.get("byok", False) for r in _usage(world, "alice")} == {True, False}  # false: left out
    responses.append(world.call("DELETE", PATH, principal=who))

    assert all(ALICE_KEY not in json.dumps(r) for r in responses)
    assert ALICE_KEY not in _scan_everything(world)
    assert ALICE_KEY not in all_logs()


def test_a_key_removed_after_the_authorizer_cached_it_is_not_swapped_for_the_platforms(world):
    raw, who = _with_key(world)
    world.call("DELETE", PATH, principal=who)  # `who` still lists openai, as a cached authorizer answer would
    with pytest.raises(ProviderKeyUnavailable):
        wiring.byok().key_for("alice", "openai")
    world.fake.reset()
    resp = world.call("POST", CHAT, _chat(), principal=who)
    assert resp["statusCode"] == 409 and body_of(resp)["error"]["code"] == "provider_key_unavailable"
    assert world.fake.calls == []


def test_byok_requests_count_against_budgets_unless_the_user_is_exempt(world):
    admin = world.principal(world.create_key("root", scopes=("admin",))[0])
    tiny = {"user": "alice", "monthly_usd": "0.000001"}
    assert world.call("PUT", "/admin/budgets", tiny, principal=admin)["statusCode"] == 200
    raw, who = _with_key(world)

    held = world.call("POST", CHAT, _chat(), principal=who)
    assert held["statusCode"] == 429 and body_of(held)["error"]["code"] == "insufficient_quota"

    exempt = {"user": "alice", "byok_budget_exempt": True}
    assert world.call("PUT", "/admin/budgets", exempt, principal=admin)["statusCode"] == 200
    who = world.principal(raw)
    assert who.byok_budget_exempt
    world.fake.reset()
    passed = world.call("POST", CHAT, _chat(), principal=who)
    assert passed["statusCode"] == 200, passed["body"]
    assert world.fake.calls[-1]["api_key"] == ALICE_KEY

    platform = world.call("POST", "/v1/messages", _messages(), principal=who)
    assert platform["statusCode"] == 429 and body_of(platform)["error"]["type"] == "rate_limit_error"
    assert [r.get("byok", False) for r in _usage(world, "alice") if r["status"] == "ok"] == [True]


def test_a_budget_exempt_byok_call_never_falls_back_to_a_deployment_the_platform_pays(world, monkeypatch):
    """A user exempt from budgets for calls on their own key has no budget held for them: when their
    Anthropic key is refused (a 404 for the model, a 429), a later deployment paid with the platform's key
    must not answer in its place (it would spend with nothing held)."""
    monkeypatch.setenv("TOLLGATE_DEPLOYMENTS", json.dumps({"claude-opus-4-1-20250805": [
        {"name": "own", "model": "claude-opus-4-1-20250805"}, {"name": "platform", "model": "gpt-4o-mini"}]}))
    wiring.reset()
    admin = world.principal(world.create_key("root", scopes=("admin",))[0])
    raw, _ = _with_key(world, key="sk-ant-own-0001", provider="anthropic")
    assert world.call("PUT", "/admin/budgets", {"user": "alice", "byok_budget_exempt": True},
                      principal=admin)["statusCode"] == 200
    who = world.principal(raw)
    assert who.byok_budget_exempt and "anthropic" in who.byok_providers
    for refusal in ("[[fake:status=404]]", "[[fake:status=429]] [[fake:retry_after_ms=1]]"):
        world.fake.reset()
        resp = world.call("POST", CHAT, {**_chat(f"hi {refusal}"), "model": "claude-opus-4-1-20250805"}, principal=who)
        assert resp["statusCode"] in (404, 503), resp["body"]  # a provider 429 is our 503 provider_rate_limited
        assert {c["wire"] for c in world.fake.calls} == {"anthropic"}  # the platform's deployment never asked
        assert all(c["api_key"] == "sk-ant-own-0001" for c in world.fake.calls)

