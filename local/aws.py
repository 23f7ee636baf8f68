"""Emulated AWS (moto) with every emulated call serialised behind one lock.

moto's backends are plain Python objects: two threads running conditional writes on the same item
interleave, so a condition that DynamoDB evaluates atomically can be granted twice. Holding one lock
around each emulated call makes moto as atomic per request as the real services, so concurrency tests
exercise *our* conditions, not the emulator's races (DESIGN.md §3).

Three ways to run it:
- `serialised_mock_aws()`: in-process, for tests (boto3 calls are intercepted, no sockets).
- `MotoServer` / `start_server()`: a loopback HTTP endpoint in a thread of this process.
- `spawn_server()`: the same endpoint in a child process, so its state cannot be reset by a
  `mock_aws()` used elsewhere in this process (moto keeps one global set of backends per process).
"""
from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import threading
from typing import Any, Callable, Iterator

from local import moto_fixes
from local.serving import ServerThread

# Reentrant: a moto backend may itself make an emulated call while handling one.
EMULATOR_LOCK = threading.RLock()

LOOPBACK = "127.0.0.1"
_READY = "MOTO_READY "

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
                with EMULATOR_LOCK:
                    return original(self, request)

            _original_process_request = original
            BotocoreStubber.process_request = serialised  # type: ignore[method-assign]
        _patch_depth += 1


def _remove_stubber_lock() -> None:
    global _patch_depth, _original_process_request
    from moto.core.botocore_stubber import BotocoreStubber

    with _patch_guard:
        _patch_depth -= 1
        if _patch_depth == 0 and _original_process_request is not None:
            BotocoreStubber.process_request = _original_process_request  # type: ignore[method-assign]
            _original_process_request = None


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
    the app call, so the returned iterable is safe to send after the lock is released."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with EMULATOR_LOCK:
            return self.app(environ, start_response)


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
