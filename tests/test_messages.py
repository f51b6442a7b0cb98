"""Messages: envelope, bodies, wire codec, rejection reasons, routing keys, JSON Schemas."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cli import schema as schema_cli
from messages import (
    MESSAGE_TYPES,
    CapsuleDeployed,
    InvalidMessage,
    Message,
    PlanOptimized,
    PlanRejected,
    PlanSimulated,
    PlanVerified,
    StrikeCompleted,
    StrikeFailed,
    StrikeRequested,
    binding_key,
    decode,
    encode,
    json_schemas,
    outcome_keys,
    strike_key,
    to_dict,
)
from messages.routing import CONSUMES, routes

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)

SAMPLES = [
    StrikeRequested(domain="hvac", constraint={"horizon_steps": 96, "comfort": {"low": 20}}, seed=3, backoff_k=1.5),
    PlanOptimized(optimization_ref=A),
    PlanSimulated(optimization_ref=A, simulation_ref=B),
    PlanVerified(optimization_ref=A, simulation_ref=B, verdict_ref=C, proof_ref=D),
    PlanRejected(optimization_ref=A, simulation_ref=B, verdict_ref=C, proof_ref=D, reasons=["chance constraint: 0.08 > 0.05"]),
    CapsuleDeployed(optimization_ref=A, simulation_ref=B, verdict_ref=C, proof_ref=D, capsule_id="hvac-zone1",
                    activity_id="act-1", capsule_path="/runs/s/capsule"),
    StrikeCompleted(outcome="deployed", activity_id="act-1", value_ref=A, report_paths={"pdf": "/r/report.pdf"}),
    StrikeFailed(stage="simulator", reason="ValueError: boom"),
]


def test_every_message_type_has_a_sample():
    assert sorted(type(b).TYPE for b in SAMPLES) == sorted(MESSAGE_TYPES)


@pytest.mark.parametrize("body", SAMPLES, ids=lambda b: type(b).TYPE)
def test_wire_round_trip(body):
    m = Message.start(body, contract_id="acme-cold-1")
    raw = encode(m)
    back = decode(raw)
    assert back == m and type(back.body) is type(body)
    assert json.loads(raw)["type"] == type(body).TYPE and back.schema_version == 1
    assert decode(to_dict(m)) == m


def test_envelope_defaults_and_follow():
    request = Message.start(SAMPLES[0], contract_id="c1")
    assert len(request.strike_id) == 32 and request.attempt == 0 and request.round == 0
    assert request.created_at.tzinfo is not None
    nxt = request.follow(PlanOptimized(optimization_ref=A))
    assert (nxt.strike_id, nxt.contract_id, nxt.causation_id) == (request.strike_id, "c1", request.message_id)
    assert nxt.message_id != request.message_id and nxt.type == "plan.optimized"
    again = nxt.retried()
    assert again.attempt == 1 and again.message_id == nxt.message_id
    # a re-requested strike (after a shield rejection) starts a new round, carried down the cascade
    round1 = Message.start(SAMPLES[0].model_copy(update={"retry": 1}), strike_id=request.strike_id)
    assert round1.round == 1 and round1.follow(PlanOptimized(optimization_ref=A)).round == 1


def test_envelope_validation():
    with pytest.raises(ValidationError, match="do not match the body"):
        Message(strike_id="s1", type="plan.simulated", body=PlanOptimized(optimization_ref=A))
    with pytest.raises(ValidationError, match="strike_id"):
        Message(strike_id="has.a.dot", body=PlanOptimized(optimization_ref=A))  # would break routing keys
    with pytest.raises(ValidationError):
        PlanOptimized(optimization_ref="not-a-sha")
    with pytest.raises(ValidationError, match="capsule_ref or capsule_path"):
        CapsuleDeployed(optimization_ref=A, simulation_ref=B, verdict_ref=C, proof_ref=D, capsule_id="x", activity_id="y")
    with pytest.raises(ValidationError, match="activity_id"):
        StrikeCompleted(outcome="deployed")
    StrikeCompleted(outcome="rejected", reasons=["envelope"])  # no activity when nothing was deployed


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"\xff\xfe", "message is not JSON"),
        (b"{", "message is not JSON"),
        (b"[1, 2]", "message must be a JSON object, not list"),
        (b'{"type": "plan.exploded", "strike_id": "s1"}', "unknown message type 'plan.exploded'"),
        (b'{"strike_id": "s1"}', "unknown message type None"),
        (b'{"type": "plan.optimized", "schema_version": 2, "strike_id": "s1"}',
         "unsupported schema_version 2 of 'plan.optimized' (supported: 1)"),
        (b'{"type": "plan.optimized", "schema_version": "1", "strike_id": "s1"}', "unsupported schema_version '1'"),
        (b'{"type": "plan.optimized", "strike_id": "s1", "body": {"optimization_ref": "xyz"}}',
         "invalid plan.optimized message: body.optimization_ref: String should match pattern"),
        (b'{"type": "plan.optimized", "strike_id": "s1", "body": {"optimization_ref": "' + A.encode() + b'", "extra": 1}}',
         "invalid plan.optimized message: body.extra: Extra inputs are not permitted"),
        # bounds (issue 9): checked before or while parsing, so hostile input costs nothing
        (b"[" * 100_000 + b"]" * 100_000, "nests 100000 levels deep, over the limit of 64"),
        (b'{"a": ' * 65 + b"1" + b"}" * 65, "nests 65 levels deep, over the limit of 64"),
        (b'{"strike_id": "s1", "seed": ' + b"9" * 5000 + b"}", "field 'seed': an integer of 5000 digits is over the limit of 20"),
        (b'{"strike_id": "s1", "x": NaN}', "field 'x': must be a finite number, not nan"),
        (b'{"strike_id": "s1", "x": -Infinity}', "field 'x': must be a finite number, not -inf"),
        (b'{"strike_id": "s1", "x": 1e400}', "field 'x': must be a finite number, not inf"),
        (b'{"pad": "' + b" " * (4 * 1024 * 1024) + b'"}', "over the limit of 4194304"),
    ],
)
def test_decode_rejects_with_a_clear_reason(raw, reason):
    with pytest.raises(InvalidMessage) as err:
        decode(raw)
    assert reason in err.value.reason
    if b'"strike_id": "s1"' in raw and b'"type"' in raw:
        assert err.value.strike_id == "s1"  # so the strike can be failed with this reason


def test_decode_takes_a_message_at_the_limits():
    m = Message.start(StrikeRequested(domain="hvac", constraint={"a": [[[[1.5e300]]]]}, seed=2**63 - 1))
    assert decode(encode(m)) == m


def test_routing_keys():
    m = Message.start(PlanOptimized(optimization_ref=A), strike_id="abc")
    assert m.routing_key == "plan.optimized.abc"
    assert binding_key("plan.optimized") == "plan.optimized.*"
    assert outcome_keys("abc") == ("strike.completed.abc", "strike.failed.abc")
    assert strike_key("abc") == "*.*.abc"
    with pytest.raises(ValueError):
        binding_key("plan.exploded")
    table = routes()
    assert table["strike.requested"] == "optimizer" and table["plan.rejected"] == "reporter"
    assert set(table) | {"strike.completed", "strike.failed"} == set(MESSAGE_TYPES)
    with pytest.raises(ValueError, match="consumed by both"):
        routes({**CONSUMES, "other": ("plan.optimized",)})


def test_json_schemas_validate_real_messages():
    jsonschema = pytest.importorskip("jsonschema")
    schemas = json_schemas()
    assert list(schemas) == list(MESSAGE_TYPES)
    for body in SAMPLES:
        schema = schemas[type(body).TYPE]
        jsonschema.Draft202012Validator.check_schema(schema)
        instance = json.loads(encode(Message.start(body)))
        jsonschema.validate(instance, schema)
        wrong_type = {**instance, "type": "strike.failed" if body.TYPE != "strike.failed" else "plan.optimized"}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong_type, schema)


def test_schema_command(capsys, tmp_path):
    assert schema_cli.main([]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == set(MESSAGE_TYPES)
    assert printed["strike.requested"]["properties"]["type"]["const"] == "strike.requested"
    assert schema_cli.main(["--output", str(tmp_path / "schemas")]) == 0
    files = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert files == sorted(f"{t}.schema.json" for t in MESSAGE_TYPES)
    assert json.loads((tmp_path / "schemas" / "plan.optimized.schema.json").read_text()) == printed["plan.optimized"]
