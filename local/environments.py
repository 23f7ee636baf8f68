"""Lambda's execution model for functions run in-process: one request at a time per environment.

Lambda runs each request in an execution environment that serves no other request while it runs; a
concurrent request gets another environment, created (a cold start: the handler module is imported
afresh) when none is idle. Handler modules may therefore keep per-request state in module globals —
Powertools' resolver keeps the event being handled in `app.current_event` — and the local stack, which
runs requests on concurrent threads of one process, must not let two requests share that state.

`EnvironmentPool` gives each environment its own copy of the handler module: a separate
`importlib.util.module_from_spec` + `exec_module`, a module object that is not entered in
`sys.modules`. What the module imports (the domain package, Powertools, boto3) is the process's one
shared copy, as the layer's modules are in one environment; only the handler module's own globals are
per environment. A request takes an idle environment or creates one, and gives it back when done.

    pool = EnvironmentPool("handlers.gateway")          # nothing imported yet
    result = pool.invoke(event, context)                 # runs handlers.gateway.lambda_handler
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import threading
from typing import Any, Callable

LambdaFunction = Callable[[dict, Any], Any]


class EnvironmentPool:
    """Execution environments of one function: `module`'s `entry_point`, one copy per environment.

    `invoke` raises ModuleNotFoundError if the module does not exist (see `exists`); an ImportError from
    inside an existing module propagates (a real error).
    """

    def __init__(self, module: str, entry_point: str = "lambda_handler"):
        self.module = module
        self.entry_point = entry_point
        self._idle: list[LambdaFunction] = []
        self._lock = threading.Lock()
        self.created = 0  # environments created so far (cold starts)
        self._spec: importlib.machinery.ModuleSpec | None = None

    def exists(self) -> bool:
        """Whether the handler module can be found (without running it)."""
        if self._spec is None:
            try:
                self._spec = importlib.util.find_spec(self.module)
            except ModuleNotFoundError:  # its package does not exist
                return False
        return self._spec is not None

    def invoke(self, event: dict, context: Any) -> Any:
        """Run one request in an idle environment (or a new one); the environment is busy until it returns."""
        with self._lock:
            handler = self._idle.pop() if self._idle else None
        if handler is None:
            handler = self._new_environment()
        try:
            return handler(event, context)
        finally:
            with self._lock:
                self._idle.append(handler)

    def _new_environment(self) -> LambdaFunction:
        if not self.exists():
            raise ModuleNotFoundError(f"No module named {self.module!r}", name=self.module)
        assert self._spec is not None and self._spec.loader is not None
        module = importlib.util.module_from_spec(self._spec)
        self._spec.loader.exec_module(module)
        with self._lock:
            self.created += 1
        return getattr(module, self.entry_point)
