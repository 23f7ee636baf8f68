"""`tollgate models [MODEL] [--provider P]`: the models the gateway prices, each with its provider and the
deployments a request for it is tried on, in order (GET /v1/models, GET /v1/models/{id})."""
from __future__ import annotations

import argparse
from typing import Any

from tollgate_cli.client import path_param
from tollgate_cli.context import Context
from tollgate_cli.formatting import table


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("models", parents=[common], help="list the priced models and their deployments",
                              description="List the models the gateway prices: each one's provider and the "
                                          "deployments a request for it is tried on, in order (the first that "
                                          "answers is metered; the later ones are its fallbacks).")
    p.add_argument("model", nargs="?", help="show this model only (an id, alias or public name)")
    p.add_argument("--provider", help="only the models of this provider (openai, anthropic, bedrock)")
    p.set_defaults(handler=show, parser=p)


def show(ctx: Context) -> None:
    a = ctx.args
    if a.model:
        models = [ctx.client().get(f"/v1/models/{path_param(a.model)}")]
    else:
        models = ctx.client().get("/v1/models").get("data") or []
    if a.provider:
        models = [m for m in models if m.get("provider") == a.provider]
    if ctx.json:
        ctx.print_json(models if not a.model else models[0] if models else {})
        return
    if not models:
        ctx.print(f"No models of provider {a.provider}." if a.provider else "No models.")
        return
    ctx.print(table(("MODEL", "PROVIDER", "#", "DEPLOYMENT", "VIA", "PROVIDER'S MODEL ID", "REGION"),
                    [row for m in models for row in _rows(m)], right=(2,)))


def _rows(model: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One row per deployment, numbered in the order tried (each row names its model: `grep` finds them all)."""
    deployments = model.get("deployments") or [{}]
    return [(model.get("id"), model.get("provider"), i, d.get("name"), d.get("provider"), d.get("model"),
             d.get("region")) for i, d in enumerate(deployments, start=1)]
