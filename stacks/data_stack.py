"""TollgateData: the state that outlives a deployment — tables, the BYOK key, secrets, the alerts topic.

Tables come from tollgate.schema.TABLES, the module the runtime and the local stack read too.
"""
from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct
from tollgate import schema

from stacks.nag import acknowledge
from stacks.permissions import SNS_TOPIC_CONTEXT

DATA_STACK_NAME = "TollgateData"
JWT_SECRET_LENGTH = 64
PLATFORM_PROVIDERS = ("openai", "anthropic")


def output_name(table: schema.Table) -> str:
    """CfnOutput id holding a table's physical name, e.g. ApiKeysTableName (read by `tollgate bootstrap`)."""
    return f"{table.logical_id}Name"


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str = DATA_STACK_NAME, *,
                 alert_email: str | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.tables: dict[str, dynamodb.Table] = {t.logical_id: self._table(t) for t in schema.TABLES}
        self.api_keys_table = self.tables[schema.API_KEYS.logical_id]
        self.usage_table = self.tables[schema.USAGE.logical_id]
        self.budgets_table = self.tables[schema.BUDGETS.logical_id]
        self.provider_keys_table = self.tables[schema.PROVIDER_KEYS.logical_id]

        # Envelope encryption of users' own provider keys, and of the alerts topic: one customer-managed key
        # ($1 a month each, `make cost`), each use held to its own encryption context (BYOK: user and provider,
        # stacks/permissions.py byok_key_use; SNS: aws:sns:topicArn). Retained with the provider-keys table:
        # without this key its ciphertexts cannot be decrypted.
        self.byok_key = kms.Key(
            self, "ByokKey",
            description="Tollgate: envelope encryption of bring-your-own provider keys, and the alerts topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.jwt_secret = secretsmanager.Secret(
            self, "JwtSigningSecret",
            description="Tollgate: HS256 signing secret of service tokens",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=JWT_SECRET_LENGTH, exclude_punctuation=True),
        )
        acknowledge(self.jwt_secret, "AwsSolutions-SMG4",
                    "HS256 signing key of service tokens, rotated by operators on demand (put-secret-value); "
                    "verifiers accept the AWSPREVIOUS version for a grace period so issued tokens survive it. "
                    "Scheduled rotation would need a custom rotation Lambda for a random key.")

        # The platform's own OpenAI/Anthropic keys, read by the gateway (tollgate.platform_keys). Deployed
        # with empty placeholders, which are not secret; operators put the real keys in after deploying.
        # CloudFormation compares templates, not live values, so later deploys leave those keys alone.
        self.platform_keys_secret = secretsmanager.Secret(
            self, "PlatformKeysSecret",
            description="Tollgate: the platform's provider API keys (JSON object: openai, anthropic)",
            secret_object_value={p: SecretValue.unsafe_plain_text("") for p in PLATFORM_PROVIDERS},
        )
        acknowledge(self.platform_keys_secret, "AwsSolutions-SMG4",
                    "Provider API keys are issued by OpenAI and Anthropic; Secrets Manager has no rotation "
                    "function for them. Operators rotate them in the provider console and put the new value.")

        self.alert_key = self._allow_alarms(self.byok_key)
        self.alert_topic = sns.Topic(self, "AlertTopic", display_name="Tollgate alerts",
                                     master_key=self.alert_key, enforce_ssl=True)
        if alert_email:
            self.alert_topic.add_subscription(subscriptions.EmailSubscription(alert_email))

        for table in schema.TABLES:
            CfnOutput(self, output_name(table), value=self.tables[table.logical_id].table_name)
        CfnOutput(self, "ByokKeyArn", value=self.byok_key.key_arn)
        CfnOutput(self, "JwtSecretArn", value=self.jwt_secret.secret_arn)
        CfnOutput(self, "PlatformKeysSecretArn", value=self.platform_keys_secret.secret_arn)
        CfnOutput(self, "AlertTopicArn", value=self.alert_topic.topic_arn)

    def _table(self, spec: schema.Table) -> dynamodb.Table:
        def attr(name: str) -> dynamodb.Attribute:
            return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)

        table = dynamodb.Table(
            self, spec.logical_id,
            partition_key=attr(spec.partition_key),
            sort_key=attr(spec.sort_key) if spec.sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=spec.ttl_attribute,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=attr(index.partition_key),
                sort_key=attr(index.sort_key) if index.sort_key else None,
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table

    def _allow_alarms(self, key: kms.Key) -> kms.Key:
        """`key`, usable by CloudWatch alarms to publish to the topic it encrypts. A customer-managed key,
        because CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key: the key
        policy must let cloudwatch.amazonaws.com use it; only under an SNS topic's encryption context, so
        the grant opens no BYOK data key."""
        key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": self.account},
                        "StringLike": {SNS_TOPIC_CONTEXT: f"arn:{self.partition}:sns:{self.region}:{self.account}:*"}},
        ))
        return key
