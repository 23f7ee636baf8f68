"""The loop guard's pattern (tollgate.loopguard): loops repeat one, honest conversations do not.

The refusal rule is applied here as the ledger's condition applies it (hits >= max, or hits >= min and
spend >= max_usd, counted before the request), with the default settings, so these tests say how many
calls each conversation would be served; tests/e2e/test_loop_guard.py runs the same through the stack.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests import loops
from tollgate import loopguard
from tollgate.settings import Settings

DEFAULTS = Settings.from_env({})
NOW = datetime(2026, 11, 30, 12, 3, 20, tzinfo=timezone.utc)


def _served(bodies, input_usd=Decimal("0.001")) -> int:
    """How many of these requests, sent in one window by one subject, the default rule serves."""
    hits: Counter[str] = Counter()
    spent: dict[str, Decimal] = {}
    for n, body in enumerate(bodies):
        fp = loopguard.pattern(body).fingerprint
        if hits[fp] >= DEFAULTS.loop_max_repeats or (
                hits[fp] >= DEFAULTS.loop_min_repeats and spent.get(fp, Decimal(0)) >= DEFAULTS.loop_max_usd):
            return n
        hits[fp] += 1
        spent[fp] = spent.get(fp, Decimal(0)) + input_usd
    return len(bodies)


@pytest.mark.parametrize("anthropic", [False, True], ids=["openai", "anthropic"])
@pytest.mark.parametrize("form", sorted(loops.LOOPS))
def test_each_form_of_the_incident_repeats_one_pattern(form, anthropic):
    make = loops.LOOPS[form]
    patterns = [loopguard.pattern(make(n, "gpt-4", anthropic=anthropic)) for n in range(1, 8)]
    # the first call of a growing conversation is a first turn; every later one repeats its last exchange
    repeating = patterns[1:] if form in ("growing ReAct conversation", "repeated identical tool call") else patterns
    assert len({p.fingerprint for p in repeating}) == 1
    assert repeating[0].kind == {"growing ReAct conversation": loopguard.EXCHANGE,
                                 "repeated identical tool call": loopguard.TOOL}.get(form, loopguard.REQUEST)
    # cheap or dear, the default rule stops it within 20 calls
    assert _served([make(n, "gpt-4", anthropic=anthropic) for n in range(1, 40)]) < 20


def test_a_dear_pattern_is_stopped_sooner_than_a_cheap_one():
    bodies = [loops.identical(n, "gpt-4") for n in range(1, 40)]
    assert _served(bodies, input_usd=Decimal("0.0001")) == DEFAULTS.loop_max_repeats
    assert _served(bodies, input_usd=Decimal("0.48")) == DEFAULTS.loop_min_repeats  # ~16 KB at gpt-4's $30/M


def test_hi_eleven_times_on_a_dear_model_is_served():
    """The spend is the pattern's worst-case *input*: "hi" on gpt-4 costs nothing like its max_tokens."""
    hi = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    assert _served([hi] * 11, input_usd=Decimal("0.0003")) == 11


def test_what_differs_only_in_volatile_tokens_is_the_same_pattern():
    base = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Poll job  status\n"}]}
    same = [
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "poll job status"}]},
        {"model": "gpt-4o-mini", "temperature": 0.3, "messages": [{"role": "user", "content": "Poll job status"}]},
    ]
    assert {loopguard.pattern(b).fingerprint for b in [base, *same]} == {loopguard.pattern(base).fingerprint}
    stamped = [f"Status of job 3f2b9c1e-8a4d-4e2f-9b7a-1c2d3e4f5a6b at 2026-11-30T12:0{i}:00Z (epoch 17649{i}1234), "
               f"trace a1b2c3d4e5f6{i}" for i in range(3)]
    assert len({loopguard.pattern({"model": "m", "messages": [{"role": "user", "content": s}]}).fingerprint
                for s in stamped}) == 1
    assert loopguard.pattern({"model": "other", **{k: v for k, v in base.items() if k != "model"}}) != \
        loopguard.pattern(base)


@pytest.mark.parametrize("anthropic", [False, True], ids=["openai", "anthropic"])
def test_a_tool_loop_is_one_pattern_whatever_the_model_says_around_its_calls(anthropic):
    thoughts = ["Let me try classifying again...", "Hmm, the classifier returned nothing. Retrying.",
                "Attempt 3: maybe it works now."]
    patterns = set()
    for thought in thoughts:
        body = loops.tool_loop(3, "gpt-4", anthropic=anthropic)
        turn = body["messages"][-2]
        if anthropic:
            turn["content"][0]["text"] = thought
        else:
            turn["content"] = thought
        patterns.add(loopguard.pattern(body).fingerprint)
    assert len(patterns) == 1


def test_tool_arguments_keep_their_numbers_and_keys_so_paging_is_progress():
    def page(n: int, result: str) -> dict:
        return loops.tool_loop(2, "gpt-4") | {"messages": loops.tool_loop(2, "gpt-4")["messages"][:2] + [
            {"role": "assistant", "tool_calls": [{"id": f"call_{n}", "type": "function", "function": {
                "name": "list_orders", "arguments": f'{{"page": {n}, "id": {n}}}'}}]},
            {"role": "tool", "tool_call_id": f"call_{n}", "content": result}]}

    assert len({loopguard.pattern(page(n, "[]")).fingerprint for n in range(1, 6)}) == 5
    assert loopguard.pattern(page(1, "[]")).tools == ("list_orders",)


def test_embeddings_and_odd_shapes_have_a_pattern():
    assert loopguard.pattern({"model": "text-embedding-3-small", "input": ["a 1", "b"]}) == \
        loopguard.pattern({"model": "text-embedding-3-small", "input": ["a 2", "b"]})
    for body in ({"model": "m"}, {"model": "m", "messages": "hi"}, {"model": "m", "messages": [1, None, "x"]},
                 {"model": "m", "messages": [{"role": "assistant", "content": [None, 3]}, {"role": "tool"}]},
                 {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{"}}]}]}):
        assert len(loopguard.pattern(body).fingerprint) == 32


def test_fifty_varied_honest_conversations_are_never_refused():
    """60 generated conversations (topics, lengths, both formats, tool use that makes progress) from one
    principal in one window: no pattern reaches a limit, and no conversation repeats its own pattern."""
    everything = []
    kinds, tool_turns, lengths = Counter(), 0, set()
    for seed in range(60):
        bodies = list(loops.honest_conversation(seed, "gpt-4"))
        fps = [loopguard.pattern(b) for b in bodies]
        assert len({p.fingerprint for p in fps}) == len(fps), f"conversation {seed} repeats a pattern"
        kinds.update(p.kind for p in fps)
        tool_turns += sum(p.kind == loopguard.TOOL for p in fps)
        lengths.add(len(bodies))
        everything += bodies
    assert len(lengths) >= 8 and tool_turns >= 20 and set(kinds) == {loopguard.REQUEST, loopguard.EXCHANGE,
                                                                     loopguard.TOOL}
    assert _served(everything, input_usd=Decimal("0.30")) == len(everything)


def test_a_forty_turn_conversation_is_never_refused():
    bodies = list(loops.honest_conversation(7, "gpt-4", turns=40))
    assert len(bodies) >= 40
    assert _served(bodies, input_usd=Decimal("0.40")) == len(bodies)


def test_the_counter_is_keyed_by_user_subject_pattern_and_window():
    c = loopguard.counter("KEY#k1", "alice", loops.identical(1, "gpt-4"), NOW, Decimal("0.48"),
                          max_repeats=18, min_repeats=5, max_usd=Decimal("0.5"), window_s=600)
    start = int(NOW.timestamp()) // 600 * 600
    assert (c.pk, c.sk) == ("LOOP#alice", f"KEY#k1#{c.fingerprint}#{start}")
    assert c.window_end == start + 600 and c.expires == start + 1200
    assert c.resets_in_s == start + 600 - NOW.timestamp() == 400


def test_the_refusal_says_what_repeated_for_how_long_and_how_to_clear_it():
    c = loopguard.counter("KEY#k1", "alice", loops.tool_loop(3, "gpt-4"), NOW, Decimal("0.48"),
                          max_repeats=18, min_repeats=5, max_usd=Decimal("0.5"), window_s=600)
    err = loopguard.refusal(c, "alice", 5, Decimal("2.40"))
    assert (err.status, err.code, err.retryable, err.headers) == (429, "loop_detected", False, {"retry-after": "400"})
    for part in ("call to classify with the same arguments", "5 times", "$2.40", "10-minute window", "400 s",
                 "change the request", "tollgate loops clear --user alice"):
        assert part in err.message
    assert "18 times in this" in loopguard.refusal(c, "alice", 18, Decimal("0.01")).message
