"""The operate daemon's transport: MQTT in and out, re-planning strikes over the bus.

:class:`LiveDaemon` wires :class:`industriverse.operate.live.LiveOperator` (the core) to

* MQTT — readings from ``industriverse/<site>/telemetry`` (validated against
  :class:`messages.live.Telemetry`; a malformed one is logged and skipped), set-points to
  ``industriverse/<site>/setpoints`` (QoS 1), ``online``/``offline`` on
  ``industriverse/<site>/status/operator`` (retained, ``offline`` as the last will);
* the message bus — each re-plan is a ``strike.requested`` like any other, run on the
  embedded bus in a background thread, or published to RabbitMQ for the worker fleet; the
  deployed capsule is restored from the store (``capsule_ref``) so the daemon needs no file
  system shared with the workers.

One thread owns the operator: MQTT callbacks and strike outcomes only enqueue events.
"""
from __future__ import annotations

import logging
import queue
import threading

from pydantic import ValidationError

from industriverse import data_home
from industriverse.fleet import store
from industriverse.fleet.rundir import restore_files
from messages import Message, StrikeRequested
from messages.live import Setpoints, Status, Telemetry, topic
from workers.mqtt import MqttOptions, connect, publish_json


class LiveDaemon:
    """Run the live loop of ``operator`` (a LiveOperator) for its site until :meth:`stop`."""

    def __init__(self, operator, options: MqttOptions, *, broker: str | None = None, prefix: str | None = None,
                 method: str = "auto", backoff_k: float = 1.0, strike_timeout: float = 600.0, log=None,
                 verbose_workers: bool = False):
        self.verbose_workers = verbose_workers
        self.op, self.options, self.broker, self.prefix = operator, options, broker, prefix
        self.method, self.backoff_k, self.strike_timeout = method, backoff_k, strike_timeout
        self.log = log
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.site = operator.site
        self.counts = {"readings": 0, "malformed": 0, "setpoints": 0, "replans": 0, "deployed": 0, "alerts": 0}

    # --- MQTT ---------------------------------------------------------------------------
    def _on_message(self, client, userdata, msg) -> None:
        self.events.put(("telemetry", msg.payload))

    def _status(self, state: str, detail: str | None = None) -> Status:
        return Status(site=self.site, role="operator", state=state, detail=detail)

    # --- strikes ------------------------------------------------------------------------
    def _deployed(self, sid: str, capsule_ref: str, activity_id: str) -> None:
        target = data_home() / "live" / self.site / "capsules" / sid
        restore_files(store.get_json_artifact(capsule_ref), target)
        self.events.put(("strike", sid, {"outcome": "deployed", "capsule_dir": str(target), "activity_id": activity_id}))

    def _run_strike(self, message: Message) -> None:
        """Run one re-plan; the capsule takes over as soon as it is deployed (the report comes after)."""
        sid = message.strike_id
        seen: list[str] = []

        def on_progress(m: Message) -> None:
            if m.type == "capsule.deployed" and m.body.capsule_ref and not seen:
                seen.append(m.body.activity_id)
                self._deployed(sid, m.body.capsule_ref, m.body.activity_id)

        try:
            if self.broker:
                from workers.rabbitmq.client import request

                outcome = request(message, url=self.broker, prefix=self.prefix, timeout=self.strike_timeout,
                                  on_progress=on_progress)
            else:
                from workers.actor import load_actors
                from workers.embedded import EmbeddedBus

                outcome = EmbeddedBus(load_actors(["all"])).request(message, on_progress=on_progress)
            body = outcome.body
            if outcome.type == "strike.failed":
                if not seen:  # a failed report after the deployment does not undo the deployment
                    self.events.put(("strike", sid, {"outcome": "failed", "reason": f"{body.stage}: {body.reason}"}))
                return
            if body.outcome != "deployed":
                self.events.put(("strike", sid, {"outcome": "rejected", "reason": "; ".join(body.reasons)}))
            elif not seen:
                self._deployed(sid, body.capsule_ref, body.activity_id)
        except Exception as exc:  # a re-plan that cannot run must not end the daemon: the plan in force continues
            if not seen:
                self.events.put(("strike", sid, {"outcome": "failed", "reason": f"{exc.__class__.__name__}: {exc}"}))

    def _submit(self, constraint: dict) -> None:
        op = self.op
        seed = op.problem.constraint.uncertainty.seed
        message = Message.start(StrikeRequested(domain=op.contract.domain, constraint=constraint, method=self.method,
                                                seed=seed, backoff_k=self.backoff_k), contract_id=op.contract.id)
        store.record_strike(message.strike_id, contract_id=op.contract.id, domain=op.contract.domain, status="requested")
        op.strike_started(message.strike_id)
        self.counts["replans"] += 1
        if self.log:
            self.log.info("re-plan requested", strike_id=message.strike_id, horizon_start=constraint["horizon"]["start"],
                          initial_state=constraint["initial_state"], bus="rabbitmq" if self.broker else "embedded")
        # a daemon thread per re-plan: the next one need not wait for the previous strike's report, and
        # SIGTERM need not wait for a strike in flight (the restarted daemon re-plans; the store keeps
        # whatever a stage finished)
        threading.Thread(target=self._run_strike, args=(message,), name=f"replan-{message.strike_id[:8]}",
                         daemon=True).start()

    # --- the loop -----------------------------------------------------------------------
    def _handle_reading(self, client, payload: bytes) -> None:
        try:
            reading = Telemetry.model_validate_json(payload)
        except ValidationError as exc:
            self.counts["malformed"] += 1
            err = exc.errors()[0]
            if self.log:
                self.log.warning("malformed telemetry skipped", field=".".join(map(str, err["loc"])) or None,
                                 error=err["msg"], payload=payload[:200].decode("utf-8", "replace"))
            return
        if reading.site != self.site:
            if self.log:
                self.log.warning("telemetry of another site skipped", reading_site=reading.site)
            return
        decision = self.op.on_reading(reading.model_dump())
        if decision is None:
            self.counts["malformed"] += 1
            return
        self.counts["readings"] += 1
        self.counts["alerts"] += len(decision.alerts)
        sp = Setpoints(site=self.site, **decision.setpoints)
        publish_json(client, topic(self.site, "setpoints"), sp, qos=1)
        self.counts["setpoints"] += 1
        if decision.replan is not None:
            self._submit(decision.replan)

    def run(self) -> dict:
        """Serve until :meth:`stop` (SIGTERM); returns the counters."""
        status_topic = topic(self.site, "status/operator")
        will = (status_topic, self._status("offline").model_dump_json().encode())
        client = connect(self.options, client_id=f"industriverse-operate-{self.site}", will=will,
                         on_message=self._on_message, subscriptions=[(topic(self.site, "telemetry"), 1)], log=self.log)
        publish_json(client, status_topic, self._status("online", f"contract {self.op.contract.id}"), qos=1, retain=True)
        if not self.verbose_workers:  # the strike's own progress lines drown the live loop's
            logging.getLogger("industriverse.worker").setLevel(logging.WARNING)
        if self.log:
            self.log.info("operate started", site=self.site, contract=self.op.contract.id,
                          replan_minutes=self.op.replan_every.total_seconds() / 60, resumed=self.op.resumed,
                          capsule_version=self.op.plan.version if self.op.plan else None)
        try:
            while not self.stopping.is_set():
                try:
                    event = self.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if event[0] == "telemetry":
                    self._handle_reading(client, event[1])
                else:
                    _, sid, result = event
                    if result["outcome"] == "deployed":
                        self.counts["deployed"] += 1
                    try:
                        self.op.on_strike(sid, **result)
                    except Exception as exc:  # a capsule we cannot load: keep running what we have
                        self.op.in_flight = None
                        if self.log:
                            self.log.error("deployed capsule could not be loaded", strike_id=sid, error=str(exc))
        finally:
            publish_json(client, status_topic, self._status("offline", "stopped"), qos=1, retain=True, wait=5.0)
            client.disconnect()
            client.loop_stop()
            if self.log:
                self.log.info("operate stopped", **self.counts)
        return dict(self.counts)

    def stop(self) -> None:
        self.stopping.set()


__all__ = ["LiveDaemon"]
