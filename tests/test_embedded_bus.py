"""The embedded bus: the cascade, idempotency, retries and dead letters, in one process."""
from __future__ import annotations

import pytest

from industriverse.fleet import store
from messages import (
    Message,
    PlanSimulated,
    PlanVerified,
    StrikeFailed,
    StrikeRequested,
    decode,
    encode,
)
from toy_actors import make_actors
from workers.broker import Unroutable, topic_matches
from workers.embedded import EmbeddedBus
from workers.middleware import RetryPolicy

FAST = RetryPolicy(max_attempts=3, base_delay=0.0)


def strike(**constraint) -> Message:
    return Message.start(StrikeRequested(domain="test", constraint=constraint, seed=1))


def test_topic_matching():
    assert topic_matches("plan.optimized.*", "plan.optimized.abc")
    assert not topic_matches("plan.optimized.*", "plan.simulated.abc")
    assert topic_matches("*.*.abc", "strike.failed.abc")
    assert topic_matches("#", "a.b.c") and topic_matches("a.#", "a")
    assert not topic_matches("*.*.abc", "strike.failed.abd")


def test_cascade_across_two_actors(home):
    calls: list[str] = []
    bus = EmbeddedBus(make_actors(calls))
    progress: list[str] = []
    request = strike(x=20)
    done = bus.request(request, on_progress=lambda m: progress.append(m.type))
    assert done.type == "strike.completed"
    assert done.body.activity_id == "act-41"
    assert store.get_json_artifact(done.body.value_ref) == {"y": 41}
    assert progress == ["strike.requested", "plan.optimized", "strike.completed"]
    # the causation chain links each message to the one that caused it
    chain = [m for m in bus.published if m.strike_id == request.strike_id]
    assert [m.causation_id for m in chain[1:]] == [m.message_id for m in chain[:-1]]
    assert all(m.strike_id == request.strike_id for m in chain)
    assert store.get_strike(request.strike_id)["status"] == "completed"
    assert calls == [f"double:{request.strike_id}:0", f"finish:{request.strike_id}"]


def test_fifo_order_is_deterministic(home):
    calls: list[str] = []
    bus = EmbeddedBus(make_actors(calls))
    first, second = strike(x=1), strike(x=2)
    bus.publish(first)
    bus.publish(second)
    bus.run()
    a, b = first.strike_id, second.strike_id
    assert calls == [f"double:{a}:0", f"double:{b}:0", f"finish:{a}", f"finish:{b}"]


def test_redelivered_message_replays_the_stored_result(home):
    calls: list[str] = []
    bus = EmbeddedBus(make_actors(calls))
    request = strike(x=5)
    bus.publish(request)
    bus.publish(request)  # the broker may deliver a message twice
    bus.run()
    # each handler ran once; the duplicate got the stored messages, same IDs
    assert calls == [f"double:{request.strike_id}:0", f"finish:{request.strike_id}"]
    optimized = [m for m in bus.published if m.type == "plan.optimized"]
    completed = [m for m in bus.published if m.type == "strike.completed"]
    assert len(optimized) == 2 and optimized[0] == optimized[1]
    assert len(completed) == 2 and completed[0] == completed[1]
    stored = store.get_stage_result(request.strike_id, "double")
    assert decode(stored["messages"][0]) == optimized[0]


def test_a_new_round_is_not_answered_from_the_previous_round(home):
    calls: list[str] = []
    bus = EmbeddedBus(make_actors(calls))
    request = strike(x=5)
    bus.request(request)
    again = Message.start(request.body.model_copy(update={"retry": 1}), strike_id=request.strike_id)
    assert again.round == 1
    bus.request(again)
    assert calls.count(f"double:{request.strike_id}:0") == 2
    assert store.get_stage_result(request.strike_id, "double#1") is not None


def test_retryable_error_is_retried_then_succeeds(home):
    calls: list[str] = []
    delays: list[float] = []
    policy = RetryPolicy(max_attempts=4, base_delay=0.25, max_delay=0.6)
    bus = EmbeddedBus(make_actors(calls), policy=policy, sleep=delays.append)
    request = strike(x=3, flaky=2)
    done = bus.request(request)
    assert done.type == "strike.completed" and done.body.activity_id == "act-7"
    assert calls[:3] == [f"double:{request.strike_id}:{n}" for n in range(3)]
    assert delays == [0.25, 0.5]
    assert not bus.dead_letters


def test_retries_are_bounded(home):
    bus = EmbeddedBus(make_actors([]), policy=FAST)
    request = strike(x=3, flaky=99)
    failed = bus.request(request)
    assert failed.type == "strike.failed"
    assert failed.body.stage == "double"
    assert failed.body.reason == "gave up after 3 attempts: database went away"
    assert (failed.body.error, failed.body.exit_code) == ("InfrastructureError", 3)
    assert len(bus.dead_letters) == 1 and bus.dead_letters[0].reason == failed.body.reason
    assert decode(bus.dead_letters[0].body).attempt == 2


def test_failing_handler_is_dead_lettered_and_the_bus_goes_on(home):
    calls: list[str] = []
    bus = EmbeddedBus(make_actors(calls), policy=FAST)
    bad, good = strike(fail="no such plant"), strike(x=1)
    bus.publish(bad)
    bus.publish(good)
    bus.run()
    failed = [m for m in bus.published if m.type == "strike.failed"]
    assert [m.strike_id for m in failed] == [bad.strike_id]
    assert failed[0].body == StrikeFailed(stage="double", reason="ValueError: no such plant", error="ValueError", exit_code=3)
    assert failed[0].causation_id == bad.message_id
    (dead,) = bus.dead_letters
    assert dead.queue == "optimizer.dead" and dead.headers["x-error"] == "ValueError: no such plant"
    assert decode(dead.body) == bad
    assert calls.count(f"double:{bad.strike_id}:0") == 1  # not retried
    row = store.get_strike(bad.strike_id)
    assert row["status"] == "failed" and "no such plant" in row["reason"]
    assert store.get_strike(good.strike_id)["status"] == "completed"


def test_a_bad_input_failure_carries_its_exit_code(home):
    failed = EmbeddedBus(make_actors([])).request(strike(bad=True))
    assert failed.body.reason == "constraint.json: field 'comfort.low': must be below comfort.high"
    assert (failed.body.error, failed.body.exit_code) == ("BadInput", 2)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "message is not JSON"),
        (b'{"type": "strike.requested", "schema_version": 9, "strike_id": "s1"}', "unsupported schema_version 9"),
        (b'{"type": "strike.requested", "strike_id": "s1", "body": {"constraint": {}}}', "body.domain: Field required"),
    ],
)
def test_malformed_message_is_dead_lettered_with_its_reason(home, raw, reason):
    bus = EmbeddedBus(make_actors([]))
    outcomes: list[Message] = []
    bus.subscribe("strike.failed.*", outcomes.append)
    bus.publish_raw("strike.requested", raw, strike_id="s1")
    bus.publish(strike(x=1))
    bus.run()
    (dead,) = bus.dead_letters
    assert reason in dead.reason and dead.body == raw
    (failed,) = outcomes
    assert failed.strike_id == "s1" and reason in failed.body.reason
    assert store.get_strike("s1")["status"] == "failed"
    assert sum(m.type == "strike.completed" for m in bus.published) == 1  # and the next message went through


def test_publishing_a_type_nobody_consumes_is_an_error(home):
    bus = EmbeddedBus(make_actors([]))
    m = strike(x=1).follow(StrikeFailed(stage="x", reason="y"))
    bus.publish(m)  # terminal messages need no consumer
    verified = PlanVerified(optimization_ref="a" * 64, simulation_ref="b" * 64, verdict_ref="c" * 64, proof_ref="d" * 64)
    with pytest.raises(Unroutable):
        bus.publish(strike(x=1).follow(verified))  # no deployer on this bus


def test_wire_bytes_round_trip(home):
    m = strike(x=1)
    assert decode(encode(m)) == m


@pytest.fixture()
def json_logs():
    import io
    import logging

    from workers.logging import configure_logging

    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("INFO", json_output=True, stream=buf)
    yield buf
    for h in [h for h in root.handlers if h.get_name() == "industriverse"]:
        root.removeHandler(h)
    root.setLevel(level)


def test_every_handler_log_line_carries_the_correlation_fields(home, json_logs):
    import json
    import logging

    reg = make_actors([])
    core_log = logging.getLogger("industriverse.core")

    @reg.actor("shield", consumes="plan.simulated")
    def noisy(message):  # a plain-logging library call inside a handler
        core_log.info("checking the envelope")
        return []

    bus = EmbeddedBus(reg)
    request = Message.start(StrikeRequested(domain="test", constraint={"x": 1}), contract_id="acme-1")
    bus.request(request)
    sim = request.follow(PlanSimulated(optimization_ref="a" * 64, simulation_ref="b" * 64))
    bus.publish(sim)
    bus.run()
    lines = [json.loads(x) for x in json_logs.getvalue().splitlines()]
    handler_lines = [x for x in lines if x["event"] in ("handling", "handled", "checking the envelope")]
    assert len(handler_lines) == 7
    for line in handler_lines:
        assert line["strike_id"] == request.strike_id and line["contract_id"] == "acme-1"
        assert {"stage", "message_id", "worker", "timestamp", "level"} <= set(line)
    (core,) = [x for x in lines if x["event"] == "checking the envelope"]
    assert (core["worker"], core["stage"], core["message_id"]) == ("shield", "shield", sim.message_id)
    # the context does not leak past the handler
    logging.getLogger("industriverse.after").info("after")
    assert "strike_id" not in json.loads(json_logs.getvalue().splitlines()[-1])


def test_an_unreadable_message_of_an_unknown_strike_is_still_dead_lettered(home):
    bus = EmbeddedBus(make_actors([]))
    bus.publish_raw("strike.requested", b"\x00garbage", strike_id="not.a.strike.id")
    bus.run()
    (dead,) = bus.dead_letters
    assert dead.reason.startswith("message is not JSON")
    assert not [m for m in bus.published if m.type == "strike.failed"]  # no strike to fail
