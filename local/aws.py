"""Emulated AWS (moto) with every emulated call serialised behind one lock.

moto's backends are plain Python objects: two threads running conditional writes on the same item
interleave, so a condition that DynamoDB evaluates atomically can be granted twice. Holding one lock
around each emulated call makes moto as atomic per request as the real services, so concurrency tests
exercise *our* conditions, not the emulator's races (DESIGN.md §3).

The lock is for the atomicity of each call, not for waiting: an SQS long poll (`ReceiveMessage` with
`WaitTimeSeconds` > 0, what the agent worker sends in a loop) would otherwise hold it for its whole
wait and every other emulated call would queue behind it. A long poll is therefore run as a series of
non-waiting receives, each holding the lock for its own few milliseconds, with the lock released
in between (see `_long_poll`); a send to any queue wakes the waiting polls at once.

Three ways to run it:
- `serialised_mock_aws()`: in-process, for tests (boto3 calls are intercepted, no sockets).
- `MotoServer` / `start_server()`: a loopback HTTP endpoint in a thread of this process.
- `spawn_server()`: the same endpoint in a child process, so its state cannot be reset by a
  `mock_aws()` used elsewhere in this process (moto keeps one global set of backends per process).
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlencode

from local import moto_fixes
from local.serving import ServerThread

# Reentrant: a moto backend may itself make an emulated call while handling one.
EMULATOR_LOCK = threading.RLock()

LOOPBACK = "127.0.0.1"
_READY = "MOTO_READY "

# Between the non-waiting receives of a long poll: how long to wait for a send before looking again
# (messages also become visible without a send, when their visibility timeout ends).
LONG_POLL_RECHECK_S = 0.2
_queue_sent = threading.Condition()  # notified after every SQS call other than a receive

_patch_guard = threading.Lock()
_patch_depth = 0
_original_process_request: Callable[..., Any] | None = None


def _install_stubber_lock() -> None:
    # BotocoreStubber.__call__ (botocore clients) and process_prepared_request (`requests` via the
    # `responses` library) both enter through process_request, so the lock goes there.
    global _patch_depth, _original_process_request
    from moto.core.botocore_stubber import BotocoreStubber

    moto_fixes.apply()
    with _patch_guard:
        if _patch_depth == 0:
            original = BotocoreStubber.process_request

            @functools.wraps(original)
            def serialised(self: Any, request: Any) -> Any:
                body = request.body or b""
                call = _SqsCall(request.headers.get, body if isinstance(body, bytes) else body.encode())
                if call.wait_s:
                    request.body = call.without_wait()
                    request.headers["Content-Length"] = str(len(request.body))

                    def receive() -> tuple[Any, bytes]:
                        with EMULATOR_LOCK:
                            answer = original(self, request)
                        return answer, _stubbed_body(answer)

                    return _long_poll(receive, call.wait_s)[0]
                with EMULATOR_LOCK:
                    answer = original(self, request)
                _notify_if_sent(call)
                return answer

            _original_process_request = original
            BotocoreStubber.process_request = serialised  # type: ignore[method-assign]
        _patch_depth += 1


def _stubbed_body(answer: Any) -> bytes:
    """The body of what BotocoreStubber.process_request returns: (status, headers, body) or None."""
    if isinstance(answer, tuple) and len(answer) == 3:
        body = answer[2]
        return body if isinstance(body, bytes) else str(body).encode()
    return b""


def _remove_stubber_lock() -> None:
    global _patch_depth, _original_process_request
    from moto.core.botocore_stubber import BotocoreStubber

    with _patch_guard:
        _patch_depth -= 1
        if _patch_depth == 0 and _original_process_request is not None:
            BotocoreStubber.process_request = _original_process_request  # type: ignore[method-assign]
            _original_process_request = None


class _SqsCall:
    """An SQS request as moto receives it, in either of SQS's wire protocols: JSON (`X-Amz-Target:
    AmazonSQS.ReceiveMessage`, what current botocore sends) or query (`Action=ReceiveMessage`)."""

    def __init__(self, headers: Callable[[str], str | bytes | None], body: bytes):
        def header(name: str) -> str:
            value = headers(name) or ""
            return value.decode("latin-1") if isinstance(value, bytes) else value

        target = header("X-Amz-Target")
        self.is_json = target.startswith("AmazonSQS.")
        self.fields: dict[str, Any] = {}
        if self.is_json:
            self.action = target.removeprefix("AmazonSQS.")
            with contextlib.suppress(ValueError):
                self.fields = json.loads(body or b"{}")
        elif "/sqs/aws4_request" in header("Authorization"):
            self.fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            self.action = str(self.fields.get("Action", ""))
        else:
            self.action = ""

    @property
    def is_sqs(self) -> bool:
        return bool(self.action)

    @property
    def wait_s(self) -> float:
        """WaitTimeSeconds of a ReceiveMessage, 0 for anything else."""
        if self.action != "ReceiveMessage" or not isinstance(self.fields, dict):
            return 0.0
        try:
            return max(0.0, float(self.fields.get("WaitTimeSeconds") or 0))
        except (TypeError, ValueError):
            return 0.0

    def without_wait(self) -> bytes:
        """The same receive with WaitTimeSeconds 0: it answers at once, with or without messages."""
        fields = {**self.fields, "WaitTimeSeconds": 0 if self.is_json else "0"}
        return json.dumps(fields).encode() if self.is_json else urlencode(fields).encode()


def _has_messages(body: bytes) -> bool:
    """Whether a ReceiveMessage answer (JSON or XML) carries a message."""
    try:
        return bool(json.loads(body).get("Messages"))
    except (ValueError, AttributeError):
        return b"<Message>" in body


def _long_poll(receive: Callable[[], tuple[Any, bytes]], wait_s: float) -> tuple[Any, bytes]:
    """SQS long-poll semantics without holding EMULATOR_LOCK while waiting: `receive()` runs one
    non-waiting receive (taking the lock itself) and returns (answer, body). Repeated until a message
    arrives or `wait_s` seconds have passed; between tries this thread sleeps on `_queue_sent`."""
    deadline = time.monotonic() + wait_s
    while True:
        answer, body = receive()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or _has_messages(body):
            return answer, body
        with _queue_sent:
            _queue_sent.wait(min(remaining, LONG_POLL_RECHECK_S))


def _notify_if_sent(call: _SqsCall) -> None:
    if call.is_sqs and call.action != "ReceiveMessage":
        with _queue_sent:
            _queue_sent.notify_all()


@contextlib.contextmanager
def serialised_mock_aws() -> Iterator[None]:
    """moto's `mock_aws()`, with each emulated call holding EMULATOR_LOCK."""
    from moto import mock_aws

    _install_stubber_lock()
    try:
        with mock_aws():
            yield
    finally:
        _remove_stubber_lock()


class _SerialisedApp:
    """WSGI middleware: one emulated request at a time. moto builds the whole response body inside
    the app call, so the returned iterable is safe to send after the lock is released. A long poll
    runs as non-waiting receives (`_long_poll`)."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        call = _SqsCall(lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")), body)
        if not call.wait_s:
            with EMULATOR_LOCK:
                answer = self.app(environ, start_response)
            _notify_if_sent(call)
            return answer

        quick = call.without_wait()

        def receive() -> tuple[Any, bytes]:
            started: list[Any] = []
            attempt = {**environ, "wsgi.input": io.BytesIO(quick), "CONTENT_LENGTH": str(len(quick))}
            with EMULATOR_LOCK:
                chunks = b"".join(self.app(attempt, lambda status, headers, exc_info=None: started.append(
                    (status, headers))))
            return started[-1], chunks

        (status, headers), chunks = _long_poll(receive, call.wait_s)
        start_response(status, headers)
        return [chunks]


class MotoServer:
    """moto's server app on loopback, in a daemon thread of this process."""

    def __init__(self, host: str = LOOPBACK, port: int = 0):
        self.host = host
        self.port = port
        self._serving: ServerThread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            disable_nagle_algorithm = True  # small writes must not wait for delayed ACKs
            def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per AWS call is noise
                pass

        moto_fixes.apply()
        app = _SerialisedApp(DomainDispatcherApplication(create_backend_app))
        server = make_server(self.host, self.port, app, threaded=True, request_handler=QuietHandler)
        self._serving = ServerThread(server, "moto-server")
        self.port = self._serving.port
        return self.endpoint_url

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None


def start_server(host: str = LOOPBACK, port: int = 0) -> str:
    """Start a serialised moto server for the life of this process; returns its endpoint URL."""
    return MotoServer(host, port).start()


class SpawnedMotoServer:
    """A serialised moto server in a child process (see `spawn_server`)."""

    def __init__(self, process: subprocess.Popen[str], endpoint_url: str):
        self.process = process
        self.endpoint_url = endpoint_url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()


def spawn_server(host: str = LOOPBACK, port: int = 0, timeout_s: float = 60) -> SpawnedMotoServer:
    """Run `python -m local.aws` and wait until it listens. The child exits when our end of its
    stdin closes, so it does not outlive this process even if we die without calling stop()."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "local.aws", "--host", host, "--port", str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root, env=env,
    )
    result: list[str] = []

    def read_ready_line() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(_READY):
                result.append(line[len(_READY):].strip())
                return

    reader = threading.Thread(target=read_ready_line, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not result:
        process.kill()
        process.wait()
        raise RuntimeError(f"moto server did not start within {timeout_s}s (exit code {process.poll()})")
    return SpawnedMotoServer(process, result[0])


def _serve(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serialised moto server on loopback.")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = MotoServer(args.host, args.port)
    print(_READY + server.start(), flush=True)
    sys.stdin.read()  # returns when the parent closes the pipe or dies
    server.stop()


if __name__ == "__main__":
    _serve()
