"""TollgateApi: the Lambda functions, their permissions, the REST API, the sweeper schedule and the agent
runs queue."""
from __future__ import annotations

import json

from aws_cdk import Aws, CfnOutput, Duration, SecretValue, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_xray as xray
from constructs import Construct
from tollgate import routes
from tollgate.schema import API_KEYS, BUDGETS, PROVIDER_KEYS, RUNS, TABLES, USAGE, Env

from stacks import permissions as p
from stacks import web_adapter
from stacks.config import DeploySettings
from stacks.data_stack import DataStack
from stacks.nag import acknowledge
from stacks.functions import TollgateFunction, dependency_layer, function_code
from stacks.rest_api import STAGE_NAME, TollgateRestApi
from stacks.runs_queue import RunsQueue
from stacks.waf import TollgateWaf

API_STACK_NAME = "TollgateApi"
# The gateway mostly waits on the provider, and Lambda bills memory x time. A warm gateway process (the ASGI
# app, both provider SDKs, 10 rounds of chat completions and messages, streamed and not) peaks at 105-140 MB
# RSS (`make bench`, "peak RSS, warm"); the Web Adapter extension adds ~10 MB. 256 MB keeps ~1.7x headroom at
# half the GB-seconds of 512 MB (-$2.00 per million requests, `make cost`). Lambda's CPU share
# halves too: its own work (~50 ms at 1024 MB) takes ~0.2 s; the provider wait does not change, and the
# imports a cold start would pay are done before the SnapStart snapshot (docs/design-decisions.md, issue 15).
# The snapshot's cache is billed on this memory too (make cost).
GATEWAY_MEMORY_MB = 256
GATEWAY_ALIAS = "live"  # what API Gateway invokes: the published version SnapStart restores
KEEP_ACTIVE_EVERY = Duration.days(1)  # the gateway's version goes Inactive after 14 days without an invocation
KEEP_ACTIVE_EVENT = {"tollgate": "keep-active"}  # not an HTTP event: the Web Adapter passes it through
# X-Ray: API Gateway decides per request whether it is traced (by this rule) and the functions behind it
# follow that decision. 5% and no reservoir: at 1M requests a month X-Ray's default rule (the first
# request each second, then 5%) would trace almost every request, at $5 per million traces.
TRACE_SAMPLE_RATE = 0.05
SWEEP_EVERY = Duration.minutes(5)
RUN_BUDGET_ITEMS = "BUDGET#RUN#*"  # tollgate.budgets.run_pk(...): the agent runs' budget items
# Reconciliation with the providers' bills (tollgate.reconcile): daily, after midnight UTC, for the day before.
# The providers publish a day's costs with some delay; a day still missing is reported as missing and can
# be run again with `tollgate reconcile --day D`.
RECONCILE_AT_UTC = events.Schedule.cron(minute="30", hour="6")
RECONCILE_PROVIDERS = ("openai", "anthropic")
DAILY_TOTAL_ITEMS, RECON_ITEMS = "DAILY#USER#*", "RECON#*"  # tollgate.store.daily_totals


class ApiStack(Stack):
    def __init__(self, scope: Construct, construct_id: str = API_STACK_NAME, *,
                 data: DataStack, settings: DeploySettings, iam_principals: dict | None = None, **kwargs) -> None:
        """iam_principals: IAM role name -> {"scopes", "user"}, the roles allowed on /internal/v1 (the
        agent tasks' role, from stacks/agents_stack.py)."""
        super().__init__(scope, construct_id, **kwargs)
        code = function_code()
        layer = dependency_layer(self, "Dependencies")
        common_env = {
            Env.POWERTOOLS_SERVICE_NAME: "tollgate",
            Env.POWERTOOLS_METRICS_NAMESPACE: "Tollgate",
            Env.STAGE: STAGE_NAME,
            **{t.env_var: data.tables[t.logical_id].table_name for t in TABLES},
        }

        def function(construct_id: str, module: str, description: str, *, memory_mb: int, timeout: Duration,
                     env: dict[str, str] | None = None, handler: str | None = None,
                     extra_layers: tuple[lambda_.ILayerVersion, ...] = (), snap_start: bool = False) -> TollgateFunction:
            return TollgateFunction(
                self, construct_id,
                handler=handler or f"handlers.{module}.lambda_handler",
                description=description,
                code=code,
                layer=layer,
                environment={**common_env, **(env or {})},
                memory_mb=memory_mb,
                timeout=timeout,
                extra_layers=extra_layers,
                snap_start=snap_start,
            )

        # bcrypt is CPU-bound and Lambda CPU scales with memory: 1024 MB keeps a cold key check short.
        self.authorizer = function(
            "Authorizer", "authorizer", "Tollgate: authenticates API keys and service tokens",
            memory_mb=1024, timeout=Duration.seconds(10),
            env={Env.JWT_SECRET_ARN: data.jwt_secret.secret_arn})
        # Timeout, provider timeout and reservation lifetime: one chain, see stacks.config.Timeouts. An ASGI app
        # behind the Lambda Web Adapter, answering through response streaming (stacks/web_adapter.py).
        self.gateway = function(
            "Gateway", "gateway", "Tollgate: metered OpenAI/Anthropic-compatible gateway",
            memory_mb=GATEWAY_MEMORY_MB, timeout=Duration.seconds(settings.timeouts.gateway_lambda_s),
            handler=web_adapter.HANDLER,
            extra_layers=(lambda_.LayerVersion.from_layer_version_arn(self, "WebAdapter", web_adapter.layer_arn()),),
            env={**web_adapter.ENVIRONMENT,
                 Env.BYOK_KMS_KEY_ID: data.byok_key.key_arn, Env.ALERT_TOPIC_ARN: data.alert_topic.topic_arn,
                 Env.PLATFORM_KEYS_SECRET_ARN: data.platform_keys_secret.secret_arn,
                 Env.RESERVATION_TTL_S: str(settings.timeouts.reservation_ttl_s),
                 Env.PROVIDER_TIMEOUT_S: str(settings.timeouts.provider_s), Env.PROVIDER_MAX_RETRIES: "0",
                 Env.IAM_PRINCIPALS: json.dumps(iam_principals or {}, sort_keys=True)},
            snap_start=True)
        # SnapStart: a restored gateway has imported its provider SDKs and built its collaborators before the
        # snapshot (tollgate.snapshot), so its first request pays for neither (`make bench`,
        # first_request_ratio_gateway). SnapStart applies to published versions only: API Gateway invokes this
        # alias, which each deployment moves to the new version.
        self.gateway_alias = lambda_.Alias(self, "GatewayLive", alias_name=GATEWAY_ALIAS,
                                           version=self.gateway.function.current_version)
        # A version not invoked for 14 days becomes Inactive and fails its next calls with
        # SnapStartNotReadyException until Lambda has made it Active again (snapstart-troubleshooting.html): a
        # gateway nobody used for two weeks would answer 5xx. This schedule invokes the alias (the version API
        # Gateway calls) with an event the app answers at once (tollgate.snapshot.KEEP_ACTIVE_PATH). Daily, not
        # weekly: 13 missed pings in a row before the version goes inactive, for ~$0.001 a month (make cost).
        events.Rule(
            self, "GatewayKeepActive",
            description="Tollgate: keeps the gateway's SnapStart version active (invoked at least every 14 days)",
            schedule=events.Schedule.rate(KEEP_ACTIVE_EVERY),
            targets=[targets.LambdaFunction(self.gateway_alias, event=events.RuleTargetInput.from_object(KEEP_ACTIVE_EVENT),
                                            retry_attempts=2, max_event_age=Duration.hours(1))],
        )
        self.admin = function(
            "Admin", "admin", "Tollgate: admin API (keys, budgets, usage)",
            memory_mb=512, timeout=Duration.seconds(30),
            env={Env.BYOK_KMS_KEY_ID: data.byok_key.key_arn, Env.JWT_SECRET_ARN: data.jwt_secret.secret_arn})
        self.runs_queue = RunsQueue(self, "AgentRuns", alert_topic=data.alert_topic)
        runs_env = {Env.RUNS_QUEUE_URL: self.runs_queue.queue.queue_url}
        max_budget = self.node.try_get_context("agent_run_max_budget_usd")
        if max_budget:
            runs_env[Env.RUNS_MAX_BUDGET_USD] = str(max_budget)
        self.runs = function(
            "Runs", "runs", "Tollgate: agent runs API (start a run, read it)",
            memory_mb=512, timeout=Duration.seconds(30), env=runs_env)
        # Shorter than the schedule period, so two sweeps never overlap.
        self.sweeper = function(
            "Sweeper", "sweeper", "Tollgate: releases expired budget reservations",
            memory_mb=512, timeout=Duration.minutes(4))
        self._grant(data)
        self._reconciliation(data, function, settings)

        events.Rule(
            self, "SweepSchedule",
            description="Tollgate: release expired reservations",
            schedule=events.Schedule.rate(SWEEP_EVERY),
            targets=[targets.LambdaFunction(self.sweeper.function, retry_attempts=2, max_event_age=SWEEP_EVERY)],
        )

        self.rest_api = TollgateRestApi(
            self, "Http",
            authorizer=self.authorizer.function,
            functions={routes.GATEWAY_FUNCTION: self.gateway_alias, routes.ADMIN_FUNCTION: self.admin.function,
                       routes.RUNS_FUNCTION: self.runs.function},
            timeouts={routes.GATEWAY_FUNCTION: Duration.seconds(settings.timeouts.integration_s)},
            streamed={routes.GATEWAY_FUNCTION},
        )
        self.waf = TollgateWaf(
            self, "Waf",
            stage=self.rest_api.api.deployment_stage,
            rate_limit_per_5min=settings.waf_rate_limit_per_5min,
            geo_block_countries=settings.geo_block_countries,
        )
        self.trace_sampling = xray.CfnSamplingRule(
            self, "TraceSampling", sampling_rule=xray.CfnSamplingRule.SamplingRuleProperty(
                rule_name=f"{self.stack_name}-api"[:32], priority=100, version=1,
                fixed_rate=TRACE_SAMPLE_RATE, reservoir_size=0,
                service_name=f"{self.rest_api.api.rest_api_name}/{STAGE_NAME}", service_type="AWS::ApiGateway::Stage",
                host="*", http_method="*", url_path="*", resource_arn="*"))
        CfnOutput(self, "ApiUrl", value=self.rest_api.api.url)

    def _grant(self, data: DataStack) -> None:
        api_keys, usage = data.api_keys_table, data.usage_table
        budgets, provider_keys = data.budgets_table, data.provider_keys_table

        # UpdateItem: the authorizer records a key's last use (a conditional write, at most once a minute).
        # GetItem on budgets: a user's monthly limit goes into the authorizer context.
        self._allow(self.authorizer, p.table_access(api_keys, API_KEYS, [p.GET, p.UPDATE]))
        self._allow(self.authorizer, p.table_access(budgets, BUDGETS, [p.GET]))
        self._allow(self.authorizer, p.table_access(provider_keys, PROVIDER_KEYS, p.READ))
        self._allow(self.authorizer, [p.secret_read(data.jwt_secret)])

        # The gateway reserves and settles in transactions; it writes usage (a pending record at reserve,
        # made final at settle) but never reads it, and it has no access at all to the API keys table
        # (identity arrives in the authorizer context).
        self._allow(self.gateway, p.table_access(budgets, BUDGETS, (*p.READ, *p.TRANSACT)))
        self._allow(self.gateway, p.table_access(usage, USAGE, [p.PUT, p.UPDATE]))
        self._allow(self.gateway, p.table_access(provider_keys, PROVIDER_KEYS, p.READ))
        self._allow(self.gateway, [p.byok_key_use(data.byok_key, ["kms:Decrypt"])])
        self._allow(self.gateway, p.topic_publish(data.alert_topic, data.alert_key))
        self._allow(self.gateway, [p.secret_read(data.platform_keys_secret)])
        # Bedrock: only the priced Bedrock models and inference profiles (tollgate.pricing), never `*`.
        self._allow(self.gateway, p.bedrock_invoke(_bedrock_models(), partition=Aws.PARTITION, region=Aws.REGION,
                                                   account=Aws.ACCOUNT_ID, elsewhere=_bedrock_deployments()))

        self._allow(self.admin, p.table_access(api_keys, API_KEYS, (*p.READ, p.SCAN, *p.WRITE)))
        self._allow(self.admin, p.table_access(usage, USAGE, p.READ))
        self._allow(self.admin, p.table_access(budgets, BUDGETS, (*p.READ, *p.TRANSACT)))
        self._allow(self.admin, p.table_access(provider_keys, PROVIDER_KEYS, (*p.READ, *p.WRITE)))
        self._allow(self.admin, [p.byok_key_use(data.byok_key, ["kms:GenerateDataKey"])])
        self._allow(self.admin, [p.secret_read(data.jwt_secret)])  # signs service tokens (POST /admin/tokens)

        # The sweeper finds expired pending usage records (Query on the usage table's `pending` index) and
        # releases each in one transaction: the record (UpdateItem), its levels and idempotency key.
        self._allow(self.sweeper, p.table_access(budgets, BUDGETS, p.TRANSACT))
        self._allow(self.sweeper, p.table_access(usage, USAGE, [p.QUERY, p.UPDATE]))

        # A run and its budget item are created in one transaction (PutItem on each); a run that could
        # not be queued is marked failed (UpdateItem). On the budgets table, only runs' budget items.
        self._allow(self.runs, p.table_access(data.tables[RUNS.logical_id], RUNS, [p.GET, p.PUT, p.UPDATE]))
        self._allow(self.runs, [p.item_access(budgets, [p.GET, p.PUT], [RUN_BUDGET_ITEMS])])
        self._allow(self.runs, [p.queue_send(self.runs_queue.queue)])

    def _reconciliation(self, data: DataStack, function, settings: DeploySettings) -> None:
        """The daily reconciliation function, its schedule, the providers' admin keys secret, and the same
        grants on the admin function (POST /admin/reconcile runs the same job for one day)."""
        self.provider_admin_keys = secretsmanager.Secret(
            self, "ProviderAdminKeysSecret",
            description="Tollgate: the providers' admin API keys for cost reports (JSON object: openai, anthropic)",
            secret_object_value={p: SecretValue.unsafe_plain_text("") for p in RECONCILE_PROVIDERS})
        acknowledge(self.provider_admin_keys, "AwsSolutions-SMG4",
                    "Provider admin API keys are issued by OpenAI and Anthropic; Secrets Manager has no rotation "
                    "function for them. Operators rotate them in the provider console and put the new value.")
        env = {Env.PROVIDER_ADMIN_KEYS_SECRET_ARN: self.provider_admin_keys.secret_arn,
               Env.PROVIDER_TIMEOUT_S: str(settings.timeouts.provider_s)}
        self.reconcile = function(
            "Reconcile", "reconcile", "Tollgate: reconciles estimates with the providers' bills (daily)",
            memory_mb=512, timeout=Duration.minutes(5), env=env)
        events.Rule(
            self, "ReconcileSchedule", description="Tollgate: reconcile yesterday with the providers' bills",
            schedule=RECONCILE_AT_UTC,
            targets=[targets.LambdaFunction(self.reconcile.function, retry_attempts=2)])
        for fn in (self.reconcile, self.admin):
            fn.function.add_environment(Env.PROVIDER_ADMIN_KEYS_SECRET_ARN, self.provider_admin_keys.secret_arn)
            # A day's records: one Scan of the usage table (no index by time); daily totals: UpdateItem/PutItem.
            self._allow(fn, p.table_access(data.usage_table, USAGE, (*p.READ, p.SCAN)))
            self._allow(fn, [p.item_access(data.budgets_table, [p.UPDATE, p.PUT], [DAILY_TOTAL_ITEMS, RECON_ITEMS])])
            self._allow(fn, [p.secret_read(self.provider_admin_keys)])
            if settings.reconcile_bedrock:
                fn.function.add_environment(Env.RECONCILE_COST_EXPLORER, "true")
                self._allow(fn, [p.cost_explorer_read()])
                acknowledge(fn.function, "AwsSolutions-IAM5[Resource::*]",
                            "Cost Explorer's GetCostAndUsage has no resource-level permissions (the Service "
                            "Authorization Reference lists no resource type for it); the statement allows that "
                            "one read-only action.")

    @staticmethod
    def _allow(fn: TollgateFunction, statements) -> None:
        for statement in statements:
            fn.allow(statement)


def _bedrock_models() -> list[str]:
    """Every Bedrock model id the gateway may call: the priced ones and their aliases (other profiles)."""
    from tollgate.pricing import Catalogue

    return sorted({name for m in Catalogue.load().models("bedrock") for name in (m.id, *m.aliases)})


def _bedrock_deployments() -> list[tuple[str, str]]:
    """(model id, region) of the routing table's Bedrock deployments that name their own region."""
    from tollgate.deployments import Deployments
    from tollgate.pricing import Catalogue

    return sorted({(d.model, d.region) for found in Deployments.load(Catalogue.load()).table().values()
                   for d in found if d.provider == "bedrock" and d.region})
