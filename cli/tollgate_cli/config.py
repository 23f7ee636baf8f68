"""Where the gateway is and which admin key to use.

Each setting is taken from the first of: the command-line flag, the environment variable, the local
stack's state directory (`.tollgate/` in the current directory or its nearest parent that has one,
written by `make dev`), and, for the endpoint only, the local stack's default address.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from tollgate_cli.errors import CliError, UsageError
from tollgate_cli.redaction import check_url

ENDPOINT_ENV = "TOLLGATE_ENDPOINT"
API_KEY_ENV = "TOLLGATE_API_KEY"  # a user's own key, for commands that act as that user
ADMIN_KEY_ENV = "TOLLGATE_ADMIN_KEY"
STATE_DIR = ".tollgate"
ENDPOINT_FILE = "endpoint"
ADMIN_KEY_FILE = "admin-key"
LOCAL_ENDPOINT = "http://127.0.0.1:8080"

NO_ADMIN_KEY = (f"no admin key: pass --admin-key, set {ADMIN_KEY_ENV}, or start the local stack with "
                f"`make dev` (it writes {STATE_DIR}/{ADMIN_KEY_FILE})")


@dataclass(frozen=True)
class Config:
    endpoint: str
    endpoint_source: str  # where the endpoint came from, for messages
    admin_key: str | None = field(default=None, repr=False)  # never printed
    admin_key_source: str | None = None

    def require_admin_key(self) -> str:
        if not self.admin_key:
            raise CliError(NO_ADMIN_KEY)
        return self.admin_key


def find_state_dir(start: Path) -> Path | None:
    """The nearest `.tollgate/` directory in `start` or one of its parents."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / STATE_DIR
        if candidate.is_dir():
            return candidate
    return None


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None
    return text or None


def normalise_endpoint(endpoint: str, source: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"invalid endpoint {endpoint!r} (from {source}): expected http(s)://host[:port][/stage]")
    return check_url(endpoint, source)


def resolve(*, endpoint_flag: str | None, admin_key_flag: str | None, environ: Mapping[str, str] = os.environ,
            cwd: Path | None = None) -> Config:
    state = find_state_dir(cwd or Path.cwd())

    if endpoint_flag:
        endpoint, endpoint_source = endpoint_flag, "--endpoint"
    elif environ.get(ENDPOINT_ENV, "").strip():
        endpoint, endpoint_source = environ[ENDPOINT_ENV], ENDPOINT_ENV
    elif state and (from_file := _read(state / ENDPOINT_FILE)):
        endpoint, endpoint_source = from_file, str(state / ENDPOINT_FILE)
    else:
        endpoint, endpoint_source = LOCAL_ENDPOINT, "the local stack's default"

    admin_key: str | None
    if admin_key_flag:
        admin_key, key_source = admin_key_flag.strip(), "--admin-key"
    elif environ.get(ADMIN_KEY_ENV, "").strip():
        admin_key, key_source = environ[ADMIN_KEY_ENV].strip(), ADMIN_KEY_ENV
    elif state and is_loopback(endpoint) and (from_file := _read(state / ADMIN_KEY_FILE)):
        # The local stack's key goes only to a local endpoint, never to a deployed one.
        admin_key, key_source = from_file, str(state / ADMIN_KEY_FILE)
    else:
        admin_key, key_source = None, None

    return Config(endpoint=normalise_endpoint(endpoint, endpoint_source), endpoint_source=endpoint_source,
                  admin_key=admin_key, admin_key_source=key_source)


def is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint.strip()).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")
