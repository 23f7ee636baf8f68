"""`tollgate invoice`: a month's chargeback per user and key (provider cost, markup, total).

The gateway computes every figure (GET /admin/invoice, tollgate.invoice, which states the rounding
rule); this command only lays them out. CSV rows are the JSON `lines`, column for column, so the two
formats always agree.
"""
from __future__ import annotations

import argparse
import csv
import io
import re

from tollgate_cli import parsing
from tollgate_cli.context import Context
from tollgate_cli.formatting import money, number, table

FORMATS = ("table", "csv", "json")


def _month(text: str) -> str:
    if not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", text):
        raise argparse.ArgumentTypeError(f"invalid month {text!r}: use YYYY-MM, e.g. 2026-11")
    return text


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("invoice", parents=[common], help="a month's chargeback per user and key",
                              description="A month's chargeback per user and key: requests, tokens, provider cost, "
                                          "markup and total. BYOK calls are listed with no provider cost.")
    p.add_argument("--month", required=True, type=_month, metavar="YYYY-MM")
    p.add_argument("--user", help="one user (default: every user with usage that month)")
    p.add_argument("--markup-pct", type=parsing.percent, metavar="PCT", help="platform markup in percent (default: 2)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.set_defaults(handler=show, parser=p)


def show(ctx: Context) -> None:
    a = ctx.args
    result = ctx.client().get("/admin/invoice", {"month": a.month, "user": a.user, "markup_pct": a.markup_pct})
    if ctx.json or a.format == "json":
        ctx.print_json(result)
    elif a.format == "csv":
        ctx.out.write(to_csv(result))
    else:
        _table(ctx, result)


def to_csv(invoice: dict) -> str:
    """The invoice's lines as CSV: a header row of the JSON line fields, then one row per line."""
    lines = invoice.get("lines") or []
    out = io.StringIO()
    if lines:
        writer = csv.DictWriter(out, fieldnames=list(lines[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(lines)
    return out.getvalue()


def _table(ctx: Context, invoice: dict) -> None:
    lines = invoice.get("lines") or []
    if not lines:
        ctx.print(f"No usage in {invoice.get('month')}.")
        return
    rows = [(r["user"], r["key"], "yes" if r["byok"] else "", number(r["requests"]), number(r["total_tokens"]),
             money(r["provider_cost_usd"]), money(r["markup_usd"]), money(r["total_usd"])) for r in lines]
    ctx.print(table(("USER", "KEY", "BYOK", "REQUESTS", "TOKENS", "PROVIDER COST", "MARKUP", "TOTAL"), rows,
                    right=(3, 4, 5, 6, 7)))
    t = invoice["totals"]
    ctx.print()
    ctx.print(f"{invoice['month']}, markup {invoice['markup_pct']}%: provider cost {money(t['provider_cost_usd'])}"
              f" + markup {money(t['markup_usd'])} = {money(t['total_usd'])}")
    ctx.print(f"Metered {money(t['metered_usd'])} (incl. BYOK value); budget spend {money(t['budget_spent_usd'])}.")
    ctx.print(f"Rounding: {invoice['rounding']}.")
