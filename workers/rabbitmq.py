"""The RabbitMQ bus (pika): the same actors as competing consumers on durable quorum queues.

Topology (declared by every worker and every client on connect, idempotently), for a name
prefix ``P`` (``INDUSTRIVERSE_AMQP_PREFIX``, default ``industriverse``):

* ``P``: one durable **topic** exchange; every message is published to it with routing key
  ``<type>.<strike_id>`` (:mod:`messages.routing`);
* ``P.<kind>``: one durable **quorum** queue per worker kind, bound to ``<type>.*`` for each type
  the kind consumes, with ``x-delivery-limit`` (5) and dead-lettering to ``P.dlx``;
* ``P.dlx``: a durable direct exchange; ``P.<kind>.dead`` (quorum) is bound to it with key
  ``P.<kind>``, so both the broker's dead letters (delivery limit exceeded) and ours land there.

Worker side (:class:`RabbitBus`), following DESIGN.md §2:

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

Client side: :class:`RabbitPublisher` (publish with confirms, e.g. the regiment) and
:func:`request` (publish a ``strike.requested`` and wait for its outcome, with progress).
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
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from industriverse.fleet import store
from industriverse.errors import BadInput, InfrastructureError
from messages.codec import decode, encode
from messages.envelope import InvalidMessage, Message
from messages.routing import CONSUMES, binding_key, outcome_keys, routes, strike_key
from messages.types import TERMINAL_TYPES, StrikeFailed
from workers.actor import Actor, Registry
from workers.broker import Bus, Unroutable
from workers.logging import get_logger, log_context
from workers.middleware import Outcome, RetryPolicy, process

log = get_logger("industriverse.rabbitmq")

DEFAULT_PREFIX = "industriverse"
DELIVERY_LIMIT = 5


def resolve_url(url: str | None = None) -> str:
    """``url``, else ``INDUSTRIVERSE_AMQP_URL``; :class:`BadInput` when neither is set."""
    url = url or os.environ.get("INDUSTRIVERSE_AMQP_URL")
    if not url:
        raise BadInput(None, "--broker", "no broker URL given (pass --broker amqp://... or set INDUSTRIVERSE_AMQP_URL)")
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise BadInput(None, "--broker", f"broker URL must start with amqp:// or amqps://, not {redact(url)!r}")
    return url


def resolve_prefix(prefix: str | None = None) -> str:
    """``prefix``, else ``INDUSTRIVERSE_AMQP_PREFIX``, else ``industriverse``."""
    return prefix or os.environ.get("INDUSTRIVERSE_AMQP_PREFIX") or DEFAULT_PREFIX


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connection_parameters(url: str, name: str) -> pika.URLParameters:
    """pika parameters for ``url``, naming the connection (visible in ``rabbitmqctl list_connections``)."""
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": name}
    params.connection_attempts = 1  # we do our own backoff
    params.socket_timeout = 5
    params.blocked_connection_timeout = 60
    return params


@dataclass(frozen=True)
class Topology:
    """Names and declaration of the exchanges and queues under one prefix."""

    prefix: str = DEFAULT_PREFIX
    consumes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(CONSUMES))
    delivery_limit: int = DELIVERY_LIMIT

    @classmethod
    def for_actors(cls, actors: Iterable[Actor], prefix: str | None = None, **kwargs: Any) -> "Topology":
        """The standard queues plus those of ``actors`` (a message type feeds exactly one queue)."""
        table = dict(CONSUMES)
        for kind, types in Registry(actors).consumes().items():
            table[kind] = tuple(dict.fromkeys(table.get(kind, ()) + types))
        routes(table)  # raises if a type would feed two queues
        return cls(resolve_prefix(prefix), table, **kwargs)

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    def queue(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    def dead_queue(self, kind: str) -> str:
        return f"{self.prefix}.{kind}.dead"

    def declare(self, channel: BlockingChannel) -> None:
        """Declare everything (idempotent; a queue declared before with other arguments is a
        PRECONDITION_FAILED error from the broker)."""
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        channel.exchange_declare(self.dead_letter_exchange, exchange_type="direct", durable=True)
        for kind, types in self.consumes.items():
            q, dead = self.queue(kind), self.dead_queue(kind)
            channel.queue_declare(dead, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(dead, self.dead_letter_exchange, routing_key=q)
            channel.queue_declare(
                q,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-delivery-limit": self.delivery_limit,
                    "x-dead-letter-exchange": self.dead_letter_exchange,
                    "x-dead-letter-routing-key": q,
                },
            )
            for t in types:
                channel.queue_bind(q, self.exchange, routing_key=binding_key(t))

    def delete(self, channel: BlockingChannel) -> None:
        """Delete every queue and exchange of this topology (tests, operators starting afresh)."""
        for kind in self.consumes:
            channel.queue_delete(self.queue(kind))
            channel.queue_delete(self.dead_queue(kind))
        channel.exchange_delete(self.exchange)
        channel.exchange_delete(self.dead_letter_exchange)


def properties_of(message: Message) -> pika.BasicProperties:
    """AMQP properties of a message: persistent, JSON, correlation ID = strike ID."""
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message.message_id,
        correlation_id=message.strike_id,
        type=message.type,
        timestamp=int(message.created_at.timestamp()),
        headers={
            "schema_version": message.schema_version,
            "attempt": message.attempt,
            "round": message.round,
            "contract_id": message.contract_id,
            "causation_id": message.causation_id,
        },
    )


def publish_message(channel: BlockingChannel, topology: Topology, message: Message) -> None:
    """Publish ``message`` persistently with ``mandatory=True`` on a confirm-mode channel and
    return once the broker confirmed it.

    A terminal message (``strike.completed``/``strike.failed``) that no client waits for is
    fine (the outcome is in the store); any other unroutable message raises :class:`Unroutable`.
    """
    try:
        channel.basic_publish(topology.exchange, message.routing_key, encode(message), properties_of(message), mandatory=True)
    except pika.exceptions.UnroutableError:
        if message.type in TERMINAL_TYPES:
            log.info("no client waits for this outcome", type=message.type, strike_id=message.strike_id)
            return
        raise Unroutable(f"no queue is bound to {message.routing_key!r} on exchange {topology.exchange!r}") from None


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


# Connection-level failures after which the worker reconnects.
_RECONNECT_ON = (pika.exceptions.AMQPError, OSError)


def _close_quietly(connection: pika.BlockingConnection) -> None:
    """Close ``connection`` if it is open; a broker that is gone already is no error here."""
    try:
        if connection.is_open:
            connection.close()
    except _RECONNECT_ON:
        pass


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
        delay = self.reconnect_initial_delay
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._serve(threads)
                    break
                except Exception as exc:  # never die: a supervisor restarting us would be a crash loop
                    if time.monotonic() - started > 30:
                        delay = self.reconnect_initial_delay  # it was up for a while: start over
                    if isinstance(exc, _RECONNECT_ON):
                        log.warning("broker connection lost; reconnecting", broker=redact(self.url),
                                    error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))
                    else:
                        log.exception("worker error; reconnecting", retry_in_s=round(delay, 2))
                    if self._stop.wait(delay):
                        break
                    delay = min(self.reconnect_max_delay, delay * 2)
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
            _close_quietly(connection)

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
        log.warning("dead-lettered", queue=self.topology.dead_queue(kind), reason=outcome.reason)
        return True


class RabbitPublisher:
    """Publish messages with confirms from one thread (the strike loop, the regiment).

    Declares the topology on connect so that a request published before any worker started
    waits in its queue.  Connection failures raise :class:`InfrastructureError`.
    """

    def __init__(self, url: str | None = None, *, prefix: str | None = None, topology: Topology | None = None,
                 name: str = "industriverse client"):
        self.url = resolve_url(url)
        self.topology = topology or Topology(resolve_prefix(prefix))
        try:
            self.connection = pika.BlockingConnection(connection_parameters(self.url, f"{name} {socket.gethostname()}:{os.getpid()}"))
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
            self.topology.declare(self.channel)
        except _RECONNECT_ON as exc:
            raise InfrastructureError(f"cannot reach the broker at {redact(self.url)}: {type(exc).__name__} {exc}".strip()) from None

    def publish(self, message: Message) -> None:
        """Publish and wait for the broker's confirm."""
        publish_message(self.channel, self.topology, message)

    def close(self) -> None:
        _close_quietly(self.connection)

    def __enter__(self) -> "RabbitPublisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def outcome_from_store(strike_id: str, *, engine: Any = None) -> Message | None:
    """The strike's ``strike.completed``/``strike.failed`` as far as the store knows it, or None.

    Used when the wait for the outcome lost its connection: the outcome published meanwhile is
    gone with the exclusive queue, but the stage result that published it is stored.  The last
    round's outcome wins.
    """
    found = [decode(data) for payload in store.list_stage_results(strike_id, engine=engine).values()
             for data in payload.get("messages", []) if data.get("type") in TERMINAL_TYPES]
    if found:
        return max(found, key=lambda m: m.round)
    row = store.get_strike(strike_id, engine=engine)
    if row and row["status"] == "failed":  # failed where no stage result was stored (an unreadable message)
        stage, _, reason = (row["reason"] or "").partition(": ")
        return Message(strike_id=strike_id, contract_id=row.get("contract_id"),
                       body=StrikeFailed(stage=stage if reason else "unknown", reason=reason or row["reason"] or "failed"))
    return None


def request(
    message: Message,
    *,
    url: str | None = None,
    prefix: str | None = None,
    timeout: float = 600.0,
    on_progress: Callable[[Message], None] | None = None,
    engine: Any = None,
) -> Message:
    """Publish ``message`` (a ``strike.requested``) and return the strike's ``strike.completed``
    or ``strike.failed`` message.

    An exclusive, auto-delete queue is bound to ``strike.completed.<id>`` and
    ``strike.failed.<id>`` (with ``on_progress``: to ``*.*.<id>``, every message of the strike)
    *before* publishing, so the outcome cannot be missed.  If the connection drops while
    waiting, it reconnects and also asks the store.  Raises :class:`InfrastructureError` when
    the broker cannot be reached or no outcome arrives within ``timeout`` seconds.
    """
    url = resolve_url(url)
    topology = Topology(resolve_prefix(prefix))
    sid = message.strike_id
    deadline = time.monotonic() + timeout
    published = False
    delay = 0.5
    while True:
        try:
            with RabbitPublisher(url, topology=topology, name="industriverse strike") as pub:
                channel = pub.channel
                q = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
                for key in ([strike_key(sid)] if on_progress else list(outcome_keys(sid))):
                    channel.queue_bind(q, topology.exchange, routing_key=key)
                if not published:
                    pub.publish(message)
                    published = True
                elif (found := outcome_from_store(sid, engine=engine)) is not None:
                    return found
                for method, _props, body in channel.consume(q, auto_ack=True, inactivity_timeout=0.5):
                    if time.monotonic() > deadline:
                        raise InfrastructureError(f"no outcome of strike {sid} within {timeout:g} s (are workers running?)")
                    if method is None:
                        continue
                    try:
                        m = decode(body)
                    except InvalidMessage:
                        continue
                    if m.strike_id != sid:  # any round: a rejected plan may be re-optimized as round 1, 2...
                        continue
                    if on_progress is not None:
                        on_progress(m)
                    if m.type in TERMINAL_TYPES:
                        return m
        except InfrastructureError:
            if not published or time.monotonic() > deadline:
                raise
        except _RECONNECT_ON as exc:
            if not published and isinstance(exc, pika.exceptions.AMQPConnectionError):
                raise InfrastructureError(f"cannot reach the broker at {redact(url)}: {type(exc).__name__}") from None
            if time.monotonic() > deadline:
                raise InfrastructureError(f"lost the broker while waiting for strike {sid}: {exc!r}") from None
        log.warning("lost the broker while waiting for the outcome; reconnecting", strike_id=sid, retry_in_s=delay)
        time.sleep(delay)
        delay = min(10.0, delay * 2)
