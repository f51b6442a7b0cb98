"""Worker processes: ``industriverse worker optimizer|simulator|shield|deployer|reporter|all``.

:func:`run_workers` serves the actors of the given kinds from their RabbitMQ queues in this
process (one connection, ``concurrency`` handler threads per kind) until SIGTERM or SIGINT,
then drains the in-flight messages and returns 0.
"""
from __future__ import annotations

import signal
from typing import Iterable

from workers.actor import Registry, load_actors
from workers.logging import configure_logging, get_logger
from workers.metrics import start_metrics_server
from workers.middleware import RetryPolicy
from workers.rabbitmq.connection import redact, resolve_url
from workers.rabbitmq.consumer import RabbitBus

log = get_logger("industriverse.worker")


def run_workers(
    kinds: Iterable[str],
    broker_url: str | None = None,
    concurrency: int = 1,
    metrics_port: int | None = None,
    *,
    registry: Registry | None = None,
    prefix: str | None = None,
    policy: RetryPolicy | None = None,
    grace: float = 30.0,
) -> int:
    """Run the workers of ``kinds`` ("all" = every kind) on ``broker_url`` until SIGTERM/SIGINT.

    ``registry`` defaults to the process registry, into which ``workers.<kind>`` modules
    register their actors (imported on demand).  Serves Prometheus metrics on
    ``metrics_port`` when given.  Must run on the main thread (it installs signal handlers).
    """
    configure_logging()
    broker_url = resolve_url(broker_url)
    actors = load_actors(list(kinds), registry)
    bus = RabbitBus(broker_url, actors, prefix=prefix, concurrency=concurrency,
                    policy=policy or RetryPolicy(), grace=grace)
    if metrics_port:
        start_metrics_server(metrics_port)

    def on_signal(signum: int, _frame) -> None:
        log.info("stopping on signal; draining in-flight messages", signal=signal.Signals(signum).name)
        bus.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info("worker starting", kinds=bus.kinds, broker=redact(bus.url), prefix=bus.prefix,
             concurrency=concurrency, metrics_port=metrics_port)
    try:
        bus.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
