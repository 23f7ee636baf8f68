"""Table key schemas and environment variable names.

The one place both the CDK stacks and the runtime read these facts from. Keep it free of imports
beyond the standard library: CDK code imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True)
class Table:
    """A DynamoDB table: logical id (CDK), env var holding its physical name, and its keys.

    All key attributes are strings.
    """

    logical_id: str
    env_var: str
    partition_key: str
    sort_key: str | None = None
    indexes: tuple[Index, ...] = field(default_factory=tuple)
    ttl_attribute: str | None = None

    @property
    def key_attributes(self) -> tuple[str, ...]:
        names = [self.partition_key] + ([self.sort_key] if self.sort_key else [])
        for index in self.indexes:
            names += [index.partition_key] + ([index.sort_key] if index.sort_key else [])
        return tuple(dict.fromkeys(names))


# API keys: one item per key, pk = key id (the first 12 characters of the raw key).
API_KEYS = Table(
    logical_id="ApiKeysTable",
    env_var="TOLLGATE_API_KEYS_TABLE",
    partition_key="keyId",
    indexes=(Index("byUser", "userId", "createdAt"),),
)

# Usage: one record per request. pk = user id, sk = "<ISO-8601 UTC time>#<request id>", so one user's
# usage over a date range is a single Query with `sk BETWEEN`, and writes spread over users.
# A record is written `pending` by the reservation (it is the reservation: tollgate.store.ledger) and made
# final by the settle. The sparse index `pending` holds only unsettled records (the settle removes its
# keys), so the sweeper queries expired ones instead of scanning. No index by key: nothing reads usage by
# key, and it would add a write unit to every request.
# Records expire USAGE_RETENTION_DAYS after the request (attribute `ttl`); each user's monthly spend
# stays in the budgets table (the user-month budget item's spentUsd), which has no expiry.
USAGE_RETENTION_DAYS = 400  # at least 13 months
USAGE = Table(
    logical_id="UsageTable",
    env_var="TOLLGATE_USAGE_TABLE",
    partition_key="pk",
    sort_key="sk",
    indexes=(Index("pending", "pendingShard", "expiresAt"),),
    ttl_attribute="ttl",
)

# Budgets, rate-limit windows, idempotency keys, limits and notification markers. Generic pk/sk; the
# item kinds and their key formats live in tollgate.store.counters and the stores. No index.
BUDGETS = Table(
    logical_id="BudgetsTable",
    env_var="TOLLGATE_BUDGETS_TABLE",
    partition_key="pk",
    sort_key="sk",
    ttl_attribute="ttl",
)

# Bring-your-own provider keys: pk = user id, sk = provider. Only ciphertext is stored.
PROVIDER_KEYS = Table(
    logical_id="ProviderKeysTable",
    env_var="TOLLGATE_PROVIDER_KEYS_TABLE",
    partition_key="userId",
    sort_key="provider",
)

# Agent runs: one item per run, pk = run id. Written by the runs API (created with the run's budget item
# in the budgets table, in one transaction) and by the agent workers (status, checkpoint, result).
# Finished runs expire after tollgate.runs.RUN_RETENTION_DAYS.
RUNS = Table(
    logical_id="RunsTable",
    env_var="TOLLGATE_RUNS_TABLE",
    partition_key="runId",
    ttl_attribute="ttl",
)

TABLES: tuple[Table, ...] = (API_KEYS, USAGE, BUDGETS, PROVIDER_KEYS, RUNS)


class Env:
    """Names of environment variables read by tollgate.settings (and set by the CDK stacks)."""

    STAGE = "TOLLGATE_STAGE"
    ALERT_TOPIC_ARN = "TOLLGATE_ALERT_TOPIC_ARN"
    JWT_SECRET_ARN = "TOLLGATE_JWT_SECRET_ARN"
    BYOK_KMS_KEY_ID = "TOLLGATE_BYOK_KMS_KEY_ID"
    PLATFORM_KEYS_SECRET_ARN = "TOLLGATE_PLATFORM_KEYS_SECRET_ARN"
    OPENAI_API_KEY = "OPENAI_API_KEY"
    ANTHROPIC_API_KEY = "ANTHROPIC_API_KEY"
    OPENAI_BASE_URL = "TOLLGATE_OPENAI_BASE_URL"
    ANTHROPIC_BASE_URL = "TOLLGATE_ANTHROPIC_BASE_URL"
    PROVIDER_TIMEOUT_S = "TOLLGATE_PROVIDER_TIMEOUT_S"
    PROVIDER_MAX_RETRIES = "TOLLGATE_PROVIDER_MAX_RETRIES"
    PRICE_OVERRIDES = "TOLLGATE_PRICE_OVERRIDES"
    DEFAULT_KEY_MONTHLY_USD = "TOLLGATE_DEFAULT_KEY_MONTHLY_USD"
    DEFAULT_USER_MONTHLY_USD = "TOLLGATE_DEFAULT_USER_MONTHLY_USD"
    DEFAULT_KEY_HOURLY_USD = "TOLLGATE_DEFAULT_KEY_HOURLY_USD"
    DEFAULT_RPM = "TOLLGATE_DEFAULT_RPM"
    DEFAULT_TPM = "TOLLGATE_DEFAULT_TPM"
    WARNING_THRESHOLD = "TOLLGATE_WARNING_THRESHOLD"
    DEFAULT_MAX_TOKENS = "TOLLGATE_DEFAULT_MAX_TOKENS"
    RESERVATION_TTL_S = "TOLLGATE_RESERVATION_TTL_S"
    BCRYPT_ROUNDS = "TOLLGATE_BCRYPT_ROUNDS"
    LOOP_MAX_REPEATS = "TOLLGATE_LOOP_MAX_REPEATS"
    LOOP_WINDOW_S = "TOLLGATE_LOOP_WINDOW_S"
    BUDGET_ALERT_INTERVAL_S = "TOLLGATE_BUDGET_ALERT_INTERVAL_S"
    IAM_PRINCIPALS = "TOLLGATE_IAM_PRINCIPALS"  # role name -> principal (tollgate.auth.iam)
    RUNS_QUEUE_URL = "TOLLGATE_RUNS_QUEUE_URL"
    RUNS_MAX_BUDGET_USD = "TOLLGATE_RUNS_MAX_BUDGET_USD"
    SERVER_TOOL_MAX_CALLS = "TOLLGATE_SERVER_TOOL_MAX_CALLS"
    SERVER_TOOL_INPUT_TOKENS = "TOLLGATE_SERVER_TOOL_INPUT_TOKENS"
    POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    LOOP_MIN_REPEATS = "TOLLGATE_LOOP_MIN_REPEATS"
    LOOP_MAX_USD = "TOLLGATE_LOOP_MAX_USD"
    # Reconciliation (tollgate.reconcile): the providers' admin keys (locally), else a secret holding them
    OPENAI_ADMIN_KEY = "TOLLGATE_OPENAI_ADMIN_KEY"
    ANTHROPIC_ADMIN_KEY = "TOLLGATE_ANTHROPIC_ADMIN_KEY"
    PROVIDER_ADMIN_KEYS_SECRET_ARN = "TOLLGATE_PROVIDER_ADMIN_KEYS_SECRET_ARN"
    RECONCILE_DRIFT_THRESHOLD_PCT = "TOLLGATE_RECONCILE_DRIFT_THRESHOLD_PCT"
    RECONCILE_COST_EXPLORER = "TOLLGATE_RECONCILE_COST_EXPLORER"  # "true": read Bedrock's bill from Cost Explorer
    ANTHROPIC_BETAS = "TOLLGATE_ANTHROPIC_BETAS"  # more anthropic-beta patterns to allow (tollgate.anthropic_api)
    BEDROCK_REGION = "TOLLGATE_BEDROCK_REGION"  # the Bedrock runtime's region (default: the Lambda's AWS_REGION)
    BEDROCK_ENDPOINT_URL = "TOLLGATE_BEDROCK_ENDPOINT_URL"  # the Bedrock runtime's URL (local stack: the fake)
    DEPLOYMENTS = "TOLLGATE_DEPLOYMENTS"  # JSON: model name -> deployments (replaces pricing/deployments.json)
