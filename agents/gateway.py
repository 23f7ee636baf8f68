"""The worker's only way to an LLM: the gateway's /internal/v1 routes, SigV4-signed with the task role.

Every call names the user the run acts for (x-tollgate-on-behalf-of) and the run (x-tollgate-run-id),
so the gateway reserves its worst-case cost against the run's budget (and the user's) before sending
it. Each logical call carries an Idempotency-Key derived from the run and the call's sequence number:
a retry after a timeout, or a resumed run repeating an unfinished step, is answered from the gateway's
record instead of being paid for twice.

Errors are sorted by what the agent should do: stop the run (budget spent, loop refused, credentials
refused) or count a failed step (provider down after bounded retries, a request the provider rejects).
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from agents import contract

log = logging.getLogger(__name__)

# (method, path, headers, body) -> (status, lower-cased headers, body)
Transport = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]

RETRYABLE_STATUSES = {409, 429, 500, 502, 503, 504}
MAX_RETRY_WAIT_S = 20.0
# A call that timed out at API Gateway (504) or is still running under its idempotency key (409) is
# asked again with the same key until it settles: the gateway then answers from its record, so the call
# is paid once. This long at most (longer than the gateway Lambda's timeout).
SETTLE_WAIT_S = 300.0


@dataclass(frozen=True)
class Completion:
    text: str
    cost_usd: Decimal
    replayed: bool = False


class GatewayError(Exception):
    """A call the gateway did not answer with a completion."""

    stop_reason = contract.GATEWAY_ERROR
    fatal = True  # stop the run; False: the step failed, the agent decides

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class BudgetExhausted(GatewayError):
    """429 insufficient_quota: the run's budget (or the user's) cannot pay for the call."""

    stop_reason = contract.BUDGET_EXHAUSTED


class LoopRefused(GatewayError):
    """429 loop_detected: the gateway refuses the same request sent too often."""

    stop_reason = contract.LOOP_DETECTED


class StepFailed(GatewayError):
    """The provider failed after bounded retries, or rejected this request: this step failed."""

    fatal = False


class SigV4Transport:
    """HTTPS to the API, signed with SigV4 for service execute-api. Credentials are fetched per call
    from a botocore credential source (the ECS task role's are refreshed before they expire)."""

    def __init__(self, base_url: str, credentials: Any, region: str, *, timeout_s: float = 120.0):
        import urllib3

        self.base_url = base_url.rstrip("/")
        self.credentials = credentials  # botocore Credentials / RefreshableCredentials
        self.region = region
        self.timeout = urllib3.Timeout(connect=5.0, read=timeout_s)
        self.http = urllib3.PoolManager(maxsize=4, retries=False)

    def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = self.base_url + path
        request = AWSRequest(method=method, url=url, data=body, headers={**headers, "host": urlsplit(url).netloc})
        frozen = self.credentials.get_frozen_credentials() if hasattr(self.credentials, "get_frozen_credentials") \
            else self.credentials
        SigV4Auth(frozen, "execute-api", self.region).add_auth(request)
        response = self.http.request(method, url, body=body, headers=dict(request.headers.items()),
                                     timeout=self.timeout)
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.data


class Sleeper(Protocol):
    def __call__(self, seconds: float) -> None: ...


class GatewayClient:
    """Chat completions for one run. Counts its calls and what the gateway said they cost."""

    def __init__(self, transport: Transport, *, user: str, run_id: str, model: str, first_call: int = 0,
                 max_attempts: int = 4, sleep: Sleeper = time.sleep, should_stop: Callable[[], bool] = lambda: False,
                 monotonic: Callable[[], float] = time.monotonic):
        self.transport = transport
        self.user = user
        self.run_id = run_id
        self.model = model
        self.calls = first_call  # logical calls so far in this run (from the checkpoint when resumed)
        self.spent = Decimal(0)  # as reported by the gateway, this attempt only
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.should_stop = should_stop  # the worker was told to stop, or lost the run: no more retries
        self.monotonic = monotonic

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float | None = 0) -> Completion:
        self.calls += 1
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        if temperature is not None:
            body["temperature"] = temperature
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = {
            "content-type": "application/json",
            contract.ON_BEHALF_OF_HEADER: self.user,
            contract.RUN_ID_HEADER: self.run_id,
            "idempotency-key": f"{self.run_id}/{self.calls}",
            "user-agent": "tollgate-agent-worker",
        }
        attempt, settle_deadline = 0, self.monotonic() + SETTLE_WAIT_S
        while True:
            attempt += 1
            try:
                status, rheaders, rbody = self.transport("POST", contract.CHAT_PATH, headers, raw)
            except Exception as exc:  # connection refused, reset, timed out: the call may or may not have run
                if attempt >= self.max_attempts or self.should_stop():
                    raise StepFailed(f"The gateway could not be reached: {type(exc).__name__}.") from None
                self._backoff(attempt, None)
                continue
            if status == 200:
                return self._completion(rheaders, rbody)
            error = _error(status, rheaders, rbody)
            unsettled = status == 504 or (status == 409 and error.code == "idempotency_in_progress")
            if unsettled and self.monotonic() < settle_deadline and not self.should_stop():
                log.info("gateway call not settled yet; asking again with the same key", extra={"status": status})
                attempt -= 1  # waiting for the same call is not another attempt
                self._backoff(2, rheaders)
                continue
            if status in RETRYABLE_STATUSES and not isinstance(error, (BudgetExhausted, LoopRefused)) \
                    and rheaders.get("x-should-retry") != "false" and attempt < self.max_attempts \
                    and not self.should_stop():
                log.info("gateway call retried", extra={"status": status, "code": error.code, "attempt": attempt})
                self._backoff(attempt, rheaders)
                continue
            raise error

    def _completion(self, headers: dict[str, str], body: bytes) -> Completion:
        replayed = headers.get("x-tollgate-idempotent-replay") == "true"
        cost = Decimal(headers.get(contract.COST_HEADER) or "0")
        if not replayed:
            self.spent += cost
        try:
            data = json.loads(body)
            text = data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise StepFailed("The gateway answered 200 without a chat completion.") from None
        return Completion(text=text, cost_usd=cost, replayed=replayed)

    def _backoff(self, attempt: int, headers: dict[str, str] | None) -> None:
        wait = min(MAX_RETRY_WAIT_S, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
        retry_after = (headers or {}).get("retry-after")
        if retry_after:
            try:
                wait = min(MAX_RETRY_WAIT_S, max(wait, float(retry_after)))
            except ValueError:
                pass
        self.sleep(wait)


def _error(status: int, headers: dict[str, str], body: bytes) -> GatewayError:
    try:
        err = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = str(err.get("message") or f"HTTP {status}")
    code = err.get("code") or err.get("type")
    if status == 429 and code == "insufficient_quota":
        level = headers.get(contract.BUDGET_LEVEL_HEADER)
        return BudgetExhausted(message + (f" (level: {level})" if level else ""), status=status, code=code)
    if status == 429 and code == "loop_detected":
        return LoopRefused(message, status=status, code=code)
    if status in (401, 403):
        return GatewayError(f"The gateway refused the worker's credentials: {message}", status=status, code=code)
    return StepFailed(message, status=status, code=code)
