"""TollgateAgents: private subnets, egress 443 only, scaling to zero on the runs queue, Container
Insights, a least-privilege task role the gateway knows by name; and the runs queue and runs function
in TollgateApi. cdk-nag and cfn-lint cover this stack in test_nag.py and test_cfn_lint.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tollgate import routes, schema

from stacks.agents_stack import AGENTS_STACK_NAME, AGENT_SERVICE_USER, NAT_INSTANCE_TYPE, STOP_TIMEOUT
from stacks.api_stack import API_STACK_NAME
from stacks import web_adapter

from .cfn import as_list, data_refs, function_id, local_refs, resources, role_statements

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def agents(synthesis) -> dict:
    return synthesis.template(AGENTS_STACK_NAME)


@pytest.fixture(scope="module")
def api(synthesis) -> dict:
    return synthesis.template(API_STACK_NAME)


def _one(template: dict, resource_type: str) -> tuple[str, dict]:
    [(logical_id, resource)] = resources(template, resource_type).items()
    return logical_id, resource


def _data_id(data_template: dict, prefix: str) -> str:
    [logical_id] = [k for k in data_template["Resources"] if k.startswith(prefix) and not k.startswith(prefix + "Policy")]
    return logical_id


def _queue_ids(api: dict) -> tuple[str, str]:
    queues = resources(api, "AWS::SQS::Queue")
    [main] = [k for k, v in queues.items() if "RedrivePolicy" in v["Properties"]]
    [dlq] = [k for k in queues if k != main]
    return main, dlq


# --- network --------------------------------------------------------------------------------------------

def test_tasks_run_in_private_subnets_with_no_public_ip(agents):
    _, service = _one(agents, "AWS::ECS::Service")
    network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    subnets = resources(agents, "AWS::EC2::Subnet")
    chosen = {ref["Ref"] for ref in network["Subnets"]}
    assert len(chosen) == 2
    for subnet_id in chosen:
        props = subnets[subnet_id]["Properties"]
        assert props["MapPublicIpOnLaunch"] is False
        tags = {t["Key"]: t["Value"] for t in props["Tags"]}
        assert tags["aws-cdk:subnet-type"] == "Private"
    # their default route goes out through the NAT instance, not an internet gateway
    routes_ = [r["Properties"] for r in resources(agents, "AWS::EC2::Route").values()
               if r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"]
    associations = resources(agents, "AWS::EC2::SubnetRouteTableAssociation").values()
    private_tables = {a["Properties"]["RouteTableId"]["Ref"] for a in associations
                      if a["Properties"]["SubnetId"]["Ref"] in chosen}
    for route in routes_:
        if route["RouteTableId"]["Ref"] in private_tables:
            assert route["InstanceId"]["Ref"] in resources(agents, "AWS::EC2::Instance") and "GatewayId" not in route


def test_one_nat_instance_no_nat_gateway_and_flow_logs_with_retention(agents):
    assert not resources(agents, "AWS::EC2::NatGateway")
    [nat] = resources(agents, "AWS::EC2::Instance").values()
    assert nat["Properties"]["InstanceType"] == NAT_INSTANCE_TYPE and nat["Properties"]["SourceDestCheck"] is False
    vpc_id, _ = _one(agents, "AWS::EC2::VPC")
    _, flow_log = _one(agents, "AWS::EC2::FlowLog")
    props = flow_log["Properties"]
    assert props["ResourceId"] == {"Ref": vpc_id} and props["ResourceType"] == "VPC"
    assert props["TrafficType"] == "ALL" and props["LogDestinationType"] == "cloud-watch-logs"
    for group in resources(agents, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] > 0


def test_the_nat_instance_forwards_only_https_from_the_vpc(agents):
    [nat] = resources(agents, "AWS::EC2::Instance").values()
    [sg_id] = [ref["Fn::GetAtt"][0] for ref in nat["Properties"]["SecurityGroupIds"]]
    props = resources(agents, "AWS::EC2::SecurityGroup")[sg_id]["Properties"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in props["SecurityGroupIngress"]] == [("tcp", 443, 443)]
    assert [(r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in props["SecurityGroupEgress"]] == [
        ("0.0.0.0/0", "tcp", 443, 443)]


def test_the_only_egress_is_tcp_443_and_there_is_no_ingress(agents):
    _, service = _one(agents, "AWS::ECS::Service")
    [sg_ref] = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    sg_id = sg_ref["Fn::GetAtt"][0]
    props = resources(agents, "AWS::EC2::SecurityGroup")[sg_id]["Properties"]
    assert props["SecurityGroupEgress"] == [{"CidrIp": "0.0.0.0/0", "IpProtocol": "tcp", "FromPort": 443,
                                             "ToPort": 443, "Description": props["SecurityGroupEgress"][0]["Description"]}]
    assert "SecurityGroupIngress" not in props
    for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
        assert not [r for r in resources(agents, kind).values() if sg_id in local_refs(r)]


# --- cluster, service, task -----------------------------------------------------------------------------

def test_cluster_has_container_insights(agents):
    _, cluster = _one(agents, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]


def test_task_is_arm64_non_root_read_only_logs_to_cloudwatch_and_has_time_to_hand_back_its_run(agents):
    _, task = _one(agents, "AWS::ECS::TaskDefinition")
    props = task["Properties"]
    assert props["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert props["RequiresCompatibilities"] == ["FARGATE"] and props["NetworkMode"] == "awsvpc"
    [container] = props["ContainerDefinitions"]
    assert container["User"] == "10001" and container["ReadonlyRootFilesystem"] is True
    assert container["StopTimeout"] == STOP_TIMEOUT.to_seconds() == 120
    logging = container["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert local_refs(logging["Options"]["awslogs-group"]) <= set(resources(agents, "AWS::Logs::LogGroup"))
    env = {e["Name"] for e in container["Environment"]}
    assert env == {"TOLLGATE_RUNS_TABLE", "TOLLGATE_BUDGETS_TABLE", "TOLLGATE_RUNS_QUEUE_URL",
                   "TOLLGATE_GATEWAY_URL", "TOLLGATE_GATEWAY_REGION", "TOLLGATE_WORKER_VISIBILITY_S"}


def test_worker_environment_names_are_the_ones_the_worker_reads():
    from agents import config, contract

    assert {contract.RUNS_TABLE_ENV, contract.BUDGETS_TABLE_ENV, contract.RUNS_QUEUE_URL_ENV, config.GATEWAY_URL,
            config.GATEWAY_REGION, config.VISIBILITY_S} == {
        "TOLLGATE_RUNS_TABLE", "TOLLGATE_BUDGETS_TABLE", "TOLLGATE_RUNS_QUEUE_URL", "TOLLGATE_GATEWAY_URL",
        "TOLLGATE_GATEWAY_REGION", "TOLLGATE_WORKER_VISIBILITY_S"}


def test_image_is_the_agents_directory_built_for_arm64(synthesis, agents):
    assets = json.loads((synthesis.outdir / f"{AGENTS_STACK_NAME}.assets.json").read_text())
    [image] = assets["dockerImages"].values()
    assert Path(image["source"]["directory"]).name == "agents" or image["source"]["directory"].startswith("asset.")
    assert image["source"].get("platform") == "linux/arm64"
    _, task = _one(agents, "AWS::ECS::TaskDefinition")
    assert "container-assets" in json.dumps(task["Properties"]["ContainerDefinitions"][0]["Image"])


def test_dockerfile_builds_a_slim_python_image_that_runs_as_a_non_root_user():
    dockerfile = (ROOT / "agents" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[34]-slim\b", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^CMD \["python", "-m", "agents"\]', dockerfile, re.M)  # exec form: python gets SIGTERM


# --- scaling --------------------------------------------------------------------------------------------

def test_scales_from_zero_on_waiting_runs_and_back_to_zero_when_idle(agents, api):
    _, service = _one(agents, "AWS::ECS::Service")
    assert service["Properties"]["DesiredCount"] == 0
    _, target = _one(agents, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["Properties"]["MinCapacity"] == 0 and target["Properties"]["MaxCapacity"] >= 1
    queue_id, _ = _queue_ids(api)
    alarms = list(resources(agents, "AWS::CloudWatch::Alarm").values())
    policies = resources(agents, "AWS::ApplicationAutoScaling::ScalingPolicy")

    def policy_of(alarm: dict) -> dict:
        [action] = alarm["Properties"]["AlarmActions"]
        return policies[action["Ref"]]["Properties"]["StepScalingPolicyConfiguration"]

    [out] = [a for a in alarms if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    assert data_refs(out["Properties"]["Dimensions"], api) == {queue_id}
    assert out["Properties"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert out["Properties"]["Threshold"] == 1
    assert all(step["ScalingAdjustment"] > 0 for step in policy_of(out)["StepAdjustments"])

    [idle] = [a for a in alarms if "Metrics" in a["Properties"]]
    metrics = {m["Id"]: m for m in idle["Properties"]["Metrics"]}
    [expression] = [m for m in metrics.values() if "Expression" in m]
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m} == {
        "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"}  # waiting + in flight
    assert set(re.findall(r"\w+", expression["Expression"])) == {m for m in metrics if m != expression["Id"]}
    assert idle["Properties"]["ComparisonOperator"] == "LessThanOrEqualToThreshold"
    assert idle["Properties"]["Threshold"] == 0 and idle["Properties"]["EvaluationPeriods"] >= 5
    [step] = policy_of(idle)["StepAdjustments"]
    assert step["ScalingAdjustment"] <= -target["Properties"]["MaxCapacity"]  # all the way to zero


# --- permissions ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def task_role(agents) -> tuple[str, dict]:
    _, task = _one(agents, "AWS::ECS::TaskDefinition")
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    return role_id, agents["Resources"][role_id]


def _task_statements(agents: dict, role_id: str) -> list[dict]:
    out = []
    for policy in resources(agents, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_task_role_is_assumed_by_ecs_tasks_of_this_account_only(task_role):
    _, role = task_role
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "ManagedPolicyArns" not in role["Properties"]


def test_task_role_has_least_privilege(agents, api, data_template, task_role):
    role_id, _ = task_role
    statements = _task_statements(agents, role_id)
    assert all(s["Effect"] == "Allow" for s in statements)
    assert not any("*" in as_list(s["Resource"]) for s in statements)
    by_action = {}
    for s in statements:
        by_action.setdefault(tuple(sorted(as_list(s["Action"]))), []).append(s)
    assert set(by_action) == {
        ("execute-api:Invoke",),
        ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"),
        ("dynamodb:GetItem", "dynamodb:UpdateItem"),
        ("dynamodb:GetItem",),
    }
    # the gateway: exactly the SigV4 routes of this API's stage, nothing under /v1, /admin or the runs API
    [invoke] = by_action[("execute-api:Invoke",)]
    [api_id] = resources(api, "AWS::ApiGateway::RestApi")
    arns = as_list(invoke["Resource"])
    internal = [r for r in routes.ROUTES if r.auth == routes.IAM]
    assert len(arns) == len(internal)
    suffixes = sorted(a["Fn::Join"][1][-1] for a in arns)
    assert suffixes == sorted(f"/prod/{r.method}{r.path}" for r in internal)
    assert all(s.startswith("/prod/POST/internal/v1/") for s in suffixes)
    assert all(data_refs(a, api) == {api_id} for a in arns)
    # the queue: take, renew, hand back, delete; no send, no purge
    queue_id, _ = _queue_ids(api)
    [consume] = by_action[("sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage")]
    assert data_refs(consume["Resource"], api) == {queue_id}
    # the runs table: read and update runs, never create or delete one
    runs_table = _data_id(data_template, schema.RUNS.logical_id)
    [runs_access] = by_action[("dynamodb:GetItem", "dynamodb:UpdateItem")]
    assert data_refs(runs_access["Resource"], data_template) == {runs_table}
    # the budgets table: read the runs' budget items only
    [budget_read] = by_action[("dynamodb:GetItem",)]
    assert data_refs(budget_read["Resource"], data_template) == {_data_id(data_template, schema.BUDGETS.logical_id)}
    assert budget_read["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["BUDGET#RUN#*"]}}


def test_the_gateway_maps_the_task_role_by_name_to_an_act_as_principal(agents, api, task_role):
    _, role = task_role
    name = role["Properties"]["RoleName"]
    assert name == {"Fn::Join": ["", ["tollgate-agents-task-", {"Ref": "AWS::Region"}]]}
    gateway = api["Resources"][function_id(api, web_adapter.HANDLER)]
    mapping = gateway["Properties"]["Environment"]["Variables"][schema.Env.IAM_PRINCIPALS]
    parts = mapping["Fn::Join"][1]
    assert parts[1] == {"Ref": "AWS::Region"}
    text = parts[0] + "REGION" + parts[2]
    assert json.loads(text) == {"tollgate-agents-task-REGION": {"scopes": ["ai:complete", "act-as"],
                                                                 "user": AGENT_SERVICE_USER,
                                                                 "limits": {"rpm": 300, "tpm": 1_000_000}}}
    from tollgate.auth import iam

    assert schema.Env.IAM_PRINCIPALS == iam.ENV
    principal = iam.principal_for({"userArn": "arn:aws:sts::123456789012:assumed-role/tollgate-agents-task-REGION/t"},
                                  {"x-tollgate-on-behalf-of": "alice",  # signed, as the worker signs it
                                   "authorization": "AWS4-HMAC-SHA256 Credential=ASIA/20261127/eu-west-1/execute-api/"
                                   "aws4_request, SignedHeaders=host;x-amz-date;x-tollgate-on-behalf-of, Signature=0"},
                                  json.loads(text))
    assert principal.user == "alice" and "act-as" in principal.scopes


# --- the runs queue and the runs function (TollgateApi) -------------------------------------------------

def test_runs_queue_and_dead_letter_queue_are_encrypted_and_refuse_plain_http(api):
    queue_id, dlq_id = _queue_ids(api)
    queues = resources(api, "AWS::SQS::Queue")
    for qid in (queue_id, dlq_id):
        assert queues[qid]["Properties"]["SqsManagedSseEnabled"] is True
        [policy] = [p for p in resources(api, "AWS::SQS::QueuePolicy").values()
                    if p["Properties"]["Queues"] == [{"Ref": qid}]]
        [deny] = policy["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    redrive = queues[queue_id]["Properties"]["RedrivePolicy"]
    assert local_refs(redrive["deadLetterTargetArn"]) == {dlq_id} and redrive["maxReceiveCount"] >= 3


def test_runs_function_creates_runs_and_their_budgets_and_queues_them_and_nothing_else(api, data_template):
    fid = function_id(api, "handlers.runs.lambda_handler")
    statements = [s for s in role_statements(api, fid) if not any(a.startswith("xray:") for a in as_list(s["Action"]))]
    runs_table = _data_id(data_template, schema.RUNS.logical_id)
    budgets_table = _data_id(data_template, schema.BUDGETS.logical_id)
    queue_id, _ = _queue_ids(api)
    found = {}
    for s in statements:
        target = data_refs(s["Resource"], data_template) | (local_refs(s["Resource"]) & {queue_id})
        found.setdefault(frozenset(target), set()).update(as_list(s["Action"]))
    logs = [k for k in found if not k]
    for k in logs:  # its own log group (a local ref, not a data-stack one)
        assert found.pop(k) <= {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert found == {
        frozenset({runs_table}): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        frozenset({budgets_table}): {"dynamodb:GetItem", "dynamodb:PutItem"},
        frozenset({queue_id}): {"sqs:SendMessage"},
    }
    [budget] = [s for s in statements if budgets_table in data_refs(s["Resource"], data_template)]
    assert budget["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["BUDGET#RUN#*"]}}
    env = api["Resources"][fid]["Properties"]["Environment"]["Variables"]
    assert local_refs(env[schema.Env.RUNS_QUEUE_URL]) == {queue_id}


def test_with_agents_disabled_there_is_no_network_or_service_only_the_task_role(tmp_path):
    import app as cdk_app
    from stacks.agents_stack import ENABLED_CONTEXT

    app = cdk_app.build_app(context={"aws:cdk:disable-asset-staging": True, ENABLED_CONTEXT: "false"},
                            outdir=str(tmp_path))
    agents = app.synth().get_stack_by_name(AGENTS_STACK_NAME).template
    kinds = {r["Type"] for r in agents["Resources"].values()}
    assert not kinds & {"AWS::EC2::VPC", "AWS::EC2::Instance", "AWS::EC2::NatGateway", "AWS::ECS::Service"}
    assert "AWS::IAM::Role" in kinds
