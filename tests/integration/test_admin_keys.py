"""The key admin faults from the new-user pass, one test group per kind: a key rotated twice (its second
successor inherited the first rotation's grace end as its expiry), an expired key listed as `active`,
and a secret sent where a key id is expected repeated back in the 404."""
from __future__ import annotations

import json
import random
import string
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.world import body_of
from tollgate import scopes, wiring
from tollgate.auth import api_keys
from tollgate.clock import iso, parse_iso
from tollgate.errors import Conflict

ALL = (scopes.ADMIN, scopes.COMPLETE, scopes.EMBED, scopes.BYOK_MANAGE, scopes.AGENTS_RUN)


@pytest.fixture
def root(world):
    raw, _ = world.create_key("root", scopes=ALL)
    return world.principal(raw)


def _ok(resp, status=200):
    assert resp["statusCode"] == status, resp["body"]
    return body_of(resp)


def _error(resp, status):
    assert resp["statusCode"] == status, resp["body"]
    return body_of(resp)["error"]


def _keys(world, root, user):
    return {k["key_id"]: k for k in _ok(world.call("GET", "/admin/keys", query={"user": user}, principal=root))["keys"]}


def _rotate(world, root, key_id, grace_s):
    return world.call("POST", f"/admin/keys/{key_id}/rotate", {"grace_s": grace_s}, principal=root)


# -- kind 1: a key is rotated once; a successor never inherits a grace end ---------------------------

def test_rotating_a_rotated_key_is_409_naming_its_successor_and_makes_no_key(world, root):
    old = _ok(world.call("POST", "/admin/keys", {"user": "rotor"}, principal=root), 201)
    first = _ok(_rotate(world, root, old["key_id"], 86400), 201)
    assert first["expires_at"] is None and first["rotated_to"] is None
    assert first["previous"]["rotated_to"] == first["key_id"]

    error = _error(_rotate(world, root, old["key_id"], 3600), 409)
    assert error["type"] == "invalid_request_error" and error["code"] == "key_already_rotated"
    assert f"rotate {first['key_id']}" in error["message"]
    listed = _keys(world, root, "rotor")
    assert set(listed) == {old["key_id"], first["key_id"]}  # no second successor
    assert listed[old["key_id"]]["rotated_to"] == first["key_id"] and listed[first["key_id"]]["rotated_to"] is None
    assert listed[old["key_id"]]["expires_at"] == first["previous"]["expires_at"]  # the grace end is unchanged


def test_a_budget_set_on_any_key_of_a_rotation_chain_is_every_keys_limit(world, root):
    """The keys of a chain share their budget items (lineage), so each key's own limits, which its principal
    carries and which a new period's item starts from, must be the same: set on one, they are on all."""
    first = _ok(world.call("POST", "/admin/keys", {"user": "chained"}, principal=root), 201)
    second = _ok(_rotate(world, root, first["key_id"], 86400), 201)
    third = _ok(_rotate(world, root, second["key_id"], 86400), 201)
    _ok(world.call("PUT", "/admin/budgets", {"key": third["key_id"], "monthly_usd": "10", "hourly_usd": "1"},
                   principal=root))
    for member in (first, second, third):
        shown = _ok(world.call("GET", "/admin/budgets", query={"key": member["key_id"]}, principal=root))
        assert (shown["monthly_limit_usd"], shown["hourly"]["limit_usd"]) == ("10", "1")
        assert shown["monthly_limit_is_default"] is False and shown["hourly"]["limit_is_default"] is False
    listed = _keys(world, root, "chained")
    assert {k["monthly_budget_usd"] for k in listed.values()} == {"10"}

    _ok(world.call("PUT", "/admin/budgets", {"key": first["key_id"], "monthly_usd": "0.5"}, principal=root))
    listed = _keys(world, root, "chained")
    assert {k["monthly_budget_usd"] for k in listed.values()} == {"0.5"}
    assert {k["hourly_budget_usd"] for k in listed.values()} == {"1"}  # what was not given is kept


def test_the_successor_is_rotated_in_turn_and_never_expires_unless_the_key_did(world, root):
    old = _ok(world.call("POST", "/admin/keys", {"user": "chain"}, principal=root), 201)
    second = _ok(_rotate(world, root, old["key_id"], 86400), 201)
    third = _ok(_rotate(world, root, second["key_id"], 3600), 201)
    assert third["expires_at"] is None and third["lineage"] == old["key_id"]
    assert second["expires_at"] is None and third["previous"]["rotated_to"] == third["key_id"]


def test_a_keys_own_expiry_is_carried_to_its_successor_but_not_the_grace_end(world, root):
    own = iso(datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30))
    old = _ok(world.call("POST", "/admin/keys", {"user": "expiring", "expires_at": own}, principal=root), 201)
    new = _ok(_rotate(world, root, old["key_id"], 3600), 201)
    assert parse_iso(new["expires_at"]) == parse_iso(own)
    assert parse_iso(new["previous"]["expires_at"]) < parse_iso(own)  # the old key: its grace end
    newer = _ok(_rotate(world, root, new["key_id"], 60), 201)
    assert parse_iso(newer["expires_at"]) == parse_iso(own)


def test_two_rotations_racing_leave_one_successor(world, root, monkeypatch):
    """Both read the key before either marked it: the conditional mark lets one win; the loser's key,
    never shown to anyone, is removed and the caller gets the 409 naming the winner's key."""
    raw, record = world.create_key("racer")
    admin = wiring.admin()
    winner = admin.rotate_key(record.key_id, {"grace_s": 3600})
    stale = admin.keys.get
    monkeypatch.setattr(admin.keys, "get", lambda key_id: record if key_id == record.key_id else stale(key_id))
    with pytest.raises(Conflict) as raised:  # the record read before the winner's mark
        admin.rotate_key(record.key_id, {"grace_s": 60})
    assert raised.value.code == "key_already_rotated" and winner["key_id"] in raised.value.message
    assert set(_keys(world, root, "racer")) == {record.key_id, winner["key_id"]}


def test_rotating_an_expired_key_is_409(world, root):
    _, record = world.create_key("late", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    error = _error(_rotate(world, root, record.key_id, 60), 409)
    assert error["code"] == "key_expired" and "Create a new key" in error["message"]
    assert set(_keys(world, root, "late")) == {record.key_id}


# -- kind 2: an expired key is reported `expired` wherever its status is shown -----------------------

def test_a_key_past_its_expiry_is_listed_expired(world, root):
    _, gone = world.create_key("lister", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    _, live = world.create_key("lister", expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    listed = _keys(world, root, "lister")
    assert listed[gone.key_id]["status"] == "expired" and listed[live.key_id]["status"] == "active"
    everyone = {k["key_id"]: k for k in _ok(world.call("GET", "/admin/keys", principal=root))["keys"]}
    assert everyone[gone.key_id]["status"] == "expired"
    stored = world.dynamodb.get_item(TableName=world.table("TOLLGATE_API_KEYS_TABLE"),
                                     Key={"keyId": {"S": gone.key_id}})["Item"]
    assert stored["status"]["S"] == "active"  # computed when read, never written


def test_a_key_whose_grace_has_ended_is_listed_expired(world, root):
    old = _ok(world.call("POST", "/admin/keys", {"user": "graceless"}, principal=root), 201)
    rotated = _ok(_rotate(world, root, old["key_id"], 0), 201)
    assert rotated["previous"]["status"] == "expired" and rotated["status"] == "active"
    assert _keys(world, root, "graceless")[old["key_id"]]["status"] == "expired"


def test_status_changes_on_an_expired_key_report_it_expired_or_as_set(world, root):
    _, record = world.create_key("ex", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    path = f"/admin/keys/{record.key_id}"
    assert _ok(world.call("POST", f"{path}/suspend", principal=root))["status"] == "suspended"
    assert _ok(world.call("POST", f"{path}/resume", principal=root))["status"] == "expired"
    assert _ok(world.call("POST", f"{path}/revoke", principal=root))["status"] == "revoked"


def test_the_listed_status_agrees_with_the_authorizer():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for expires, status in [(None, "active"), (now + timedelta(seconds=1), "active"), (now, "expired"),
                            (now - timedelta(days=1), "expired")]:
        _, record = api_keys.issue("u", name="n", scopes=(), now=now - timedelta(days=2), rounds=4, expires_at=expires)
        assert record.public(now)["status"] == status
        assert api_keys.check_usable(record, now) == (None if status == "active" else status)


# -- kind 3: a secret where a key id is expected is never repeated ----------------------------------

def _secret_like(secret: str) -> list[str]:
    noise = "".join(random.Random(7).choice(string.ascii_letters + string.digits) for _ in range(80))
    return [secret, f"Bearer {secret}", secret[len(api_keys.PREFIX):], f"Bearer {secret[3:]}", noise,
            secret[:-1], f"{secret[:12]}x", "sk_" + secret[3:], secret[3:15]]


def _key_id_calls(key_id: str) -> list[tuple[str, str, dict | None, dict | None]]:
    path = f"/admin/keys/{key_id}"
    return [("POST", f"{path}/rotate", {"grace_s": 60}, None), ("POST", f"{path}/revoke", None, None),
            ("POST", f"{path}/suspend", None, None), ("POST", f"{path}/resume", None, None),
            ("GET", "/admin/budgets", None, {"key": key_id}),
            ("PUT", "/admin/budgets", {"key": key_id, "monthly_usd": 5}, None)]


def test_no_key_id_route_repeats_a_secret_sent_as_the_id(world, root):
    secret, _ = world.create_key("victim")
    for sent in _secret_like(secret):
        for method, path, body, query in _key_id_calls(sent):
            resp = world.call(method, path, body, query=query, principal=root)
            assert 400 <= resp["statusCode"] < 500, (method, path, resp["body"])
            error = body_of(resp)["error"]
            assert error["type"] == "invalid_request_error" and error["message"]
            shown = resp["body"] + json.dumps(resp.get("headers") or {}) + json.dumps(resp.get("multiValueHeaders") or {})
            for part in {sent, secret, secret[3:], secret[12:]}:
                assert part not in shown, (method, path, sent[:8], resp["body"])
            if resp["statusCode"] == 404:
                assert error["message"] == api_keys.NOT_A_KEY_ID_MESSAGE


def test_a_key_shaped_id_that_no_key_has_is_still_named(world, root):
    for method, path, body, query in _key_id_calls("sk-abcdefghi"):
        error = _error(world.call(method, path, body, query=query, principal=root), 404)
        assert error["message"] == "No API key with id sk-abcdefghi."


def test_key_ids_are_recognised_by_shape():
    raw = api_keys.generate()
    assert api_keys.is_key_id(raw[:api_keys.KEY_ID_LENGTH]) and api_keys.is_key_id("sk-abcDEF123")
    for text in (raw, raw[3:15], "sk-abcdefgh", "sk-abcdefghij", "sk-abc-efghi", "Bearer sk-ab", "sk-abcdefgh\n", None):
        assert not api_keys.is_key_id(text), text


def test_the_rotation_mark_refuses_a_revoked_key_and_no_key(world, monkeypatch):
    """A revoke landing between a rotation's read and its mark: the mark refuses (409), the successor goes."""
    from tollgate.errors import KeyRevoked, NotFound

    _, record = world.create_key("revoked-midway")
    admin = wiring.admin()
    admin.keys.set_status(record.key_id, api_keys.REVOKED)
    stale = admin.keys.get
    monkeypatch.setattr(admin.keys, "get", lambda key_id: record if key_id == record.key_id else stale(key_id))
    with pytest.raises(KeyRevoked):
        admin.rotate_key(record.key_id, {"grace_s": 60})
    assert [r.key_id for r in admin.keys.list_by_user("revoked-midway")] == [record.key_id]
    with pytest.raises(NotFound) as raised:
        admin.keys.mark_rotated("sk-abcdefghi", "sk-bcdefghij", None)
    assert raised.value.message == "No API key with id sk-abcdefghi."
