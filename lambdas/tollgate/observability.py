"""Powertools Logger, Metrics and Tracer: created once, shared by every handler.

Logs are structured JSON with the request id as correlation id. Prompt text, completions and key
material are never passed to the logger.

The tracer is built at a traced function's first invocation, not at import (LazyTracer): importing the
X-Ray SDK builds its recorder, which outside Lambda (the local stack, tests, `make bench`) also builds a
botocore X-Ray client for centralised sampling, ~250 ms of every import of a handler. In Lambda the
recorder samples locally and the function only follows the decision API Gateway made, so tracing costs
the first request the SDK's import (~0.1 s) and patches only the library our AWS calls go through.
"""
from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

from tollgate import metric_names

logger = Logger(service=metric_names.SERVICE)
metrics = Metrics(namespace=metric_names.NAMESPACE, service=metric_names.SERVICE)

# Health checks and refusals legitimately emit no metric; Powertools would warn on every one of them.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

# What our traced calls go through that the X-Ray SDK can patch: AWS (botocore). The providers' SDKs
# call through httpx2, which it does not know; their time is the handler's segment around them.
TRACED_LIBRARIES = ("botocore",)


def tracing_enabled() -> bool:
    """Powertools' rule: trace in Lambda (LAMBDA_TASK_ROOT set) unless POWERTOOLS_TRACE_DISABLED is true or
    the function runs in SAM local or Chalice local."""
    if resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    return bool(os.getenv("LAMBDA_TASK_ROOT")) and not (os.getenv("AWS_SAM_LOCAL") or os.getenv("AWS_CHALICE_CLI_MODE"))


class LazyTracer:
    """A Powertools Tracer built at the first invocation of a function it decorates, and only when
    tracing is enabled (tracing_enabled()); until then the X-Ray SDK is not imported at all.

    Use as Powertools' own: `@tracer.capture_lambda_handler(capture_response=False)`.
    """

    def __init__(self, service: str, patch_modules: tuple[str, ...] = TRACED_LIBRARIES):
        self.service = service
        self.patch_modules = patch_modules
        self._tracer: Any = None

    @property
    def tracer(self) -> Any:
        """The Powertools Tracer (built on first use; imports the X-Ray SDK and patches patch_modules)."""
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self.service, patch_modules=list(self.patch_modules))
        return self._tracer

    def capture_lambda_handler(self, capture_response: bool = True) -> Callable[[Callable], Callable]:
        def decorate(handler: Callable) -> Callable:
            traced: Callable | None = None

            @functools.wraps(handler)
            def invoke(event: Any, context: Any) -> Any:
                nonlocal traced
                if not tracing_enabled():
                    return handler(event, context)
                if traced is None:
                    traced = self.tracer.capture_lambda_handler(handler, capture_response=capture_response)
                return traced(event, context)

            return invoke

        return decorate


tracer = LazyTracer(service=metric_names.SERVICE)
