"""What a command handler gets: its parsed arguments, where to write, and a lazily built API client."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TextIO

from tollgate_cli import config
from tollgate_cli.client import DEFAULT_TIMEOUT_S, AdminClient
from tollgate_cli.errors import CliError
from tollgate_cli.formatting import print_json


@dataclass
class Context:
    args: argparse.Namespace
    out: TextIO
    environ: Mapping[str, str]
    cwd: Path
    err: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def client(self) -> AdminClient:
        cfg = config.resolve(endpoint_flag=getattr(self.args, "endpoint", None),
                             admin_key_flag=getattr(self.args, "admin_key", None),
                             environ=self.environ, cwd=self.cwd)
        return AdminClient(cfg.endpoint, cfg.require_admin_key(),
                           timeout=getattr(self.args, "timeout", None) or DEFAULT_TIMEOUT_S,
                           auth_hint=f"admin key from {cfg.admin_key_source}, endpoint {cfg.endpoint}",
                           key_source=cfg.admin_key_source or "the admin key")

    def user_client(self, needs: str) -> AdminClient:
        """A client acting as the calling user: their own key (--tollgate-key, else TOLLGATE_API_KEY), else the
        admin key. `needs` names the scope the key must hold, for the error hint."""
        own = (getattr(self.args, "api_key", None) or "").strip()
        source = "--tollgate-key"
        if not own and self.environ.get(config.API_KEY_ENV, "").strip():
            own, source = self.environ[config.API_KEY_ENV].strip(), config.API_KEY_ENV
        cfg = config.resolve(endpoint_flag=getattr(self.args, "endpoint", None),
                             admin_key_flag=getattr(self.args, "admin_key", None), environ=self.environ, cwd=self.cwd)
        if not own:
            if not cfg.admin_key:
                raise CliError(f"no API key: pass --tollgate-key or set {config.API_KEY_ENV} (your key, with the {needs} "
                               "scope)")
            return self.client()
        return AdminClient(cfg.endpoint, own, timeout=getattr(self.args, "timeout", None) or DEFAULT_TIMEOUT_S,
                           auth_hint=f"API key from {source} (it needs the {needs} scope), endpoint {cfg.endpoint}",
                           key_source=source)

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def warn(self, text: str) -> None:
        """Advice on standard error, apart from the command's output."""
        self.err.write(text + "\n")

    def print_json(self, data: Any) -> None:
        print_json(data, self.out)
