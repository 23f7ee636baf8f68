"""The AWS Lambda Web Adapter (LWA) in front of the gateway function: the public layer, the handler script and
the environment that make the Python gateway answer through Lambda response streaming.

Why an adapter: Lambda's managed Python runtime has no response streaming (only the Node.js managed runtimes
stream; docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html). LWA (awslabs/
aws-lambda-web-adapter, README "Zip Packages", v1.0.0-rc1) is an extension that runs the function's web
server and forwards each API Gateway event to it as an HTTP request, with the REST request context in the
`x-amzn-request-context` header, and in `response_stream` mode streams the answer back (lambda_http's
run_with_streaming_response: the metadata prelude, then the body as written). See docs/design-decisions.md.

SnapStart: the adapter runs the app in a process of its own, so the Python runtime's hooks never run in it; from
v1.1.0 (layer 30, the first layer published for it: aws/aws-lambda-web-adapter#871) the adapter POSTs to two
paths of the app around the snapshot (docs/guide/src/features/snapstart.md) and answers 403 to any outside
request for them. The app's side is tollgate.snapshot.
"""
from __future__ import annotations

from aws_cdk import Aws
from tollgate import snapshot

# Published by AWS in every commercial region (docs/guide "Zip Packages": LambdaAdapterLayerArm64:30, v1.1.0).
LAYER_ACCOUNT = "753240598075"
LAYER_NAME = "LambdaAdapterLayerArm64"  # the functions are arm64 (stacks/functions.py ARCHITECTURE)
LAYER_VERSION = 30

# The handler is the script LWA's /opt/bootstrap execs ("${LAMBDA_TASK_ROOT}/${_HANDLER}"), relative to the
# function code (lambdas/).
HANDLER = "handlers/gateway.sh"
APP_PORT = 8080
READINESS_PATH = "/health"  # the gateway app answers it without authentication

ENVIRONMENT = {
    "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
    "AWS_LWA_INVOKE_MODE": "response_stream",
    "AWS_LWA_PORT": str(APP_PORT),
    "AWS_LWA_READINESS_CHECK_PATH": READINESS_PATH,
    "AWS_LWA_READINESS_CHECK_HEALTHY_STATUS": "200",
    # The app runs outside the Python runtime's handler, so no X-Ray segment is open in it for the SDK's
    # subsegments to join (Powertools would patch boto3 and log a missing context on every call). The
    # function's active tracing still records each invocation.
    "POWERTOOLS_TRACE_DISABLED": "true",
    # SnapStart's lifecycle, bridged to the app (tollgate.snapshot).
    "AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH": snapshot.BEFORE_SNAPSHOT_PATH,
    "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH": snapshot.AFTER_RESTORE_PATH,
    # Non-HTTP events (the keep-active schedule's) are POSTed here.
    "AWS_LWA_PASS_THROUGH_PATH": snapshot.KEEP_ACTIVE_PATH,
}


def layer_arn() -> str:
    return f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{LAYER_ACCOUNT}:layer:{LAYER_NAME}:{LAYER_VERSION}"
