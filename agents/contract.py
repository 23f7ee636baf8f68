"""What the worker shares with the gateway and the runs API (lambdas/tollgate): item keys and
attribute names, statuses, stop reasons, agent names and headers.

The worker image is built from agents/ alone, so these are repeated here rather than imported;
tests/unit/test_agent_guards.py asserts they equal tollgate.runs, tollgate.budgets, tollgate.schema,
tollgate.auth.iam and handlers.gateway.
"""
from __future__ import annotations

# The runs table (tollgate.schema.RUNS).
RUNS_TABLE_ENV = "TOLLGATE_RUNS_TABLE"
RUNS_KEY = "runId"
# The budgets table holds each run's budget item (tollgate.budgets.run_pk / RUN_SK).
BUDGETS_TABLE_ENV = "TOLLGATE_BUDGETS_TABLE"
RUNS_QUEUE_URL_ENV = "TOLLGATE_RUNS_QUEUE_URL"
RUN_BUDGET_SK = "RUN"


def run_budget_pk(run_id: str) -> str:
    return f"BUDGET#RUN#{run_id}"


# Statuses (tollgate.runs).
QUEUED = "queued"
RUNNING = "running"
INTERRUPTED = "interrupted"
SUCCEEDED = "succeeded"
FAILED = "failed"
TERMINAL = (SUCCEEDED, FAILED)

# Stop reasons (tollgate.runs).
COMPLETED = "completed"
BUDGET_EXHAUSTED = "budget_exhausted"
LOOP_DETECTED = "loop_detected"
MAX_ITERATIONS = "max_iterations"
REPEATED_TOOL_CALL = "repeated_tool_call"
CONSECUTIVE_FAILURES = "consecutive_failures"
WALL_CLOCK = "wall_clock"
GATEWAY_ERROR = "gateway_error"
AGENT_ERROR = "agent_error"

# Agents (tollgate.runs.AGENTS).
FEEDBACK_ANALYSIS = "feedback-analysis"
NAIVE_FEEDBACK = "naive-feedback"

# Gateway headers: who the call is for (tollgate.auth.iam.ON_BEHALF_OF) and which run pays
# (handlers.gateway.RUN_ID_HEADER). Honoured only from an IAM principal with the `act-as` scope.
ON_BEHALF_OF_HEADER = "x-tollgate-on-behalf-of"
RUN_ID_HEADER = "x-tollgate-run-id"
COST_HEADER = "x-tollgate-cost-usd"
BUDGET_LEVEL_HEADER = "x-tollgate-budget-level"
CHAT_PATH = "/internal/v1/chat/completions"
