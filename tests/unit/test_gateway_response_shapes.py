"""API Gateway's own error answers (tollgate.routes.GATEWAY_RESPONSES, also the local emulator's): one body
per API, not per route, so each must read as both providers' error shape (docs/design-decisions.md)."""
from __future__ import annotations

import pytest

from local import emulator
from tollgate import routes

BODIES = {**routes.GATEWAY_RESPONSES, **emulator._FALLBACK_RESPONSES}


@pytest.mark.parametrize("response_type", sorted(BODIES))
def test_every_gateway_answer_has_anthropics_shape_and_every_field_of_openais(response_type):
    status, body = BODIES[response_type]
    assert body["type"] == "error" and isinstance(body["error"]["type"], str)  # Anthropic's
    assert {"message", "type", "param", "code"} <= set(body["error"])  # OpenAI's error object


SECRET = "sk-Jd7hjXadhmcPt9yGQkrDzxqZT07k9Xu1sXIMxW7WOGPtReux"


@pytest.mark.parametrize("echoed", [SECRET, f"Bearer {SECRET}", SECRET[3:], f"Bearer%20{SECRET}",
                                    "sk-ant-api03-AbCdEf0123456789xyzXYZ_-qwerty", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"])
@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_no_error_body_repeats_a_credential_sent_where_a_name_was_expected(echoed, wire):
    from tollgate import errors

    for error in (errors.InvalidRequest(f"The model '{echoed}' is not in this gateway's price list."),
                  errors.NotFound(f"Unknown request URL: GET /v1/models/{echoed}")):
        rendered = errors.render(error, wire)[2]
        assert SECRET[6:30] not in rendered and echoed not in rendered and errors.REDACTED in rendered


@pytest.mark.parametrize("name", ["gpt-4o-mini-search-preview-2025-03-11", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                                  "claude-haiku-4-5", "sk-Jd7hjXadh", "4f3c2a1b-9d8e-4c7b-a6f5-0123456789ab",
                                  "chatcmpl-4ac0c0361c7b42589de69e8c", "text-embedding-3-large"])
def test_names_and_ids_are_repeated_as_sent(name):
    from tollgate import errors

    assert name in errors.render(errors.InvalidRequest(f"The model '{name}' is unknown."), "openai")[2]


def test_a_logged_path_never_carries_a_credential():
    from tollgate.auth.api_keys import masked

    for path in (f"/admin/keys/Bearer%20{SECRET}", f"/admin/keys/Bearer+{SECRET}", f"/admin/keys/x{SECRET}",
                 f"/v1/models/{SECRET[3:]}", f"/admin/keys/{SECRET}/rotate"):
        assert SECRET[6:30] not in masked(path)
    assert masked("/admin/keys/sk-Jd7hjXadh/rotate") == "/admin/keys/sk-Jd7hjXadh/rotate"
