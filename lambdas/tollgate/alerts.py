"""Operator alerts on the SNS topic: budget warnings, loop detections and usage anomalies, each sent at
most once per interval per subject, deduplicated with a conditional write shared by every container."""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from tollgate.clock import Clock, iso, utc_now
from tollgate.store.dynamo import to_item, values
from tollgate.money import text as usd

log = logging.getLogger(__name__)


class Alerts:
    def __init__(self, topic_arn: str | None, budgets_table: str, dynamodb: Any, sns: Any,
                 interval_s: int, clock: Clock = utc_now):
        self.topic_arn = topic_arn
        self.table = budgets_table
        self.dynamodb = dynamodb
        self.sns = sns
        self.interval = timedelta(seconds=interval_s)
        self.clock = clock

    def budget_warning(self, *, level_kind: str, subject: str, period: str, limit: Any, remaining: Any) -> bool:
        return self._once(f"ALERT#BUDGET#{subject}", f"{level_kind}#{period}", {
            "type": "budget_warning", "level": level_kind, "subject": subject, "period": period,
            "limit_usd": usd(limit), "remaining_usd": usd(remaining)})

    def loop_detected(self, *, principal: str, user: str, loop: Any, hits: int, spent_usd: Any) -> bool:
        """One alert per loop (a subject's pattern), not per refused call: keyed by the loop, deduplicated
        for the alert interval. `loop` is a store.counters.LoopCounter; no prompt text is sent."""
        return self._once(f"ALERT#LOOP#{user}", f"{loop.subject}#{loop.fingerprint}", {
            "type": "loop_detected", "principal": principal, "user": user, "subject": loop.subject,
            "fingerprint": loop.fingerprint, "kind": loop.kind, "what": loop.description, "hits": hits,
            "spent_usd": usd(spent_usd), "window_s": loop.window_s,
            "clear": f"tollgate loops clear --user {user}"})

    def usage_anomaly(self, *, provider: str, model: str, principal: str, user: str, request_id: str,
                      input_tokens: int, output_tokens: int, reported_cost: Any, charged: Any) -> bool:
        """A provider reported more usage than a request allowed (tollgate.service). One alert per provider
        and model per interval: a provider fault repeats on every request, the usage records flag each one
        (usageAnomaly). Costs in USD; `charged` is what the budgets were charged (the reserved worst case)."""
        return self._once(f"ALERT#USAGE#{provider}", model, {
            "type": "usage_anomaly", "provider": provider, "model": model, "principal": principal, "user": user,
            "request_id": request_id, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "reported_cost_usd": usd(reported_cost), "charged_usd": usd(charged)})

    def _once(self, pk: str, sk: str, message: dict[str, Any]) -> bool:
        now = self.clock()
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=to_item({"pk": pk, "sk": sk, "sentAt": iso(now), "ttl": int((now + self.interval).timestamp())}),
                ConditionExpression="attribute_not_exists(pk) OR sentAt < :cutoff",
                ExpressionAttributeValues=values(cutoff=iso(now - self.interval)))
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        if not self.topic_arn:
            log.warning("alert not sent: no topic configured", extra={"alert": message["type"]})
            return False
        try:
            self.sns.publish(TopicArn=self.topic_arn, Subject=f"Tollgate: {message['type'].replace('_', ' ')}",
                             Message=json.dumps(message, indent=2))
        except Exception:  # an alert must never fail the request that triggered it
            log.exception("could not publish alert", extra={"alert": message["type"]})
            return False
        return True


