"""Request bodies for the loop guard's tests: the incident's loop in four forms, and honest multi-turn
conversations generated with variety (seeded, so a failure names the conversation that caused it).

The incident (seed/000_…txt): an agent classifying customer reviews got an empty result for non-English
reviews and retried forever, 891 times, ~4,000 tokens of gpt-4 each, $2,847:
    Agent: Classifying review text...  /  Tool: Classification failed - no result  /
    Agent: Let me try classifying again...
Each form below yields the body of the agent's n-th call (n from 1), in the OpenAI chat format unless
said otherwise; `anthropic=True` gives the same loop in the Anthropic messages format.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable, Iterator

from agents import naive

REVIEW = "La aplicación se cierra cada vez que subo una foto."
TASK = f"Classify this customer review:\n{REVIEW}"
RETRY = "Let me try classifying again..."
FAILED = "Classification failed - no result"
CLASSIFY_TOOL = {"type": "function", "function": {
    "name": "classify", "description": "Classify a review into a category.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}
classification_prompt = lru_cache(maxsize=1)(naive.classification_prompt)  # ~16 KB, as the incident's agent sent
_START = datetime(2024, 1, 15, 14, 23, 15, tzinfo=timezone.utc)


def identical(n: int, model: str, *, anthropic: bool = False) -> dict[str, Any]:
    """The same body every time: the naive agent of agents/naive.py."""
    if anthropic:
        return {"model": model, "max_tokens": 16, "system": classification_prompt(),
                "messages": [{"role": "user", "content": TASK}]}
    return {"model": model, "max_tokens": 16, "messages": [
        {"role": "system", "content": classification_prompt()}, {"role": "user", "content": TASK}]}


def growing_react(n: int, model: str, *, anthropic: bool = False) -> dict[str, Any]:
    """A ReAct loop that appends its retry and the tool's failure to the conversation each turn."""
    body = identical(n, model, anthropic=anthropic)
    for _ in range(n - 1):
        body["messages"] += [{"role": "assistant", "content": RETRY}, {"role": "user", "content": FAILED}]
    return body


def numbered(n: int, model: str, *, anthropic: bool = False) -> dict[str, Any]:
    """The same call with an attempt number, a timestamp, an epoch and a request id in the prompt."""
    at = _START + timedelta(seconds=4 * n)
    body = identical(n, model, anthropic=anthropic)
    body["messages"][-1] = {"role": "user", "content": (
        f"Attempt {n} at {at.isoformat()} (t={int(at.timestamp())}, request req_{n:04d}{'ab' * 5}):\n{TASK}")}
    return body


def tool_loop(n: int, model: str, *, anthropic: bool = False) -> dict[str, Any]:
    """The same tool call with the same arguments, answered by the same empty result, turn after turn,
    in a growing conversation (tool-call ids are new every turn, as the providers make them)."""
    if anthropic:
        body = {"model": model, "max_tokens": 16, "system": classification_prompt(),
                "tools": [{"name": "classify", "description": "Classify a review.",
                           "input_schema": CLASSIFY_TOOL["function"]["parameters"]}],
                "messages": [{"role": "user", "content": TASK}]}
        for i in range(n - 1):
            body["messages"] += [
                {"role": "assistant", "content": [
                    {"type": "text", "text": RETRY},
                    {"type": "tool_use", "id": f"toolu_{i:02d}{'x9' * 10}", "name": "classify",
                     "input": {"text": REVIEW}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i:02d}{'x9' * 10}",
                                              "content": "", "is_error": True}]}]
        return body
    body = {"model": model, "max_tokens": 16, "tools": [CLASSIFY_TOOL], "messages": [
        {"role": "system", "content": classification_prompt()}, {"role": "user", "content": TASK}]}
    for i in range(n - 1):
        call_id = f"call_{i}{'q7' * 8}"
        body["messages"] += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "classify", "arguments": json.dumps({"text": REVIEW})}}]},
            {"role": "tool", "tool_call_id": call_id, "content": ""}]
    return body


LOOPS: dict[str, Callable[..., dict[str, Any]]] = {
    "identical body": identical, "growing ReAct conversation": growing_react,
    "numbered and timestamped attempts": numbered, "repeated identical tool call": tool_loop}


# --- honest conversations ----------------------------------------------------------------------------

TOPICS = {
    "cooking": (["risotto", "sourdough", "ramen", "paella", "curry", "tiramisu"],
                ["How do I make {x}?", "What goes wrong most often with {x}?", "Can I prepare {x} the day before?",
                 "Which wine goes with {x}?", "How do I make {x} vegetarian?"]),
    "travel": (["Lisbon", "Kyoto", "Patagonia", "Iceland", "Marrakesh", "Vancouver"],
               ["Plan three days in {x}.", "What is the best season to visit {x}?", "How do I get around {x}?",
                "Where should I stay in {x} on a budget?", "What should I not miss in {x}?"]),
    "python": (["asyncio", "dataclasses", "decorators", "generators", "type hints", "context managers"],
               ["Explain {x} with an example.", "When should I avoid {x}?", "How do {x} interact with threads?",
                "Show a common bug with {x}.", "How would you test code that uses {x}?"]),
    "finance": (["index funds", "bonds", "a mortgage", "an emergency fund", "stock options", "a pension"],
                ["Should I consider {x}?", "What are the risks of {x}?", "How are {x} taxed?",
                 "How do {x} compare with a savings account?", "Explain {x} to a teenager."]),
    "fitness": (["running", "swimming", "yoga", "deadlifts", "cycling", "rowing"],
                ["How do I start {x}?", "How often should I do {x}?", "What injuries come with {x}?",
                 "What should I eat before {x}?", "How do I track progress in {x}?"]),
    "history": (["the Hanseatic League", "the Meiji era", "the Silk Road", "the printing press", "the Inca roads"],
                ["Summarise {x}.", "Why did {x} matter?", "What came before {x}?", "Who opposed {x}?",
                 "What is a common myth about {x}?"]),
    "writing": (["a cover letter", "a wedding toast", "a product launch email", "a eulogy", "a grant proposal"],
                ["Help me draft {x}.", "Make {x} shorter.", "Make {x} more formal.", "What tone suits {x}?",
                 "Give me an opening line for {x}."]),
    "gardening": (["tomatoes", "roses", "a herb spiral", "a compost heap", "blueberries"],
                  ["How do I grow {x}?", "Why are my {x} struggling?", "When do I prune {x}?",
                   "What pests attack {x}?", "How much water do {x} need?"]),
}
_FOLLOW_UPS = ["Why?", "Can you give an example?", "Thanks, that helps. One more thing: {q}", "And if I only have an "
               "hour?", "Could you compare that with {y}?", "Say that in two sentences.", "What would an expert add?",
               "I tried that and it did not work; what else?", "Ok. {q}", "Great. {q}"]
_OPENERS = ["Sure.", "Good question.", "Here is a short answer.", "It depends, but broadly:", "In brief:"]
_WORDS = ("first second then carefully usually rarely because although timing balance practice patience quality "
          "simple detail method result reason example common better slowly together").split()

# Tools whose calls make progress: each call asks something new and gets a different answer.
_TOOLS = {
    "search_docs": lambda rng, topic, x, i: ({"query": f"{x} {rng.choice(_WORDS)} {rng.choice(_WORDS)}"},
                                             f"Found: '{x} guide, part {chr(65 + i)}' and '{rng.choice(_WORDS)} notes'"),
    "list_orders": lambda rng, topic, x, i: ({"customer": "c-118", "page": i + 1},
                                             json.dumps([f"order {rng.randrange(10**6)} {rng.choice(_WORDS)}"
                                                         for _ in range(rng.randint(1, 4))])),
    "get_weather": lambda rng, topic, x, i: ({"city": rng.choice(TOPICS["travel"][0]), "day": i},
                                             f"{rng.choice(['sunny', 'rain', 'windy', 'cloudy', 'snow'])}, "
                                             f"{rng.choice(['mild', 'cold', 'warm'])}"),
    "calculator": lambda rng, topic, x, i: ({"expression": f"{rng.randint(2, 999)} * {rng.randint(2, 99)} + {i}"},
                                            str(rng.randint(10, 99999))),
}


def _reply(rng: random.Random, x: str, words: int) -> str:
    return f"{rng.choice(_OPENERS)} For {x}, " + " ".join(rng.choice(_WORDS) for _ in range(words)) + "."


def honest_conversation(seed: int, model: str, *, turns: int | None = None, anthropic: bool | None = None,
                        tools: bool = True) -> Iterator[dict[str, Any]]:
    """The request bodies of one honest conversation, turn by turn: a user exploring a topic with new
    questions, and an assistant that sometimes calls tools that make progress. Varied by `seed`: topic,
    length (2-14 turns unless given), format (OpenAI or Anthropic), system prompt, tool use."""
    rng = random.Random(seed)
    topic = rng.choice(sorted(TOPICS))
    subjects, questions = TOPICS[topic]
    x = rng.choice(subjects)
    n = turns or rng.randint(2, 14)
    anthropic = rng.random() < 0.4 if anthropic is None else anthropic
    system = rng.choice([None, f"You are a helpful {topic} assistant.", f"Answer as an expert in {topic}; be brief."])
    tool = rng.choice([None, None, *sorted(_TOOLS)]) if tools else None
    asked: list[str] = []
    messages: list[dict[str, Any]] = []
    for turn in range(n):
        fresh = [q.format(x=x) for q in questions if q.format(x=x) not in asked] or [f"Tell me something new about {x}."]
        q = rng.choice(fresh)
        if turn == 0:
            text = q
        else:
            text = rng.choice(_FOLLOW_UPS).format(q=q, y=rng.choice([s for s in subjects if s != x]))
            if text in asked:
                text = f"{text} (about {rng.choice(_WORDS)} {rng.choice(_WORDS)})"
        asked.append(text)
        messages.append({"role": "user", "content": text})
        yield _body(model, system, messages, anthropic)
        if tool and rng.random() < 0.5:  # the assistant looks something up, then answers
            args, result = _TOOLS[tool](rng, topic, x, turn)
            messages += _tool_turn(tool, args, result, f"{seed}x{turn}", anthropic)
            yield _body(model, system, messages, anthropic)
        messages.append({"role": "assistant", "content": _reply(rng, x, rng.randint(5, 60))})


def _tool_turn(name: str, args: dict[str, Any], result: str, call_id: str, anthropic: bool) -> list[dict[str, Any]]:
    if anthropic:
        return [{"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{call_id}", "name": name,
                                                   "input": args}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{call_id}",
                                              "content": result}]}]
    return [{"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{call_id}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}]},
            {"role": "tool", "tool_call_id": f"call_{call_id}", "content": result}]


def _body(model: str, system: str | None, messages: list[dict[str, Any]], anthropic: bool) -> dict[str, Any]:
    msgs = [dict(m) for m in messages]
    if anthropic:
        return {"model": model, "max_tokens": 16, **({"system": system} if system else {}), "messages": msgs}
    return {"model": model, "max_tokens": 16, "messages": ([{"role": "system", "content": system}] if system else []) + msgs}
