"""What the fake provider reports that is billed outside plain token counts (development only): provider-run
(server-side) tools, the service tier, reasoning tokens. Each is reported the way the real provider does,
so the gateway's own parsers (tollgate.providers.*.usage_from) and price catalogue meter it.

- Server-side tools: a request that offers one has it "used" once, or `[[fake:server_tool_calls=N]]` times,
  at most its `max_uses` (Anthropic) or the request's `max_tool_calls` (Responses API):
  Anthropic (platform.claude.com/docs/en/agents-and-tools/tool-use/web-search-tool, web-fetch-tool): a
  `server_tool_use` content block and its `web_search_tool_result` / `web_fetch_tool_result` block per call,
  and `usage.server_tool_use.{web_search_requests, web_fetch_requests}`.
  OpenAI Responses (platform.openai.com/docs/guides/tools-web-search, tools-file-search,
  tools-code-interpreter): one `web_search_call` / `file_search_call` / `code_interpreter_call` output item
  per call, before the answer's message.
- Prompt cache writes (Anthropic, platform.claude.com/docs/en/build-with-claude/prompt-caching): the
  `[[fake:cache_write_tokens=N]]` writes are split in `usage.cache_creation` into 5-minute and 1-hour
  writes: 1-hour when the request asks for `"ttl": "1h"` in a cache_control, else 5-minute.
- Service tier (OpenAI): the tier asked for in `service_tier` ("priority", "flex") is the one reported as
  used; anything else is reported as "default".
- Reasoning tokens (OpenAI): a request asking for reasoning (chat `reasoning_effort`, Responses
  `reasoning.effort`) or carrying `[[fake:reasoning_tokens=N]]` reports that many reasoning tokens (default
  DEFAULT_REASONING_TOKENS), inside the output tokens as OpenAI counts them, never past max_tokens.
"""
from __future__ import annotations

import re
import uuid
from typing import Any

DEFAULT_REASONING_TOKENS = 8
ANTHROPIC_TOOLS = ("web_search", "web_fetch")
RESPONSES_TOOLS = {"web_search": "web_search_call", "web_search_preview": "web_search_call",
                   "file_search": "file_search_call", "code_interpreter": "code_interpreter_call"}
_VERSION = re.compile(r"_(?:\d{8}|\d{4}_\d{2}_\d{2})$")  # web_search_20250305 -> web_search
_QUERY = "lorem ipsum"
_URL = "https://example.com/lorem-ipsum"


def server_tool_uses(body: dict[str, Any], known: Any, calls: int | None) -> list[str]:
    """The provider-run tools this answer calls, one name per call, in the order offered. `known`: the tool
    names this provider runs; `calls`: the [[fake:server_tool_calls=N]] control (None: once each)."""
    overall = body.get("max_tool_calls")
    tools = body.get("tools")
    out: list[str] = []
    for tool in tools if isinstance(tools, list) else []:
        kind = tool.get("type") if isinstance(tool, dict) else None
        name = _VERSION.sub("", kind) if isinstance(kind, str) else ""
        if name not in known:
            continue
        n = 1 if calls is None else calls
        cap = tool.get("max_uses") if isinstance(tool.get("max_uses"), int) else overall
        if isinstance(cap, int) and cap > 0:
            n = min(n, cap)
        out += [name] * n
    return out


def anthropic_blocks(name: str) -> list[dict[str, Any]]:
    """One call of an Anthropic server tool: its `server_tool_use` block and its result block."""
    use_id = f"srvtoolu_{uuid.uuid4().hex[:24]}"
    if name == "web_search":
        use = {"type": "server_tool_use", "id": use_id, "name": name, "input": {"query": _QUERY}}
        result = {"type": "web_search_tool_result", "tool_use_id": use_id, "content": [
            {"type": "web_search_result", "url": _URL, "title": "Lorem ipsum", "encrypted_content": "ZmFrZQ==",
             "page_age": None}]}
    else:
        use = {"type": "server_tool_use", "id": use_id, "name": name, "input": {"url": _URL}}
        result = {"type": "web_fetch_tool_result", "tool_use_id": use_id, "content": {
            "type": "web_fetch_result", "url": _URL, "retrieved_at": None, "content": {
                "type": "document", "source": {"type": "text", "media_type": "text/plain", "data": _QUERY}}}}
    return [use, result]


def anthropic_usage(uses: list[str]) -> dict[str, Any]:
    """`usage.server_tool_use` for these calls ({} when the request offered no server tool)."""
    if not uses:
        return {}
    return {"server_tool_use": {f"{name}_requests": uses.count(name) for name in ANTHROPIC_TOOLS}}


def responses_item(name: str) -> dict[str, Any]:
    """One call of an OpenAI server tool: its Responses API output item."""
    kind = RESPONSES_TOOLS[name]
    if kind == "web_search_call":
        return {"id": f"ws_{uuid.uuid4().hex[:24]}", "type": kind, "status": "completed",
                "action": {"type": "search", "query": _QUERY}}
    if kind == "file_search_call":
        return {"id": f"fs_{uuid.uuid4().hex[:24]}", "type": kind, "status": "completed", "queries": [_QUERY],
                "results": None}
    return {"id": f"ci_{uuid.uuid4().hex[:24]}", "type": kind, "status": "completed", "code": "print(42)",
            "container_id": "cntr_fake", "outputs": None}


def anthropic_cache_creation(body: Any, writes: int) -> dict[str, Any]:
    """`usage.cache_creation`: the request's cache writes by lifetime."""
    one_hour = writes if _asks_for_1h(body) else 0
    return {"cache_creation": {"ephemeral_5m_input_tokens": writes - one_hour, "ephemeral_1h_input_tokens": one_hour}}


def _asks_for_1h(node: Any) -> bool:
    """Whether any cache_control asks for a 1-hour ttl. Written here rather than imported from the gateway
    (tollgate.providers.anthropic_provider reads the same request): a fake that shared the gateway's reading
    would agree with any mistake in it."""
    if isinstance(node, dict):
        return node.get("ttl") == "1h" or any(_asks_for_1h(v) for v in node.values())
    if isinstance(node, list):
        return any(_asks_for_1h(v) for v in node)
    return False


def openai_service_tier(body: dict[str, Any]) -> str:
    """The tier OpenAI reports it used: the one asked for when it is a priced band, else "default"."""
    return body["service_tier"] if body.get("service_tier") in ("priority", "flex") else "default"


def reasoning_tokens(body: dict[str, Any], control: int | None, visible: int, limit: int | None) -> int:
    """Reasoning tokens to report beside `visible` output tokens, so that both stay within `limit`."""
    reasoning = body.get("reasoning")
    effort = body.get("reasoning_effort") or (reasoning.get("effort") if isinstance(reasoning, dict) else None)
    wanted = control if control is not None else (DEFAULT_REASONING_TOKENS if effort else 0)
    return wanted if limit is None else max(0, min(wanted, limit - visible))
