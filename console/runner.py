"""Where a strike submitted through the console runs.

* :class:`EmbeddedRunner` (default): the five workers on the embedded bus, in one background
  thread of the server, one strike at a time (the plots' matplotlib figures and SQLite
  writes are happiest serialised); the run directory is written under ``runs_dir``.
* :class:`RabbitRunner`: the strike is published to RabbitMQ; the worker fleet runs it and
  moves its status in the store, which the console reads.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from messages import Message

log = logging.getLogger("industriverse.console")


class EmbeddedRunner:
    """Run strikes on the embedded bus in a single background thread."""

    bus = "embedded"

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strike")

    def submit(self, message: Message, request: dict) -> None:
        self._pool.submit(self._run, message, request)

    def _run(self, message: Message, request: dict) -> None:
        from workers.runner import materialize, run_embedded
        from industriverse.fleet import store

        try:
            outcome = run_embedded(message)
            if outcome.type == "strike.completed":
                materialize(outcome, self.runs_dir / message.strike_id, request)
        except Exception as exc:  # the thread must survive; the strike says what happened
            log.exception("strike %s failed in the console's runner", message.strike_id)
            store.update_strike(message.strike_id, status="failed", reason=f"console runner: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RabbitRunner:
    """Publish strikes to RabbitMQ (persistent, confirmed) for the worker fleet."""

    bus = "rabbitmq"

    def __init__(self, url: str, prefix: str | None = None):
        self.url, self.prefix = url, prefix
        self._lock = threading.Lock()
        self._publisher = None

    def submit(self, message: Message, request: dict) -> None:
        from workers.rabbitmq.publisher import RabbitPublisher

        with self._lock:  # a pika connection belongs to one thread at a time
            if self._publisher is None:
                self._publisher = RabbitPublisher(self.url, prefix=self.prefix, name="industriverse console")
            try:
                self._publisher.publish(message)
            except Exception:
                self._publisher.close()
                self._publisher = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None

    def queue_depths(self) -> dict[str, int]:
        """Ready messages in each worker queue and its dead-letter queue (passive declares)."""
        import pika

        from workers.rabbitmq.connection import connection_parameters
        from workers.rabbitmq.topology import Topology, resolve_prefix

        topology = Topology(resolve_prefix(self.prefix))
        depths: dict[str, int] = {}
        connection = pika.BlockingConnection(connection_parameters(self.url, "industriverse console (queue depths)"))
        try:
            for kind in topology.consumes:
                for name in (topology.queue(kind), topology.dead_queue(kind)):
                    channel = connection.channel()
                    try:
                        depths[name] = channel.queue_declare(name, passive=True).method.message_count
                        channel.close()
                    except pika.exceptions.ChannelClosedByBroker:  # not declared yet
                        pass
        finally:
            connection.close()
        return depths
