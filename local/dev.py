"""`make dev`: the whole gateway on this machine, no AWS account needed (DESIGN.md §3).

    python -m local.dev [--port 8080] [--state-dir .tollgate] [--reset]

Starts emulated AWS (moto, serialised) on a free loopback port, creates the tables and resources from
tollgate.schema, starts the fake provider on the next port (per provider, unless OPENAI_API_KEY /
ANTHROPIC_API_KEY is set), stores a local admin key, and serves the API Gateway emulator running the real handlers
in-process. `LocalStack` is the same thing as an object, for the e2e tests.

`make dev` also keeps the tables across restarts (local.state: restored at start, saved every 10 s and
on stop; `--reset` starts clean) and runs the reservation sweeper on its deployed schedule.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from tollgate import scopes
from tollgate.auth import iam
from tollgate.schema import API_KEYS, Env
from tollgate.settings import Settings

from local import state, web_adapter
from local.aws import MotoServer, spawn_server
from local.emulator import ApiGatewayEmulator, IamCredential
from local.environments import EnvironmentPool
from local.lambda_context import LambdaContext
from local.tables import local_table_names, provision
from local.worker_runner import create_runs_queue, start_worker

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

# The one local AWS identity. Every local process uses it for moto (which accepts anything), and the
# emulator accepts its SigV4 signatures on /internal/v1 as the agent role's.
LOCAL_ACCESS_KEY_ID = "AKIATOLLGATELOCAL001"
LOCAL_SECRET_ACCESS_KEY = "tollgate-local-secret-not-a-real-key"
AGENT_ROLE = "tollgate-local-agent"
AGENT_CREDENTIAL = IamCredential(
    secret_access_key=LOCAL_SECRET_ACCESS_KEY,
    user_arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{AGENT_ROLE}/local",
    caller="AROATOLLGATELOCALAGENT:local",
    account_id=ACCOUNT_ID,
)

# What the gateway lets the local agent role do (tollgate.auth.iam maps role names to principals).
AGENT_PRINCIPAL = {"scopes": [scopes.COMPLETE, scopes.EMBED, scopes.ACT_AS], "user": "local-agent"}

# The sweeper's schedule, as stacks/api_stack.py SWEEP_EVERY (not imported: local code loads no CDK).
SWEEP_EVERY_S = 5 * 60

FAKE_PLATFORM_KEYS = {Env.OPENAI_API_KEY: "sk-fake-platform-openai",
                      Env.ANTHROPIC_API_KEY: "sk-fake-platform-anthropic"}

# Variables that would send boto3 somewhere other than the local emulator, or fail without a profile.
_SCRUBBED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


class LocalStack:
    """Emulated AWS + fake provider + API Gateway emulator, wired through environment variables.

    The handlers run in this process, so `start` sets os.environ and leaves it set (`stop`,
    `restore_env` put it back; `environment()` applies it for a block). `env` is the environment for
    subprocesses (CLI, workers): the same, plus TOLLGATE_ENDPOINT / TOLLGATE_ADMIN_KEY, without the
    fake platform keys.
    """

    def __init__(self, *, use_fake: bool | None = None, aws_in_subprocess: bool = False, quiet: bool = False,
                 prefix: str = "tollgate-local", fake_factory: Callable[[], Any] | None = None,
                 worker: bool = False, persist: bool = False, sweep_every_s: float | None = None,
                 fake_port: int = 0):
        """use_fake: True = always the fake provider (tests: never spend money), False = never,
        None = for each provider whose API key is not set in the environment. fake_port: the fake provider's
        port (0: any free one; make dev: fake_port_for(PORT), or any free one when that is taken). persist:
        restore the tables from the state directory at start and save them there (local.state).
        sweep_every_s: run the sweeper handler that often (None: never; make dev: SWEEP_EVERY_S)."""
        self.use_fake = use_fake
        self.aws_in_subprocess = aws_in_subprocess
        self.run_worker = worker  # the agent worker process (make dev runs one)
        self.worker: Any = None
        self.persist = persist
        self.sweep_every_s = sweep_every_s
        self.restored = 0  # items restored from the state directory at start
        self._housekeeping: threading.Thread | None = None
        self._stopping = threading.Event()
        self.quiet = quiet
        self.prefix = prefix
        self._fake_factory = fake_factory
        self.fake_port = fake_port
        self.url = ""
        self.admin_key = ""
        self.aws_endpoint = ""
        self.fake: Any = None
        self.emulator: ApiGatewayEmulator | None = None
        self.state_dir: Path | None = None
        self.env: dict[str, str] = {}
        self.providers: dict[str, str] = {}  # provider -> "fake" | "real"
        self._aws: Any = None
        self._runtime_env: dict[str, str | None] = {}  # what the stack sets (None: unsets)
        self._saved_env: dict[str, str | None] = {}  # what it replaced, while applied
        self._env_depth = 0  # nesting of environment() blocks

    def start(self, port: int = 0, state_dir: str | os.PathLike = ".tollgate") -> "LocalStack":
        try:
            self._start(port, Path(state_dir))
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, port: int, state_dir: Path) -> None:
        if self.aws_in_subprocess:
            self._aws = spawn_server()
        else:
            self._aws = MotoServer()
            self._aws.start()
        self.aws_endpoint = self._aws.endpoint_url
        self._apply_env(self._aws_env())

        import boto3

        @functools.cache
        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=self.aws_endpoint, region_name=REGION)

        self._apply_env(provision(client, self.prefix))
        self._apply_env(create_runs_queue(client("sqs"), self.prefix))
        self._apply_env(self._provider_env())

        self.state_dir = state_dir
        if self.persist:
            self.restored = state.restore(client("dynamodb"), local_table_names(self.prefix), state_dir)
            state.keep_jwt_secret(client("secretsmanager"), os.environ[Env.JWT_SECRET_ARN], state_dir)
        dynamodb, keys_table = client("dynamodb"), os.environ[API_KEYS.env_var]
        self.admin_key = ((self.restored and _kept_admin_key(dynamodb, keys_table, state_dir))
                          or _create_admin_key(dynamodb, keys_table))
        self.emulator = ApiGatewayEmulator(iam_credentials={LOCAL_ACCESS_KEY_ID: AGENT_CREDENTIAL},
                                           region=REGION, account_id=ACCOUNT_ID, quiet=self.quiet)
        web_adapter.start()  # the gateway function's app server (uvicorn), as the Lambda Web Adapter runs it
        self.url = self.emulator.start(port)
        _write_state(state_dir, self.admin_key, self.url)

        self.env = {k: v for k, v in os.environ.items() if not (k in FAKE_PLATFORM_KEYS and v == FAKE_PLATFORM_KEYS[k])}
        self.env.update(TOLLGATE_ENDPOINT=self.url, TOLLGATE_ADMIN_KEY=self.admin_key)
        _wait_healthy(self.url)
        if self.run_worker:
            self.worker = start_worker(self.env, self.url, (LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY),
                                       on_line=None if self.quiet else lambda line: print("[worker]", line,
                                                                                         file=sys.stderr))
        if self.persist or self.sweep_every_s:
            self._stopping.clear()
            self._housekeeping = threading.Thread(target=self._housekeep, name="local-housekeeping", daemon=True)
            self._housekeeping.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._housekeeping is not None:
            self._housekeeping.join(timeout=60)
            self._housekeeping = None
        for part in (self.worker, self.emulator):
            self._stop_part(part)
        if self.persist and self._aws is not None and self.state_dir is not None:
            self._save()  # after the last request, before emulated AWS goes
        for part in (self.fake, self._aws):
            self._stop_part(part)
        self.worker = self.emulator = self.fake = self._aws = None
        web_adapter.stop()
        self.restore_env()

    @staticmethod
    def _stop_part(part: Any) -> None:
        if part is not None:
            try:
                part.stop()
            except Exception as error:  # noqa: BLE001 - stop the rest regardless
                print(f"local stack: stopping {type(part).__name__} failed: {error}", file=sys.stderr)

    # -- housekeeping: snapshots, TTL expiry, the sweeper --

    def _housekeep(self) -> None:
        """Every SNAPSHOT_EVERY_S: save the tables (deleting TTL-expired items); every sweep_every_s: run
        the sweeper, as its schedule does in AWS. A failure is reported and the next round runs."""
        sweeper = EnvironmentPool("handlers.sweeper")
        next_sweep = time.monotonic() + (self.sweep_every_s or 0)
        while not self._stopping.wait(state.SNAPSHOT_EVERY_S):
            if self.persist:
                self._save()
            if self.sweep_every_s and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_every_s
                try:
                    sweeper.invoke({}, LambdaContext("tollgate-sweeper", REGION, ACCOUNT_ID))
                except Exception as error:  # noqa: BLE001
                    print(f"local stack: the sweeper failed: {error!r}", file=sys.stderr)

    def _save(self) -> None:
        import boto3

        try:
            dynamodb = boto3.client("dynamodb", endpoint_url=self.aws_endpoint, region_name=REGION)
            state.save(dynamodb, local_table_names(self.prefix), self.state_dir, time.time())  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - the next round tries again
            print(f"local stack: saving the tables failed: {error!r}", file=sys.stderr)

    def __enter__(self) -> "LocalStack":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- environment --

    def apply_env(self) -> None:
        """Point this process (the in-process handlers) at the stack. `start` leaves it applied."""
        self._apply_env(self._runtime_env)

    def restore_env(self) -> None:
        """Put back the environment from before `apply_env`, and drop clients built from ours."""
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        _reset_runtime_caches()

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """Apply the stack's environment for a block. Re-entrant: a nested block (a fixture inside a test
        that already applied it) leaves it applied, and only the outermost block puts the old one back."""
        self._env_depth += 1
        if self._env_depth == 1:
            self.apply_env()
        try:
            yield
        finally:
            self._env_depth -= 1
            if self._env_depth == 0:
                self.restore_env()

    def _apply_env(self, values: dict[str, str | None]) -> None:
        for name, value in list(values.items()):
            self._runtime_env[name] = value
            self._saved_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reset_runtime_caches()

    def _aws_env(self) -> dict[str, str | None]:
        env: dict[str, str | None] = {name: None for name in _SCRUBBED}
        env.update({name: None for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")})
        env.update({
            "AWS_ENDPOINT_URL": self.aws_endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
            Env.STAGE: "local",
            Env.POWERTOOLS_SERVICE_NAME: os.environ.get(Env.POWERTOOLS_SERVICE_NAME) or "tollgate",
            Env.POWERTOOLS_METRICS_NAMESPACE: os.environ.get(Env.POWERTOOLS_METRICS_NAMESPACE) or "Tollgate",
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
            iam.ENV: os.environ.get(iam.ENV) or json.dumps({AGENT_ROLE: AGENT_PRINCIPAL}),
        })
        return env

    def _provider_env(self) -> dict[str, str | None]:
        fake_for = {
            "openai": self.use_fake or (self.use_fake is None and not os.environ.get(Env.OPENAI_API_KEY)),
            "anthropic": self.use_fake or (self.use_fake is None and not os.environ.get(Env.ANTHROPIC_API_KEY)),
        }
        self.providers = {p: "fake" if fake else "real" for p, fake in fake_for.items()}
        if not any(fake_for.values()):
            return {}
        self.fake = self._make_fake()
        fake_url = start_preferring(self.fake.start, self.fake_port).rstrip("/")
        self.fake.billing.org_keys = set(FAKE_PLATFORM_KEYS.values())  # BYOK calls: not on the platform's bill
        env: dict[str, str | None] = {}
        if fake_for["openai"]:
            env[Env.OPENAI_BASE_URL] = f"{fake_url}/v1"
            env[Env.OPENAI_API_KEY] = FAKE_PLATFORM_KEYS[Env.OPENAI_API_KEY]
            env[Env.OPENAI_ADMIN_KEY] = "sk-admin-fake-openai"  # the fake's cost reports (tollgate reconcile)
        if fake_for["anthropic"]:
            env[Env.ANTHROPIC_BASE_URL] = fake_url
            env[Env.ANTHROPIC_API_KEY] = FAKE_PLATFORM_KEYS[Env.ANTHROPIC_API_KEY]
            env[Env.ANTHROPIC_ADMIN_KEY] = "sk-ant-admin-fake"
        env[Env.BEDROCK_ENDPOINT_URL] = fake_url  # boto3's bedrock-runtime -> the fake's Bedrock section
        return env

    def _make_fake(self) -> Any:
        if self._fake_factory is not None:
            return self._fake_factory()
        from local.fake_provider import FakeProvider

        return FakeProvider()


def _reset_runtime_caches() -> None:
    """Forget clients and settings built from an earlier environment: cached functions in the
    runtime packages (settings(), dynamo client(), ...) and boto3's default session."""
    import boto3

    boto3.DEFAULT_SESSION = None
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("tollgate", "handlers"):
            continue
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) == name and callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


def _create_admin_key(dynamodb: Any, table: str) -> str:
    from tollgate.auth.api_keys import issue
    from tollgate.clock import utc_now
    from tollgate.store.api_keys import ApiKeyStore

    raw, record = issue("admin", name="local-admin", scopes=tuple(scopes.ALL), now=utc_now(),
                        rounds=Settings.from_env().bcrypt_rounds)
    ApiKeyStore(table, dynamodb).put(record)
    return raw


def _kept_admin_key(dynamodb: Any, table: str, state_dir: Path) -> str | None:
    """The admin key of the last session, if its record came back with the restored tables."""
    key_file = state_dir / "admin-key"
    if not key_file.exists():
        return None
    raw = key_file.read_text().strip()
    item = dynamodb.get_item(TableName=table, Key={"keyId": {"S": raw[:12]}}).get("Item")
    return raw if item else None


def _write_state(state_dir: Path, admin_key: str, url: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    key_file = state_dir / "admin-key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(admin_key + "\n")
    os.chmod(key_file, 0o600)  # in case it existed with wider permissions
    (state_dir / "endpoint").write_text(url + "\n")


def fake_port_for(port: int) -> int:
    """The fake provider's port under `make dev PORT=port`: the next one (8080 -> 8081), so `$FAKE` stays the
    same from one run to the next; 0 (any free port) when the API's port is itself 0."""
    return port + 1 if port else 0


def start_preferring(start: Callable[..., str], port: int) -> str:
    """`start(port=port)`, or `start(port=0)` (any free port) when `port` is taken. Returns the URL it serves."""
    try:
        return start(port=port)
    except OSError:
        if not port:
            raise
        print(f"local stack: port {port} is taken; the fake provider listens on a free port instead", file=sys.stderr)
        return start(port=0)


def _wait_healthy(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
                last = response.status
        except Exception as error:  # noqa: BLE001 - keep polling until the deadline
            last = error
        time.sleep(0.1)
    raise RuntimeError(f"GET {url}/health did not answer 200 within {timeout_s}s (last: {last})")


TOLLGATE = ".venv/bin/tollgate"  # the CLI as `make dev` installs it; works as typed from the repository


def banner(stack: LocalStack) -> str:
    key_file = stack.state_dir / "admin-key" if stack.state_dir else "admin-key"
    providers = ", ".join(f"{p}: {kind}" for p, kind in stack.providers.items())
    chat = json.dumps({"model": "gpt-4o-mini", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "Say hello"}]})
    kept = (f"{stack.restored} items restored from {stack.state_dir}; saved every "
            f"{state.SNAPSHOT_EVERY_S:.0f} s and on stop (make dev-reset starts clean)" if stack.persist
            else "in memory only")
    fake = (f"\n  fake       {stack.fake.url}   (its /_fake/... controls: export FAKE={stack.fake.url})"
            if stack.fake is not None else "")
    return f"""
Tollgate local stack is up.
  endpoint   {stack.url}
  admin key  in {key_file}   (all scopes; it is local, but keep it out of git)
  providers  {providers}{fake}
  AWS        moto at {stack.aws_endpoint}
  state      {kept}

Try it (from the repository's directory):
  curl {stack.url}/v1/chat/completions \\
    -H "Authorization: Bearer $(cat {key_file})" -H 'content-type: application/json' \\
    -d '{chat}'

  from openai import OpenAI
  OpenAI(base_url="{stack.url}/v1", api_key=open("{key_file}").read().strip()) \\
    .chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])

  from anthropic import Anthropic
  Anthropic(base_url="{stack.url}", api_key=open("{key_file}").read().strip()) \\
    .messages.create(model="claude-haiku-4-5", max_tokens=50, messages=[{{"role": "user", "content": "hi"}}])

  {TOLLGATE} keys create --user alice      # finds this endpoint and admin key in {stack.state_dir}
  {TOLLGATE} usage --user alice

  # an agent run (the worker runs beside the gateway): see `{TOLLGATE} runs start --help`
  {TOLLGATE} runs start --agent feedback-analysis --input-file agents/examples/reviews.json --budget-usd 0.50

  (or `source .venv/bin/activate` once, then just `tollgate ...`)

Ctrl-C to stop.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.dev", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080,
                        help="API port on 127.0.0.1 (default 8080; the fake provider on the next one)")
    parser.add_argument("--state-dir", default=".tollgate", help="where the admin key and endpoint are written")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.add_argument("--no-worker", action="store_true", help="do not run the agent worker")
    parser.add_argument("--reset", action="store_true",
                        help="forget the tables kept in the state directory and start clean (make dev-reset)")
    args = parser.parse_args(argv)
    if args.reset:
        state.reset(Path(args.state_dir))

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    stack = LocalStack(quiet=args.quiet, worker=not args.no_worker, persist=True, sweep_every_s=SWEEP_EVERY_S,
                       fake_port=fake_port_for(args.port))
    try:
        stack.start(port=args.port, state_dir=args.state_dir)
    except OSError as error:
        print(f"Could not start the local stack: {error} (is port {args.port} in use? try make dev PORT=8081)",
              file=sys.stderr)
        return 1
    try:
        print(banner(stack), flush=True)
        stopping.wait()
        print("Stopping...", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
