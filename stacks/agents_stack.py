"""TollgateAgents: the agent workers (agents/) on ECS Fargate, in private subnets, scaled on the runs queue.

- A VPC of its own: public subnets hold only the NAT instance; the tasks run in private subnets
  (PRIVATE_WITH_EGRESS) with no public IP, behind a security group whose only rule is egress to TCP 443
  (the gateway's API, SQS, DynamoDB, CloudWatch Logs, ECR: all HTTPS). Flow logs to CloudWatch Logs.
- An ECS cluster with Container Insights, one Fargate service (arm64/Graviton), one run per task at
  a time, scaled on the queue: out while runs wait, in to zero tasks once nothing is waiting or in
  flight, so an idle deployment pays for no task.
- A task role with the least it needs: execute-api:Invoke on the API's /internal/v1 methods (the only
  way to an LLM), receive/delete/change-visibility on the runs queue, read/update the runs table, read
  the runs' budget items. The gateway maps this role's name to the principal that may act for the user
  who started a run (gateway_principals()).
- The image is built from agents/Dockerfile as a CDK asset: synth only stages the directory (no Docker
  needed); `cdk deploy` builds and pushes it.
"""
from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct
from tollgate import routes, scopes
from tollgate.schema import BUDGETS, RUNS, Env

from stacks import permissions as p
from stacks.api_stack import RUN_BUDGET_ITEMS, ApiStack
from stacks.data_stack import DataStack
from stacks.functions import LOG_RETENTION
from stacks.nag import acknowledge
from stacks.rest_api import STAGE_NAME
from stacks.runs_queue import VISIBILITY_TIMEOUT

AGENTS_STACK_NAME = "TollgateAgents"
AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents"
AGENT_SERVICE_USER = "agent-service"  # whose budgets pay when the agent role calls without acting for a user
DEFAULT_MAX_TASKS = 4
# ECS sends SIGTERM, waits this long, then SIGKILL (Fargate allows at most 120 s). The worker finishes
# the step it is in and hands the run back. A gateway call can take as long as the API's integration
# timeout (also 120 s); if SIGKILL lands mid-call, nothing is lost: the message reappears after its
# visibility timeout, and the call's idempotency key makes the retried call return the first answer.
STOP_TIMEOUT = Duration.seconds(120)
# `cdk deploy -c agents_enabled=false`: the stack holds only the task role (which the gateway's
# configuration names), and no network, cluster or service: ~$7.80 a month less idle (`make cost`).
ENABLED_CONTEXT = "agents_enabled"
NAT_INSTANCE_TYPE = "t4g.nano"  # arm64, 0.5 GB, up to 5 Gbit/s
NAT_ROOT_VOLUME_GB = 8  # the Amazon Linux 2023 image's own size: the smallest it boots from
IDLE_BEFORE_SCALE_IN = 5  # minutes with no run waiting or in flight before the tasks are stopped


def task_role_name() -> str:
    """A fixed name, so the API stack can name the role in the gateway's configuration without a
    reference to this stack (which depends on the API stack). Per region: role names are global."""
    return f"tollgate-agents-task-{Aws.REGION}"


# Per user the tasks act for (the gateway keys them on role + user): several concurrent runs of one user
# may go faster than one interactive key; each run is still held to its own budget and the user's.
AGENT_LIMITS_PER_USER = {"rpm": 300, "tpm": 1_000_000}


def gateway_principals() -> dict[str, dict]:
    """The gateway's TOLLGATE_IAM_PRINCIPALS entry for the task role: it may complete, and act for the
    user who started a run (x-tollgate-on-behalf-of, x-tollgate-run-id)."""
    return {task_role_name(): {"scopes": [scopes.COMPLETE, scopes.ACT_AS], "user": AGENT_SERVICE_USER,
                               "limits": AGENT_LIMITS_PER_USER}}


class AgentsStack(Stack):
    def __init__(self, scope: Construct, construct_id: str = AGENTS_STACK_NAME, *,
                 data: DataStack, api: ApiStack, max_tasks: int = DEFAULT_MAX_TASKS, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        queue = api.runs_queue.queue

        self.task_role = iam.Role(
            self, "TaskRole",
            role_name=task_role_name(),
            description="Tollgate agent worker tasks: call the gateway, take runs, record them",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:ecs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"},
            }),
        )
        self._grant(data, api)

        self.service: ecs.FargateService | None = None
        if self.node.try_get_context(ENABLED_CONTEXT) in (False, "false"):
            # No network, cluster or service: nothing to pay for while idle. Runs that are started
            # anyway wait in the queue until the service is deployed.
            return

        self.flow_logs = logs.LogGroup(self, "FlowLogs", retention=LOG_RETENTION)
        # One NAT instance, not one per AZ: the workers are batch consumers of a queue, not a service
        # with an availability target. If that AZ fails, runs wait in the queue (and resume from
        # their checkpoints). An instance, not a NAT gateway: a t4g.nano with its public IPv4 address
        # and root volume costs ~$7.40 a month against the gateway's $36.50 (`make cost`), and the
        # workers' traffic (HTTPS calls that mostly wait on an LLM) is far below a nano's bandwidth.
        self.nat = ec2.NatProvider.instance_v2(
            instance_type=ec2.InstanceType(NAT_INSTANCE_TYPE),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=ec2.AmazonLinuxCpuType.ARM_64),
            default_allowed_traffic=ec2.NatTrafficDirection.NONE,
        )
        self.vpc = ec2.Vpc(
            self, "Vpc",
            max_azs=2,
            nat_gateway_provider=self.nat,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ],
            flow_logs={"all": ec2.FlowLogOptions(
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_logs),
                traffic_type=ec2.FlowLogTrafficType.ALL)},
        )
        # The NAT instance forwards the workers' HTTPS only (their own security group allows nothing
        # else) and fetches its packages over HTTPS at boot; nothing else reaches it.
        self.nat.security_group.add_ingress_rule(ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(443),
                                                 "HTTPS from the agent workers' private subnets")
        self.nat.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS out")
        acknowledge(self.nat.security_group, "AwsSolutions-EC23",
                    "The rule cannot read the VPC's CIDR (a token): ingress is TCP 443 from the VPC only.")
        for nat in self.nat.gateway_instances:
            cfn = nat.instance
            cfn.block_device_mappings = [ec2.CfnInstance.BlockDeviceMappingProperty(
                device_name="/dev/xvda", ebs=ec2.CfnInstance.EbsProperty(
                    encrypted=True, volume_type="gp3", volume_size=NAT_ROOT_VOLUME_GB, delete_on_termination=True))]
            acknowledge(nat, "AwsSolutions-EC28",
                        "Basic (5-minute) monitoring is enough for a NAT instance; detailed monitoring would add "
                        "seven custom-rate metrics, ~$2.10 a month, to a ~$7 instance.")
            acknowledge(nat, "AwsSolutions-EC29",
                        "CloudFormation owns the NAT instance: a redeploy replaces it, which termination "
                        "protection would block. While it is down, runs wait in the queue and resume later.")
        # Gateway endpoints are free and keep DynamoDB and ECR's image layers (S3) off the NAT's
        # per-GB charge. Interface endpoints (SQS, Logs, ECR API, STS) would cost ~$7/month each per AZ.
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)

        self.cluster = ecs.Cluster(self, "Cluster", vpc=self.vpc,
                                   container_insights_v2=ecs.ContainerInsights.ENABLED)

        self.security_group = ec2.SecurityGroup(
            self, "WorkerSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Tollgate agent workers: no inbound; outbound HTTPS only")
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
                                            "HTTPS: the Tollgate API, SQS, DynamoDB, CloudWatch Logs, ECR")


        self.logs = logs.LogGroup(self, "WorkerLogs", retention=LOG_RETENTION)
        self.task_definition = ecs.FargateTaskDefinition(
            self, "Worker",
            cpu=256, memory_limit_mib=512,  # I/O-bound: it waits on the gateway
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ecs.CpuArchitecture.ARM64,
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX),
        )
        self.container = self.task_definition.add_container(
            "worker",
            image=ecs.ContainerImage.from_asset(str(AGENTS_DIR), platform=ecr_assets.Platform.LINUX_ARM64),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=self.logs),
            environment={
                RUNS.env_var: data.tables[RUNS.logical_id].table_name,
                BUDGETS.env_var: data.budgets_table.table_name,
                Env.RUNS_QUEUE_URL: queue.queue_url,
                "TOLLGATE_GATEWAY_URL": api.rest_api.api.url,
                "TOLLGATE_GATEWAY_REGION": Aws.REGION,
                "TOLLGATE_WORKER_VISIBILITY_S": str(int(VISIBILITY_TIMEOUT.to_seconds())),
            },
            stop_timeout=STOP_TIMEOUT,
            readonly_root_filesystem=True,
            user="10001",
        )
        self.service = ecs.FargateService(
            self, "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            assign_public_ip=False,
            desired_count=0,  # the scaling below starts tasks when runs arrive
            min_healthy_percent=100,  # a deployment starts new tasks before stopping old ones
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )
        self._scale(queue, max_tasks)
        self._acknowledge()
        CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        CfnOutput(self, "ServiceName", value=self.service.service_name)

    def _grant(self, data: DataStack, api: ApiStack) -> None:
        role = self.task_role
        # Only the SigV4 routes, method by method: the worker cannot call /v1, /admin or the runs API.
        internal = [r for r in routes.ROUTES if r.auth == routes.IAM]
        role.add_to_policy(iam.PolicyStatement(
            actions=["execute-api:Invoke"],
            resources=[api.rest_api.api.arn_for_execute_api(r.method, r.path, STAGE_NAME) for r in internal]))
        role.add_to_policy(p.queue_consume(api.runs_queue.queue))
        for statement in p.table_access(data.tables[RUNS.logical_id], RUNS, [p.GET, p.UPDATE]):
            role.add_to_policy(statement)
        # The run's budget: read (what remains, what it cost), never written: only the gateway moves it.
        role.add_to_policy(p.item_access(data.budgets_table, [p.GET], [RUN_BUDGET_ITEMS]))

    def _scale(self, queue, max_tasks: int) -> None:
        scaling = self.service.auto_scale_task_count(min_capacity=0, max_capacity=max_tasks)
        minute = Duration.minutes(1)
        waiting = queue.metric_approximate_number_of_messages_visible(period=minute, statistic="Maximum")
        in_flight = queue.metric_approximate_number_of_messages_not_visible(period=minute, statistic="Maximum")
        # Out: runs are waiting, so the running tasks are all busy (each takes one run at a time).
        scaling.scale_on_metric(
            "OutWhileRunsWait", metric=waiting,
            scaling_steps=[autoscaling.ScalingInterval(upper=0, change=0),
                           autoscaling.ScalingInterval(lower=1, change=1),
                           autoscaling.ScalingInterval(lower=10, change=2)],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=minute, evaluation_periods=1)
        # In: only when nothing waits and nothing is in flight, so scale-in never stops a task mid-run
        # (if it did, SIGTERM hands the run back and another task resumes it from its checkpoint).
        backlog = cloudwatch.MathExpression(expression="waiting + inflight", period=minute,
                                            using_metrics={"waiting": waiting, "inflight": in_flight},
                                            label="runs waiting or in flight")
        scaling.scale_on_metric(
            "InToZeroWhenIdle", metric=backlog,
            scaling_steps=[autoscaling.ScalingInterval(upper=0, change=-max_tasks),
                           autoscaling.ScalingInterval(lower=1, change=0)],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=minute, evaluation_periods=IDLE_BEFORE_SCALE_IN, datapoints_to_alarm=IDLE_BEFORE_SCALE_IN)

    def _acknowledge(self) -> None:
        acknowledge(self.task_definition, "AwsSolutions-ECS2",
                    "The environment holds names only (tables, queue URL, API URL, region): no secret. The "
                    "worker has no secret at all: it signs with its task role's temporary credentials.")
        # CDK's provider for restricting the VPC's default security group (no rules, so nothing can use
        # it) declares DependsOn on its role on top of the GetAtt; cfn-lint flags the redundancy (W3005).
        provider = self.node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        if provider is not None:
            provider.node.find_child("Handler").add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        execution_role = self.task_definition.obtain_execution_role()
        acknowledge(execution_role, "AwsSolutions-IAM5[Resource::*]",
                    "ECS task execution role: ecr:GetAuthorizationToken does not support resource-level "
                    "permissions, so AWS requires Resource '*'; image pulls are limited to the asset repository.")
