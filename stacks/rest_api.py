"""The REST API, built from tollgate.routes: resources, methods, authorizers, gateway responses, stage.

The local API Gateway emulator reads the same route table, identity sources and cache TTL.
"""
from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from tollgate import routes

from stacks.functions import LOG_RETENTION
from stacks.nag import acknowledge

STAGE_NAME = "prod"
# The gateway function's routes are STREAM integrations (response streaming, up to 15 minutes; the function
# answers through the Lambda Web Adapter in response_stream mode, so every route to it must stream).
# The smallest body a metered route accepts: a JSON object with a "model" string. Everything else about
# the body is checked by the gateway, which answers in the provider's error shape.
METERED_BODY_SCHEMA = {
    "type": "object",
    "required": ["model"],
    "properties": {"model": {"type": "string", "minLength": 1}},
}
# Stage-wide method throttling defaults (requests per second / burst); per-key limits are the gateway's.
THROTTLE_RATE_PER_S = 100
THROTTLE_BURST = 200

_F = apigw.AccessLogField
_ACCESS_LOG_FORMAT = {
    "requestId": _F.context_request_id(),
    "time": _F.context_request_time(),
    "ip": _F.context_identity_source_ip(),
    "method": _F.context_http_method(),
    # The route template only: a concrete path can hold what a client pasted where an id goes (a whole
    # secret key in /admin/keys/{keyId}/revoke), and access logs are kept in clear.
    "resource": _F.context_resource_path(),
    "status": _F.context_status(),
    "protocol": _F.context_protocol(),
    "responseLength": _F.context_response_length(),
    "responseLatency": _F.context_response_latency(),
    "integrationLatency": _F.context_integration_latency(),
    "integrationStatus": _F.context_integration_status(),
    "principal": _F.context_authorizer_principal_id(),
    "authorizerStatus": _F.context_authorizer_status(),
    "authorizerLatency": _F.context_authorizer_latency(),
    "authorizerError": _F.context_authorizer_error(),
    "iamUser": _F.context_identity_user_arn(),
    "error": _F.context_error_message(),
    "errorType": _F.context_error_response_type(),
    "xrayTraceId": _F.context_xray_trace_id(),
}


class TollgateRestApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *,
        authorizer: lambda_.IFunction,
        functions: dict[str, lambda_.IFunction],  # routes.GATEWAY_FUNCTION / ADMIN_FUNCTION -> function
        timeouts: dict[str, Duration] | None = None,  # function name -> integration timeout (default 29 s)
        streamed: frozenset[str] | set[str] = frozenset(),  # function names whose integrations stream
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=LOG_RETENTION)
        self.api = apigw.RestApi(
            self, "Api",
            # The ApiName dimension of the API's CloudWatch metrics: unique per deployment, not "Api".
            rest_api_name=Stack.of(self).stack_name,
            description="Tollgate AI gateway",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # API Gateway execution logging needs the account-level CloudWatch role.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FORMAT)),
                tracing_enabled=True,
                metrics_enabled=True,
                # ERROR, not INFO, and no data trace: execution logs must not carry prompts or keys.
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                throttling_rate_limit=THROTTLE_RATE_PER_S,
                throttling_burst_limit=THROTTLE_BURST,
            ),
        )
        self.authorizers = {
            a.name: apigw.RequestAuthorizer(
                self, f"Authorizer-{a.name}",
                authorizer_name=f"tollgate-{a.name}",
                handler=authorizer,
                identity_sources=[a.identity_source],
                results_cache_ttl=Duration.seconds(routes.AUTHORIZER_CACHE_TTL_S),
            )
            for a in routes.AUTHORIZERS
        }
        # allow_test_invoke=False: one invoke permission per method instead of two; the Lambda resource
        # policy has a size limit and the route table grows.
        integrations = {name: apigw.LambdaIntegration(
            fn, allow_test_invoke=False, timeout=(timeouts or {}).get(name),
            response_transfer_mode=apigw.ResponseTransferMode.STREAM if name in streamed else None)
            for name, fn in functions.items()}
        self._metered_body = self._metered_body_validation()
        self.methods = {(r.method, r.path): self._add_route(r, integrations[r.function]) for r in routes.ROUTES}
        self._catch_all()
        for response_type, (status, body) in routes.GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"Response-{response_type}",
                type=apigw.ResponseType.of(response_type),
                status_code=str(status),
                templates={"application/json": json.dumps(body)},
                response_headers={k: f"'{v}'" for k, v in routes.GATEWAY_RESPONSE_HEADERS.get(response_type, {}).items()}
                or None,
            )
        self._execution_logs()
        self._acknowledge()

    def _add_route(self, route: routes.Route, integration: apigw.Integration) -> apigw.Method:
        resource = self.api.root.resource_for_path(route.path)
        if route.auth == routes.IAM:
            options = {"authorization_type": apigw.AuthorizationType.IAM}
        elif route.auth == routes.NONE:
            options = {"authorization_type": apigw.AuthorizationType.NONE}
        else:
            options = {"authorizer": self.authorizers[route.auth]}
        if route.metered:
            options.update(self._metered_body)
        method = resource.add_method(route.method, integration, **options)
        if route.auth == routes.NONE:
            acknowledge(method, "AwsSolutions-APIG4",
                        f"{route.method} {route.path} is deliberately public (a liveness probe); "
                        "it returns no data and calls no provider.")
        return method

    def _catch_all(self) -> None:
        """Unknown paths and methods answer 404 in the path's error shape (routes.not_found) from a MOCK
        integration: an ANY method on every resource of the route table (a method defined on a resource
        takes precedence over its ANY) and on a greedy `{proxy+}` under the root and under /anthropic.
        Without them API Gateway answers both with MISSING_AUTHENTICATION_TOKEN, the response it also
        gives an unsigned call to an AWS_IAM route; with them, that response means only the latter (403).
        No Lambda runs and nothing is returned but the 404."""
        def tree(resource: apigw.IResource) -> list[apigw.IResource]:
            children = [c for c in resource.node.children if isinstance(c, apigw.Resource)]
            return [resource] + [r for child in children for r in tree(child)]

        existing = tree(self.api.root)
        greedy = [self.api.root.add_resource("{proxy+}"),
                  self.api.root.resource_for_path("/anthropic").add_resource("{proxy+}")]
        for resource in existing + greedy:
            status, body = routes.not_found(resource.path)
            method = resource.add_method(
                "ANY",
                apigw.MockIntegration(
                    request_templates={"application/json": json.dumps({"statusCode": status})},
                    integration_responses=[apigw.IntegrationResponse(
                        status_code=str(status), response_templates={"application/json": json.dumps(body)})],
                ),
                method_responses=[apigw.MethodResponse(status_code=str(status))],
                authorization_type=apigw.AuthorizationType.NONE,
            )
            acknowledge(method, "AwsSolutions-APIG4",
                        f"The catch-all ANY {resource.path} only answers 404 'no such route' from a MOCK "
                        "integration; it reaches no function and returns no data.")

    def _metered_body_validation(self) -> dict:
        """Method options that make API Gateway refuse a metered call whose body is not a JSON object with
        a "model" string (BAD_REQUEST_BODY, shaped by routes.GATEWAY_RESPONSES) before any Lambda runs."""
        validator = apigw.RequestValidator(
            self, "BodyValidator", rest_api=self.api,
            validate_request_body=True, validate_request_parameters=True)
        model = self.api.add_model(
            "MeteredRequest",
            content_type="application/json",
            description="A metered request: a JSON object with a model",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=METERED_BODY_SCHEMA["required"],
                properties={"model": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1)},
            ),
        )
        return {"request_validator": validator, "request_models": {"application/json": model}}

    def _execution_logs(self) -> None:
        """API Gateway creates its execution log group itself, with no retention; created here first, it
        gets one. (An API deployed before this group existed here already has it: delete it once.)"""
        self.execution_logs = logs.LogGroup(
            self, "ExecutionLogs", retention=LOG_RETENTION,
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{STAGE_NAME}")
        self.api.deployment_stage.node.add_dependency(self.execution_logs)

    def _acknowledge(self) -> None:
        acknowledge(self.api, "AwsSolutions-COG4",
                    "Callers are programs, not Cognito users: OpenAI/Anthropic SDKs authenticate with "
                    "API keys or service JWTs (Lambda REQUEST authorizer), agent tasks with SigV4 (AWS_IAM).")
        cloud_watch_role = self.api.node.find_child("CloudWatchRole")
        acknowledge(cloud_watch_role,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]",
                    "The account-level role API Gateway uses to write execution logs; the AWS-managed "
                    "policy is the documented one and grants CloudWatch Logs actions only.")
