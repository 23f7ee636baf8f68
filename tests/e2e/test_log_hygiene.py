"""What the handlers log over a full run carries no prompt, no completion and no key material.

One run through the local stack (real handlers in-process, emulated AWS, the fake provider): successful
calls in both wire formats (plain and streamed), refusals (budget, rate limit, validation), provider
errors, and bring-your-own-key (store a key, call with it, a key the provider refuses). Everything the
handlers write is captured (tests/e2e/logcapture.py: stdout, stderr, the Powertools logger and every
Python logger at INFO) and searched for the prompt, the completions and every secret in play.
"""
from __future__ import annotations

import re
import uuid

import pytest
import requests

from local.dev import FAKE_PLATFORM_KEYS
from tests.e2e.logcapture import captured

# A full API key is sk- and 48 characters; its public id is the first 12. Longer sk- runs are secrets.
SECRET_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")


class Run:
    """One run of every kind of request, remembering what must not be logged."""

    def __init__(self, url: str, admin_key: str):
        self.url, self.admin_key = url, admin_key
        tag = uuid.uuid4().hex
        self.prompt = f"PROMPT-CANARY-{tag} please summarise my medical records"
        byok_tag = uuid.uuid4().hex
        self.byok_key = f"sk-byok-secret-{byok_tag}"
        self.refused_byok_key = f"bad-byok-secret-{byok_tag[::-1]}"
        self.user = f"hygiene-{tag[:8]}"
        self.secrets: list[str] = [admin_key, self.byok_key, self.refused_byok_key, *FAKE_PLATFORM_KEYS.values()]
        self.completions: list[str] = []
        self.request_ids: list[str] = []

    def _post(self, path: str, key: str, body: dict, method: str = "POST") -> requests.Response:
        return requests.request(method, f"{self.url}{path}", json=body, timeout=60,
                                headers={"Authorization": f"Bearer {key}"})

    def key(self, suffix: str, scopes: list[str], **limits) -> str:
        r = self._post("/admin/keys", self.admin_key, {"user": f"{self.user}{suffix}", "scopes": scopes, **limits})
        assert r.status_code == 201, r.text
        self.secrets.append(r.json()["key"])
        return r.json()["key"]

    def chat(self, key: str, *, stream: bool = False, extra: str = "") -> requests.Response:
        return self._post("/v1/chat/completions", key, {
            "model": "gpt-4o-mini", "max_tokens": 24, "stream": stream,
            "messages": [{"role": "system", "content": f"System {self.prompt}"},
                         {"role": "user", "content": f"{extra} {self.prompt}"}]})

    def message(self, key: str, *, extra: str = "") -> requests.Response:
        return self._post("/v1/messages", key, {
            "model": "claude-haiku-4-5", "max_tokens": 24, "system": f"System {self.prompt}",
            "messages": [{"role": "user", "content": f"{extra} {self.prompt}"}]})

    def ok(self, response: requests.Response, completion: str) -> None:
        assert response.status_code == 200, response.text
        assert completion.strip(), "the fake provider answered nothing: nothing to look for"
        self.completions.append(completion)
        self.request_ids.append(response.headers["x-request-id"])

    def everything(self, stack) -> None:
        fake = stack.fake
        alice = self.key("", ["ai:complete", "ai:embed", "byok:manage"])

        # Successes, both wire formats, plain and streamed, and an embedding of the prompt.
        r = self.chat(alice)
        self.ok(r, r.json()["choices"][0]["message"]["content"])
        r = self.chat(alice, stream=True)
        deltas = re.findall(r'"content":\s*"([^"]*)"', r.text)
        self.ok(r, "".join(deltas))
        r = self.message(alice)
        self.ok(r, r.json()["content"][0]["text"])
        emb = self._post("/v1/embeddings", alice, {"model": "text-embedding-3-small", "input": [self.prompt]})
        assert emb.status_code == 200, emb.text

        # Refusals: budget, rate limit, validation (no model; a model with no price).
        broke = self.key("-broke", ["ai:complete"], monthly_budget_usd=0)
        assert self.chat(broke).status_code == 429
        assert self.message(broke).status_code == 429
        limited = self.key("-limited", ["ai:complete"], rpm=1)
        assert 429 in [self.chat(limited, extra=str(i)).status_code for i in range(3)]
        assert self._post("/v1/chat/completions", alice, {"messages": [{"role": "user", "content": self.prompt}]}
                          ).status_code == 400
        assert self._post("/v1/chat/completions", alice, {
            "model": "no-such-model", "messages": [{"role": "user", "content": self.prompt}]}).status_code == 400
        assert self._post("/admin/keys", alice, {"user": self.prompt}).status_code == 403  # scope refusal

        # Provider errors: a 500 (retried, then 502) and a 400 passed on.
        assert self.chat(alice, extra="[[fake:status=500]] [[fake:retry_after_ms=1]]").status_code >= 500
        assert self.message(alice, extra="[[fake:status=500]] [[fake:retry_after_ms=1]]").status_code >= 500
        assert self.chat(alice, extra="[[fake:status=400]]").status_code == 400

        # BYOK: a key the provider refuses is not stored; a good one is, and the next call uses it.
        refused = self._post("/v1/provider-keys/openai", alice, {"api_key": self.refused_byok_key}, method="PUT")
        assert refused.status_code == 400, refused.text
        assert self.refused_byok_key not in refused.text
        stored = self._post("/v1/provider-keys/openai", alice, {"api_key": self.byok_key}, method="PUT")
        assert stored.status_code == 200, stored.text
        assert self.byok_key not in stored.text
        stack.emulator.clear_authorizer_cache()  # the key's cached authorizer answer predates the BYOK key
        before = len(fake.calls_to("/v1/chat/completions"))
        r = self.chat(alice, extra="byok")
        self.ok(r, r.json()["choices"][0]["message"]["content"])
        assert [c["api_key"] for c in fake.calls_to("/v1/chat/completions")[before:]] == [self.byok_key]
        # The provider refusing the user's own key mid-call, and a failed BYOK call.
        assert self.chat(alice, extra="[[fake:status=401]]").status_code == 400
        assert self.chat(alice, extra="[[fake:status=500]] [[fake:retry_after_ms=1]]").status_code >= 500
        assert self._post("/v1/provider-keys/openai", alice, {}, method="DELETE").status_code == 200


@pytest.fixture(scope="module")
def run(local_stack):
    with local_stack.environment():
        run = Run(local_stack.url, local_stack.admin_key)
        with captured() as out:
            run.everything(local_stack)
    run.out = out
    return run


def test_the_capture_saw_the_run(run):
    """Not vacuous: the handlers' structured lines, with the request ids, and their metrics were captured."""
    records = run.out.log_records()
    correlation_ids = {r.get("correlation_id") for r in records}
    assert set(run.request_ids) <= correlation_ids
    messages = {r["message"] for r in records}
    assert {"metered request", "provider key stored", "provider key deleted"} <= messages
    assert run.out.emf()


def test_no_prompt_text(run):
    assert "PROMPT-CANARY" not in run.out.text


def test_no_completion_text(run):
    for completion in run.completions:
        assert completion not in run.out.text


def test_no_key_material(run):
    text = run.out.text
    for secret in run.secrets:
        assert secret not in text
    assert SECRET_KEY_PATTERN.findall(text) == []


def test_no_byok_key_even_in_part(run):
    """Not even its random part without the prefix (only `last4` is ever kept in clear, in the table)."""
    for key in (run.byok_key, run.refused_byok_key):
        random_part = key.rsplit("-", 1)[1]
        assert random_part[:-4] not in run.out.text
