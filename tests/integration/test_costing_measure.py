"""tools.costing.writes.measure: one metered request through the real gateway and ledger, on moto."""
from __future__ import annotations

import math

from tollgate import schema
from tools.costing.assumptions import Assumptions
from tools.costing.templates import Templates
from tools.costing.writes import measure


def _table(spec: schema.Table, projection: str = "ALL") -> dict:
    keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
    if spec.sort_key:
        keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
    props = {"KeySchema": keys, "GlobalSecondaryIndexes": [
        {"IndexName": i.name, "Projection": {"ProjectionType": projection},
         "KeySchema": [{"AttributeName": i.partition_key, "KeyType": "HASH"},
                       *([{"AttributeName": i.sort_key, "KeyType": "RANGE"}] if i.sort_key else [])]}
        for i in spec.indexes]}
    return {"Type": "AWS::DynamoDB::Table", "Properties": props}


def test_one_request_is_two_transactions_each_item_at_two_units_per_kb_and_the_reservation_passes_through_pending():
    templates = Templates({"Data": {"Resources": {f"{t.logical_id}ABCD": _table(t) for t in schema.TABLES}}})
    m = measure(templates, Assumptions())
    assert m.calls.count("TransactWriteItems") == 2
    assert m.writes and all(w.transactional for w in m.writes)
    assert all(w.units == 2 * math.ceil(w.size / 1024) for w in m.writes)
    pending = [(w.action, w.units) for w in m.index_writes if w.index == "pending"]
    assert pending == [("put", 1), ("delete", 1)]  # the reservation enters the sparse index and leaves it
    assert m.write_units == sum(w.units for w in m.writes) + len(m.index_writes)
    assert m.usage_item_bytes > 0 and m.log_bytes > 0 and m.metric_series > 0
