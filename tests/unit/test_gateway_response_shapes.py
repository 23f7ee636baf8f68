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
