"""`tollgate reconcile`: compare one day's estimates with what each provider billed (POST /admin/reconcile).

A provider without data for the day shows as "missing", never as zero drift (tollgate.reconcile).
"""
from __future__ import annotations

import argparse
from decimal import ROUND_HALF_EVEN, Decimal

from tollgate_cli import parsing
from tollgate_cli.context import Context
from tollgate_cli.formatting import money, table


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("reconcile", parents=[common], help="compare a day's estimates with the providers' bills",
                              description="Compare one UTC day's estimates with what each provider billed, per "
                                          "provider and model; write the actual figures to users' daily totals.")
    p.add_argument("--day", type=parsing.day, metavar="YYYY-MM-DD", help="the UTC day (default: yesterday)")
    p.set_defaults(handler=run, parser=p)


def _pct(value: str | None) -> str | None:
    """A drift percent as the API reports it (text, 2 decimals) shown signed, e.g. "-18.92%"; Decimal, not
    float, so the figure shown is the figure reported."""
    return None if value is None else f"{Decimal(value).quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):+}%"


def run(ctx: Context) -> None:
    result = ctx.client().post("/admin/reconcile", {"day": ctx.args.day} if ctx.args.day else {})
    if ctx.json:
        ctx.print_json(result)
        return
    rows = []
    for p in result.get("providers") or []:
        rows.append((p["provider"], "(all)", money(p["estimated_usd"]), money(p["actual_usd"], none="missing"),
                     _pct(p["drift_pct"]), p["status"] + (f" ({p['reason']})" if p.get("reason") else "")))
        rows += [(p["provider"], m["model"], money(m["estimated_usd"]), money(m["actual_usd"], none="missing"),
                  _pct(m["drift_pct"]), m["status"]) for m in p.get("models") or []]
    ctx.print(f"Reconciliation of {result.get('day')} (alarm above {result.get('threshold_pct')}% drift)")
    if not rows:
        ctx.print("No usage and no provider configured.")
        return
    ctx.print(table(("PROVIDER", "MODEL", "ESTIMATED", "BILLED", "DRIFT", "STATUS"), rows, right=(2, 3, 4)))
