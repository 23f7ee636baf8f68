"""One Tollgate Lambda function: code, dependency layer, its own role and log group, tracing.

Every function gets a role of its own with no managed policy; permissions are added statement by
statement (stacks/permissions.py), and logging is granted on its own log group only.
"""
from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.nag import acknowledge

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = ROOT / "lambdas"
LAYER_DIR = ROOT / "layers" / "build"  # holds python/..., built by `make layer`

# Must match the layer's wheels: the Makefile builds them with `--python-version 3.14`.
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

_ASSET_EXCLUDES = ["tests", "**/__pycache__", "**/*.pyc", ".stamp*"]
# Console scripts pip wrote for the build machine's interpreter: of no use inside Lambda.
_LAYER_EXCLUDES = [*_ASSET_EXCLUDES, "python/bin"]


def function_code() -> lambda_.Code:
    return lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=_ASSET_EXCLUDES)


def dependency_layer(scope: Construct, construct_id: str) -> lambda_.LayerVersion:
    if not (LAYER_DIR / "python").is_dir():
        raise FileNotFoundError(f"{LAYER_DIR / 'python'} is missing: run `make layer` first")
    return lambda_.LayerVersion(
        scope, construct_id,
        code=lambda_.Code.from_asset(str(LAYER_DIR), exclude=_LAYER_EXCLUDES),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        description="Tollgate third-party dependencies (arm64 wheels)",
    )


class TollgateFunction(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *,
        handler: str,
        description: str,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        environment: dict[str, str],
        memory_mb: int,
        timeout: Duration,
        extra_layers: tuple[lambda_.ILayerVersion, ...] = (),  # e.g. the Lambda Web Adapter (stacks/web_adapter.py)
        snap_start: bool = False,  # SnapStart on published versions; each replaced version is deleted with its snapshot
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION)
        self.role = iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Tollgate {construct_id} function",
        )
        self.function = lambda_.Function(
            self, "Function",
            handler=handler,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code,
            layers=[layer, *extra_layers],
            environment=environment,
            memory_size=memory_mb,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            role=self.role,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY) if snap_start else None,
        )
        self.log_group.grant_write(self.role)
        if snap_start:
            Annotations.of(self.function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "The caller publishes the function's current_version and invokes it through an alias.")
        # lambda.Function always adds DependsOn on its role on top of the GetAtt; cfn-lint flags the
        # redundancy (W3005). Harmless, and not ours to remove.
        self.function.node.default_child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        acknowledge(self.role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not "
                    "support resource-level permissions, so AWS requires Resource '*'.")

    def allow(self, statement: iam.PolicyStatement) -> None:
        self.role.add_to_principal_policy(statement)
