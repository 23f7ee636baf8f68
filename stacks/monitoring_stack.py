"""TollgateMonitoring: one dashboard (business rows, then infrastructure health) and the alarms.

- Business rows: requests, tokens, cost per hour, refusals by kind, provider errors and latency, and the
  top spenders by user (a CloudWatch Logs Insights query over the gateway's structured logs).
- Infrastructure health rows: every function's duration, errors and throttles; the API's 4xx, 5xx and
  latency; WAF blocks; DynamoDB throttles of every table; the agent service's CPU and memory and its
  queues, when the agents stack is deployed.
- Alarms, all to the data stack's alerts topic (the one budget warnings and loop alerts use): cost
  anomaly and a static cost-per-hour ceiling, the gateway's 5xx rate, DynamoDB throttling, sweeper
  failures; with the agents stack, ECS memory above 80% and a non-empty dead-letter queue.

Tollgate's own metrics come from tollgate.metric_names, the module the handlers emit them with. They carry
the dimensions {service, provider}; CloudWatch keeps one series per dimension set, so totals are metric
math over the providers in metric_names.PROVIDERS.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from tollgate import metric_names as mn
from tollgate import schema

from stacks.api_stack import RECONCILE_PROVIDERS, ApiStack
from stacks.config import DeploySettings
from stacks.data_stack import DataStack
from stacks.functions import TollgateFunction
from stacks.waf import RATE_LIMIT_RULE, BODY_SIZE_RULE, GEO_BLOCK_RULE

MONITORING_STACK_NAME = "TollgateMonitoring"

FIVE_MINUTES = Duration.minutes(5)
ONE_HOUR = Duration.hours(1)
ONE_DAY = Duration.days(1)

# Cost: CostUsd summed over an hour, all providers. The anomaly alarm is the article's: above the band of
# 2 standard deviations for 2 consecutive hours. The ceiling (cdk.json `cost_per_hour_ceiling_usd`)
# catches a runaway before the model has learnt what normal is.
COST_ANOMALY_STD_DEVS = 2
COST_ANOMALY_EVALUATION_PERIODS = 2
# The gateway's 5xx share of all API requests, over 5 minutes, judged from this many requests up.
ERROR_RATE_THRESHOLD = 0.05
ERROR_RATE_MIN_REQUESTS = 20
ERROR_RATE_EVALUATION_PERIODS = 3
ERROR_RATE_DATAPOINTS = 2
# Incident 1: an agent task leaking memory until OOM-killed. Maximum across the service's tasks.
ECS_MEMORY_THRESHOLD_PERCENT = 80
ECS_MEMORY_EVALUATION_PERIODS = 3
TOP_CONTRIBUTORS = 10

_DYNAMODB_THROTTLES = ("ReadThrottleEvents", "WriteThrottleEvents")
# Indexes whose throttles are graphed but not alarmed on (each alarm metric costs $0.10 a month): the API keys'
# byUser index is read only by admin listings and written by key changes and the authorizer's lastUsed update,
# which is informational and never fails a request (tollgate.auth.authenticate); a throttled admin call fails
# in front of the operator who made it. No request's budget check reads it.
UNALARMED_INDEXES = frozenset({("ApiKeysTable", "byUser")})


def _id(*parts: str) -> str:
    """A metric-math id: starts with a lower-case letter, then letters, digits and underscores."""
    return "_".join(re.sub(r"[^a-z0-9]", "", p.lower()) for p in parts)


def tollgate_metric(name: str, provider: str | None, *, statistic: str = "Sum",
                    period: Duration = FIVE_MINUTES) -> cw.Metric:
    """One of Tollgate's own metrics, with exactly the dimensions the handlers emit it with."""
    dimensions = {mn.DIM_SERVICE: mn.SERVICE}
    if provider is not None:
        dimensions[mn.DIM_PROVIDER] = provider
    return cw.Metric(namespace=mn.NAMESPACE, metric_name=name, dimensions_map=dimensions, statistic=statistic,
                     period=period, label=provider or name)


def all_providers(name: str, *, label: str, period: Duration = FIVE_MINUTES) -> cw.MathExpression:
    """The Sum of a metric over every provider (a provider with no data counts 0)."""
    using = {_id(name, p): tollgate_metric(name, p, period=period) for p in mn.PROVIDERS}
    return cw.MathExpression(expression=" + ".join(f"FILL({i}, 0)" for i in using), using_metrics=using,
                             label=label, period=period)


def reconciliation_drift(providers: tuple[str, ...] = RECONCILE_PROVIDERS) -> cw.MathExpression:
    """The largest daily |drift| (percent) of any reconciled provider's bill against Tollgate's estimate. Only
    the providers the daily job reconciles (`providers`: RECONCILE_PROVIDERS, and bedrock when its bill is read
    from Cost Explorer): no other publishes a drift, and each metric an alarm reads costs $0.10 a month."""
    using = {_id(mn.RECONCILIATION_DRIFT_PCT, p): tollgate_metric(mn.RECONCILIATION_DRIFT_PCT, p, statistic="Maximum",
                                                                   period=ONE_DAY) for p in providers}
    return cw.MathExpression(expression=f"MAX([{', '.join(using)}])", using_metrics=using,
                             label="Largest provider drift (%)", period=ONE_DAY)


def cost_per_hour() -> cw.MathExpression:
    return all_providers(mn.COST_USD, label="Cost per hour (USD)", period=ONE_HOUR)


def top_spenders_query(top: int = TOP_CONTRIBUTORS) -> list[str]:
    """Logs Insights query lines over the gateway's log group: the `top` users by the sum of their metered answers'
    cost (USD) in the dashboard's time range, from the one structured line per metered answer
    (tollgate.metric_names.METERED_LOG_MESSAGE; Logs Insights discovers a JSON line's fields).
    Logs Insights bills per GB scanned, only when the widget is drawn (https://aws.amazon.com/cloudwatch/pricing/):
    nothing at all while nobody looks, where a Contributor Insights rule costs $0.50 a month and $0.02 per million
    lines it matches."""
    return [f'filter message = "{mn.METERED_LOG_MESSAGE}"',
            f"stats sum({mn.LOG_COST_USD}) as spent_usd, count(*) as answers by {mn.LOG_USER}",
            "sort spent_usd desc",
            f"limit {top}"]


class MonitoringStack(Stack):
    def __init__(self, scope: Construct, construct_id: str = MONITORING_STACK_NAME, *,
                 data: DataStack, api: ApiStack, settings: DeploySettings,
                 functions: Mapping[str, lambda_.IFunction] | None = None,
                 ecs_service: ecs.BaseService | None = None,
                 queue: sqs.IQueue | None = None,
                 dead_letter_queue: sqs.IQueue | None = None,
                 dead_letter_alarm: cw.IAlarm | None = None,
                 **kwargs) -> None:
        """`functions`: Lambda functions outside the API stack (e.g. the agents stack's), by label.
        `ecs_service`: the agent service. `queue`, `dead_letter_queue`: the agent runs queues; the
        dead-letter queue gets an alarm here unless `dead_letter_alarm` (one that exists) is given."""
        super().__init__(scope, construct_id, **kwargs)
        self.topic = data.alert_topic
        self.action = actions.SnsAction(data.alert_topic)
        self.functions: dict[str, lambda_.IFunction] = {
            c.node.id: c.function for c in api.node.find_all() if isinstance(c, TollgateFunction)}
        self.functions.update(functions or {})
        self.tables: dict[str, dynamodb.ITable] = dict(data.tables)
        self.stage = api.rest_api.api.deployment_stage
        self.alarms: list[cw.IAlarm] = []

        self.gateway_log_group = api.gateway.log_group
        self._cost_alarms(settings.cost_per_hour_ceiling_usd)
        self._error_rate_alarm()
        for logical_id, table in self.tables.items():
            self._throttle_alarm(logical_id, table)
        self._sweeper_alarm(api.sweeper.function)
        self._reconciliation_alarm(RECONCILE_PROVIDERS + (("bedrock",) if settings.reconcile_bedrock else ()))
        if ecs_service is not None:
            self._ecs_memory_alarm(ecs_service)
        if dead_letter_alarm is not None:
            self.alarms.append(dead_letter_alarm)
        elif dead_letter_queue is not None:
            self._dead_letter_alarm(dead_letter_queue)

        # One dashboard, the business rows on top: a dashboard costs $3 a month, and the two views read
        # better together (a cost spike next to the errors and throttles that came with it).
        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=f"{self.stack_name}-{Aws.REGION}", default_interval=Duration.days(1),
            widgets=[*self._business_widgets(settings.cost_per_hour_ceiling_usd),
                     *self._infrastructure_widgets(api, bool(settings.geo_block_countries), ecs_service, queue,
                                                   dead_letter_queue)])

    # -- alarms ----------------------------------------------------------------------------------------
    def _alarm(self, construct_id: str, description: str, **props) -> cw.Alarm:
        alarm = cw.Alarm(self, construct_id, alarm_name=f"{self.stack_name}-{construct_id}",
                         alarm_description=description, treat_missing_data=cw.TreatMissingData.NOT_BREACHING, **props)
        alarm.add_alarm_action(self.action)
        self.alarms.append(alarm)
        return alarm

    def _cost_alarms(self, ceiling_usd: float) -> None:
        cost = cost_per_hour()
        self._alarm(
            "CostPerHourCeiling", f"Spend on LLM providers exceeded ${ceiling_usd:g} in an hour (all users).",
            metric=cost, threshold=ceiling_usd, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD)

        # The detector is declared, not left implicit, so it exists (and trains) before the alarm uses it;
        # both are built from the same queries, which is how CloudWatch matches a band to its model.
        queries = [(i, m, sorted(m.dimensions.items())) for i, m in cost.using_metrics.items()]
        detector = cw.CfnAnomalyDetector(
            self, "CostAnomalyDetector",
            metric_math_anomaly_detector=cw.CfnAnomalyDetector.MetricMathAnomalyDetectorProperty(metric_data_queries=[
                *[cw.CfnAnomalyDetector.MetricDataQueryProperty(
                    id=i, return_data=False, metric_stat=cw.CfnAnomalyDetector.MetricStatProperty(
                        metric=cw.CfnAnomalyDetector.MetricProperty(
                            namespace=m.namespace, metric_name=m.metric_name,
                            dimensions=[cw.CfnAnomalyDetector.DimensionProperty(name=k, value=v) for k, v in dims]),
                        period=ONE_HOUR.to_seconds(), stat=m.statistic)) for i, m, dims in queries],
                cw.CfnAnomalyDetector.MetricDataQueryProperty(id="cost", expression=cost.expression, return_data=True),
            ]))
        alarm = cw.CfnAlarm(
            self, "CostAnomaly",
            alarm_name=f"{self.stack_name}-CostAnomaly",
            alarm_description=f"Cost per hour is above its anomaly band ({COST_ANOMALY_STD_DEVS} standard deviations) "
                              f"for {COST_ANOMALY_EVALUATION_PERIODS} hours running.",
            comparison_operator="GreaterThanUpperThreshold",
            evaluation_periods=COST_ANOMALY_EVALUATION_PERIODS,
            threshold_metric_id="band",
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.topic_arn],
            metrics=[
                *[cw.CfnAlarm.MetricDataQueryProperty(
                    id=i, return_data=False, metric_stat=cw.CfnAlarm.MetricStatProperty(
                        metric=cw.CfnAlarm.MetricProperty(
                            namespace=m.namespace, metric_name=m.metric_name,
                            dimensions=[cw.CfnAlarm.DimensionProperty(name=k, value=v) for k, v in dims]),
                        period=ONE_HOUR.to_seconds(), stat=m.statistic)) for i, m, dims in queries],
                cw.CfnAlarm.MetricDataQueryProperty(id="cost", expression=cost.expression, return_data=True,
                                                    label="Cost per hour (USD)"),
                cw.CfnAlarm.MetricDataQueryProperty(
                    id="band", expression=f"ANOMALY_DETECTION_BAND(cost, {COST_ANOMALY_STD_DEVS})", return_data=True,
                    label="Expected cost per hour"),
            ])
        alarm.node.add_dependency(detector)
        self.cost_anomaly_alarm = alarm
        self.alarms.append(cw.Alarm.from_alarm_arn(self, "CostAnomalyRef", alarm.attr_arn))

    def _error_rate_alarm(self) -> None:
        rate = cw.MathExpression(
            expression=f"IF(requests >= {ERROR_RATE_MIN_REQUESTS}, errors / requests, 0)",
            using_metrics={"errors": self.stage.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
                           "requests": self.stage.metric_count(period=FIVE_MINUTES, statistic="Sum")},
            label="5xx share of requests", period=FIVE_MINUTES)
        self.error_rate = rate
        self._alarm(
            "GatewayErrorRate",
            f"More than {ERROR_RATE_THRESHOLD:.0%} of API requests answered 5xx "
            f"({ERROR_RATE_DATAPOINTS} of {ERROR_RATE_EVALUATION_PERIODS} five-minute periods).",
            metric=rate, threshold=ERROR_RATE_THRESHOLD, evaluation_periods=ERROR_RATE_EVALUATION_PERIODS,
            datapoints_to_alarm=ERROR_RATE_DATAPOINTS, comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD)

    def _table_throttles(self, logical_id: str, table: dynamodb.ITable, *, alarmed: bool = False) -> cw.MathExpression:
        spec = next(t for t in schema.TABLES if t.logical_id == logical_id)
        using = {}
        for name in _DYNAMODB_THROTTLES:
            using[_id(logical_id, name)] = cw.Metric(namespace="AWS/DynamoDB", metric_name=name, statistic="Sum",
                                         period=FIVE_MINUTES, dimensions_map={"TableName": table.table_name})
            for index in spec.indexes:
                if alarmed and (logical_id, index.name) in UNALARMED_INDEXES:
                    continue
                using[_id(logical_id, name, index.name)] = cw.Metric(
                    namespace="AWS/DynamoDB", metric_name=name, statistic="Sum", period=FIVE_MINUTES,
                    dimensions_map={"TableName": table.table_name, "GlobalSecondaryIndexName": index.name})
        return cw.MathExpression(expression=" + ".join(f"FILL({i}, 0)" for i in using), using_metrics=using,
                                 label=logical_id.removesuffix("Table"), period=FIVE_MINUTES)

    def _throttle_alarm(self, logical_id: str, table: dynamodb.ITable) -> None:
        self._alarm(
            f"{logical_id}Throttling",
            f"DynamoDB throttled requests to the {logical_id} (or its indexes): budget checks fail while it lasts.",
            metric=self._table_throttles(logical_id, table, alarmed=True), threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD)

    def _sweeper_alarm(self, sweeper: lambda_.IFunction) -> None:
        self._alarm(
            "SweeperFailures", "The reservation sweeper failed: expired reservations may keep budget locked.",
            metric=sweeper.metric_errors(period=FIVE_MINUTES, statistic="Sum"), threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD)

    def _reconciliation_alarm(self, providers: tuple[str, ...]) -> None:
        """Drift between Tollgate's estimates and a provider's bill above RECONCILIATION_DRIFT_ALARM_PCT on
        any provider (the daily job publishes |drift| per provider; a missing bill publishes no drift)."""
        self._alarm(
            "ReconciliationDrift",
            f"A provider billed more than {mn.RECONCILIATION_DRIFT_ALARM_PCT}% away from Tollgate's estimate for "
            "a day: check `tollgate reconcile --day D` and the price catalogue.",
            metric=reconciliation_drift(providers), threshold=mn.RECONCILIATION_DRIFT_ALARM_PCT,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD, evaluation_periods=1)

    def _ecs_memory_alarm(self, service: ecs.BaseService) -> None:
        self._alarm(
            "AgentMemory", f"An agent task used more than {ECS_MEMORY_THRESHOLD_PERCENT}% of its memory "
                           f"for {ECS_MEMORY_EVALUATION_PERIODS * 5} minutes (incident 1: OOM kills).",
            metric=service.metric_memory_utilization(period=FIVE_MINUTES, statistic="Maximum"),
            threshold=ECS_MEMORY_THRESHOLD_PERCENT, evaluation_periods=ECS_MEMORY_EVALUATION_PERIODS,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD)

    def _dead_letter_alarm(self, dlq: sqs.IQueue) -> None:
        self._alarm(
            "AgentDeadLetters", "Agent runs landed in the dead-letter queue: they failed every attempt.",
            metric=dlq.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD)

    # -- dashboards ------------------------------------------------------------------------------------
    def _business_widgets(self, ceiling_usd: float) -> list[list[cw.IWidget]]:
        def per_provider(name: str, title: str, *, statistic: str = "Sum", period: Duration = FIVE_MINUTES,
                         total: bool = True, **props) -> cw.GraphWidget:
            left = [tollgate_metric(name, p, statistic=statistic, period=period) for p in mn.PROVIDERS]
            if total:
                left.append(all_providers(name, label="all providers", period=period))
            return cw.GraphWidget(title=title, left=left, height=6, **{"width": 8, **props})

        refusals = [all_providers(name, label=label) for name, label in (
            (mn.BUDGET_REFUSALS, "budget exhausted"), (mn.RATE_LIMIT_REFUSALS, "rate limited"),
            (mn.LOOP_DETECTIONS, "loop detected"))]
        return [
            [cw.TextWidget(markdown="# Tollgate: business\nRequests, tokens and dollars through the gateway, "
                                    "refusals by kind, and who spends most. Cost is what the providers charge.",
                           width=24, height=2)],
            [
                cw.SingleValueWidget(title="Cost in the last hour (USD)", metrics=[cost_per_hour()], width=4, height=6),
                per_provider(mn.COST_USD, "Cost per hour (USD)", period=ONE_HOUR, width=8,
                             left_annotations=[cw.HorizontalAnnotation(value=ceiling_usd, label="ceiling alarm")]),
                per_provider(mn.REQUESTS, "Metered requests (per 5 min)", width=6),
                per_provider(mn.TOKENS, "Tokens (per 5 min)", width=6),
            ],
            [
                cw.GraphWidget(title="Refusals by kind (per 5 min)", left=refusals, width=6, height=6),
                per_provider(mn.ERRORS, "Failed provider calls (per 5 min)", width=6),
                cw.GraphWidget(title="Provider latency (ms)", width=6, height=6, left=[
                    tollgate_metric(mn.PROVIDER_LATENCY_MS, p, statistic=s).with_(label=f"{p} {s}")
                    for p in mn.PROVIDERS for s in ("p50", "p90")]),
                # Streamed answers: from sending the request to the provider's first event (tollgate.streaming).
                cw.GraphWidget(title="Time to first token, streams (ms)", width=6, height=6, left=[
                    tollgate_metric(mn.TIME_TO_FIRST_TOKEN_MS, p, statistic=s).with_(label=f"{p} {s}")
                    for p in mn.PROVIDERS for s in ("p50", "p90")]),
            ],
            [
                cw.LogQueryWidget(log_group_names=[self.gateway_log_group.log_group_name],
                                  query_lines=top_spenders_query(), view=cw.LogQueryVisualizationType.TABLE,
                                  title="Top spenders by user (USD, dashboard time range)", width=16, height=6),
                cw.GraphWidget(title="Reservations released by the sweeper", width=8, height=6,
                               left=[tollgate_metric(mn.RESERVATIONS_RELEASED, None)]),
            ],
            [
                # tollgate.reconcile: a provider's bill against Tollgate's estimate, daily; a missing bill is
                # counted apart, never drawn as zero drift.
                per_provider(mn.RECONCILIATION_DRIFT_PCT, "Provider bill vs estimate, |drift| % (daily)",
                             statistic="Maximum", period=ONE_DAY, total=False, width=12,
                             left_annotations=[cw.HorizontalAnnotation(value=mn.RECONCILIATION_DRIFT_ALARM_PCT,
                                                                       label="drift alarm")]),
                per_provider(mn.RECONCILIATION_MISSING, "Provider bills missing (daily)", period=ONE_DAY,
                             total=False, width=12),
            ],
            [
                # tollgate.response_cache: requests answered from the cache at $0, and cacheable ones it missed.
                cw.GraphWidget(title="Response cache hits and misses (per 5 min)", width=24, height=6, left=[
                    all_providers(mn.CACHE_HITS, label="hits"), all_providers(mn.CACHE_MISSES, label="misses")]),
            ],
        ]

    def _infrastructure_widgets(self, api: ApiStack, geo_block: bool, ecs_service: ecs.BaseService | None,
                                queue: sqs.IQueue | None, dlq: sqs.IQueue | None) -> list[list[cw.IWidget]]:
        fns = self.functions
        rows: list[list[cw.IWidget]] = [
            [cw.TextWidget(markdown="# Tollgate: infrastructure health", width=18, height=2),
             cw.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=6, height=8)],
            [
                cw.GraphWidget(title="Lambda duration p99 (ms)", width=6, height=6, left=[
                    f.metric_duration(statistic="p99", period=FIVE_MINUTES, label=n) for n, f in fns.items()]),
                cw.GraphWidget(title="Lambda errors", width=6, height=6, left=[
                    f.metric_errors(statistic="Sum", period=FIVE_MINUTES, label=n) for n, f in fns.items()]),
                cw.GraphWidget(title="Lambda throttles", width=6, height=6, left=[
                    f.metric_throttles(statistic="Sum", period=FIVE_MINUTES, label=n) for n, f in fns.items()]),
            ],
            [
                cw.GraphWidget(title="API requests, 4xx and 5xx", width=8, height=6, left=[
                    self.stage.metric_count(statistic="Sum", period=FIVE_MINUTES, label="requests")], right=[
                    self.stage.metric_client_error(statistic="Sum", period=FIVE_MINUTES, label="4xx"),
                    self.stage.metric_server_error(statistic="Sum", period=FIVE_MINUTES, label="5xx")]),
                cw.GraphWidget(title="API latency (ms)", width=8, height=6, left=[
                    *[self.stage.metric_latency(statistic=s, period=FIVE_MINUTES, label=f"latency {s}")
                      for s in ("p50", "p99")],
                    self.stage.metric_integration_latency(statistic="p99", period=FIVE_MINUTES,
                                                          label="integration p99")]),
                cw.GraphWidget(title="5xx share of requests", width=8, height=6, left=[self.error_rate],
                               left_annotations=[cw.HorizontalAnnotation(value=ERROR_RATE_THRESHOLD, label="alarm")]),
            ],
            [
                cw.GraphWidget(title="DynamoDB throttled requests (tables and indexes)", width=12, height=6,
                               left=[self._table_throttles(i, t) for i, t in self.tables.items()]),
                cw.GraphWidget(title="WAF blocked requests", width=12, height=6, left=[
                    cw.Metric(namespace="AWS/WAFV2", metric_name="BlockedRequests", statistic="Sum",
                              period=FIVE_MINUTES, label=rule, dimensions_map={"WebACL": api.waf.web_acl_name, "Region": Aws.REGION,
                                                          "Rule": rule})
                    for rule in ("ALL", RATE_LIMIT_RULE, BODY_SIZE_RULE, *([GEO_BLOCK_RULE] * geo_block))]),
            ],
        ]
        agents: list[cw.IWidget] = []
        if ecs_service is not None:
            agents.append(cw.GraphWidget(title="Agent service CPU and memory (%)", width=12, height=6, left=[
                ecs_service.metric_cpu_utilization(statistic=s, period=FIVE_MINUTES, label=f"CPU {s.lower()}")
                for s in ("Average", "Maximum")] + [
                ecs_service.metric_memory_utilization(statistic=s, period=FIVE_MINUTES, label=f"memory {s.lower()}")
                for s in ("Average", "Maximum")],
                left_annotations=[cw.HorizontalAnnotation(value=ECS_MEMORY_THRESHOLD_PERCENT, label="memory alarm")]))
        queues = [(label, q) for label, q in (("runs", queue), ("dead letters", dlq)) if q is not None]
        if queues:
            agents.append(cw.GraphWidget(title="Agent run queues", width=12, height=6, left=[
                q.metric_approximate_number_of_messages_visible(statistic="Maximum", period=FIVE_MINUTES,
                                                                label=f"{label}: visible")
                for label, q in queues], right=[
                q.metric_approximate_age_of_oldest_message(statistic="Maximum", period=FIVE_MINUTES,
                                                           label=f"{label}: oldest (s)")
                for label, q in queues]))
        if agents:
            rows.append(agents)
        return rows
