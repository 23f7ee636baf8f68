"""The OpenAI Responses API's rules in the gateway: what a request may ask, and who may touch a stored response.

A stored response (and everything chained to it) lives in the platform's provider account, so only the
user whose request created it may read, delete, cancel, list the input items of, or chain it
(`previous_response_id`). Its owner is recorded when the response is metered (tollgate.store.responses);
anyone else gets OpenAI's own 404, as if it did not exist.

`background: true` is refused (400): a background response keeps running and billing after the request
that started it has returned, and the gateway meters a response when its request ends
(docs/design-decisions.md, issue 12).
"""
from __future__ import annotations

from typing import Any, Callable

from tollgate.auth.principal import Principal
from tollgate.errors import InvalidRequest, NotFound, shown
from tollgate.store import responses as owners

ACTIONS = ("cancel", "input_items")  # POST /responses/{id}/cancel, GET /responses/{id}/input_items


def check_request(body: dict[str, Any]) -> None:
    """Refuse what cannot be metered. Raises InvalidRequest (400, param `background`)."""
    if body.get("background") is True:
        raise InvalidRequest("background responses are not supported by this gateway: a background response "
                             "runs and bills after its request has returned, outside the reservation that meters "
                             "it. Send the request without 'background' (stream it if it is long).",
                             param="background", code="background_not_supported")


def not_found(response_id: str) -> NotFound:
    """OpenAI's answer for a response id it does not know (also for one another user owns)."""
    return NotFound(f"Response with id '{shown(response_id)}' not found.", param=None, code=None)


def chain_checks(table: str, principal: Principal, body: dict[str, Any]) -> tuple[tuple[dict[str, Any], Exception], ...]:
    """The reservation's ConditionChecks for a chained request: its previous_response_id must be the caller's."""
    previous = body.get("previous_response_id")
    if not isinstance(previous, str):
        return ()
    return ((owners.owner_check(table, previous, principal.user), not_found(previous)),)


class StoredResponses:
    """Forwards the stored-response operations of their owner to the provider (one GetItem first).

    `forward(principal, method, response_id, action, query)` -> (HTTP status, JSON body bytes)."""

    def __init__(self, owners_store: owners.ResponseOwners, provider: Any,
                 keys: Callable[[Principal, str], tuple[str, bool]]):
        self.owners = owners_store
        self.provider = provider
        self.keys = keys

    def forward(self, principal: Principal, method: str, response_id: str, action: str | None,
                query: dict[str, str]) -> tuple[int, bytes]:
        """Raises NotFound (404) unless `principal.user` created the response; otherwise the provider's
        answer, or its errors (tollgate.errors.ProviderRejected / ProviderFailed)."""
        if action is not None and action not in ACTIONS:
            raise NotFound(f"Unknown request URL: {method} /v1/responses/{shown(response_id)}/{shown(action)}")
        if self.owners.owner(response_id) != principal.user:
            raise not_found(response_id)
        api_key, _ = self.keys(principal, self.provider.name)
        return self.provider.stored_response(method, response_id, action, query, api_key=api_key)
