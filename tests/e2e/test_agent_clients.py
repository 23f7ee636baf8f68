"""End to end: the agent clients people run in 2026, unchanged, against the whole local stack on keys with the
default limits — Claude Code (`claude -p`), Codex CLI (`codex exec`), both installed by the project's `npm ci`
(package.json), and the OpenAI Agents SDK's default (Responses) agent with a function tool.

What each CLI needed offline (nothing else: no login, no network):
- Claude Code: ANTHROPIC_BASE_URL with ANTHROPIC_AUTH_TOKEN (Bearer, root base URL) or ANTHROPIC_API_KEY
  (x-api-key, base URL .../anthropic); DISABLE_TELEMETRY, DISABLE_AUTOUPDATER, DISABLE_ERROR_REPORTING,
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = 1; a temporary HOME.
- Codex: a temporary CODEX_HOME whose config.toml names a model provider (base_url the stack's /v1,
  wire_api = "responses", env_key naming the variable that holds the key); `--skip-git-repo-check`, and
  stdin closed (else it waits to read more prompt from it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.cli import tollgate

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "node_modules" / ".bin"


def _default_key(local_stack, user):
    """A key with the default limits (rpm, tpm, budgets): what a new user gets."""
    return tollgate(local_stack, "keys", "create", "--user", user)["key"]


def _metered(local_stack, user, endpoint_suffix):
    records = [r for r in tollgate(local_stack, "usage", "--user", user)["records"]
               if r["endpoint"].endswith(endpoint_suffix)]
    assert records and all(r["status"] == "ok" and Decimal(r["cost_usd"]) > 0 for r in records), records
    return records


def _cli(name):
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed: run `npm ci`")
    return str(path)


def _run(argv, env, cwd):
    done = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def _offline_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **extra}


@pytest.mark.parametrize("auth", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
def test_claude_code_completes_a_prompt_and_each_call_is_metered(local_stack, tmp_path, auth):
    claude = _cli("claude")
    user = f"e2e-claude-{auth.lower().replace('_', '-')}"
    key = _default_key(local_stack, user)
    base = local_stack.url if auth == "ANTHROPIC_AUTH_TOKEN" else f"{local_stack.url}/anthropic"
    env = _offline_env(tmp_path, ANTHROPIC_BASE_URL=base, **{auth: key}, DISABLE_TELEMETRY="1",
                       DISABLE_AUTOUPDATER="1", DISABLE_ERROR_REPORTING="1",
                       CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    before = len(local_stack.fake.calls_to("/v1/messages"))
    out = _run([claude, "-p", "Say hello"], env, tmp_path)
    assert "lorem ipsum" in out  # the fake provider's answer
    sent = local_stack.fake.calls_to("/v1/messages")[before:]
    assert sent and all(c["status"] == 200 for c in sent)
    assert all(c["headers"]["anthropic-beta"] and c["headers"]["anthropic-version"] for c in sent)
    assert len(_metered(local_stack, user, "/messages")) == len(sent)


def test_codex_exec_completes_a_prompt_through_the_responses_api_and_is_metered(local_stack, tmp_path):
    codex = _cli("codex")
    user = "e2e-codex"
    key = _default_key(local_stack, user)
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(f'''model = "gpt-5"
model_provider = "tollgate"

[model_providers.tollgate]
name = "Tollgate"
base_url = "{local_stack.url}/v1"
env_key = "TOLLGATE_API_KEY"
wire_api = "responses"
''')
    env = _offline_env(tmp_path, CODEX_HOME=str(home), TOLLGATE_API_KEY=key)
    before = len(local_stack.fake.calls_to("/v1/responses"))
    out = _run([codex, "exec", "--skip-git-repo-check", "Say hello"], env, tmp_path)
    assert "lorem ipsum" in out
    sent = local_stack.fake.calls_to("/v1/responses")[before:]
    assert sent and all(c["stream"] and c["status"] == 200 for c in sent)
    assert len(_metered(local_stack, user, "/responses")) == len(sent)


# Run in its own interpreter outside the repository: the project's own `agents` package (the agent-run
# workers) would shadow the SDK's top-level `agents` module on this repository's sys.path.
AGENTS_SDK_SCRIPT = """
import asyncio, json, sys
import agents
from openai import AsyncOpenAI

called = []

@agents.function_tool
def get_weather(city: str) -> str:
    \"\"\"The weather in a city.\"\"\"
    called.append(city)
    return f"Sunny in {city}"

agents.set_tracing_disabled(True)
agents.set_default_openai_client(AsyncOpenAI(base_url=sys.argv[1], api_key=sys.argv[2]))
agent = agents.Agent(name="weather", instructions="Use the tool. [[fake:tool_call]]", tools=[get_weather],
                     model="gpt-4o-mini")
result = asyncio.run(agents.Runner.run(agent, "What is the weather in Paris?"))
print(json.dumps({"called": called, "final_output": result.final_output}))
"""


def test_the_agents_sdk_default_agent_calls_its_function_tool_through_the_gateway(local_stack, tmp_path):
    user = "e2e-agents"
    key = _default_key(local_stack, user)
    script = tmp_path / "agent.py"
    script.write_text(AGENTS_SDK_SCRIPT)
    out = _run([sys.executable, str(script), f"{local_stack.url}/v1", key], {**os.environ, "HOME": str(tmp_path)},
               tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["called"] == ["lorem"]  # the fake's arguments, valid for the tool's schema
    assert "lorem ipsum" in result["final_output"]
    assert len(_metered(local_stack, user, "/responses")) == 2  # the tool call turn, then the answer
