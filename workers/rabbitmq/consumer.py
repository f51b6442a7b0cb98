"""The worker side of the RabbitMQ bus (:class:`RabbitBus`), following DESIGN.md §2.

* one ``BlockingConnection`` per process and one channel in confirm mode; handlers run on
  ``concurrency`` worker threads per kind, and ``prefetch_count`` = ``concurrency`` (per consumer:
  quorum queues have no global QoS);
* a handler's outcome goes back to the connection thread with
  ``connection.add_callback_threadsafe``; there the output messages are published
  (persistent, ``mandatory=True``, each confirmed) and only then is the input acknowledged:
  at-least-once end to end, made exactly-once in effect by the idempotent stage results;
* **dead letters with the reason**: quorum queues keep the original headers when they
  dead-letter, so a ``basic_reject`` could not carry the reason.  Instead the worker publishes a
  copy of the original (body and properties) to ``P.dlx`` with headers ``x-error`` (the reason),
  ``x-death-reason`` (``rejected``), ``x-error-stage``, ``x-original-routing-key``,
  ``x-original-queue`` and ``x-worker``, waits for the confirm, then acks the original.  Should
  that publish fail, the original is rejected without requeue (the broker dead-letters it
  without the reason: never lost).  ``strike.failed.<id>`` is published first, with the same
  reason, and the strike is marked failed in the store;
* **retries**: a retryable error (:func:`workers.middleware.is_retryable`) waits its backoff on the
  worker thread, then a copy with ``attempt`` + 1 is published straight to the kind's queue
  (default exchange) and the original acked; ``RetryPolicy.max_attempts`` bounds it.  A worker
  that dies mid-message (SIGKILL, OOM) leaves the message unacked: the broker redelivers it, and
  ``x-delivery-limit`` dead-letters a message that kills every worker that touches it;
* **SIGTERM** (:meth:`RabbitBus.stop`): cancel the consumers (prefetched, unstarted messages go
  back to the queue), finish the in-flight messages within ``grace`` seconds, ack, close;
* **reconnect**: a lost connection (broker restart, ``rabbitmqctl close_all_connections``) is
  re-opened with exponential backoff capped at ``reconnect_max_delay``; in-flight results of
  the old connection are dropped (the broker redelivers those messages and the stored stage
  results answer them).
"""
from __future__ import annotations

import functools
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from industriverse.errors import BadInput
from messages.codec import encode
from messages.envelope import Message
from messages.types import StrikeFailed
from workers.actor import Actor, Registry
from workers.broker import Bus, Unroutable
from workers.logging import get_logger, log_context
from workers.middleware import Outcome, RetryPolicy, process
from workers.rabbitmq.connection import RECONNECT_ON, Backoff, close_quietly, connection_parameters, redact, resolve_url
from workers.rabbitmq.publisher import RabbitPublisher, properties_of, publish_message
from workers.rabbitmq.topology import DELIVERY_LIMIT, Topology, resolve_prefix

log = get_logger("industriverse.rabbitmq")


class _Threads:
    """A fixed set of daemon worker threads (daemon: a handler stuck past the grace period
    must not keep a stopping process alive; its message is redelivered)."""

    def __init__(self, count: int, name: str):
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True) for i in range(count)]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while (task := self._tasks.get()) is not None:
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)


@dataclass(eq=False)
class _Session:
    """One connection's lifetime: its channel and the deliveries not yet settled on it."""

    connection: pika.BlockingConnection
    channel: BlockingChannel
    in_flight: set[int] = field(default_factory=set)  # delivery tags; touched on the connection thread only
    consumer_tags: list[str] = field(default_factory=list)
    live: bool = True


class RabbitBus(Bus):
    """Serve ``actors`` from their queues (see the module docstring for the rules)."""

    def __init__(
        self,
        url: str | None = None,
        actors: Iterable[Actor] = (),
        *,
        prefix: str | None = None,
        concurrency: int = 1,
        policy: RetryPolicy = RetryPolicy(),
        grace: float = 30.0,
        reconnect_initial_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        delivery_limit: int = DELIVERY_LIMIT,
        engine: Any = None,
    ):
        if concurrency < 1:
            raise BadInput(None, "--concurrency", f"must be at least 1, not {concurrency}")
        self.url = resolve_url(url)
        self.prefix = resolve_prefix(prefix)
        self.concurrency, self.policy, self.grace, self.engine = concurrency, policy, grace, engine
        self.reconnect_initial_delay, self.reconnect_max_delay = reconnect_initial_delay, reconnect_max_delay
        self.delivery_limit = delivery_limit
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._actors: dict[str, Actor] = {}
        self._stop = threading.Event()
        self._publisher: RabbitPublisher | None = None
        self.connected = threading.Event()  # set while a session consumes (tests, health checks)
        self.consume(actors)

    # --- Bus ----------------------------------------------------------------------------
    def consume(self, actors: Iterable[Actor]) -> None:
        for a in Registry(list(self._actors.values()) + list(actors)):
            self._actors[a.consumes] = a
        self.topology = Topology.for_actors(self._actors.values(), self.prefix, delivery_limit=self.delivery_limit)

    @property
    def kinds(self) -> list[str]:
        return sorted({a.kind for a in self._actors.values()})

    def publish(self, message: Message) -> None:
        """Publish from the calling thread on a separate publisher connection (clients, tests);
        actors never call this: their outputs are published by the runtime."""
        if self._publisher is None:
            self._publisher = RabbitPublisher(self.url, topology=self.topology)
        self._publisher.publish(message)

    def stop(self) -> None:
        """Stop consuming, finish in-flight messages (``grace`` s), close.  Thread- and signal-safe."""
        self._stop.set()

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting with capped exponential backoff."""
        if not self._actors:
            raise BadInput(None, "kind", "no actors to run")
        self._stop.clear()
        threads = {kind: _Threads(self.concurrency, f"{kind}-worker") for kind in self.kinds}
        backoff = Backoff(self.reconnect_initial_delay, self.reconnect_max_delay)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._serve(threads)
                    break
                except Exception as exc:  # never die: a supervisor restarting us would be a crash loop
                    if time.monotonic() - started > 30:
                        backoff.reset()  # it was up for a while: start over
                    delay = backoff.next()
                    if isinstance(exc, RECONNECT_ON):
                        log.warning("broker connection lost; reconnecting", broker=redact(self.url),
                                    error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))
                    else:
                        log.exception("worker error; reconnecting", retry_in_s=round(delay, 2))
                    if self._stop.wait(delay):
                        break
        finally:
            for t in threads.values():
                t.shutdown()
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
        log.info("worker stopped", kinds=self.kinds)

    # --- the connection thread -------------------------------------------------------------
    def _serve(self, threads: Mapping[str, _Threads]) -> None:
        params = connection_parameters(self.url, f"industriverse worker {','.join(self.kinds)} {self.name}")
        connection = pika.BlockingConnection(params)
        session: _Session | None = None
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            self.topology.declare(channel)
            channel.basic_qos(prefetch_count=self.concurrency)  # per consumer = threads per kind
            session = _Session(connection, channel)
            for kind in self.kinds:
                on_message = functools.partial(self._on_message, session, kind, threads[kind])
                session.consumer_tags.append(channel.basic_consume(self.topology.queue(kind), on_message))
            self.connected.set()
            log.info("consuming", queues=[self.topology.queue(k) for k in self.kinds], concurrency=self.concurrency,
                     broker=redact(self.url))
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.2)
            # graceful stop: no new deliveries, finish what is in flight, then close
            for tag in session.consumer_tags:
                channel.basic_cancel(tag)
            deadline = time.monotonic() + self.grace
            if session.in_flight:
                log.info("draining in-flight messages", count=len(session.in_flight), grace_s=self.grace)
            while session.in_flight and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
            if session.in_flight:
                log.warning("grace period over; unacknowledged messages return to the queue", count=len(session.in_flight))
        finally:
            self.connected.clear()
            if session is not None:
                session.live = False
            close_quietly(connection)

    def _on_message(self, session: _Session, kind: str, threads: _Threads, _channel: BlockingChannel,
                    method: pika.spec.Basic.Deliver, props: pika.BasicProperties, body: bytes) -> None:
        session.in_flight.add(method.delivery_tag)
        threads.submit(functools.partial(self._work, session, kind, method, props, body))

    # --- worker threads -------------------------------------------------------------------------
    def _work(self, session: _Session, kind: str, method: pika.spec.Basic.Deliver,
              props: pika.BasicProperties, body: bytes) -> None:
        actors = {t: a for t, a in self._actors.items() if a.kind == kind}
        # a quorum queue counts deliveries that were never settled (the worker died with them);
        # on the last one the broker allows, fail the strike with that reason instead of dying again
        crashed = int((props.headers or {}).get("x-delivery-count") or 0)
        poison = (f"delivered {crashed + 1} times: the {crashed} workers that took it before died before acknowledging it"
                  if crashed >= self.delivery_limit else None)
        try:
            outcome = process(body, actors, worker=kind, policy=self.policy, strike_id=props.correlation_id,
                              engine=self.engine, poison=poison)
            if outcome.action == "retry" and outcome.delay > 0:
                self._stop.wait(outcome.delay)  # a stopping worker hands the retry to the queue at once
            settle = functools.partial(self._settle, session, kind, method, props, body, outcome)
        except Exception:  # a bug in the runtime itself: give the message back (bounded by the delivery limit)
            log.exception("runtime error; returning the message to the queue", worker=kind)
            settle = functools.partial(self._requeue, session, method.delivery_tag)
        try:
            session.connection.add_callback_threadsafe(settle)
        except pika.exceptions.ConnectionWrongStateError:
            log.warning("connection closed before the message was settled; the broker redelivers it",
                        worker=kind, delivery_tag=method.delivery_tag)

    # --- back on the connection thread ----------------------------------------------------------
    def _requeue(self, session: _Session, delivery_tag: int) -> None:
        try:
            if session.live and session.channel.is_open:
                session.channel.basic_nack(delivery_tag, requeue=True)
        finally:
            session.in_flight.discard(delivery_tag)

    def _settle(self, session: _Session, kind: str, method: pika.spec.Basic.Deliver, props: pika.BasicProperties,
                body: bytes, outcome: Outcome) -> None:
        """Publish the outcome's messages (each confirmed), then ack the input."""
        tag = method.delivery_tag
        if not session.live or not session.channel.is_open:
            return  # that connection is gone: the broker redelivers, the store answers
        channel = session.channel
        ctx = {"worker": kind, "stage": outcome.stage,
               "strike_id": outcome.message.strike_id if outcome.message else props.correlation_id,
               "message_id": outcome.message.message_id if outcome.message else props.message_id,
               "contract_id": outcome.message.contract_id if outcome.message else None}
        try:
            with log_context(**ctx):
                try:
                    for m in outcome.publish:
                        publish_message(channel, self.topology, m)
                except Unroutable as exc:  # our output has nowhere to go: fail the strike, keep the input
                    reason = str(exc)
                    log.error("output unroutable; dead-lettering the input", reason=reason)
                    if outcome.message is not None:
                        publish_message(channel, self.topology,
                                        outcome.message.follow(StrikeFailed(stage=outcome.stage or kind, reason=reason)))
                    outcome = Outcome("dead", reason=reason, message=outcome.message, stage=outcome.stage)
                if outcome.action == "retry":
                    assert outcome.retry is not None
                    channel.basic_publish("", self.topology.queue(kind), encode(outcome.retry),
                                          properties_of(outcome.retry), mandatory=True)
                elif outcome.action == "dead":
                    if not self._dead_letter(channel, kind, method, props, body, outcome):
                        channel.basic_reject(tag, requeue=False)
                        return
                channel.basic_ack(tag)
        except pika.exceptions.NackError:
            log.warning("broker refused an output message; returning the input to the queue")
            channel.basic_nack(tag, requeue=True)
        finally:
            session.in_flight.discard(tag)

    def _dead_letter(self, channel: BlockingChannel, kind: str, method: pika.spec.Basic.Deliver,
                     props: pika.BasicProperties, body: bytes, outcome: Outcome) -> bool:
        """Publish a copy of the input to ``<queue>.dead`` with the reason in its headers; True when confirmed."""
        queue_name = self.topology.queue(kind)
        headers = dict(props.headers or {})
        headers.update({
            "x-error": outcome.reason or "",
            "x-death-reason": "rejected",
            "x-error-stage": outcome.stage or kind,
            # a retried copy came through the default exchange: name the message's own key
            "x-original-routing-key": outcome.message.routing_key if outcome.message else method.routing_key,
            "x-original-queue": queue_name,
            "x-worker": self.name,
        })
        copy = pika.BasicProperties(
            content_type=props.content_type, delivery_mode=pika.DeliveryMode.Persistent,
            message_id=props.message_id, correlation_id=props.correlation_id, type=props.type,
            timestamp=props.timestamp, headers=headers,
        )
        try:
            channel.basic_publish(self.topology.dead_letter_exchange, queue_name, body, copy, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            log.error("could not publish the dead letter; rejecting to the broker's dead-lettering", error=repr(exc))
            return False
        # the reason was logged where the message failed; one line per dead letter is enough
        log.debug("dead-lettered", queue=self.topology.dead_queue(kind), reason=outcome.reason)
        return True
