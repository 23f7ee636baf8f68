"""`python -m tools.costing [--cdk-out cdk.out] [--set name=value ...]`: print what Tollgate costs to run.

One line per item (quantity, unit price, total), idle per month first, then per million metered requests;
the last two lines are `idle_usd_per_month=X` and `usd_per_million_requests=Y`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from decimal import Decimal
from pathlib import Path

from tools.costing import model, prices as price_file
from tools.costing.assumptions import Assumptions
from tools.costing.templates import Templates
from tools.costing.writes import measure, table_specs

CENT = Decimal("0.01")


def _money(value: Decimal) -> str:
    return f"${value.quantize(CENT):,}"


def _quantity(value: Decimal) -> str:
    return f"{value.normalize():f}" if value == value.to_integral() else f"{value:,.4f}".rstrip("0").rstrip(".")


def render(lines: list[model.Line]) -> list[str]:
    out = []
    for section in (model.IDLE, model.REQUEST):
        out.append(f"{section}:")
        for line in (x for x in lines if x.section == section):
            out.append(f"  {line.item:<92} {_quantity(line.quantity):>12} x ${line.price.usd:<13} "
                       f"({line.price.unit}) = {_money(line.total)}")
        out.append(f"  {'total ' + section:<92} {_money(model.total(lines, section)):>12}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.costing", description=__doc__)
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override an assumption")
    args = parser.parse_args(argv)

    assumptions = Assumptions().with_overrides(args.set)
    templates = Templates.from_cdk_out(args.cdk_out)
    prices = price_file.load()
    measurement = measure(templates, assumptions)
    lines = model.idle_lines(templates, prices, assumptions)
    lines += model.request_lines(templates, prices, assumptions, measurement, table_specs(templates))

    dates = sorted({p.as_of for p in prices.values()})
    print(f"Tollgate: what it costs to run, from the templates in {args.cdk_out} "
          f"({', '.join(sorted(templates.by_stack))})")
    print(f"Prices: AWS list prices, {assumptions.region}, no free tier ({price_file.PRICES_FILE.name}, read "
          f"{' to '.join(dict.fromkeys([dates[0], dates[-1]]))}; a source page per price)")
    print("Assumptions: " + ", ".join(f"{f.name}={getattr(assumptions, f.name)}" for f in dataclasses.fields(assumptions)))
    print(f"Measured: one warm metered request wrote {_summary(measurement)}")
    for line in render(lines):
        print(line)
    print(f"idle_usd_per_month={model.total(lines, model.IDLE).quantize(CENT)}")
    print(f"usd_per_million_requests={model.total(lines, model.REQUEST).quantize(CENT)}")
    return 0


def _summary(m) -> str:
    items = "; ".join(f"{w.table} {w.action} {w.size} B = {w.units} WRU" for w in m.writes)
    index = "; ".join(f"{i.table}.{i.index} {i.action} {i.size} B = {i.units} WRU" for i in m.index_writes)
    return (f"{m.write_units} WRU [{items}] + index writes [{index or 'none'}]; read {m.read_units} RRU; "
            f"calls {', '.join(m.calls)}; {m.log_bytes} log bytes; usage item {m.usage_item_bytes} B")


if __name__ == "__main__":
    sys.exit(main())
