"""Two test actors the bus tests share (embedded bus, RabbitMQ bus and its worker processes)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from industriverse.fleet import store
from industriverse.errors import BadInput, InfrastructureError
from messages import Message, PlanOptimized, StrikeCompleted
from workers.actor import Registry


def make_actors(calls: list[str] | None = None, log_dir: Path | None = None) -> Registry:
    """'double' (optimizer kind, stage 'double'): x -> 2x, strike.requested -> plan.optimized;
    'finish' (simulator kind, stage 'finish'): 2x -> 2x+1, plan.optimized -> strike.completed.

    Constraint switches: ``crash`` (SIGKILL the process), ``sleep`` (seconds, in the handler),
    ``fail`` (ValueError), ``bad`` (BadInput), ``flaky`` (InfrastructureError while
    attempt < flaky).  With ``calls``, each handler call is appended to it; with ``log_dir``,
    'double' appends 'start'/'done' lines to ``double.log`` (visible across processes).
    """
    reg = Registry()

    def note(event: str, message: Message) -> None:
        if log_dir is not None:
            with open(log_dir / "double.log", "a") as f:
                f.write(f"{event} {message.strike_id} {os.getpid()}\n")

    @reg.actor("optimizer", consumes="strike.requested", stage="double")
    def double(message: Message) -> list[Message]:
        if calls is not None:
            calls.append(f"double:{message.strike_id}:{message.attempt}")
        c = message.body.constraint
        note("start", message)
        if c.get("crash"):  # kills every worker that takes it
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(c.get("sleep", 0))
        if "fail" in c:
            raise ValueError(c["fail"])
        if "bad" in c:
            raise BadInput("constraint.json", "comfort.low", "must be below comfort.high")
        if message.attempt < c.get("flaky", 0):
            raise InfrastructureError("database went away")
        ref = store.put_json_artifact({"x": 2 * c["x"]})
        note("done", message)
        return [message.follow(PlanOptimized(optimization_ref=ref))]

    @reg.actor("simulator", consumes="plan.optimized", stage="finish")
    def finish(message: Message) -> list[Message]:
        if calls is not None:
            calls.append(f"finish:{message.strike_id}")
        x = store.get_json_artifact(message.body.optimization_ref)["x"]
        ref = store.put_json_artifact({"y": x + 1})
        return [message.follow(StrikeCompleted(outcome="deployed", activity_id=f"act-{x + 1}", value_ref=ref))]

    return reg
