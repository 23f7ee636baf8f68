"""The admin edge's faults from the new-user pass, one test per kind: a whole secret key where an id is
expected (refused, never echoed), number text that is not plain ASCII decimal notation, query values
that are not what they name (dates, limits, days, months), a percentage described as a percentage, and
client input echoed back whole."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.world import body_of
from tollgate import requests, routes, scopes
from tollgate.auth import api_keys
from tollgate.errors import InvalidRequest

ALL = (scopes.ADMIN, scopes.COMPLETE, scopes.EMBED, scopes.BYOK_MANAGE, scopes.AGENTS_RUN)


@pytest.fixture
def root(world):
    raw, _ = world.create_key("root", scopes=ALL)
    return world.principal(raw)


@pytest.fixture
def secret(world):
    raw, _ = world.create_key("victim")
    return raw


def _error(resp, status):
    assert resp["statusCode"] == status, resp["body"]
    return body_of(resp)["error"]


# -- kind 1: a whole secret key where an id is expected ------------------------------------------

_PATH_PARAM_ROUTES = [r for r in routes.ROUTES if r.function == routes.ADMIN_FUNCTION and "{" in r.path]


@pytest.mark.parametrize("route", _PATH_PARAM_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_a_whole_secret_key_in_any_admin_path_is_400_and_never_echoed(world, root, secret, route):
    path = route.path.split("{")[0] + secret + route.path.split("}", 1)[1]
    body = {} if route.body else None
    resp = world.call(route.method, path, body, principal=root)
    error = _error(resp, 400)
    assert "whole secret API key" in error["message"] and "tollgate keys list" in error["message"]
    assert secret not in resp["body"] and secret[12:] not in resp["body"]


@pytest.mark.parametrize("method, path, name", [
    ("GET", "/admin/budgets", "key"), ("GET", "/admin/budgets", "user"), ("GET", "/admin/keys", "user"),
    ("GET", "/admin/usage", "user"), ("GET", "/admin/loops", "user"), ("GET", "/admin/invoice", "user")])
def test_a_whole_secret_key_in_any_admin_query_is_400_and_never_echoed(world, root, secret, method, path, name):
    query = {"month": "2026-11", name: secret}
    resp = world.call(method, path, query=query, principal=root)
    error = _error(resp, 400)
    assert "whole secret API key" in error["message"] and error["param"] == name
    assert secret not in resp["body"] and secret[12:] not in resp["body"]


def test_a_whole_secret_key_as_a_body_key_id_is_400_and_never_echoed(world, root, secret):
    resp = world.call("PUT", "/admin/budgets", {"key": secret, "monthly_usd": 5}, principal=root)
    error = _error(resp, 400)
    assert "whole secret API key" in error["message"] and error["param"] == "key"
    assert secret not in resp["body"] and secret[12:] not in resp["body"]


def test_the_apigw_log_line_masks_a_secret_path_segment(secret):
    masked = api_keys.masked(f"/admin/keys/{secret}/revoke")
    assert masked == f"/admin/keys/{secret[:12]}…/revoke" and secret[12:] not in masked
    assert api_keys.masked("/admin/keys/sk-abcdefghi/revoke") == "/admin/keys/sk-abcdefghi/revoke"  # an id


def test_a_long_id_is_not_echoed_at_all(world, root):
    long_id = "k" * 256  # not shaped like a key id: it could hold a secret, so none of it is repeated
    resp = world.call("POST", f"/admin/keys/{long_id}/rotate", {}, principal=root)
    assert _error(resp, 404)["message"] == api_keys.NOT_A_KEY_ID_MESSAGE and "k" * 9 not in resp["body"]


def test_a_long_model_id_is_not_echoed_whole(world, root):
    name = "m" * 200  # a usable id (at most 256 characters), but no such model: 404, the name cut to 64
    resp = world.call("GET", f"/v1/models/{name}", principal=root)
    error = _error(resp, 404)
    assert name not in resp["body"] and "m" * 64 + "…" in error["message"]
    too_long = "m" * 3000  # not an id at all: 400, and not repeated either
    resp = world.call("GET", f"/v1/models/{too_long}", principal=root)
    assert _error(resp, 400)["param"] == "model" and "m" * 65 not in resp["body"]


# -- kind 2: number text that is not plain ASCII decimal notation ----------------------------------

BAD_NUMBERS = ["1_0", "١٠", "10 ", " 10", "+10", "1e1", "1,5", "NaN", "Infinity", "0x10", "１０", ""]
_NOT_ASCII_DIGIT = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@pytest.mark.parametrize("text", BAD_NUMBERS)
@pytest.mark.parametrize("schema, field, extra", [
    ("admin.SetBudget", "monthly_usd", {"user": "alice"}), ("admin.SetBudget", "hourly_usd", {"key": "sk-abcdefghi"}),
    ("admin.CreateKey", "monthly_budget_usd", {"user": "alice"}), ("admin.CreateKey", "hourly_budget_usd", {"user": "a"}),
    ("runs.StartRun", "budget_usd", {"agent": "a", "input": {}}), ("admin.InvoiceQuery", "markup_pct", {"month": "2026-11"}),
    ("admin.CreateKey", "rpm", {"user": "alice"}), ("admin.CreateKey", "cache_ttl_s", {"user": "alice"}),
    ("admin.RotateKey", "grace_s", {}), ("admin.IssueToken", "ttl_s", {"service": "s"}),
])
def test_number_text_that_is_not_plain_ascii_decimal_is_400_naming_the_field(schema, field, extra, text):
    with pytest.raises(InvalidRequest) as raised:
        requests.validated(schema, {**extra, field: text})
    assert raised.value.param == field


@settings(max_examples=50)
@given(digits=st.text(_NOT_ASCII_DIGIT, min_size=1, max_size=4), pad=st.sampled_from([" ", "\t", "_", "\u00a0"]))
def test_unicode_digits_and_padding_are_refused_in_money(digits, pad):
    for text in (digits, "1" + digits, f"1{pad}0", f"{pad}10", f"10{pad}"):
        with pytest.raises(InvalidRequest) as raised:
            requests.validated("admin.SetBudget", {"user": "alice", "monthly_usd": text})
        assert raised.value.param == "monthly_usd"


def test_plain_decimal_text_is_still_exact():
    assert requests.validated("admin.SetBudget", {"user": "a", "monthly_usd": "10.50"})["monthly_usd"] == Decimal("10.50")


def test_the_readme_example_1_0_is_refused_over_http(world, root):
    resp = world.call("PUT", "/admin/budgets", {"user": "alice", "monthly_usd": "1_0"}, principal=root)
    assert _error(resp, 400)["param"] == "monthly_usd"


@pytest.mark.parametrize("limit", ["1_0", "١٠", " 10", "10 ", "+10", "1e1", "-1", "0", "99999999999999999999", "abc"])
def test_a_usage_limit_that_is_not_a_plain_whole_number_in_range_is_400(world, root, limit):
    resp = world.call("GET", "/admin/usage", query={"user": "alice", "limit": limit}, principal=root)
    error = _error(resp, 400)
    assert error["param"] == "limit" and "whole number from 1 to 10000" in error["message"]


# -- kind 3: query values that are not what they name -------------------------------------------

@pytest.mark.parametrize("query, param", [
    ({"from": "abc"}, "from"), ({"from": "2026-13-01"}, "from"), ({"to": "2026-02-30"}, "to"),
    ({"from": "٢٠٢٦-01-01"}, "from"), ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T23:00:00Z"}, "from"),
])
def test_bad_usage_dates_are_400(world, root, query, param):
    resp = world.call("GET", "/admin/usage", query={"user": "alice", **query}, principal=root)
    assert _error(resp, 400)["param"] == param


def test_good_usage_dates_still_answer(world, root):
    resp = world.call("GET", "/admin/usage", query={"user": "alice", "from": "2026-01-01", "to": "2026-01-31T23:59:59Z",
                                                    "limit": "10"}, principal=root)
    assert resp["statusCode"] == 200, resp["body"]


def test_usage_from_and_to_in_any_accepted_form_select_the_same_records(world, root):
    """The query's time is compared as the records' UTC keys are written, whatever ISO form it came in."""
    from datetime import datetime, timedelta, timezone

    raw, _ = world.create_key()
    chat = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert world.call("POST", "/v1/chat/completions", chat, principal=world.principal(raw))["statusCode"] == 200
    now = datetime.now(timezone.utc)
    soon_in_new_york = now + timedelta(minutes=1) - timedelta(hours=5)  # written with its -05:00 offset
    forms = [(now.strftime("%Y-%m-%d"), None), (now.strftime("%Y%m%d") + "T000000Z", None),
             (soon_in_new_york.strftime("%Y-%m-%dT%H:%M:%S-05:00"), "to")]
    for value, name in forms:
        query = {"user": "alice", **({"from": value} if name is None else {"from": "2000-01-01", "to": value})}
        resp = world.call("GET", "/admin/usage", query=query, principal=root)
        assert len(body_of(resp)["records"]) == 1, (value, body_of(resp))


@pytest.mark.parametrize("month", ["2026-13", "٢٠٢٦-01", "2026-1", "26-01"])
def test_a_bad_invoice_month_is_400(world, root, month):
    resp = world.call("GET", "/admin/invoice", query={"month": month}, principal=root)
    assert _error(resp, 400)["param"] == "month"


@pytest.mark.parametrize("day", ["2026-13-01", "2026-02-30", "٢٠٢٦-01-01", "2026-1-1"])
def test_a_bad_reconcile_day_is_400(day):
    with pytest.raises(InvalidRequest) as raised:
        requests.validated("admin.Reconcile", {"day": day})
    assert raised.value.param == "day" and "YYYY-MM-DD" in raised.value.message


# -- kind 4: a percentage is described as a percentage --------------------------------------------

@pytest.mark.parametrize("markup", ["-1", "1e5", "101", "1_0", "lots"])
def test_a_bad_markup_says_percentage_from_0_to_100(world, root, markup):
    resp = world.call("GET", "/admin/invoice", query={"month": "2026-11", "markup_pct": markup}, principal=root)
    error = _error(resp, 400)
    assert error["param"] == "markup_pct" and "a percentage from 0 to 100" in error["message"]
    assert "USD" not in error["message"]
