"""`python -m agents`: the worker process (the container's command).

SIGTERM (ECS stopping the task) and SIGINT ask the worker to stop: it takes no new run, hands back the
one in hand at its next step boundary, and exits 0. Logs are JSON lines on stdout (awslogs driver).
"""
from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in out})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def build_worker(config: Any) -> Any:
    import boto3

    from agents.gateway import SigV4Transport
    from agents.worker import Worker

    session = boto3.Session(region_name=config.region)
    transport = SigV4Transport(config.gateway_url, session.get_credentials(), config.region)
    return Worker(config, sqs=session.client("sqs"), dynamodb=session.client("dynamodb"), transport=transport)


def main() -> int:
    from agents.config import ConfigError, WorkerConfig

    try:
        config = WorkerConfig.from_env()
    except ConfigError as e:
        print(f"agents worker: {e}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=config.log_level, handlers=[handler], force=True)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    worker = build_worker(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    worker.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
