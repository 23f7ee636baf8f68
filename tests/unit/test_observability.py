"""tollgate.observability.LazyTracer: no X-Ray SDK at import; traced in Lambda, patching only what we call."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

_SCRIPT = """
import json, sys
import handlers.gateway, handlers.authorizer
imported = "aws_xray_sdk" in sys.modules
from tollgate.observability import tracer
calls = []

@tracer.capture_lambda_handler(capture_response=False)
def handler(event, context):
    calls.append(event)
    return {"ok": True}

class Context:
    function_name, memory_limit_in_mb, aws_request_id = "f", 128, "r"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"

out = [handler({"n": 1}, Context()), handler({"n": 2}, Context())]
patched = []
if "aws_xray_sdk.core.patcher" in sys.modules:
    patched = sorted(sys.modules["aws_xray_sdk.core.patcher"]._PATCHED_MODULES)
print(json.dumps({"xray_at_import": imported, "xray_after": "aws_xray_sdk" in sys.modules, "patched": patched,
                  "calls": len(calls), "out": out, "built": tracer._tracer is not None}))
"""


def _run(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED")}
    base.update({"PYTHONPATH": f"{ROOT}:{ROOT / 'lambdas'}", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000", **env})
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=base, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_handlers_does_not_import_the_xray_sdk():
    result = _run(LAMBDA_TASK_ROOT=str(ROOT / "lambdas"), _X_AMZN_TRACE_ID=TRACE_HEADER)
    assert result["xray_at_import"] is False


def test_in_lambda_the_first_invocation_builds_the_tracer_and_patches_only_botocore():
    result = _run(LAMBDA_TASK_ROOT=str(ROOT / "lambdas"), _X_AMZN_TRACE_ID=TRACE_HEADER)
    assert result["built"] is True and result["xray_after"] is True
    assert result["patched"] == ["botocore"]
    assert result["calls"] == 2 and result["out"] == [{"ok": True}, {"ok": True}]


def test_outside_lambda_or_disabled_the_handler_runs_untraced_and_the_sdk_is_never_imported():
    for env in ({}, {"LAMBDA_TASK_ROOT": str(ROOT / "lambdas"), "POWERTOOLS_TRACE_DISABLED": "true"}):
        result = _run(**env)
        assert result["calls"] == 2 and result["built"] is False and result["xray_after"] is False
