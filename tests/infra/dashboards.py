"""Reading dashboards, alarms and anomaly detectors out of synthesised templates (plain dicts).

A dashboard body is a JSON string joined from literals and CloudFormation references (function and
table names...). Each reference is replaced by TOKEN, or by `names[logical id]` when the reference is
to a resource of the template or (through a cross-stack output) of another stack the caller knows.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

from .cfn import resources

TOKEN = "TOKEN"


def _token(value: dict) -> str:
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}>"
    if "Fn::GetStackOutput" in value:
        return f"<output:{value['Fn::GetStackOutput']['OutputName']}>"
    if "Fn::ImportValue" in value:
        return f"<import:{json.dumps(value['Fn::ImportValue'])}>"
    return TOKEN


def flatten(value) -> str:
    """A string property that may be an Fn::Join: literals kept, references as <logical id>/<output:...>."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(flatten(p) for p in parts)
    if isinstance(value, dict):
        return _token(value)
    return str(value)


def dashboards(template: dict) -> dict[str, dict]:
    """logical id -> parsed dashboard body."""
    return {k: json.loads(flatten(v["Properties"]["DashboardBody"]))
            for k, v in resources(template, "AWS::CloudWatch::Dashboard").items()}


def widgets(template: dict) -> Iterator[dict]:
    for body in dashboards(template).values():
        yield from body["widgets"]


def _dims(pairs) -> frozenset:
    return frozenset((name, flatten(value)) for name, value in pairs)


def dashboard_metrics(template: dict) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric name, {dimension: value}) of every metric drawn on the template's dashboards."""
    out = set()
    for widget in widgets(template):
        for row in widget.get("properties", {}).get("metrics", []) or []:
            plain = [x for x in row if not isinstance(x, dict)]
            if len(plain) >= 2:
                namespace, name, *rest = plain
                out.add((namespace, name, _dims(zip(rest[::2], rest[1::2]))))
    return out


def _metric(metric: dict) -> tuple[str, str, frozenset]:
    return (metric["Namespace"], metric["MetricName"],
            _dims((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))


def alarm_metrics(alarm: dict) -> set[tuple[str, str, frozenset]]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return {_metric(props)}
    return {_metric(q["MetricStat"]["Metric"]) for q in props.get("Metrics", []) if "MetricStat" in q}


def detector_metrics(detector: dict) -> set[tuple[str, str, frozenset]]:
    props = detector["Properties"]
    if "MetricMathAnomalyDetector" in props:
        queries = props["MetricMathAnomalyDetector"]["MetricDataQueries"]
        return {_metric(q["MetricStat"]["Metric"]) for q in queries if "MetricStat" in q}
    single = props.get("SingleMetricAnomalyDetector", props)
    return {_metric(single)}


def referenced_metrics(template: dict) -> set[tuple[str, str, frozenset]]:
    """Every metric the template's dashboards, alarms and anomaly detectors read."""
    out = dashboard_metrics(template)
    for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
        out |= alarm_metrics(alarm)
    for detector in resources(template, "AWS::CloudWatch::AnomalyDetector").values():
        out |= detector_metrics(detector)
    return out
