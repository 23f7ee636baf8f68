"""The body parser and the request schemas alone (tollgate.requests): whatever the text, the answer is a
dict or InvalidRequest, never another exception. The same property through the whole stack is
tests/e2e/test_bad_input_fuzz.py."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate import routes
from tollgate.errors import InvalidRequest
from tollgate.requests import json_body, schema, validated
from tollgate.requests.types import is_id

SCHEMAS = sorted({r.body for r in routes.ROUTES if r.body})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | json_values.map(json.dumps))
def test_any_text_parses_to_an_object_or_is_a_400(raw):
    try:
        assert isinstance(json_body.parse(raw), dict)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.code == "invalid_request_body"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SCHEMAS), st.dictionaries(st.text(max_size=12), json_values, max_size=6)
       | st.sampled_from(SCHEMAS).flatmap(lambda name: st.fixed_dictionaries(
           {field: json_values for field in schema(name).model_fields})))
def test_any_object_is_valid_or_a_400_naming_a_field(name, body):
    try:
        validated(name, body)
    except InvalidRequest as exc:
        assert exc.status == 400
        named = [*body, *schema(name).model_fields]
        assert exc.param is None or any(exc.param == k or exc.param.startswith(f"{k}.") for k in named), exc.param


def test_a_provider_body_is_forwarded_as_the_clients_own_dict():
    body = json_body.parse('{"z": 1, "model": "m", "messages": [], "a": {"b": [1.5]}}')
    assert validated("openai.ChatCompletionRequest", body) is body


def test_a_tollgate_body_comes_back_validated_with_exact_money():
    assert validated("admin.SetBudget", json_body.parse('{"user": "u", "monthly_usd": 0.1}')) == {
        "user": "u", "monthly_usd": Decimal("0.1")}
    assert validated("admin.SetBudget", {"user": "u", "monthly_usd": "1000000"})["monthly_usd"] == Decimal(1_000_000)


@pytest.mark.parametrize("value", [1e308, "1000000.01", -0.5, "NaN", "Infinity", True, [], "1e-13"])
def test_money_outside_the_range_or_precision_is_refused(value):
    with pytest.raises(InvalidRequest) as exc:
        validated("admin.SetBudget", {"user": "u", "monthly_usd": value})
    assert exc.value.param == "monthly_usd"


@pytest.mark.parametrize("text, ok", [("alice", True), ("u" * 256, True), ("u" * 257, False), ("", False),
                                      ("a\x00", False), ("a\nb", False), ("\ufffd", False), ("a\ud800", False),
                                      ("名前", True)])
def test_ids(text, ok):
    assert is_id(text) is ok


def test_the_param_of_a_union_field_is_the_field_not_pydantics_member_tag():
    with pytest.raises(InvalidRequest) as exc:
        validated("openai.ChatCompletionRequest", {"model": "m", "messages": [{"role": "user", "content": 5}]})
    assert exc.value.param == "messages.0.content"
    with pytest.raises(InvalidRequest) as exc:
        validated("admin.CreateKey", {})
    assert (exc.value.param, exc.value.message) == ("user", "'user' is required.")
