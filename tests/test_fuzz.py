"""Property-based bad input (hypothesis) over every document the system reads and the message codec.

Each property takes a real document (the shipped hvac constraint, the run directory and capsule
of one real strike, the shipped contracts, a real message), puts one bad value somewhere and runs
the real command on it.  Bad values are of two kinds: those no JSON/YAML document may hold
(NaN, ±inf, an integer over 20 digits, nesting past the depth limit -- refused by the shared
reader wherever they are) and values of the wrong type where a number is required.  For every
generated input the command must exit 2 with exactly one ``error:`` line and no traceback, and
the gateway must hold exactly what it held before (nothing deployed, activated or recorded).
"""
from __future__ import annotations

import copy
import io
import json
import math
import shutil
import traceback
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.capsule import main as capsule_main
from cli.deploy_sovereign_dac import main as deploy_main
from cli.monitor import main as monitor_main
from cli.orchestrate_full_regiment import main as regiment_main
from cli.run_client_strike_loop import main as strike_main
from cli.simulate_tnn_dynamics import main as simulate_main
from cli.verify_safety_compliance import main as verify_main
from industriverse.model.canonical import MAX_DEPTH
from messages import Message, StrikeRequested
from messages.codec import decode, to_dict
from messages.envelope import InvalidMessage
from strike_helpers import ROOT, example

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DEEP = "__deep__"  # replaced in the written text by nesting past the limit (the encoders cannot write it)

# values no document may hold, wherever they are
READER_BAD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=21, max_value=4000).map(lambda digits: 10 ** digits - 1),
    st.integers(min_value=MAX_DEPTH + 1, max_value=2000).map(lambda depth: f"{DEEP}{depth}"),
)
# values of the wrong type where a number is required
TYPE_BAD = st.sampled_from(["xyz", "", [], [1, "a"], {"type": "nope"}, True])


# --- documents and their leaves ---------------------------------------------------------------------------
def leaves(doc, where=()):
    """Paths of every scalar in ``doc``."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in leaves(v, where + (k,))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in leaves(v, where + (i,))]
    return [where]


def numeric_leaves(doc, under=()):
    def get(p):
        node = doc
        for k in p:
            node = node[k]
        return node

    return [p for p in leaves(doc) if p[:len(under)] == under and isinstance(get(p), (int, float))
            and not isinstance(get(p), bool)]


def set_at(doc, path, value):
    out = copy.deepcopy(doc)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def _deepen(text: str, quote: str) -> str:
    for depth in range(2001, MAX_DEPTH, -1):
        token = f"{quote}{DEEP}{depth}{quote}"
        if token in text:
            text = text.replace(token, "[" * depth + "]" * depth)
    return text


def dump_json(doc) -> str:
    return _deepen(json.dumps(doc), '"')  # NaN/Infinity written as an attacker would


def dump_yaml(doc) -> str:
    return _deepen(yaml.safe_dump(doc, sort_keys=False), "'").replace(DEEP, "[]")


# --- running a command ------------------------------------------------------------------------------------
def run(main, argv) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(out):
            code = main(argv)
    except BaseException:  # noqa: BLE001 - a traceback is exactly what the property forbids
        pytest.fail(f"{main.__module__} {argv} raised:\n{traceback.format_exc()}")
    return code, err.getvalue()


def assert_refused(code: int, err: str, gateway_before) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith("strike ")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert gateway_state() == gateway_before, "bad input changed the gateway"


def gateway_state():
    from industriverse.operate.gateway import CapsuleGatewayService

    gw = CapsuleGatewayService()
    return ([(c["capsule_id"], c["active_version"], c["versions"]) for c in gw.list_capsules()],
            [(a["id"], a["status"]) for a in gw.list_activities()])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An isolated home with one real deployed strike (its run directory and capsule)."""
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INDUSTRIVERSE_HOME", str(root / "home"))
        mp.delenv("INDUSTRIVERSE_DB_URL", raising=False)
        raw = example("hvac", ensemble=100, hours=2)
        (root / "c.json").write_text(json.dumps(raw))
        code, err = run(strike_main, ["--domain", "hvac", "--constraint_json", str(root / "c.json"),
                                      "--output_dir", str(root / "run"), "--quiet"])
        assert code == 0, err
        shutil.copytree(ROOT / "examples", root / "examples")
        yield {"root": root, "constraint": raw, "run": root / "run", "before": gateway_state()}


# --- the properties ---------------------------------------------------------------------------------------
HVAC = json.loads((ROOT / "examples" / "hvac_testcase1.json").read_text())


@FUZZ
@given(data=st.data())
def test_constraint(world, data):
    raw = world["constraint"]
    if data.draw(st.booleans()):
        doc = set_at(raw, data.draw(st.sampled_from(leaves(raw))), data.draw(READER_BAD))
    else:
        doc = set_at(raw, data.draw(st.sampled_from(numeric_leaves(raw))), data.draw(TYPE_BAD))
    path = world["root"] / "fuzz_constraint.json"
    path.write_text(dump_json(doc))
    code, err = run(strike_main, ["--domain", "hvac", "--constraint_json", str(path),
                                  "--output_dir", str(world["root"] / "fuzz_run")])
    assert_refused(code, err, world["before"])
    assert str(path) in err


@FUZZ
@given(data=st.data())
def test_plan(world, data):
    opt = json.loads((world["run"] / "optimization.json").read_text())
    main = data.draw(st.sampled_from([verify_main, simulate_main]))
    if data.draw(st.booleans()):
        doc = set_at(opt, data.draw(st.sampled_from(leaves(opt))), data.draw(READER_BAD))
    else:  # the figures each command reads: the shield the plan and its states, the simulator the plan
        paths = numeric_leaves(opt, ("plan",)) + (numeric_leaves(opt, ("states",)) if main is verify_main else [])
        doc = set_at(opt, data.draw(st.sampled_from(paths)), data.draw(TYPE_BAD))
    path = world["root"] / "fuzz_optimization.json"
    path.write_text(dump_json(doc))
    if main is verify_main:
        argv = ["--plan", str(path), "--simulation", str(world["run"] / "simulation.json"),
                "--output_dir", str(world["root"] / "fuzz_verify")]
    else:
        argv = ["--domain", "hvac", "--constraint_json", str(world["root"] / "c.json"), "--plan", str(path),
                "--ensemble", "10", "--output", str(world["root"] / "fuzz_sim.json")]
    code, err = run(main, argv)
    assert_refused(code, err, world["before"])
    assert not (world["root"] / "fuzz_verify" / "proof.json").exists()


@FUZZ
@given(data=st.data())
def test_manifest(world, data):
    capsule = world["root"] / "fuzz_capsule"
    if not capsule.exists():
        shutil.copytree(world["run"] / "capsule", capsule)
    manifest = yaml.safe_load((world["run"] / "capsule" / "manifest.yaml").read_text())
    if data.draw(st.booleans()):
        doc = set_at(manifest, data.draw(st.sampled_from(leaves(manifest))), data.draw(READER_BAD))
    else:
        doc = set_at(manifest, ("version",), data.draw(st.one_of(TYPE_BAD, st.integers(2**63, 10**30),
                                                                 st.integers(-10**6, 0))))
    (capsule / "manifest.yaml").write_text(dump_yaml(doc))
    main = data.draw(st.sampled_from([deploy_main, capsule_main]))
    argv = ["--manifest", str(capsule)] if main is deploy_main else ["verify", str(capsule)]
    code, err = run(main, argv)
    assert_refused(code, err, world["before"])


READING = {"time": "2026-01-13T00:15:00", "nodes": {"zone": 21.5}, "power_kw": 2.0}


@FUZZ
@given(data=st.data())
def test_telemetry(world, data):
    where = data.draw(st.sampled_from([("nodes", "zone"), ("power_kw",), ("time",)]))
    bad = st.one_of(READER_BAD, TYPE_BAD, st.none() if where == ("nodes", "zone") else st.nothing())  # power may be absent
    if where == ("time",):
        bad = st.one_of(bad, st.sampled_from(["yesterday", "2026-13-45T99:00", "1e999"]))
    line = dump_json(set_at(READING, where, data.draw(bad)))
    if data.draw(st.integers(0, 9)) == 0:  # or not a reading at all
        line = data.draw(st.sampled_from(["[]", "42", "{", '"x"', "null", "{\"nodes\": {\"attic\": 1}}"]))
    path = world["root"] / "fuzz_telemetry.jsonl"
    path.write_text(line + "\n")
    code, err = run(monitor_main, ["--manifest", str(world["run"] / "capsule"), "--telemetry", str(path)])
    assert_refused(code, err, world["before"])


@FUZZ
@given(data=st.data())
def test_contracts(world, data):
    contracts = yaml.safe_load((ROOT / "examples" / "contracts.yaml").read_text())
    if data.draw(st.booleans()):
        doc = set_at(contracts, data.draw(st.sampled_from(leaves(contracts))), data.draw(READER_BAD))
    else:
        i = data.draw(st.integers(0, len(contracts["contracts"]) - 1))
        key = data.draw(st.sampled_from(["schedule", "domain", "constraint"]))
        value = data.draw(st.one_of(TYPE_BAD, st.sampled_from([{"every_minutes": math.nan}, {"every_minutes": -5},
                                                               {"daily_at": "25:99"}, {"every_minutes": 10**30}])))
        doc = set_at(contracts, ("contracts", i, key), value)
    path = world["root"] / "examples" / "fuzz_contracts.yaml"
    path.write_text(dump_yaml(doc))
    code, err = run(regiment_main, ["--contracts", str(path), "--once", "--embedded",
                                    "--runs_dir", str(world["root"] / "fuzz_runs")])
    assert_refused(code, err, world["before"])


MESSAGE = to_dict(Message.start(StrikeRequested(domain="hvac", constraint=HVAC, seed=0, backoff_k=1.0)))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)


@FUZZ
@given(data=st.data())
def test_message_codec(data):
    kind = data.draw(st.sampled_from(["leaf", "bytes", "json"]))
    if kind == "leaf":
        raw = dump_json(set_at(MESSAGE, data.draw(st.sampled_from(leaves(MESSAGE))), data.draw(READER_BAD))).encode()
    elif kind == "bytes":
        raw = data.draw(st.binary(max_size=200))
    else:
        raw = json.dumps(data.draw(JSON_VALUES)).encode()
    with pytest.raises(InvalidMessage) as exc:
        decode(raw)
    assert "\n" not in exc.value.reason


FLAGS = [
    (strike_main, ["--domain", "hvac", "--constraint_json", "c.json"], ["--timeout", "--seed", "--backoff_factor"]),
    (regiment_main, ["--contracts", "contracts.yaml", "--once"], ["--interval"]),
    (simulate_main, ["--domain", "hvac", "--constraint_json", "c.json"], ["--ensemble", "--seed"]),
    (monitor_main, ["--manifest", "m", "--telemetry", "t"], ["--consecutive", "--stuck-readings"]),
]


@FUZZ
@given(data=st.data())
def test_numeric_flags(world, data):
    main, base, flags = data.draw(st.sampled_from(FLAGS))
    flag = data.draw(st.sampled_from(flags))
    value = data.draw(st.one_of(st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "", "abc", "-1", "0x10"]),
                                st.integers(min_value=10**19).map(str)))
    code, err = run(main, [*base, f"{flag}={value}"])
    assert_refused(code, err, world["before"])
    assert f"field '{flag}'" in err
