"""The gateway-side loop guard: a principal repeating the same request *pattern* too often, or spending
too much on it, is refused. No client cooperation is needed.

What makes a loop (seed/000: an agent retried an empty classification 891 times, $2,847): the caller
keeps sending what is, for every purpose but its counters, the same request. Three shapes are seen:
  - the same body again (a retry loop);
  - a growing conversation that appends the same turn each time (a ReAct loop: "Let me try
    classifying again…" / "Classification failed - no result"), or the same tool call with the same
    arguments answered by the same result;
  - the same prompt with an attempt number, a timestamp or a request id in it.

So a request's *pattern* is a hash of:
  - the model;
  - the conversation's anchor: its system prompt and first user turn (what the conversation is about:
    two different tasks that hit the same dead end are two patterns, not one loop);
  - its last exchange: the last assistant message (its text, or when it calls tools its calls with
    their arguments alone: the thought around a call is sampled afresh each turn) and everything after
    it (tool results, the new user turn). A first turn (no assistant message yet) or an
    embeddings/completions `input`/`prompt` is taken whole.
Before hashing, text is normalised: case folded, whitespace collapsed, and timestamps, UUIDs, ids
(tokens of 8+ characters mixing letters and digits: `call_…`, `toolu_…`, hex digests) and numbers
masked; provider-assigned ids (`id`, `tool_call_id`, `tool_use_id`, thinking signatures) are dropped.
Tool-call *arguments* keep their numbers (page=2 then page=3 is progress) and lose only timestamps
and ids. A conversation that makes progress has a new last exchange each turn; a loop repeats one.

Weighed by money: the counter item holds the pattern's hits and the worst-case USD of input it has sent
in the window (the part of a call a loop certainly pays again each time). A pattern is refused when its
hits reach `loop_max_repeats`, or, once it has `loop_min_repeats` hits, when that spend reaches
`loop_max_usd`: a cheap poll is tolerated longer than a $0.50 gpt-4 call. The counter is one item in
the reservation transaction (no extra round trip); a failed provider call gives its hit back.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tollgate.errors import LoopDetected
from tollgate.money import text as usd
from tollgate.store.counters import LoopCounter, loop_pk

REQUEST = "request"  # a first turn or a whole prompt, repeated
EXCHANGE = "exchange"  # the same last exchange appended to a conversation again
TOOL = "tool"  # the same tool call with the same arguments, answered by the same result

_TIMESTAMP = re.compile(  # ISO dates and times, with or without the date (a word at a time: no spaces)
    r"(?:\d{4}-\d{2}-\d{2}(?:t\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?|\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)"
    r"(?:z|[+-]\d{2}:?\d{2})?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[^\W\d_])[\w-]{8,}\b")  # mixes letters and digits, 8+ long
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_DIGIT = re.compile(r"\d").search
# Keys whose values the provider or SDK assigns afresh on every call: never part of a pattern.
_VOLATILE_KEYS = frozenset({"id", "tool_call_id", "tool_use_id", "signature", "cache_control", "citations"})
_ANCHOR_ROLES = ("system", "developer")


@dataclass(frozen=True)
class Pattern:
    """What a request repeats: `fingerprint` (32 hex characters), `kind` (REQUEST, EXCHANGE or TOOL)
    and the names of the tools called in its last exchange."""

    fingerprint: str
    kind: str
    tools: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == TOOL:
            return (f"the same call to {', '.join(self.tools)} with the same arguments, answered by the same "
                    "result,")
        if self.kind == EXCHANGE:
            return "the same turn appended to this conversation again (the same reply and the same answer to it)"
        return "the same request (identical but for numbers, timestamps, ids or whitespace)"


def pattern(body: dict[str, Any]) -> Pattern:
    """The pattern of an OpenAI chat/embeddings or Anthropic messages request body (see the module's
    docstring). Never raises on odd shapes: whatever is not understood is hashed as it is."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        last = max((i for i, m in enumerate(messages) if _role(m) == "assistant"), default=None)
        if last is None:
            kind, tools = REQUEST, ()
            content: Any = {"system": _canonical(body.get("system")), "messages": [_message(m) for m in messages]}
        else:
            exchange = messages[last:]
            tools = tuple(dict.fromkeys(t for m in exchange for t in _tool_names(m)))
            kind = TOOL if tools else EXCHANGE
            first_user = next((m for m in messages if _role(m) == "user"), None)
            anchor = [_message(m) for m in messages[:last] if _role(m) in _ANCHOR_ROLES]
            content = {"system": _canonical(body.get("system")), "anchor": anchor,
                       "task": _message(first_user) if first_user is not None else None,
                       "exchange": [_message(m) for m in exchange]}
    else:
        kind, tools = REQUEST, ()
        content = {k: _canonical(body.get(k)) for k in ("input", "prompt", "system", "messages") if k in body}
    text = json.dumps([body.get("model"), content], sort_keys=True, ensure_ascii=False, default=str)
    return Pattern(hashlib.sha256(text.encode()).hexdigest()[:32], kind, tools)


def counter(subject: str, user: str, body: dict[str, Any], now: datetime, input_usd: Decimal, *,
            max_repeats: int, min_repeats: int, max_usd: Decimal, window_s: int) -> LoopCounter:
    """The loop counter this request takes in the reservation transaction.

    subject: whose repetitions count together (a key's principal, or one user's agent run); user: the
    user it belongs to (items are keyed by user so an operator can list and clear them); input_usd:
    this request's worst-case input cost (USD); window_s: the fixed window the counts live in (seconds).
    """
    p = pattern(body)
    start = int(now.timestamp()) // window_s * window_s
    end = start + window_s
    return LoopCounter(pk=loop_pk(user), sk=f"{subject}#{p.fingerprint}#{start}", subject=subject,
                       fingerprint=p.fingerprint, kind=p.kind, description=p.describe(), cost=input_usd,
                       max_hits=max_repeats, min_hits=min_repeats, max_usd=max_usd, window_s=window_s,
                       window_end=end, resets_in_s=end - now.timestamp(), expires=end + window_s)


def refusal(loop: LoopCounter, user: str, hits: int, spent: Decimal) -> LoopDetected:
    """The 429 for a pattern at its limit: what repeated, for how long it stays refused, how to clear it.

    hits and spent are the pattern's counts in the window before this request (from the refused item)."""
    retry_after = str(max(1, math.ceil(loop.resets_in_s)))
    minutes = loop.window_s // 60 if loop.window_s % 60 == 0 else None
    window = f"{minutes}-minute" if minutes else f"{loop.window_s}-second"
    why = (f"{hits} times" if hits >= loop.max_hits
           else f"{hits} times, ${usd(spent)} of input at worst case (the limit is ${usd(loop.max_usd)})")
    return LoopDetected(
        f"Loop detected: {loop.description} was sent {why} in this {window} window. It is refused for the next "
        f"{retry_after} s, until the window ends, so a retry loop cannot keep spending. To go on now, change "
        f"the request (what differs only in numbers, timestamps or ids counts as the same), or ask an operator "
        f"to run `tollgate loops clear --user {user}`.",
        headers={"retry-after": retry_after})


def _role(message: Any) -> str | None:
    return message.get("role") if isinstance(message, dict) else None


def _message(message: Any) -> Any:
    """A message's normalised form. An assistant message that calls tools is its calls alone: the
    thought around them is sampled afresh each turn ("Let me try again…", "Retrying the classifier…")
    while the loop is in the calls, their arguments and their results."""
    if not isinstance(message, dict):
        return _canonical(message)
    calls_tools = bool(_tool_names(message))
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key in _VOLATILE_KEYS:
            continue
        if key == "tool_calls" and isinstance(value, list):
            out[key] = [_tool_call(c) for c in value]
        elif key == "function_call" and isinstance(value, dict):  # OpenAI's legacy single call
            out[key] = _tool_call({"function": value})
        elif key == "content" and calls_tools:
            if isinstance(value, list):
                out[key] = [_block(b) for b in value if isinstance(b, dict) and b.get("type") == "tool_use"]
        elif key == "content" and isinstance(value, list):
            out[key] = [_block(b) for b in value]
        else:
            out[key] = _canonical(value)
    return out


def _tool_call(call: Any) -> Any:
    """OpenAI: {"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}."""
    if not isinstance(call, dict):
        return _canonical(call)
    fn = call.get("function") if isinstance(call.get("function"), dict) else {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            pass
    return {"name": fn.get("name"), "arguments": _canonical(args, arguments=True)}


def _block(block: Any) -> Any:
    """Anthropic content blocks (text, tool_use, tool_result, thinking, image) and OpenAI content parts."""
    if not isinstance(block, dict):
        return _canonical(block)
    if block.get("type") == "tool_use":
        return {"type": "tool_use", "name": block.get("name"), "input": _canonical(block.get("input"), arguments=True)}
    if block.get("type") == "tool_result":
        content = block.get("content")
        return {"type": "tool_result", "is_error": bool(block.get("is_error")),
                "content": [_block(b) for b in content] if isinstance(content, list) else _canonical(content)}
    return {k: _canonical(v) for k, v in block.items() if k not in _VOLATILE_KEYS}


def _tool_names(message: Any) -> list[str]:
    if not isinstance(message, dict):
        return []
    names = [str((c.get("function") or {}).get("name")) for c in message.get("tool_calls") or []
             if isinstance(c, dict) and isinstance(c.get("function"), dict)]
    if isinstance(message.get("function_call"), dict):
        names.append(str(message["function_call"].get("name")))
    content = message.get("content")
    if isinstance(content, list):
        names += [str(b.get("name")) for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
    return names


def _canonical(value: Any, arguments: bool = False) -> Any:
    """JSON-like value -> its normalised form. Tool-call arguments keep their numbers and every key."""
    if isinstance(value, str):
        return _volatile(value) if arguments else _text(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v, arguments) for k, v in value.items() if arguments or k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_canonical(v, arguments) for v in value]
    return value


def _volatile(text: str) -> str:
    """Case folded, whitespace collapsed, timestamps, UUIDs and ids masked; numbers kept."""
    return _normalise(text, numbers=False)


def _text(text: str) -> str:
    """`_volatile`, and every number masked too."""
    return _normalise(text, numbers=True)


def _normalise(text: str, numbers: bool) -> str:
    # A word at a time, and only words with a digit: every volatile token has one. A few ms for the
    # incident's 16 KB prompt, a third of what the same expressions over the whole text take.
    words = text.casefold().split()
    for i, word in enumerate(words):
        if _DIGIT(word):
            word = _ID.sub("<id>", _UUID.sub("<id>", _TIMESTAMP.sub("<t>", word)))
            words[i] = _NUMBER.sub("#", word) if numbers else word
    return " ".join(words)
