"""InfluxDB historian with a durable SQLite outbox (see README.md for the schema and behaviour)."""

from adapters.influx.historian import HistorianMetrics, InfluxHistorian, SenderParams, Verdict, verdict
from adapters.influx.lineproto import SAMPLE_MEASUREMENT, LineError, Point, SampleEncoder, point_line
from adapters.influx.outbox import Batch, Outbox, OutboxParams, OutboxStats
from adapters.influx.transport import (
    InfluxClientTransport,
    InfluxParams,
    WriteResponse,
    WriteTransport,
    parse_retry_after,
)

__all__ = [
    "SAMPLE_MEASUREMENT",
    "Batch",
    "HistorianMetrics",
    "InfluxClientTransport",
    "InfluxHistorian",
    "InfluxParams",
    "LineError",
    "Outbox",
    "OutboxParams",
    "OutboxStats",
    "Point",
    "SampleEncoder",
    "SenderParams",
    "Verdict",
    "WriteResponse",
    "WriteTransport",
    "parse_retry_after",
    "point_line",
    "verdict",
]
