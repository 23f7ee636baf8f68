"""The one JSON request-body parser: text in, a plain JSON object out, or InvalidRequest (400).

What it refuses, each of which used to reach a 500 further in:
- text that is not JSON, or JSON's non-standard constants (`NaN`, `Infinity`), or a number too large for
  a double (`1e400` parses as infinity): providers and DynamoDB refuse them;
- nesting deeper than MAX_DEPTH: `json.loads` itself raises RecursionError (not a ValueError) near
  1,000 levels, and every later walk of the body (the content-part scan, the providers' SDKs) recurses;
- a lone UTF-16 surrogate in any string or key (`"\\ud800"`, what JavaScript produces when it cuts an
  emoji in half): JSON allows the escape, but such a string has no UTF-8 form, so the byte bound, the
  loop fingerprint and the provider call cannot encode it. A valid surrogate pair is one character and
  is fine;
- a body that is not a JSON object.

The walk that checks depth and strings is iterative, so no input can exhaust the stack here either.
"""
from __future__ import annotations

import json
import math
from typing import Any

from tollgate.errors import InvalidRequest

CODE = "invalid_request_body"
# Deepest nesting of objects and arrays accepted. Real requests (messages → content parts → a tool's
# JSON schema) stay far below it; it leaves the recursive walks after this point a wide margin under
# Python's recursion limit (1,000 frames).
MAX_DEPTH = 64
MAX_PARAM_CHARS = 256  # longest location echoed back in `param`


def parse(raw: str | None) -> dict[str, Any]:
    """The JSON object in `raw`. Raises InvalidRequest (code `invalid_request_body`) naming the problem."""
    if not raw:
        raise InvalidRequest("A JSON request body is required.", code=CODE)
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise _too_deep("") from None
    except _NotJson as exc:
        raise _refused(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError, or an integer literal beyond Python's 4,300 digits
        raise _refused(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise _refused(f"The request body must be a JSON object, not {_json_type(body)}.")
    _check_tree(body)
    return body


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"The request body is not valid JSON: {name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"The number {text[:32]} is too large.")
    return value


def _check_tree(body: dict[str, Any]) -> None:
    """Depth and strings of the whole document, iteratively (an explicit stack, not recursion)."""
    stack: list[tuple[Any, int, str]] = [(body, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                raise _too_deep(path)
            for key, value in node.items():
                _check_string(key, path)
                stack.append((value, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                raise _too_deep(path)
            stack.extend((value, depth + 1, f"{path}.{i}") for i, value in enumerate(node))
        elif isinstance(node, str):
            _check_string(node, path)


def _too_deep(path: str) -> InvalidRequest:
    """Named by the top-level field it is under (the full path would be as long as the nesting)."""
    return _refused(f"The request body is nested too deeply (more than {MAX_DEPTH} levels).",
                    _printable(path.split(".", 1)[0]))


def _check_string(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _refused("A string in the request body holds a lone UTF-16 surrogate (an escape such as "
                       "\\ud800 without its pair, e.g. an emoji cut in half); it has no UTF-8 form.",
                       _printable(path)) from None


def _printable(path: str) -> str | None:
    """The location for `param`, unless the location itself is not encodable (a surrogate in a key) or
    too long to be useful."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return path[:MAX_PARAM_CHARS] or None


def _refused(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, code=CODE, param=param)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
