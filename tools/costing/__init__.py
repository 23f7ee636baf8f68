"""`make cost`: what Tollgate costs to run, computed from the CloudFormation templates `make synth` writes.

- prices.py     unit prices (prices.json: us-east-1 list prices, each with an as-of date and a source page)
- templates.py  the synthesised templates (cdk.out/manifest.json), and queries over their resources
- assumptions.py the stated assumptions: region, traffic, request shape, provider wait time
- writes.py     DynamoDB write and read units of one metered request, measured through the real gateway
                and ledger against moto, with index writes taken from the templates' index projections
- model.py      the line items: idle per month, and per million metered requests
- __main__.py   prints one line per item, then `idle_usd_per_month=X` and `usd_per_million_requests=Y`

Money is Decimal throughout; totals are rounded to cents only when printed.
"""
