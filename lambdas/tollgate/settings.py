"""Configuration: environment variables read once into one typed, immutable object."""
from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from tollgate.schema import API_KEYS, BUDGETS, PROVIDER_KEYS, RUNS, USAGE, Env


# Tokens per minute per key when the key sets none. Admission counts estimated input (UTF-8 bytes / 4)
# plus max_tokens, settled to the provider's count: one Claude Code turn (a ~118 KB body, max_tokens
# 32,000) is ~62,000 at admission and ~30,000 once settled, so 1,000,000 lets a coding agent make a
# dozen or more calls a minute, with room for its late-session turns (600 KB bodies: ~180,000 each).
DEFAULT_TPM = 1_000_000


@dataclass(frozen=True)
class Settings:
    stage: str
    api_keys_table: str
    usage_table: str
    budgets_table: str
    provider_keys_table: str
    alert_topic_arn: str | None
    jwt_secret_arn: str | None
    byok_kms_key_id: str | None
    platform_keys_secret_arn: str | None
    openai_api_key: str | None
    anthropic_api_key: str | None
    openai_base_url: str | None
    anthropic_base_url: str | None
    provider_timeout_s: float
    provider_max_retries: int
    price_overrides: str | None  # JSON, same shape as the price file's entries
    default_key_monthly_usd: Decimal
    default_user_monthly_usd: Decimal
    default_key_hourly_usd: Decimal
    default_rpm: int
    default_tpm: int
    warning_threshold: Decimal  # fraction of a budget, e.g. 0.8
    default_max_tokens: int
    reservation_ttl_s: int
    bcrypt_rounds: int
    loop_max_repeats: int  # repeats of one request pattern allowed per subject per loop window (tollgate.loopguard)
    loop_window_s: int
    budget_alert_interval_s: int  # at most one warning per budget per interval
    runs_table: str = "tollgate-runs"
    runs_queue_url: str | None = None  # the SQS queue agent runs are sent to
    runs_max_budget_usd: Decimal = Decimal(50)  # the most one agent run may be given
    loop_min_repeats: int = 5  # from this many repeats on, a pattern is refused once it has spent loop_max_usd
    loop_max_usd: Decimal = Decimal("0.50")  # worst-case input USD one pattern may spend per loop window
    server_tool_max_calls: int = 10  # calls reserved per server-side tool when the request sets no max_uses
    server_tool_input_tokens: int = 20_000  # input tokens reserved per server-tool call for the results it reads
    anthropic_betas: tuple[str, ...] = ()  # anthropic-beta patterns allowed beyond tollgate.anthropic_api's defaults
    bedrock_region: str | None = None  # None: boto3's own (AWS_REGION of the Lambda)
    bedrock_endpoint_url: str | None = None  # None: the regional bedrock-runtime endpoint
    deployments: str | None = None  # JSON routing table (tollgate.deployments); None: pricing/deployments.json

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        e = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = e.get(name)
            return value if value not in (None, "") else default

        return cls(
            stage=get(Env.STAGE, "local"),
            api_keys_table=get(API_KEYS.env_var, "tollgate-api-keys"),
            usage_table=get(USAGE.env_var, "tollgate-usage"),
            budgets_table=get(BUDGETS.env_var, "tollgate-budgets"),
            provider_keys_table=get(PROVIDER_KEYS.env_var, "tollgate-provider-keys"),
            alert_topic_arn=get(Env.ALERT_TOPIC_ARN),
            jwt_secret_arn=get(Env.JWT_SECRET_ARN),
            byok_kms_key_id=get(Env.BYOK_KMS_KEY_ID),
            platform_keys_secret_arn=get(Env.PLATFORM_KEYS_SECRET_ARN),
            openai_api_key=get(Env.OPENAI_API_KEY),
            anthropic_api_key=get(Env.ANTHROPIC_API_KEY),
            openai_base_url=get(Env.OPENAI_BASE_URL),
            anthropic_base_url=get(Env.ANTHROPIC_BASE_URL),
            # Defaults: the deployed timeout chain's (stacks/config.py Timeouts, from the 15-minute stream limit).
            provider_timeout_s=float(get(Env.PROVIDER_TIMEOUT_S, "870")),
            provider_max_retries=int(get(Env.PROVIDER_MAX_RETRIES, "1")),
            price_overrides=get(Env.PRICE_OVERRIDES),
            default_key_monthly_usd=Decimal(get(Env.DEFAULT_KEY_MONTHLY_USD, "100")),
            default_user_monthly_usd=Decimal(get(Env.DEFAULT_USER_MONTHLY_USD, "200")),
            default_key_hourly_usd=Decimal(get(Env.DEFAULT_KEY_HOURLY_USD, "25")),
            default_rpm=int(get(Env.DEFAULT_RPM, "60")),
            default_tpm=int(get(Env.DEFAULT_TPM, str(DEFAULT_TPM))),
            warning_threshold=Decimal(get(Env.WARNING_THRESHOLD, "0.8")),
            default_max_tokens=int(get(Env.DEFAULT_MAX_TOKENS, "4096")),
            reservation_ttl_s=int(get(Env.RESERVATION_TTL_S, "1800")),
            bcrypt_rounds=int(get(Env.BCRYPT_ROUNDS, "12")),
            loop_max_repeats=int(get(Env.LOOP_MAX_REPEATS, "18")),
            loop_window_s=int(get(Env.LOOP_WINDOW_S, "600")),
            budget_alert_interval_s=int(get(Env.BUDGET_ALERT_INTERVAL_S, str(6 * 3600))),
            runs_table=get(RUNS.env_var, "tollgate-runs"),
            runs_queue_url=get(Env.RUNS_QUEUE_URL),
            runs_max_budget_usd=Decimal(get(Env.RUNS_MAX_BUDGET_USD, "50")),
            loop_min_repeats=int(get(Env.LOOP_MIN_REPEATS, "5")),
            loop_max_usd=Decimal(get(Env.LOOP_MAX_USD, "0.50")),
            server_tool_max_calls=int(get(Env.SERVER_TOOL_MAX_CALLS, "10")),
            server_tool_input_tokens=int(get(Env.SERVER_TOOL_INPUT_TOKENS, "20000")),
            anthropic_betas=tuple(b.strip() for b in (get(Env.ANTHROPIC_BETAS) or "").split(",") if b.strip()),
            bedrock_region=get(Env.BEDROCK_REGION),
            bedrock_endpoint_url=get(Env.BEDROCK_ENDPOINT_URL),
            deployments=get(Env.DEPLOYMENTS),
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()
