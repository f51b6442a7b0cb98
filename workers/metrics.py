"""Prometheus metrics of the workers (``--metrics-port`` serves them at ``/metrics``).

``worker`` is the worker kind (optimizer ...), ``stage`` the actor's stage.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

MESSAGES_PROCESSED = Counter(
    "industriverse_messages_processed", "Messages handled and acknowledged", ["worker", "stage"]
)
MESSAGES_FAILED = Counter(
    "industriverse_messages_failed", "Messages dead-lettered (the strike failed)", ["worker", "stage"]
)
MESSAGES_RETRIED = Counter(
    "industriverse_messages_retried", "Messages republished for a retry after a retryable error", ["worker", "stage"]
)
MESSAGES_REPLAYED = Counter(
    "industriverse_messages_replayed", "Redelivered messages answered from the stored stage result", ["worker", "stage"]
)
HANDLING_SECONDS = Histogram(
    "industriverse_message_handling_seconds",
    "Wall time of handling one message (decode, idempotency check, handler, store), seconds",
    ["worker", "stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT = Gauge("industriverse_messages_in_flight", "Messages being handled right now", ["worker"])


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread."""
    start_http_server(port, addr=addr)
