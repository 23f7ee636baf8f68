"""The agent runs queue and its dead-letter queue.

The runs Lambda (TollgateApi) sends one message per run, holding only its id; the agent workers
(TollgateAgents) take them. It lives in the API stack, next to its sender: the agents stack reads it
(and the API's id), so the dependency runs one way, agents -> api -> data.

Visibility timeout: how long a taken run stays hidden before another worker may take it; the worker
renews it (heartbeat) while the run is in hand, so it bounds only how long a killed worker's run waits.
A message received MAX_RECEIVES times without being deleted (a worker dying on it again and again) goes
to the dead-letter queue, with an alarm to the operators: a run there is stuck, not lost.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

VISIBILITY_TIMEOUT = Duration.minutes(5)  # the workers' TOLLGATE_WORKER_VISIBILITY_S
MAX_RECEIVES = 5  # a SIGTERM hand-back counts as one: a run survives a few scale-ins and deployments


class RunsQueue(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alert_topic: sns.ITopic | None = None) -> None:
        super().__init__(scope, construct_id)
        # SSE-SQS: encrypted at rest with no KMS key to grant (a customer key would make every sender
        # and receiver need kms:GenerateDataKey/Decrypt on it, for no gain on a queue of run ids).
        self.dead_letters = sqs.Queue(
            self, "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self, "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=VISIBILITY_TIMEOUT,
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVES),
        )
        self.dead_letter_alarm = alarm = cloudwatch.Alarm(
            self, "DeadLettersAlarm",
            alarm_description="Tollgate: an agent run is stuck in the dead-letter queue",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(period=Duration.minutes(5),
                                                                                   statistic="Maximum"),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if alert_topic is not None:
            alarm.add_alarm_action(actions.SnsAction(alert_topic))
