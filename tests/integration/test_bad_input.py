"""Regression tests for each kind of bad input that used to answer 500 (issue 9), with the exact answer
each now gets, and for revocation being final. The property-based test over every route is
tests/e2e/test_bad_input_fuzz.py."""
from __future__ import annotations

from decimal import Decimal

import pytest

from local.lambda_context import LambdaContext
from tests.integration.world import body_of
from tollgate import routes, scopes, wiring
from tollgate.requests import json_body

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ALL = (scopes.ADMIN, scopes.COMPLETE, scopes.EMBED, scopes.BYOK_MANAGE, scopes.AGENTS_RUN)
CHAT_BODY = '{"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": %s}]}'
CLAUDE_BODY = '{"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": [{"role": "user", "content": %s}]}'


@pytest.fixture
def root(world):
    raw, _ = world.create_key("root", scopes=ALL)
    return world.principal(raw)


def _openai_error(resp, status):
    assert resp["statusCode"] == status, resp["body"]
    error = body_of(resp)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def _anthropic_error(resp, status):
    assert resp["statusCode"] == status, resp["body"]
    body = body_of(resp)
    assert body["type"] == "error" and set(body["error"]) == {"type", "message", "code"}
    return body["error"]


# -- the body as a whole -----------------------------------------------------------------------

@pytest.mark.parametrize("content", [r'"bad \ud800 x"', r'"\udc00"', r'["ok", {"type": "text", "text": "x\udbff"}]'])
def test_a_lone_surrogate_is_400_invalid_request_body_naming_where(world, root, content):
    resp = world.call("POST", CHAT, CHAT_BODY % content, principal=root)
    error = _openai_error(resp, 400)
    assert error["code"] == "invalid_request_body" and error["param"].startswith("messages.0.content")
    assert "surrogate" in error["message"]
    assert not world.fake.calls


def test_a_lone_surrogate_on_the_anthropic_route_is_400_in_anthropic_shape(world, root):
    error = _anthropic_error(world.call("POST", MESSAGES, CLAUDE_BODY % r'"cut \ud83d"', principal=root), 400)
    assert error["type"] == "invalid_request_error" and "surrogate" in error["message"]


def test_a_valid_surrogate_pair_is_one_character_and_goes_through(world, root):
    resp = world.call("POST", CHAT, CHAT_BODY % r'"emoji \ud83d\ude00"', principal=root)
    assert resp["statusCode"] == 200, resp["body"]
    assert world.fake.calls[-1]["body"]["messages"][0]["content"] == "emoji \U0001F600"


def test_a_lone_surrogate_in_an_admin_id_is_400(world, root):
    error = _openai_error(world.call("PUT", "/admin/budgets", r'{"user": "a\ud800", "monthly_usd": 5}',
                                     principal=root), 400)
    assert error["code"] == "invalid_request_body" and error["param"] == "user"


@pytest.mark.parametrize("method, path", [("POST", CHAT), ("POST", "/admin/keys"), ("PUT", "/admin/budgets"),
                                          ("POST", "/v1/agents/runs"), ("PUT", "/v1/provider-keys/openai")])
def test_ten_thousand_levels_deep_is_400_on_every_kind_of_json_route(world, root, method, path):
    raw = '{"model": ' + "[" * 10_000 + "]" * 10_000 + "}"
    error = _openai_error(world.call(method, path, raw, principal=root), 400)
    assert error["code"] == "invalid_request_body" and "nested too deeply" in error["message"]


def test_an_unknown_field_nested_500_deep_is_400_before_any_walk_of_the_body(world, root):
    deep = '{"model": "gpt-4o-mini", "messages": [], "x_vendor": ' + '{"a": ' * 500 + "1" + "}" * 500 + "}"
    error = _openai_error(world.call("POST", CHAT, deep, principal=root), 400)
    assert error["param"] == "x_vendor" and str(json_body.MAX_DEPTH) in error["message"]


def test_nesting_up_to_the_limit_is_accepted():
    nested = "[" * (json_body.MAX_DEPTH - 1) + "]" * (json_body.MAX_DEPTH - 1)
    assert json_body.parse('{"a": ' + nested + "}")["a"] is not None
    with pytest.raises(Exception, match="nested too deeply"):
        json_body.parse('{"a": [' + nested + "]}")


@pytest.mark.parametrize("raw, fragment", [
    ("[1, 2]", "must be a JSON object, not an array"), ('"text"', "not a string"), ("null", "not null"),
    ("{", "not valid JSON"), ('{"model": NaN}', "NaN is not a JSON number"), ('{"x": 1e400}', "too large"),
    ('{"x": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_bodies_that_are_not_a_json_object_are_400(world, root, raw, fragment):
    error = _openai_error(world.call("POST", CHAT, raw, principal=root), 400)
    assert error["code"] == "invalid_request_body" and fragment in error["message"]


# -- fields the gateway reads ------------------------------------------------------------------

@pytest.mark.parametrize("extra, param", [
    ('"tools": 1', "tools"), ('"tools": [{"type": 5}]', "tools.0.type"), ('"tools": ["x"]', "tools.0"),
    ('"service_tier": ["auto"]', "service_tier"), ('"service_tier": {"a": 1}', "service_tier"),
    ('"stream_options": {"include_usage": true}', "stream_options"),
    ('"stream": true, "stream_options": 3', "stream_options"),
    ('"stream": true, "stream_options": {"include_usage": "yes"}', "stream_options.include_usage"),
    ('"stream": "true"', "stream"), ('"n": true', "n"), ('"n": 1000', "n"), ('"max_tokens": 0', "max_tokens"),
    ('"max_completion_tokens": 1.5', "max_completion_tokens"), ('"temperature": "hot"', "temperature"),
])
def test_a_wrong_type_where_the_gateway_reads_is_400_with_its_param(world, root, extra, param):
    raw = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], %s}' % extra
    error = _openai_error(world.call("POST", CHAT, raw, principal=root), 400)
    assert (error["code"], error["param"]) == ("invalid_request", param), error
    assert not world.fake.calls


def test_unknown_provider_fields_pass_through_in_the_clients_order(world, root):
    raw = ('{"x_new_field": {"deep": [1, 2.5, null]}, "model": "gpt-4o-mini", "max_tokens": 5, '
           '"messages": [{"role": "user", "content": "x", "name": "n"}], "logprobs": true}')
    assert world.call("POST", CHAT, raw, principal=root)["statusCode"] == 200
    sent = world.fake.calls[-1]["body"]
    assert sent["x_new_field"] == {"deep": [1, 2.5, None]} and sent["logprobs"] is True
    assert sent["messages"] == [{"role": "user", "content": "x", "name": "n"}]


def test_an_anthropic_tool_type_that_is_not_a_string_is_400_in_anthropic_shape(world, root):
    raw = ('{"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],'
           ' "tools": [{"name": "t", "type": null}]}')
    error = _anthropic_error(world.call("POST", MESSAGES, raw, principal=root), 400)
    assert "tools.0.type" in error["message"]


def test_embedding_input_of_the_wrong_shape_is_400(world, root):
    error = _openai_error(world.call("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": {}},
                                     principal=root), 400)
    assert error["param"] == "input"


# -- admin bodies, path ids and query values ------------------------------------------------------

@pytest.mark.parametrize("method, path, body, param", [
    ("PUT", "/admin/budgets", {"user": True, "monthly_usd": 5}, "user"),
    ("POST", "/admin/tokens", {"service": [[[]]], "scopes": ["ai:complete"]}, "service"),
    ("POST", "/admin/keys", {"user": "u" * 2100}, "user"),
    ("POST", "/admin/keys", {"user": "line\nbreak"}, "user"),
    ("POST", "/admin/keys", {"user": "alice", "rpm": True}, "rpm"),
    ("POST", "/admin/keys", {"user": "alice", "monthly_budget": 5}, "monthly_budget"),
    ("PUT", "/admin/budgets", {"user": "alice", "monthly_usd": 1e308}, "monthly_usd"),
    ("PUT", "/admin/budgets", {"user": "alice", "monthly_usd": -1}, "monthly_usd"),
    ("PUT", "/admin/budgets", {"user": "alice", "monthly_usd": "1e-30"}, "monthly_usd"),
    ("PUT", "/admin/budgets", {"user": "alice", "monthly_usd": "lots"}, "monthly_usd"),
    ("PUT", "/admin/users/alice", {"log_prompts": "yes"}, "log_prompts"),
    ("POST", "/v1/agents/runs", {"agent": "feedback-analysis", "input": [], "budget_usd": 1}, "input"),
    ("POST", "/v1/agents/runs", {"agent": "feedback-analysis", "input": {"reviews": ["x"]}, "budget_usd": 1e308},
     "budget_usd"),
])
def test_bad_admin_bodies_are_400_with_param(world, root, method, path, body, param):
    error = _openai_error(world.call(method, path, body, principal=root), 400)
    assert error["param"] == param, error


def test_money_is_parsed_exactly(world, root):
    resp = world.call("PUT", "/admin/budgets", '{"user": "exact", "monthly_usd": 12.34}', principal=root)
    assert resp["statusCode"] == 200 and body_of(resp)["monthly_limit_usd"] == "12.34"


@pytest.mark.parametrize("method, path", [
    ("POST", "/admin/keys/\x00/revoke"), ("GET", "/admin/users/\ufffd\ufffd"), ("GET", "/v1/agents/runs/\x00"),
    ("GET", "/v1/provider-keys/\x00"), ("GET", "/admin/users/" + "u" * 2100), ("POST", "/admin/keys/a\tb/resume"),
])
def test_a_path_id_that_cannot_exist_is_404_in_the_routes_shape(world, root, method, path):
    error = _openai_error(world.call(method, path, principal=root), 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize("path, name", [("/admin/keys", "user"), ("/admin/budgets", "user"), ("/admin/usage", "user"),
                                        ("/admin/usage", "from")])
def test_a_query_value_that_no_key_can_hold_is_400(world, root, path, name):
    query = {"user": "alice", name: "u" * 2100}
    error = _openai_error(world.call("GET", path, query=query, principal=root), 400)
    assert error["param"] == name


def test_every_route_that_reads_a_body_names_a_schema_that_resolves():
    from tollgate import requests

    bodyless = {(r.method, r.path) for r in routes.ROUTES if r.method in ("POST", "PUT", "PATCH") and r.body is None}
    # Status changes carry no body: the CLI sends {} and nothing reads it.
    # Cancelling a stored response carries none either (OpenAI's API; tollgate.responses).
    assert bodyless == {("POST", f"/admin/keys/{{keyId}}/{action}") for action in ("revoke", "suspend", "resume")} | {
        ("POST", "/v1/responses/{responseId}/cancel")}
    for route in routes.ROUTES:
        if route.body:
            assert requests.schema(route.body).model_fields, route


# -- fault 2: revocation is final --------------------------------------------------------------

def _authorize(raw):
    from handlers import authorizer

    event = {"type": "REQUEST", "resource": CHAT, "path": CHAT, "httpMethod": "POST",
             "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/prod/POST/v1/chat/completions",
             "headers": {"Authorization": f"Bearer {raw}"}, "requestContext": {"stage": "prod"}}
    return authorizer.lambda_handler(event, LambdaContext(function_name="authorizer"))


@pytest.mark.parametrize("action", ["resume", "suspend", "rotate"])
def test_a_revoked_key_cannot_be_brought_back_409_and_stays_refused(world, root, action):
    raw, record = world.create_key("leaky")
    assert _authorize(raw)["principalId"] == record.key_id
    assert world.call("POST", f"/admin/keys/{record.key_id}/revoke", principal=root)["statusCode"] == 200
    error = _openai_error(world.call("POST", f"/admin/keys/{record.key_id}/{action}", principal=root), 409)
    assert error["code"] == "key_revoked"
    assert wiring.key_store().get(record.key_id).status == "revoked"
    with pytest.raises(Exception, match="^Unauthorized$"):  # API Gateway answers 401
        _authorize(raw)


def test_a_suspended_key_still_resumes(world, root):
    raw, record = world.create_key("paused")
    world.call("POST", f"/admin/keys/{record.key_id}/suspend", principal=root)
    resp = world.call("POST", f"/admin/keys/{record.key_id}/resume", principal=root)
    assert resp["statusCode"] == 200 and body_of(resp)["status"] == "active"
    assert _authorize(raw)["principalId"] == record.key_id


@pytest.mark.parametrize("extra", ['"tools": [{"type": "function", "function": "nope"}]', '"stop": 5',
                                   '"messages": [{"role": "user", "content": [{"type": "image_url", '
                                   '"image_url": "data:image/png;base64,AAAA"}]}]'])
def test_a_chat_body_a_claude_translation_cannot_read_is_400_and_releases_its_reservation(world, root, extra):
    messages = '' if '"messages"' in extra else '"messages": [{"role": "user", "content": "x"}], '
    raw = '{"model": "claude-haiku-4-5", "max_tokens": 5, %s%s}' % (messages, extra)
    error = _openai_error(world.call("POST", CHAT, raw, principal=root), 400)
    assert error["code"] == "invalid_request_body", error
    assert not world.fake.calls
    budget = body_of(world.call("GET", "/admin/budgets", query={"user": root.user}, principal=root))
    assert Decimal(budget["reserved_usd"]) == 0, budget
