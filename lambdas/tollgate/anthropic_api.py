"""Anthropic's API beyond /v1/messages, as the gateway serves it: the client's `anthropic-version` and
`anthropic-beta` headers (forwarded as sent, betas through an operator-extensible allow-list), and
POST /v1/messages/count_tokens (forwarded, not charged, one request of the requests-per-minute limit).

Betas: a beta may change what a call costs (the 1M-token context window bills a long-context premium,
`extended-cache-ttl` allows 1-hour cache writes), so only betas the price catalogue is known to cover are
forwarded: DEFAULT_BETAS, plus the operator's TOLLGATE_ANTHROPIC_BETAS (comma-separated fnmatch patterns).
Sources: https://docs.anthropic.com/en/api/beta-headers, https://docs.anthropic.com/en/api/messages-count-tokens.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Callable, Mapping

from tollgate.auth.principal import Principal
from tollgate.clock import Clock, utc_now
from tollgate.errors import InvalidRequest, RateLimited
from tollgate.ratelimits import window_for
from tollgate.schema import Env
from tollgate.settings import Settings

VERSION_HEADER = "anthropic-version"
BETA_HEADER = "anthropic-beta"
# Priced by the catalogue or not changing prices: the 1M context window (long-context rates), caching (5-minute
# and 1-hour writes), thinking and effort (output tokens), tool streaming, output length, context management.
# The last five are what Claude Code 2.1 sends with every call.
DEFAULT_BETAS = ("context-1m-*", "prompt-caching-*", "interleaved-thinking-*", "fine-grained-tool-streaming-*",
                 "token-efficient-tools-*", "output-128k-*", "extended-cache-ttl-*", "claude-code-*",
                 "thinking-token-count-*", "context-management-*", "mid-conversation-system-*", "effort-*")


def provider_headers(headers: Mapping[str, str], extra_betas: tuple[str, ...] = ()) -> dict[str, str]:
    """The client's anthropic-version and anthropic-beta (lower-cased names), to send to the provider as
    they are. Raises InvalidRequest (400, param `anthropic-beta`) naming the first beta not allowed."""
    out = {name: headers[name] for name in (VERSION_HEADER, BETA_HEADER) if headers.get(name)}
    allowed = DEFAULT_BETAS + extra_betas
    for beta in (b.strip() for b in out.get(BETA_HEADER, "").split(",")):
        if beta and not any(fnmatchcase(beta, pattern) for pattern in allowed):
            raise InvalidRequest(f"The anthropic-beta '{beta}' is not allowed by this gateway: a beta may change "
                                 "what a call costs, and this one is not known to its price list. The operator can "
                                 f"allow it with the setting {Env.ANTHROPIC_BETAS} (comma-separated patterns).",
                                 param=BETA_HEADER, code="beta_not_allowed")
    return out


class CountTokens:
    """POST /v1/messages/count_tokens: the model must be a priced Anthropic model; one request is taken from
    the caller's requests-per-minute window (tokens are not: nothing is generated); nothing is charged."""

    def __init__(self, settings: Settings, catalogue: Any, windows: Any, provider: Any,
                 keys: Callable[[Principal, str], tuple[str, bool]], clock: Clock = utc_now):
        self.settings = settings
        self.catalogue = catalogue
        self.windows = windows
        self.provider = provider
        self.keys = keys
        self.clock = clock

    def count(self, principal: Principal, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        """(HTTP status, the provider's JSON body {input_tokens}). Raises UnknownModel / InvalidRequest (400),
        RateLimited (429, retry-after), or the provider's errors."""
        price = self.catalogue.price(body.get("model") if isinstance(body.get("model"), str) else "")
        if price.provider != self.provider.name:
            raise InvalidRequest(f"'{price.id}' is served by {price.provider}; count_tokens is Anthropic's.",
                                 param="model")
        window = window_for(principal, self.clock(), self.settings)
        if self.windows.take_request(window) is None:
            raise RateLimited(f"Rate limit reached: {window.rpm} requests per minute. Retry after "
                              f"{window.retry_after} s.", headers={"retry-after": window.retry_after})
        api_key, _ = self.keys(principal, self.provider.name)
        return self.provider.count_tokens(body, api_key=api_key, headers=headers)
