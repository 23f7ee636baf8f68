"""A chat body the edge let through (it types only what every route reads) but a translation cannot read is
the client's 400 on every translated route (Claude on the Anthropic API, any model on Bedrock), never a 500:
the kind, generated, plus the cases a new user found (tools[].function a string, stop an integer, an
image_url part that is a string, a tool without a name)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ParamValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.errors import InvalidRequest
from tollgate.providers.bedrock_provider import translate_error
from tollgate.translate.openai_anthropic import to_messages
from tollgate.translate.openai_converse import to_converse

TRANSLATIONS = [to_messages, to_converse]
USER = {"role": "user", "content": "hi"}
ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=3), max_leaves=6)

FOUND = [
    {"messages": [USER], "tools": [{"type": "function", "function": "nope"}]},
    {"messages": [USER], "stop": 5},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,AAAA"}]}]},
    {"messages": [USER], "tools": ["nope"]},
    {"messages": [{"role": "assistant", "tool_calls": [{"id": 1, "function": 5}]}, USER]},
]


@pytest.mark.parametrize("translate", TRANSLATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("body", FOUND)
def test_bodies_of_the_wrong_shape_are_400(translate, body):
    with pytest.raises(InvalidRequest) as raised:
        translate({"model": "m", "max_tokens": 10, **body})
    assert raised.value.status == 400


@pytest.mark.parametrize("translate", TRANSLATIONS, ids=lambda f: f.__name__)
@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(["messages", "tools", "tool_choice", "stop", "temperature", "top_p"]),
       value=ANY_JSON, message=st.dictionaries(st.sampled_from(["role", "content", "tool_calls", "tool_call_id",
                                                                "name"]), ANY_JSON, max_size=4))
def test_any_value_in_a_field_a_translation_reads_translates_or_is_400(translate, field, value, message):
    body = {"model": "m", "max_tokens": 10, "messages": [USER, message], field: value}
    try:
        translate(body)
    except InvalidRequest:
        pass  # the client's 400; anything else would be a 500


def test_botocores_parameter_check_is_the_clients_400():
    exc = ParamValidationError(report="Invalid length for parameter toolConfig.tools[0].toolSpec.name")
    error = translate_error(exc, "us.amazon.nova-lite-v1:0")
    assert isinstance(error, InvalidRequest) and error.status == 400 and "toolSpec.name" in error.message
