"""Everything the in-process handlers write while a block runs: what Lambda would ship to CloudWatch Logs.

- stdout and stderr of the whole process (the handlers run on the emulator's threads, in this process):
  Powertools metrics (EMF JSON lines, printed), tracebacks;
- the Powertools logger's JSON lines (its handler keeps the stream it was created with, so that stream
  is swapped for the block);
- every other Python logger (boto3, httpx, the provider SDKs), at INFO, through a root handler: stricter
  than Lambda, whose root logger stays at WARNING.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from tollgate import metric_names

CAPTURE_LEVEL = logging.INFO


@dataclass
class Captured:
    stdout: io.StringIO = field(default_factory=io.StringIO)
    stderr: io.StringIO = field(default_factory=io.StringIO)
    logs: io.StringIO = field(default_factory=io.StringIO)

    @property
    def text(self) -> str:
        return "\n".join(s.getvalue() for s in (self.stdout, self.stderr, self.logs))

    def json_lines(self) -> list[dict]:
        out = []
        for line in self.text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    out.append(value)
        return out

    def emf(self) -> list[dict]:
        """EMF documents: JSON lines carrying CloudWatch metric directives."""
        return [d for d in self.json_lines() if "CloudWatchMetrics" in d.get("_aws", {})]

    def log_records(self) -> list[dict]:
        """Powertools log lines (JSON with level and message)."""
        return [d for d in self.json_lines() if "level" in d and "message" in d]


def emitted_metrics(documents: list[dict]) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric name, {dimension: value}) for every metric of every EMF document."""
    out = set()
    for doc in documents:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = frozenset((d, doc[d]) for d in dimension_set)
                for metric in directive["Metrics"]:
                    out.add((directive["Namespace"], metric["Name"], dims))
    return out


class _EverythingFormatter(logging.Formatter):
    """The whole record, extras included: a secret in any attribute must show."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in vars(record).items() if k != "exc_info"}, default=str)


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    import tollgate.observability  # noqa: F401 - creates the Powertools logger and its handler

    result = Captured()
    powertools = logging.getLogger(metric_names.SERVICE)
    swapped = [(h, h.setStream(result.logs)) for h in powertools.handlers if isinstance(h, logging.StreamHandler)]
    root = logging.getLogger()
    handler = logging.StreamHandler(result.logs)
    handler.setFormatter(_EverythingFormatter())
    handler.setLevel(CAPTURE_LEVEL)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(CAPTURE_LEVEL)
    try:
        with contextlib.redirect_stdout(result.stdout), contextlib.redirect_stderr(result.stderr):
            yield result
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for h, stream in swapped:
            h.setStream(stream)
