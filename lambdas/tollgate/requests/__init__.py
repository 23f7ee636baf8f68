"""Request validation at the domain's edge: one schema per route body, named on the route table.

    body = requests.validated("openai.ChatCompletionRequest", json_body.parse(raw))

`tollgate.routes` (standard library only: CDK imports it) names each route's schema as
"<module>.<class>" of this package; `schema()` resolves the name when first used, so a Lambda imports
only the schemas of the routes it serves. A provider body comes back as the client's own dict (unknown
fields and their order untouched); a body of the gateway's own API comes back as its validated values.
"""
from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

from tollgate.errors import InvalidRequest

if TYPE_CHECKING:  # pydantic is imported with the first schema (cold start: `make bench`)
    from pydantic import BaseModel, ValidationError


@cache
def schema(name: str) -> type[BaseModel]:
    """The schema class named "<module>.<class>" (e.g. "openai.ChatCompletionRequest"). KeyError if none."""
    from pydantic import BaseModel

    module, _, cls = name.rpartition(".")
    found = getattr(importlib.import_module(f"{__name__}.{module}"), cls, None)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise KeyError(f"no request schema {name!r}")
    return found


def validated(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` checked against the schema `name`. Raises InvalidRequest (400, code `invalid_request`) with
    `param` = the dotted location of the first problem (e.g. `tools.0.type`). A body that cannot be read
    at all is json_body's `invalid_request_body`."""
    from pydantic import ValidationError

    from tollgate.requests.base import ProviderRequest

    model = schema(name)
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc, body) from None
    if issubclass(model, ProviderRequest):
        return body
    return parsed.model_dump(exclude_unset=True)


def _invalid(exc: ValidationError, body: dict[str, Any]) -> InvalidRequest:
    error = exc.errors(include_url=False, include_input=False)[0]
    param = _location(error["loc"], error["type"], body)
    if error["type"] == "missing":
        message = f"'{param}' is required."
    elif error["type"] == "extra_forbidden":
        message = f"Unknown field '{param}'."
    else:
        message = f"Invalid '{param}': {error['msg'][0].lower()}{error['msg'][1:]}." if param else \
            f"Invalid request body: {error['msg']}."
    return InvalidRequest(message, param=param)


def _location(loc: tuple[Any, ...], kind: str, body: Any) -> str | None:
    """The dotted path of `loc` within the body. Pydantic adds the tags of union members (`str`,
    `list[...]`) to a location: only the steps that exist in the body are kept, and a missing field's
    own name."""
    steps: list[str] = []
    node = body
    for i, step in enumerate(loc):
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        elif kind == "missing" and i == len(loc) - 1 and isinstance(node, dict):
            pass
        else:
            break
        steps.append(str(step))
    return ".".join(steps) or None
