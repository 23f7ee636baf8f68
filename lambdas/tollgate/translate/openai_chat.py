"""Reading an OpenAI chat completions body: what every translation from it needs, in one place.

Source: OpenAI's chat completions reference (https://platform.openai.com/docs/api-reference/chat): a
message's `content` is a string or a list of parts (`{"type": "text", "text": ...}`, `image_url`, ...), an
assistant's `tool_calls[].function.arguments` is a JSON string.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, TypeVar

from tollgate.errors import InvalidRequest, TollgateError

_Translation = TypeVar("_Translation", bound=Callable[..., Any])


def client_shaped(translate: _Translation) -> _Translation:
    """Wrap a translation of a client's OpenAI chat body so that a body it cannot read is the client's 400,
    never a 500: the edge types only the fields every route reads, and a translation reads more (`tools[]`
    as objects with a `function`, `stop` as a string or a list, `image_url` parts as objects with a `url`).
    Raises InvalidRequest (400) for a field of the wrong type or shape; domain errors pass through."""

    @functools.wraps(translate)
    def translated(body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return translate(body, *args, **kwargs)
        except TollgateError:
            raise
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise InvalidRequest(
                "The body does not have the shape of an OpenAI chat completions request (see its API reference "
                "for `messages`, `tools`, `tool_choice`, `stop` and content parts): a field has the wrong type "
                f"({type(exc).__name__}).", code="invalid_request_body") from None

    return translated  # type: ignore[return-value]


def append_turn(messages: list[dict[str, Any]], role: str, content: list[dict[str, Any]]) -> None:
    """Add `content` as a `role` turn of `messages` ({"role", "content": [blocks]}). Anthropic Messages and
    Bedrock Converse both want user and assistant turns to alternate, so consecutive same-role messages
    (e.g. several tool results) merge into one turn."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(content)
    else:
        messages.append({"role": role, "content": content})


def texts(content: Any) -> list[str]:
    """The non-empty texts of a message's `content` (a string, or the `text` parts of a list); [] otherwise."""
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and p.get("text")]
    return []


def data_url(url: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL; InvalidRequest for any other URL."""
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise InvalidRequest("images must be sent inline as data:<type>;base64,<data> URLs for this model.",
                             param="messages")
    head, data = url[5:].split(";base64,", 1)
    return head.lower(), data


def parse_arguments(arguments: Any) -> Any:
    """A tool call's `arguments` JSON string as the object the model produced ({} when empty). Raises
    InvalidRequest when it is not JSON."""
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except (TypeError, ValueError):
        raise InvalidRequest("tool_calls[].function.arguments must be a JSON string.", param="messages") from None
