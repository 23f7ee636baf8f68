"""The gateway around a Lambda SnapStart snapshot: what is done before it, and what is undone after a restore.

With SnapStart, Lambda initialises the function once when a version is published, snapshots the memory and
disk of that environment, and starts later environments from copies of the snapshot
(docs.aws.amazon.com/lambda/latest/dg/snapstart.html). Whatever the snapshot holds is shared by every
environment restored from it: the state of `random`, credentials, open connections, anything read from the
clock (snapstart-uniqueness.html).

The gateway runs behind the Lambda Web Adapter in a process of its own, so the Python runtime's
`snapshot_restore_py` hooks never run in it. The adapter (v1.1.0, layer 30 and later) bridges the lifecycle
instead: it POSTs to the app's BEFORE_SNAPSHOT_PATH before the snapshot and to AFTER_RESTORE_PATH after a
restore, before any request, and answers 403 to any outside request for either path
(aws/aws-lambda-web-adapter docs/guide/src/features/snapstart.md; environment variables
AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH and AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH, set by stacks/web_adapter.py).
"""
from __future__ import annotations

import random
import sys

BEFORE_SNAPSHOT_PATH = "/snapstart/before"
AFTER_RESTORE_PATH = "/snapstart/after"
# A published version that is not invoked for 14 days becomes Inactive, and invoking it fails with
# SnapStartNotReadyException until Lambda has made it Active again (docs.aws.amazon.com/lambda/latest/dg/
# snapstart-troubleshooting.html): an unused gateway would answer its user's first calls with 5xx. A schedule
# (stacks/api_stack.py) invokes the version's alias with a non-HTTP event, which the Web Adapter POSTs to this
# path (AWS_LWA_PASS_THROUGH_PATH; docs/guide "Non-HTTP Event Triggers"); the app answers it without the
# ledger or a provider (handlers/gateway.py).
KEEP_ACTIVE_PATH = "/events"

_POWERTOOLS_PARAMETERS = "aws_lambda_powertools.utilities.parameters"


def before_snapshot() -> None:
    """The first request's one-off work that holds nothing secret or unique: every provider SDK and the
    resource modules a call loads (tollgate.providers: SdkAdapter.preload), the gateway routes' request schemas
    (pydantic builds their validators at import) and the gateway's collaborators (botocore reads its service models).
    No provider key is read and no connection is opened."""
    from tollgate import requests, routes, wiring

    for route in routes.ROUTES:
        if route.function == routes.GATEWAY_FUNCTION and route.body is not None:
            requests.schema(route.body)
    wiring.gateway()
    for provider in wiring.providers().values():
        preload = getattr(provider, "preload", None)  # Bedrock's adapter has no SDK of its own to load
        if preload is not None:
            preload()


def after_restore() -> None:
    """Make this environment its own: reseed `random` from the operating system (the ledger's and the escrow's
    shard picks must not repeat in every restored environment), forget every built collaborator with its
    clients and connections (tollgate.wiring.reset), the AWS credentials the default boto3 session holds and
    the secrets Powertools parameters caches (the platform keys), then build the gateway's collaborators again
    with credentials resolved now. botocore's service models, read from files, are kept."""
    from tollgate import wiring

    random.seed()  # from os.urandom
    wiring.reset()
    _fresh_aws_session()
    parameters = sys.modules.get(_POWERTOOLS_PARAMETERS)
    if parameters is not None:
        parameters.clear_caches()
    wiring.gateway()


def _fresh_aws_session() -> None:
    """A new default boto3 session (its credentials are resolved again) that shares the old one's data loader,
    so the service models already read are not read again."""
    import boto3
    import botocore.session

    fresh = botocore.session.get_session()
    if boto3.DEFAULT_SESSION is not None:
        fresh.register_component("data_loader", boto3.DEFAULT_SESSION._session.get_component("data_loader"))
    boto3.setup_default_session(botocore_session=fresh)
