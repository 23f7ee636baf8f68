"""The loop guard through the whole local stack, with the official SDKs (retries off) and the default
settings: the incident's loop in four forms is refused within 20 calls, honest use is not, failed
provider calls do not count, and the refusal reads the same in both wire formats.

The incident (seed/000_…txt): 891 calls of ~4,000 gpt-4 tokens, $2,847. Each replay below prints the
calls served and the dollars metered at gpt-4's prices (run with -s to see them).
"""
from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any, Callable

import anthropic
import openai
import pytest
import requests

from tests import loops
from tests.e2e.test_sdks import tollgate
from tollgate.settings import Settings

DEFAULTS = Settings.from_env({})
CHEAP = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-latest"
DEAR_CLAUDE = "claude-opus-4-1-20250805"  # $15/M input: the incident's prompt costs ~$0.24 of input at worst


class Caller:
    """One fresh user and key on the local stack, and the two SDKs pointed at it."""

    def __init__(self, stack: Any, rpm: int = 100_000):
        self.stack = stack
        self.user = f"loop-{uuid.uuid4().hex[:10]}"
        created = requests.post(f"{stack.url}/admin/keys", timeout=30,
                                headers={"Authorization": f"Bearer {stack.admin_key}"},
                                json={"user": self.user, "scopes": ["ai:complete"], "rpm": rpm, "tpm": 10_000_000})
        assert created.status_code == 201, created.text
        self.key = created.json()["key"]
        self.openai = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=self.key, max_retries=0)
        self.anthropic = anthropic.Anthropic(base_url=stack.url, api_key=self.key, max_retries=0)

    def send(self, body: dict[str, Any], *, wire: str = "openai") -> Decimal:
        """Send a body; returns what it was metered (USD). Raises the SDK's error on a refusal."""
        api = self.anthropic.messages if wire == "anthropic" else self.openai.chat.completions
        raw = api.with_raw_response.create(**body)
        return Decimal(raw.headers["x-tollgate-cost-usd"])

    def until_refused(self, make: Callable[[int], dict[str, Any]], *, wire: str = "openai",
                      most: int = 30) -> tuple[int, Decimal, Exception]:
        """Call n = 1, 2, ... until refused: (calls served, USD metered, the refusal)."""
        spent = Decimal(0)
        for n in range(1, most + 1):
            try:
                spent += self.send(make(n), wire=wire)
            except (openai.APIStatusError, anthropic.APIStatusError) as refusal:
                return n - 1, spent, refusal
        pytest.fail(f"{most} calls were all served")

    def admin(self, method: str, path: str) -> dict[str, Any]:
        resp = requests.request(method, f"{self.stack.url}{path}", params={"user": self.user}, timeout=30,
                                headers={"Authorization": f"Bearer {self.stack.admin_key}"})
        assert resp.status_code == 200, resp.text
        return resp.json()


def in_one_window(stack: Any, check: Callable[[Caller], None]) -> None:
    """Run `check` with a fresh caller; counts live in fixed windows (loop_window_s), so if one ended
    during a failing run, run it once more, inside the next window."""
    def window() -> int:
        return int(time.time()) // DEFAULTS.loop_window_s

    start = window()
    try:
        check(Caller(stack))
    except AssertionError:
        if window() == start:
            raise
        check(Caller(stack))


def _code(refusal: Exception) -> str:
    return refusal.body["code"] if isinstance(refusal, openai.APIStatusError) else refusal.body["error"]["code"]


@pytest.mark.parametrize("form", sorted(loops.LOOPS))
def test_the_incident_in_each_form_is_refused_within_20_calls(local_stack, form):
    """gpt-4 and the naive agent's ~16 KB prompt (~4,000 tokens a call): the pattern's worst-case
    input passes $0.50 at once, so the first call past loop_min_repeats (5) repeats is refused. A growing
    conversation's first call is a first turn, not yet the repeating exchange: one more is served."""
    def check(caller: Caller) -> None:
        served, spent, refusal = caller.until_refused(lambda n: loops.LOOPS[form](n, "gpt-4"))
        print(f"\n{form}: {served} calls served, ${spent} at gpt-4 prices (the article: 891 calls, $2,847)")
        first_turn = form in ("growing ReAct conversation", "repeated identical tool call")
        assert served == DEFAULTS.loop_min_repeats + first_turn < 20
        assert isinstance(refusal, openai.RateLimitError)
        assert (refusal.body["type"], refusal.body["code"]) == ("insufficient_quota", "loop_detected")
        _assert_refusal_headers_and_message(refusal, caller.user, {
            "growing ReAct conversation": "the same turn appended", "repeated identical tool call": "call to classify",
        }.get(form, "the same request"))
        assert Decimal(0) < spent < Decimal(1)

    in_one_window(local_stack, check)


def test_the_refusal_in_the_anthropic_format_has_the_code_headers_and_message(local_stack):
    def check(caller: Caller) -> None:
        served, _, refusal = caller.until_refused(lambda n: loops.tool_loop(n, DEAR_CLAUDE, anthropic=True),
                                                  wire="anthropic")
        assert served == 1 + DEFAULTS.loop_min_repeats
        assert isinstance(refusal, anthropic.RateLimitError)
        error = refusal.body["error"]
        assert (refusal.body["type"], error["type"], error["code"]) == ("error", "rate_limit_error", "loop_detected")
        _assert_refusal_headers_and_message(refusal, caller.user, "call to classify with the same arguments")

    in_one_window(local_stack, check)


def _assert_refusal_headers_and_message(refusal: Any, user: str, what: str) -> None:
    headers = refusal.response.headers
    assert headers["x-should-retry"] == "false"
    assert 1 <= int(headers["retry-after"]) <= DEFAULTS.loop_window_s
    message = str(refusal.body.get("message") or refusal.body["error"]["message"])
    for part in (what, f"{headers['retry-after']} s", "change the request", f"tollgate loops clear --user {user}"):
        assert part in message, message


def test_fifteen_identical_cheap_polls_are_served_and_the_count_stops_an_endless_one(local_stack):
    def check(caller: Caller) -> None:
        poll = {"model": CHEAP, "max_tokens": 8, "messages": [{"role": "user", "content": "Is job 42 done yet?"}]}
        for _ in range(15):
            caller.send(poll)
        served, _, refusal = caller.until_refused(lambda n: poll)
        assert 15 + served == DEFAULTS.loop_max_repeats < 20 and _code(refusal) == "loop_detected"

    in_one_window(local_stack, check)


def test_failed_provider_attempts_do_not_count_toward_the_loop(local_stack):
    """10 calls the provider fails, then the provider recovers: `status=500` and `status=200` differ
    only in a number, so they are one pattern, and it has counted only the call that succeeded."""
    def check(caller: Caller) -> None:
        def call(status: int) -> dict[str, Any]:
            return {"model": CHEAP, "max_tokens": 8, "messages": [
                {"role": "user", "content": f"Summarise the report [[fake:status={status}]] [[fake:retry_after_ms=1]]"}]}

        for _ in range(10):
            with pytest.raises(openai.APIStatusError) as failed:
                caller.send(call(500))
            assert failed.value.status_code >= 500
        caller.send(call(200))
        [loop] = caller.admin("GET", "/admin/loops")["loops"]
        assert (loop["hits"], loop["refused"]) == (1, False)

    in_one_window(local_stack, check)


def test_honest_conversations_through_the_stack_are_never_refused(local_stack):
    """One of the generated conversations (tests/unit/test_loopguard.py runs sixty), in the Anthropic
    format with tool use, and a 40-turn one, from one user within one window."""
    def check(caller: Caller) -> None:
        bodies = [(b, "anthropic") for b in loops.honest_conversation(2, CLAUDE, anthropic=True)]
        bodies += [(b, "openai") for b in loops.honest_conversation(40, CHEAP, turns=40, anthropic=False, tools=False)]
        for body, wire in bodies:
            caller.send(body, wire=wire)
        counted = caller.admin("GET", "/admin/loops")["loops"]
        assert len(counted) == len(bodies) and {loop["hits"] for loop in counted} == {1}

    in_one_window(local_stack, check)


def test_an_operator_lists_and_clears_a_users_loops_with_the_cli(local_stack):
    def check(caller: Caller) -> None:
        served, _, _ = caller.until_refused(lambda n: loops.numbered(n, "gpt-4"))
        [loop] = tollgate(local_stack, "loops", "list", "--user", caller.user)["loops"]
        assert (loop["kind"], loop["hits"], loop["refused"]) == ("request", served, True)
        assert Decimal(loop["spent_usd"]) >= DEFAULTS.loop_max_usd
        assert tollgate(local_stack, "loops", "clear", "--user", caller.user) == {"user": caller.user, "cleared": 1}
        caller.send(loops.numbered(99, "gpt-4"))  # served again
        assert caller.admin("GET", "/admin/loops")["loops"][0]["hits"] == 1

    in_one_window(local_stack, check)
