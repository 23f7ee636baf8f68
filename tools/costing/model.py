"""The line items: what the templates cost idle (per month) and per million metered requests.

Every resource in the templates is either priced here or listed in FREE (with why it costs nothing by
itself); a resource type that is neither stops the calculation (UnpricedResource), so a new billable
resource cannot slip into the templates unpriced.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from tools.costing.assumptions import Assumptions
from tools.costing.prices import Price
from tools.costing.templates import Resource, Templates, refs
from tools.costing.writes import Measurement, TableSpec

MILLION = Decimal(1_000_000)
GB = Decimal(2 ** 30)
IDLE, REQUEST = "idle", "per million requests"

# The functions by their construct ids in stacks/api_stack.py (the streaming work may rename the gateway's).
GATEWAY_FUNCTION = "Gateway"
AUTHORIZER_FUNCTION = "Authorizer"
# Lambda gives a function one full vCPU at 1,769 MB, and a proportional share below it.
FULL_VCPU_GB = Decimal(1769) / 1024
# A NAT or other EC2 instance's root volume when the template does not size it (Amazon Linux 2023: 8 GB gp3).
DEFAULT_ROOT_VOLUME_GB = Decimal(8)
# X-Ray's default sampling rule (https://docs.aws.amazon.com/xray/latest/devguide/xray-console-sampling.html):
# the first request each second, and 5% of the rest.
DEFAULT_RESERVOIR_PER_S, DEFAULT_FIXED_RATE = Decimal(1), Decimal("0.05")

# No charge of their own: what they do is priced where it happens (requests, logs ingested, invocations),
# or they are configuration. DynamoDB tables are on-demand: no charge idle (their storage is empty).
FREE = {
    "AWS::ApiGateway::Account", "AWS::ApiGateway::Authorizer", "AWS::ApiGateway::Deployment",
    "AWS::ApiGateway::GatewayResponse", "AWS::ApiGateway::Method", "AWS::ApiGateway::Model",
    "AWS::ApiGateway::RequestValidator", "AWS::ApiGateway::Resource", "AWS::ApiGateway::RestApi",
    "AWS::ApiGateway::Stage", "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::CDK::Metadata", "AWS::CloudWatch::AnomalyDetector",
    "AWS::DynamoDB::Table", "AWS::EC2::EgressOnlyInternetGateway", "AWS::EC2::FlowLog",
    "AWS::EC2::InternetGateway", "AWS::EC2::LaunchTemplate", "AWS::EC2::Route", "AWS::EC2::RouteTable",
    "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupEgress", "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::Subnet", "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::VPC", "AWS::EC2::VPCCidrBlock",
    "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::SubnetCidrBlock", "AWS::ECS::Cluster",
    "AWS::ECS::ClusterCapacityProviderAssociations", "AWS::ECS::Service", "AWS::ECS::TaskDefinition",
    "AWS::Events::Rule", "AWS::IAM::InstanceProfile", "AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::Role",
    "AWS::KMS::Alias", "AWS::Lambda::Alias", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::Permission", "AWS::Logs::LogGroup", "AWS::SNS::Subscription", "AWS::SNS::Topic",
    "AWS::SNS::TopicPolicy", "AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::WAFv2::LoggingConfiguration",
    "AWS::WAFv2::WebACLAssociation", "Custom::VpcRestrictDefaultSG", "Custom::LogRetention",
    "Custom::CrossRegionExportWriter", "Custom::CrossRegionExportReader", "AWS::XRay::SamplingRule",
    "AWS::CloudFormation::WaitConditionHandle",
}
PRICED = {
    "AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::EC2::Instance", "AWS::EC2::VPCEndpoint",
    "AWS::WAFv2::WebACL", "AWS::CloudWatch::Dashboard", "AWS::CloudWatch::Alarm", "AWS::CloudWatch::InsightRule",
    "AWS::KMS::Key", "AWS::SecretsManager::Secret", "AWS::Scheduler::Schedule",
    "AWS::Lambda::Version",  # free, unless its function has SnapStart: then its snapshot is cached (snapstart_versions)
}


class UnpricedResource(Exception):
    """A resource type the calculator neither prices nor knows to be free."""


@dataclass(frozen=True)
class Line:
    """One item: `quantity` of `price.unit` at `price.usd` each. Section IDLE is per month; REQUEST is per
    million metered requests (for a month of assumptions.requests_per_month)."""

    section: str
    item: str
    quantity: Decimal
    price: Price

    @property
    def total(self) -> Decimal:
        return self.quantity * self.price.usd


def check_priced(templates: Templates) -> None:
    unknown = sorted({r.type for r in templates.resources()} - FREE - PRICED)
    unknown = [t for t in unknown if not t.startswith("Custom::")]
    if unknown:
        raise UnpricedResource(f"no price for {', '.join(unknown)}: add it to tools/costing (model.PRICED and "
                               "prices.json), or to model.FREE with the reason it costs nothing by itself")


def total(lines: Iterable[Line], section: str) -> Decimal:
    return sum((line.total for line in lines if line.section == section), Decimal(0))


# -- idle ----------------------------------------------------------------------------------------------------
def idle_lines(t: Templates, prices: Mapping[str, Price], a: Assumptions) -> list[Line]:
    """What a deployment with no traffic costs per month."""
    check_priced(t)
    h = a.hours_per_month
    out: list[Line] = []

    def add(item: str, quantity, key: str) -> None:
        if key not in prices:
            raise UnpricedResource(f"{item}: no price {key!r} in prices.json")
        out.append(Line(IDLE, item, Decimal(quantity), prices[key]))

    public_subnets = {r.logical_id for r in t.resources("AWS::EC2::Subnet") if r.properties.get("MapPublicIpOnLaunch")}
    for r in t.resources("AWS::EC2::NatGateway"):
        add(f"NAT gateway {r.name}", h, "nat_gateway_hour")
    for r in t.resources("AWS::EC2::EIP"):
        add(f"public IPv4 address {r.name}", h, "public_ipv4_hour")
    for r in t.resources("AWS::EC2::Instance"):
        add(f"EC2 {r.properties['InstanceType']} {r.name}", h, f"ec2_{r.properties['InstanceType']}_hour")
        add(f"  its root volume, GB ({r.name})", _root_volume_gb(t, r), "ebs_gp3_gb_month")
        if _has_public_ip(r, public_subnets) and not _has_eip(t, r):
            add(f"  its public IPv4 address ({r.name})", h, "public_ipv4_hour")
    for r in t.resources("AWS::EC2::VPCEndpoint"):
        if r.properties.get("VpcEndpointType") == "Interface":
            add(f"interface endpoint {r.name}, AZ-hours", h * len(r.properties.get("SubnetIds", [])),
                "interface_endpoint_hour")
    for r in t.resources("AWS::WAFv2::WebACL"):
        add(f"WAF web ACL {r.name}", 1, "waf_web_acl_month")
        add(f"  its rules ({', '.join(x['Name'] for x in r.properties.get('Rules', []))})",
            len(r.properties.get("Rules", [])), "waf_rule_month")
    for r in t.resources("AWS::CloudWatch::Dashboard"):
        add(f"dashboard {r.name}", 1, "cw_dashboard_month")
    alarms = list(t.resources("AWS::CloudWatch::Alarm"))
    if alarms:
        add(f"alarm metrics ({len(alarms)} alarms)", sum(alarm_metrics(r) for r in alarms), "cw_alarm_metric_month")
    for r in t.resources("AWS::CloudWatch::InsightRule"):
        add(f"Contributor Insights rule {r.name}", 1, "cw_insight_rule_month")
    for r in t.resources("AWS::KMS::Key"):
        add(f"KMS key {r.name}", 1, "kms_key_month")
    for r in t.resources("AWS::SecretsManager::Secret"):
        add(f"secret {r.name}", 1, "secret_month")
    for rule, fn, per_month in scheduled_functions(t, a):
        memory = Decimal(fn.properties.get("MemorySize", 128)) / 1024
        add(f"scheduled {fn.logical_id} ({rule.properties['ScheduleExpression']}): invocations, millions",
            per_month / MILLION, "lambda_requests_million")
        add(f"  its GB-seconds ({memory * 1024:.0f} MB x {a.sweeper_s} s)", per_month * memory * a.sweeper_s,
            "lambda_arm_gb_s")
        add("  its log GB", per_month * (a.sweeper_log_bytes + a.lambda_platform_log_bytes) / GB, "cw_logs_ingest_gb")
        if (fn.properties.get("TracingConfig") or {}).get("Mode") == "Active":
            add("  its X-Ray traces, millions (each run is sampled)", per_month / MILLION, "xray_traces_million")
        if _snapstart(fn):  # a day apart, no environment is still warm: each run is a restore
            add(f"  its restores, GB restored ({memory * 1024:.0f} MB each)", per_month * memory,
                "lambda_snapstart_restore_gb")
    for r in t.resources("AWS::Scheduler::Schedule"):
        add(f"EventBridge schedule {r.name}, millions", _per_month(r.properties["ScheduleExpression"], a) / MILLION,
            "scheduler_million")
    for version, fn in snapstart_versions(t):
        memory = Decimal(fn.properties.get("MemorySize", 128)) / 1024
        add(f"SnapStart snapshot of {version.name}, GB-seconds cached ({memory * 1024:.0f} MB, all month)",
            memory * a.seconds_per_month, "lambda_snapstart_cache_gb_s")
    if a.idle_custom_metrics:
        add("custom metrics the scheduled functions emit", a.idle_custom_metrics, "cw_metric_month")
    for r in t.resources("AWS::ECS::Service"):
        if int(r.properties.get("DesiredCount", 1)):
            for key, amount in fargate_task(t, r):
                add(f"Fargate {r.name}: {key}", amount * h * int(r.properties["DesiredCount"]), key)
    return out


def snapstart_versions(t: Templates) -> list[tuple[Resource, Resource]]:
    """(version, its function) for each published version of a function with SnapStart on published versions:
    Lambda caches a snapshot of each such version for as long as it exists, billed per GB of the function's
    memory per second (https://aws.amazon.com/lambda/pricing/, SnapStart). The whole month, idle or not: a
    version left uninvoked for 14 days goes Inactive and fails its calls (snapstart-troubleshooting.html), so
    a deployment keeps it invoked (stacks/api_stack.py, the keep-active schedule; priced in idle with the other
    scheduled functions)."""
    out = []
    for version in t.resources("AWS::Lambda::Version"):
        [fn_id] = refs(version.properties["FunctionName"])
        fn = t.get(version.stack, fn_id)
        if _snapstart(fn):
            out.append((version, fn))
    return out


def _snapstart(fn: Resource) -> bool:
    return (fn.properties.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions"


def alarm_metrics(alarm: Resource) -> int:
    """Metrics an alarm is billed for: each metric it reads (metric math: each metric in it), and 3 per
    anomaly detection band (the metric and both bounds)."""
    p = alarm.properties
    if "Metrics" not in p:
        return 1
    stats = sum(1 for q in p["Metrics"] if "MetricStat" in q)
    bands = sum(1 for q in p["Metrics"] if "ANOMALY_DETECTION_BAND" in str(q.get("Expression", "")))
    return stats + 2 * bands


def _root_volume_gb(t: Templates, instance: Resource) -> Decimal:
    mappings = list(instance.properties.get("BlockDeviceMappings", []))
    lt = instance.properties.get("LaunchTemplate", {}).get("LaunchTemplateId")
    if lt:
        [lt_id] = refs(lt) or [None]
        if lt_id:
            mappings += t.get(instance.stack, lt_id).properties["LaunchTemplateData"].get("BlockDeviceMappings", [])
    sizes = [Decimal(m["Ebs"]["VolumeSize"]) for m in mappings if "VolumeSize" in m.get("Ebs", {})]
    return sum(sizes) if sizes else DEFAULT_ROOT_VOLUME_GB


def _has_public_ip(instance: Resource, public_subnets: set[str]) -> bool:
    nics = instance.properties.get("NetworkInterfaces", [])
    if any(n.get("AssociatePublicIpAddress") for n in nics):
        return True
    return bool(refs(instance.properties.get("SubnetId")) & public_subnets)


def _has_eip(t: Templates, instance: Resource) -> bool:
    return any(instance.logical_id in refs(r.properties.get("InstanceId"))
               for r in t.resources("AWS::EC2::EIP", "AWS::EC2::EIPAssociation"))


def _per_month(expression: str, a: Assumptions) -> Decimal:
    """Runs a month of a schedule: rate(N unit), or a once-a-day cron (fixed minute and hour, every day)."""
    if re.fullmatch(r"cron\(\d+ \d+ [*?] \* [*?] \*\)", expression):
        return a.seconds_per_month / 86400
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if not match:
        raise UnpricedResource(f"schedule {expression!r}: only rate(...) and daily cron(...) expressions are priced")
    seconds = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")] * int(match.group(1))
    return a.seconds_per_month / seconds


def scheduled_functions(t: Templates, a: Assumptions) -> list[tuple[Resource, Resource, Decimal]]:
    """(rule, function, invocations per month) for each Lambda target of a scheduled EventBridge rule: a function,
    or an alias or version of one."""
    out = []
    for rule in t.resources("AWS::Events::Rule"):
        if "ScheduleExpression" not in rule.properties:
            continue
        for target in rule.properties.get("Targets", []):
            for fid in refs(target.get("Arn")):
                fn = t.get(rule.stack, fid)
                if fn.type in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
                    [fid] = refs(fn.properties["FunctionName"])
                    fn = t.get(rule.stack, fid)
                if fn.type == "AWS::Lambda::Function":
                    out.append((rule, fn, _per_month(rule.properties["ScheduleExpression"], a)))
    return out


def fargate_task(t: Templates, service: Resource) -> list[tuple[str, Decimal]]:
    """(price key, amount per task-hour) of an ECS service's task definition: vCPUs and GB."""
    [td] = refs(service.properties["TaskDefinition"])
    p = t.get(service.stack, td).properties
    return [("fargate_arm_vcpu_hour", Decimal(p["Cpu"]) / 1024), ("fargate_arm_gb_hour", Decimal(p["Memory"]) / 1024)]


# -- per million requests ------------------------------------------------------------------------------------
def traced_share(t: Templates, a: Assumptions) -> Decimal:
    """Share of API requests X-Ray records a trace for, under the first sampling rule that covers API
    Gateway stages (or the default rule), at the assumed request rate."""
    rules = sorted((r.properties["SamplingRule"] for r in t.resources("AWS::XRay::SamplingRule")),
                   key=lambda r: r.get("Priority", 10000))
    rule = next((r for r in rules if r.get("ServiceType", "*") in ("*", "AWS::ApiGateway::Stage")), None)
    reservoir = Decimal(rule["ReservoirSize"]) if rule else DEFAULT_RESERVOIR_PER_S
    rate = Decimal(str(rule["FixedRate"])) if rule else DEFAULT_FIXED_RATE
    per_s = a.requests_per_month / a.seconds_per_month
    return rate + (1 - rate) * min(per_s, reservoir) / per_s  # (reservoir + rate x the rest) / all


def waf_logged_share(config: Resource, a: Assumptions) -> Decimal:
    """Share of requests WAF logs: all of them, or with a logging filter that drops by default and keeps only
    what a rule blocked or counted, assumptions.waf_logged_share."""
    kept = {c.get("ActionCondition", {}).get("Action") for f in (config.properties.get("LoggingFilter") or {}).get(
        "Filters", []) if f.get("Behavior") == "KEEP" for c in f.get("Conditions", [])}
    drops = (config.properties.get("LoggingFilter") or {}).get("DefaultBehavior") == "DROP"
    return a.waf_logged_share if drops and "ALLOW" not in kept else Decimal(1)


def authorizer_share(t: Templates, a: Assumptions) -> Decimal:
    """Authorizer invocations per request: API Gateway caches an answer per key for the TTL, so with
    Poisson arrivals at rate r per key, 1 / (1 + r x TTL) of requests miss the cache."""
    ttls = [Decimal(r.properties.get("AuthorizerResultTtlInSeconds", 300)) for r in t.resources("AWS::ApiGateway::Authorizer")]
    if not ttls:
        return Decimal(0)
    per_key_per_s = a.requests_per_month / a.active_keys / a.seconds_per_month
    return 1 / (1 + per_key_per_s * max(ttls))


def request_lines(t: Templates, prices: Mapping[str, Price], a: Assumptions, m: Measurement,
                  tables: Mapping[str, TableSpec]) -> list[Line]:
    """What a month of assumptions.requests_per_month metered requests adds to idle, scaled to a million."""
    scale = MILLION / a.requests_per_month  # quantities below are for a month's traffic, then scaled
    n = a.requests_per_month
    out: list[Line] = []

    def add(item: str, quantity, key: str) -> None:
        out.append(Line(REQUEST, item, Decimal(quantity) * scale, prices[key]))

    stages = list(t.resources("AWS::ApiGateway::Stage"))
    add("API Gateway REST requests, millions", n / MILLION, "apigw_rest_million")
    access_log_bytes = sum(len(s.properties.get("AccessLogSetting", {}).get("Format", "")) for s in stages)
    if access_log_bytes:
        add(f"  access log lines, GB ({access_log_bytes} bytes: the format's length)", n * access_log_bytes / GB,
            "cw_logs_ingest_gb")
    for _ in t.resources("AWS::WAFv2::WebACL"):
        add("WAF requests inspected, millions", n / MILLION, "waf_requests_million")
    for config in t.resources("AWS::WAFv2::LoggingConfiguration"):
        share = waf_logged_share(config, a)
        add(f"  WAF log records, GB ({a.waf_log_bytes} bytes each, {share:.0%} of requests logged)",
            n * share * a.waf_log_bytes / GB, "cw_vended_logs_gb")

    gateway = t.function(GATEWAY_FUNCTION)
    memory = Decimal(gateway.properties.get("MemorySize", 128)) / 1024
    own = a.gateway_own_s_at_1024mb / min(memory, FULL_VCPU_GB)
    seconds = a.provider_wait_s + own
    add("gateway Lambda requests, millions", n / MILLION, "lambda_requests_million")
    add(f"  GB-seconds ({memory * 1024:.0f} MB x {seconds:.3f} s: provider wait + own work)", n * memory * seconds,
        "lambda_arm_gb_s")
    gateway_logs = m.log_bytes + a.lambda_platform_log_bytes
    add(f"  log GB ({gateway_logs} bytes a request: {m.log_bytes} measured + Lambda's own lines)",
        n * gateway_logs / GB, "cw_logs_ingest_gb")

    authorizer = t.function(AUTHORIZER_FUNCTION)
    if authorizer is not None:
        share = authorizer_share(t, a)
        amem = Decimal(authorizer.properties.get("MemorySize", 128)) / 1024
        add(f"authorizer Lambda requests, millions ({share:.2f} a request: cache misses)", n * share / MILLION,
            "lambda_requests_million")
        add(f"  GB-seconds ({amem * 1024:.0f} MB x {a.authorizer_s} s)", n * share * amem * a.authorizer_s,
            "lambda_arm_gb_s")
        add("  log GB", n * share * (a.authorizer_own_log_bytes + a.lambda_platform_log_bytes) / GB, "cw_logs_ingest_gb")

    tx = sum(w.units for w in m.writes if w.transactional)
    plain = sum(w.units for w in m.writes if not w.transactional)
    idx = sum(i.units for i in m.index_writes)
    add(f"DynamoDB write units, millions ({m.write_units} a request: {tx} in transactions, {plain} single, "
        f"{idx} index writes)", n * m.write_units / MILLION, "ddb_wru_million")
    if m.read_units:
        add(f"DynamoDB read units, millions ({m.read_units} a request)", n * m.read_units / MILLION, "ddb_rru_million")
    usage = tables.get("UsageTable")
    if usage is not None:
        months = _usage_months(t, a)
        base = m.usage_item_bytes + 100  # DynamoDB adds 100 bytes of overhead per item
        stored = base + sum(b + 100 for b in m.usage_index_bytes.values() if b)  # what settled records hold
        add(f"usage records held, GB-months ({stored} bytes each with indexes, kept {months} months: "
            "the steady state of a month's traffic)", n * stored * months / GB, "ddb_storage_gb_month")
        if _pitr("UsageTable", t):
            add(f"  their continuous backups (PITR, {base} bytes each), GB-months", n * base * months / GB,
                "ddb_pitr_gb_month")

    if any(s.properties.get("TracingEnabled") for s in stages):
        share = traced_share(t, a)
        add(f"X-Ray traces, millions ({share:.1%} of requests sampled)", n * share / MILLION, "xray_traces_million")
    for _ in t.resources("AWS::CloudWatch::InsightRule"):
        add("Contributor Insights log events matched, millions", n / MILLION, "cw_insight_events_million")
    if m.metric_series:
        add(f"custom metrics once there is traffic ({m.metric_series} per provider x {a.providers_used})",
            Decimal(m.metric_series) * a.providers_used, "cw_metric_month")
    add(f"Secrets Manager reads at cold starts ({a.cold_start_share:.1%} of requests), 10k calls",
        n * a.cold_start_share / 10_000, "secret_api_10k")
    for _version, fn in snapstart_versions(t):  # its cache is in idle (all month)
        if fn.logical_id == gateway.logical_id:
            fmem = Decimal(fn.properties.get("MemorySize", 128)) / 1024
            add(f"SnapStart restores, GB restored (the gateway's cold starts, {fmem * 1024:.0f} MB each)",
                n * a.cold_start_share * fmem, "lambda_snapstart_restore_gb")
    return out


def _usage_months(t: Templates, a: Assumptions) -> Decimal:
    from tollgate import schema

    table = next(r for r in t.resources("AWS::DynamoDB::Table") if r.logical_id.startswith("UsageTable"))
    if (table.properties.get("TimeToLiveSpecification") or {}).get("Enabled"):
        return (Decimal(schema.USAGE_RETENTION_DAYS) / Decimal("30.4375")).quantize(Decimal("0.1"))
    return a.usage_months_kept_without_ttl


def _pitr(prefix: str, t: Templates) -> bool:
    table = next(r for r in t.resources("AWS::DynamoDB::Table") if r.logical_id.startswith(prefix))
    spec = table.properties.get("PointInTimeRecoverySpecification") or {}
    return bool(spec.get("PointInTimeRecoveryEnabled"))
