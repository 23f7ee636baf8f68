"""Sweeper Lambda (scheduled): releases reservations whose request never settled (a Lambda that died
mid-call), so a crash never keeps budget locked."""
from __future__ import annotations

from tollgate import metric_names, wiring
from tollgate.clock import utc_now
from tollgate.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: object) -> dict:
    ledger = wiring.ledger()
    expired = ledger.expired_reservations(utc_now())
    released = sum(1 for r in expired if ledger.release(r))
    metrics.add_metric(name=metric_names.RESERVATIONS_RELEASED, unit="Count", value=released)
    logger.info("sweep done", extra={"expired": len(expired), "released": released})
    return {"expired": len(expired), "released": released}
