"""`make bench`: hot-path cost of a metered request, each figure next to a baseline from the same run.

- DynamoDB calls per metered chat request with a warm key (target 2), next to the article's
  check-then-act metering (get budget, put usage, update budget) counted the same way.
- Gateway handler time per request, with AWS (moto server) and the provider (fake) on loopback, next to
  the same provider call made directly with the openai SDK, and to one DynamoDB GetItem round trip.
- Cold-start import time of the gateway and authorizer handler modules, next to
  `import boto3; boto3.client("dynamodb")`, each in a fresh interpreter.
- Streaming through the whole local stack (emulator, web adapter, gateway app): time to the first content
  token of a paced stream (30 chunks, 200 ms apart) with each SDK, next to the stream's total time.

Cold starts are measured as Lambda runs them: LAMBDA_TASK_ROOT is set (so the X-Ray SDK takes its Lambda
path) and tracing is on, as in production. Both sides of a pair import from bytecode: pip compiled the
site-packages the baseline imports when it installed them, so our own modules (lambdas/) are compiled
before measuring too; with PYTHONDONTWRITEBYTECODE set, the gateway would otherwise compile ~240 KB of
source at every import while boto3 does not (in Lambda both are compiled unless the code and the layer
ship bytecode). Each fresh interpreter is paired with one that runs the
baseline `import boto3; boto3.client("dynamodb")` right after it, and the ratio is the median of the
pairs' ratios, so a machine busy with other work slows both sides of a pair alike.

The last lines are `cold_import_ratio_gateway=R`, `cold_import_ratio_authorizer=R`,
`first_request_ratio_gateway_no_snapstart=R` (the first request in a fresh process, against the same
baseline), `first_request_ratio_gateway=R` (the same in a process as SnapStart restores it, as deployed: init
and the before-snapshot work done before the clock starts, the after-restore hook on it; tollgate.snapshot) and
`dynamodb_calls_per_request=N`, for the scripts that watch them.
"""
from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 60
COLD_RUNS = 7  # pairs per measured module (at least 5)
# The modules Lambda imports at a cold start, and their entry points. The gateway's is a constant so the
# measurement follows the handler when it moves (e.g. to an ASGI app under the Lambda Web Adapter).
GATEWAY_MODULE, GATEWAY_ENTRY = "handlers.gateway", "app"  # the ASGI app behind the Lambda Web Adapter
AUTHORIZER_MODULE = "handlers.authorizer"
BASELINE = 'import boto3; boto3.client("dynamodb")'
# What a Lambda process has in its environment and we do not: the X-Ray SDK and Powertools read these.
LAMBDA_ENV = {"LAMBDA_TASK_ROOT": str(ROOT / "lambdas"), "AWS_LAMBDA_FUNCTION_NAME": "bench",
              "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
              "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000"}


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


# A fresh interpreter: times the import of MODULE, then (with an event file) the first call of ENTRY. With
# "restored", it plays a SnapStart restore (tollgate.snapshot): the Web Adapter's before-snapshot call runs
# before the clock starts, like the rest of init; the after-restore call and the first request are timed.
_COLD_SCRIPT = """
import http.client, json, sys, time
t = time.perf_counter()
{import_line}
imported = time.perf_counter() - t
first = restore = None
if len(sys.argv) > 1:
    from local.lambda_context import LambdaContext
    from local import web_adapter
    from tollgate import snapshot
    event = json.load(open(sys.argv[1]))
    port = web_adapter.start()  # the app server is up before the first request, as after the adapter's readiness check

    def hook(path):
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("POST", path, body=b"")
        assert connection.getresponse().status == 204
        connection.close()

    restored = sys.argv[2:] == ["restored"]
    if restored:
        hook(snapshot.BEFORE_SNAPSHOT_PATH)
    t = time.perf_counter()
    if restored:
        hook(snapshot.AFTER_RESTORE_PATH)
        restore = time.perf_counter() - t
    response = web_adapter.invoke_buffered(event, LambdaContext(function_name="gateway"))
    first = time.perf_counter() - t
    assert response["statusCode"] == 200, response
import resource
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
print(json.dumps({{"import": imported, "first": first, "restore": restore, "peak_mb": peak_mb}}))
"""


def _run(import_line: str, env: dict[str, str], *args: str) -> dict:
    code = _COLD_SCRIPT.format(import_line=import_line)
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold(module: str, env: dict[str, str], event_file: str | None = None, entry: str = GATEWAY_ENTRY) -> dict:
    """Median over COLD_RUNS pairs: the module's import (and first request with `event_file`) in seconds,
    and each as a ratio to the baseline measured right after it in a fresh interpreter of its own. With
    `event_file`, also the first request of a process restored from a SnapStart snapshot ("restored", its
    after-restore hook included; "restore_hook": that hook alone), in a third interpreter right after the pair."""
    line = f"import {module} as _m; handler = getattr(_m, {entry!r}, None)"
    runs = []
    for _ in range(COLD_RUNS):
        measured = _run(line, env, *([event_file] if event_file else []))
        base = _run(BASELINE, env)["import"]  # right after the import it is paired with
        restored = _run(line, env, event_file, "restored") if event_file else {}
        runs.append({"import": measured["import"], "first": measured["first"], "base": base,
                     "peak_mb": measured["peak_mb"], "restored": restored.get("first"),
                     "restore_hook": restored.get("restore"), "restored_peak_mb": restored.get("peak_mb")})
    out = {k: statistics.median(r[k] for r in runs) for k in ("import", "base", "peak_mb")}
    out["import_ratio"] = statistics.median(r["import"] / r["base"] for r in runs)
    if event_file:
        for k in ("first", "restored", "restore_hook", "restored_peak_mb"):
            out[k] = statistics.median(r[k] for r in runs)
        out["first_ratio"] = statistics.median(r["first"] / r["base"] for r in runs)
        out["restored_ratio"] = statistics.median(r["restored"] / r["base"] for r in runs)
    return out


# A warm gateway process: serves every event file ROUNDS times, both wire formats, streamed and not.
_WARM_SCRIPT = """
import json, resource, sys
from local.lambda_context import LambdaContext
from local import web_adapter
import {module}
web_adapter.start()
for _ in range({rounds}):
    for name in sys.argv[1:]:
        response = web_adapter.invoke_buffered(json.load(open(name)), LambdaContext(function_name="gateway"))
        assert response["statusCode"] == 200, response
print(json.dumps({{"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
WARM_ROUNDS = 10


def warm_peak_mb(module: str, env: dict[str, str], event_files: list[str]) -> float:
    """Peak RSS (MB) of a fresh process that imported `module` and served each event WARM_ROUNDS times: what
    the gateway's memory size is set from (stacks/api_stack.py GATEWAY_MEMORY_MB)."""
    code = _WARM_SCRIPT.format(module=module, rounds=WARM_ROUNDS)
    out = subprocess.run([sys.executable, "-c", code, *event_files], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
                       "POWERTOOLS_LOG_LEVEL": "ERROR"})
    import boto3
    import openai

    from local.aws import MotoServer
    from local.fake_provider import FakeProvider
    from local.lambda_context import LambdaContext
    from local.tables import provision
    from tests.integration.world import proxy_event
    from tollgate import wiring
    from tollgate.auth import api_keys
    from tollgate.clock import utc_now
    from tollgate.schema import Env
    from tollgate.store.api_keys import ApiKeyStore

    aws = MotoServer()
    os.environ["AWS_ENDPOINT_URL"] = aws.start()
    fake = FakeProvider()
    fake_url = fake.start()
    env = provision(boto3.client, prefix="bench")
    env.update({Env.OPENAI_BASE_URL: f"{fake_url}/v1", Env.OPENAI_API_KEY: "sk-fake-platform",
                Env.ANTHROPIC_BASE_URL: fake_url, Env.ANTHROPIC_API_KEY: "sk-fake-platform", Env.BCRYPT_ROUNDS: "4",
                Env.DEFAULT_RPM: "100000", Env.LOOP_MAX_REPEATS: "100000",
                Env.LOOP_MAX_USD: "100000"})
    os.environ.update(env)
    wiring.reset()

    raw, record = api_keys.issue("bench", name="bench", scopes=("ai:complete",), now=utc_now(), rounds=4)
    ApiKeyStore(env["TOLLGATE_API_KEYS_TABLE"], boto3.client("dynamodb")).put(record)
    principal = wiring.authenticator().authenticate(raw)  # warm key: the authorizer's answer is cached

    from local import web_adapter

    calls: list[str] = []
    wiring.dynamodb().meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    body = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "benchmark"}]}

    def one(i: int) -> None:
        event = proxy_event("POST", "/v1/chat/completions", "/v1/chat/completions",
                            {**body, "messages": [{"role": "user", "content": f"benchmark {i}"}]},
                            principal, {}, None, {}, str(uuid.uuid4()))
        resp = web_adapter.invoke_buffered(event, LambdaContext(function_name="gateway"))
        assert resp["statusCode"] == 200, resp["body"]

    for i in range(5):  # warm up: SDK import, clients, connections
        one(i)
    calls.clear()
    gateway_times = []
    for i in range(REQUESTS):
        t = time.perf_counter()
        one(100 + i)
        gateway_times.append(time.perf_counter() - t)
    calls_per_request = len(calls) / REQUESTS

    # Baseline 1: the article's check-then-act metering, counted with the same hook.
    ddb = wiring.dynamodb()
    calls.clear()
    table = env["TOLLGATE_BUDGETS_TABLE"]
    ddb.get_item(TableName=table, Key={"pk": {"S": "BASE#u"}, "sk": {"S": "b"}})
    ddb.put_item(TableName=env["TOLLGATE_USAGE_TABLE"], Item={"pk": {"S": "u"}, "sk": {"S": str(uuid.uuid4())}})
    ddb.update_item(TableName=table, Key={"pk": {"S": "BASE#u"}, "sk": {"S": "b"}},
                    UpdateExpression="ADD spent :c", ExpressionAttributeValues={":c": {"N": "1"}})
    article_calls = len(calls)

    # Baseline 2: the same provider call without the gateway.
    direct = openai.OpenAI(base_url=f"{fake_url}/v1", api_key="sk-fake-platform", max_retries=0)
    direct_times = []
    for i in range(REQUESTS):
        t = time.perf_counter()
        direct.chat.completions.create(**{**body, "messages": [{"role": "user", "content": f"direct {i}"}]})
        direct_times.append(time.perf_counter() - t)

    # Baseline 3: one DynamoDB round trip on the same emulator, and one transaction of the reservation's
    # shape (moto copies each table a transaction touches, so its transactions cost far more than AWS's).
    ddb_times, tx_times = [], []
    for i in range(REQUESTS):
        t = time.perf_counter()
        ddb.get_item(TableName=table, Key={"pk": {"S": "BASE#u"}, "sk": {"S": "b"}})
        ddb_times.append(time.perf_counter() - t)
        items = [{"Update": {"TableName": table, "Key": {"pk": {"S": f"BASE#{n}"}, "sk": {"S": "b"}},
                             "UpdateExpression": "ADD spent :c", "ExpressionAttributeValues": {":c": {"N": "1"}}}}
                 for n in range(5)]
        items.append({"Put": {"TableName": env["TOLLGATE_USAGE_TABLE"],
                              "Item": {"pk": {"S": "u"}, "sk": {"S": f"tx{i}"}}}})
        t = time.perf_counter()
        ddb.transact_write_items(TransactItems=items)
        tx_times.append(time.perf_counter() - t)

    # Cold starts, against the same emulated AWS and fake provider: a fresh process per run, from bytecode.
    compileall.compile_dir(str(ROOT / "lambdas"), quiet=1)
    cold_env = {**os.environ, **LAMBDA_ENV, "PYTHONPATH": f"{ROOT}:{ROOT / 'lambdas'}"}
    cold_env.pop("POWERTOOLS_TRACE_DISABLED")
    messages = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": body["messages"]}
    shapes = [("/v1/chat/completions", body), ("/v1/chat/completions", {**body, "stream": True}),
              ("/v1/messages", messages), ("/v1/messages", {**messages, "stream": True})]
    files = []
    for path, payload in shapes:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(proxy_event("POST", path, path, payload, principal, {"anthropic-version": "2023-06-01"}, None,
                                  {}, str(uuid.uuid4())), f)
        files.append(f.name)
    try:
        gateway_cold = cold(GATEWAY_MODULE, cold_env, files[0])
        warm_mb = warm_peak_mb(GATEWAY_MODULE, cold_env, files)
    finally:
        for name in files:
            os.unlink(name)
    authorizer_cold = cold(AUTHORIZER_MODULE, cold_env)

    fake.stop()
    aws.stop()

    g, d, r, x = _median_ms(gateway_times), _median_ms(direct_times), _median_ms(ddb_times), _median_ms(tx_times)
    print(f"metered chat request, warm key ({REQUESTS} requests, medians)")
    print(f"  dynamodb calls per request        {calls_per_request:6.2f}   (article check-then-act: {article_calls})")
    print(f"  gateway handler time              {g:8.2f} ms")
    print(f"  same call, openai SDK direct      {d:8.2f} ms   gateway/direct = {g / d:.2f}x")
    print(f"  one DynamoDB GetItem (emulated)   {r:8.2f} ms")
    print(f"  one 6-item transaction (emulated) {x:8.2f} ms   gateway - direct - 2 transactions = {g - d - 2 * x:.2f} ms")
    g_cold, a_cold = gateway_cold, authorizer_cold
    print(f"cold starts (fresh interpreters as in Lambda, tracing on; median of {COLD_RUNS} pairs with the baseline)")
    print(f"  import {GATEWAY_MODULE:<27}{g_cold['import'] * 1000:8.1f} ms   ratio to baseline = {g_cold['import_ratio']:.2f}x")
    print(f"  its first request, no SnapStart   {g_cold['first'] * 1000:8.1f} ms   ratio to baseline = {g_cold['first_ratio']:.2f}x")
    print(f"  its first request after a SnapStart restore (after-restore hook {g_cold['restore_hook'] * 1000:.1f} ms "
          f"included) {g_cold['restored'] * 1000:8.1f} ms   ratio to baseline = {g_cold['restored_ratio']:.2f}x")
    print(f"  peak RSS after its first request  {g_cold['peak_mb']:8.1f} MB   (restored, SDKs loaded before the "
          f"snapshot: {g_cold['restored_peak_mb']:.1f} MB)")
    print(f"  peak RSS, warm ({WARM_ROUNDS}x chat+messages, streamed and not) {warm_mb:6.1f} MB   "
          f"(sets the gateway's memory size: stacks/api_stack.py)")
    print(f"  import {AUTHORIZER_MODULE:<27}{a_cold['import'] * 1000:8.1f} ms   ratio to baseline = {a_cold['import_ratio']:.2f}x")
    print(f"  baseline: {BASELINE:<24}{g_cold['base'] * 1000:8.1f} ms")
    print(f"cold_import_ratio_gateway={g_cold['import_ratio']:.2f}")
    print(f"cold_import_ratio_authorizer={a_cold['import_ratio']:.2f}")
    print(f"first_request_ratio_gateway_no_snapstart={g_cold['first_ratio']:.2f}")
    print(f"first_request_ratio_gateway={g_cold['restored_ratio']:.2f}")
    _streaming_time_to_first_token()
    print(f"dynamodb_calls_per_request={calls_per_request:g}")


def _streaming_time_to_first_token(runs: int = 3) -> None:
    import tempfile

    import anthropic
    import openai

    from local.dev import LocalStack

    prompt = [{"role": "user", "content": "[[fake:completion_tokens=30]] [[fake:stream_interval_ms=200]] bench"}]
    with LocalStack(use_fake=True, aws_in_subprocess=True, quiet=True) as stack:
        stack.start(port=0, state_dir=tempfile.mkdtemp())
        oai = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.admin_key, max_retries=0)
        ant = anthropic.Anthropic(base_url=stack.url, api_key=stack.admin_key, max_retries=0)
        oai.chat.completions.create(model="gpt-4o-mini", max_tokens=2, messages=prompt)  # warm up

        def openai_texts():
            for chunk in oai.chat.completions.create(model="gpt-4o-mini", max_tokens=64, stream=True, messages=prompt):
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk

        def anthropic_texts():
            with ant.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=prompt) as stream:
                yield from stream.text_stream

        print(f"streaming through the local stack, 30 chunks 200 ms apart (median of {runs})")
        for name, texts in (("openai SDK", openai_texts), ("anthropic SDK", anthropic_texts)):
            firsts, totals = [], []
            for _ in range(runs):
                started, first = time.perf_counter(), None
                for _ in texts():
                    first = first or time.perf_counter()
                firsts.append(first - started)
                totals.append(time.perf_counter() - started)
            f, t = _median_ms(firsts), _median_ms(totals)
            print(f"  {name:14} first token {f:8.1f} ms   total {t:8.1f} ms   first/total = {f / t:.3f}")


if __name__ == "__main__":
    main()
