"""The live loop's core without a broker: the emulated plant, the model-error estimate, the contract setting."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from industriverse.errors import BadInput
from industriverse.model.estimate import StateEstimator
from industriverse.model.mapping import map_constraint
from industriverse.operate.live import ModelBias, feedforward
from industriverse.operate.plant import EmulatedPlant, mismatched_constraint, with_horizon
from industriverse.operate.twin import parse_fault
from industriverse.plan.tracking import PlanTracking

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _hvac() -> dict:
    return json.loads((EXAMPLES / "hvac_testcase1.json").read_text())


def test_mismatch_scales_thermal_parameters_within_the_bound_and_is_reproducible():
    raw = json.loads((EXAMPLES / "cold_storage_display_case.json").read_text())
    a, fa = mismatched_constraint("cold_storage", raw, 0.2, seed=3)
    b, fb = mismatched_constraint("cold_storage", raw, 0.2, seed=3)
    assert fa == fb and a == b
    assert len(fa) == 6 and all(0.8 <= f <= 1.2 for f in fa.values()) and len(set(fa.values())) == 6
    nominal, true = map_constraint("cold_storage", raw), map_constraint("cold_storage", a)
    assert np.allclose(true.network.capacities / nominal.network.capacities,
                       [fa["C[goods]"], fa["C[air]"], fa["C[wall]"]])
    assert mismatched_constraint("cold_storage", raw, 0.0, seed=3)[1] == {k: 1.0 for k in fa}
    with pytest.raises(BadInput, match="--mismatch"):
        mismatched_constraint("cold_storage", raw, 1.5, seed=0)


def test_plant_noise_draws_do_not_depend_on_the_inputs():
    """Common random numbers: every controller meets the same disturbances."""
    p = map_constraint("hvac", with_horizon(_hvac(), hours=2))
    a, b = EmulatedPlant(p, seed=5), EmulatedPlant(p, seed=5)
    for _ in range(60):
        ra, rb = a.step(None), b.step(np.array([10.0]))
        assert ra["disturbances"] == rb["disturbances"]
        assert ra["controller"] == "baseline" and rb["controller"] == "setpoints"
    assert rb["nodes"]["zone"] > ra["nodes"]["zone"] + 1.0  # full heat for an hour vs the thermostat


def test_door_open_fault_starts_at_its_hour_and_breaks_the_band():
    p = map_constraint("hvac", with_horizon(_hvac(), hours=3))
    plant = EmulatedPlant(p, faults=[parse_fault("door_open@1")], seed=0)
    readings = [plant.step(None) for _ in range(plant.steps)]
    assert readings[58]["faults"] == [] and readings[60]["faults"] == ["door_open@1"]
    assert min(r["nodes"]["zone"] for r in readings[90:]) < 20.0  # the baseline cannot hold the band


def test_model_bias_learns_heat_the_planning_model_misses():
    """The true plant gets 0.8 kW of heat the model does not know; the estimate finds it."""
    raw = with_horizon(_hvac(), hours=8)
    model = map_constraint("hvac", raw)
    true = copy.deepcopy(raw)
    true["network"]["gains"] = [{"node": "zone", "disturbance": "people"}]
    true["disturbances"]["people"] = {"type": "constant", "value": 0.8}
    plant = EmulatedPlant(map_constraint("hvac", true), seed=1)
    est = StateEstimator(model.network, process_noise=0.5, measurement_noise=0.05)
    bias = ModelBias(model.network, hours=2.0)
    est.update(dict(zip(model.nodes, plant.measured())))
    for _ in range(plant.steps):
        r = plant.step(None)
        est.predict(plant.h, u=r["actuators"], d={k: v for k, v in r["disturbances"].items() if k != "people"})
        prior = est.mean
        est.update(r["nodes"])
        bias.update(dict(zip(model.nodes, est.mean - prior)), plant.h)
    assert bias.kw["zone"] == pytest.approx(0.8, abs=0.15)
    planned = map_constraint("hvac", bias.apply(raw, model.network))
    assert planned.network.disturbance_names[-1] == "model_bias_zone"
    assert planned.d[0, -1] == pytest.approx(bias.kw["zone"], abs=1e-6)
    again = ModelBias(model.network)
    again.restore(bias.to_dict())
    assert again.kw == bias.kw


def test_feedforward_cancels_the_unforeseen_heat_and_removes_the_tracking_offset():
    """0.8 kW the plan does not know about: the proportional law alone sits off its reference by
    about heat / K; with the feedforward of the learned missing heat the offset is gone."""
    raw = with_horizon(_hvac(), hours=8)
    model = map_constraint("hvac", raw)
    # the correction itself: +2 K of ambient over the forecast is 0.2 kW more heat, 0.5 kW learned
    # heat the plan did not count on: the heater (thermal kW) gives both back
    d_plan = model.d[3]
    du = feedforward(model.network, model, 3, d_plan + 2.0, np.array([0.5]))
    assert du[0] == pytest.approx(-(0.2 + 0.5), rel=1e-6)
    planned = map_constraint("hvac", ModelBias(model.network).apply(raw, model.network))
    assert feedforward(model.network, planned, 3, d_plan, np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-12)

    true = copy.deepcopy(raw)
    true["network"]["gains"] = [{"node": "zone", "disturbance": "people"}]
    true["disturbances"]["people"] = {"type": "constant", "value": 0.8}
    offsets = {}
    for with_ff in (False, True):
        plant = EmulatedPlant(map_constraint("hvac", true), seed=1, noise=False)
        tracker = PlanTracking(model, np.full((model.H, 1), 1.7))
        tracker.start(1)
        bias = ModelBias(model.network)
        # offset-free: the filter predicts with the heat it has learned, so its estimate does not lag
        net = bias.network(raw, model.network, "hvac") if with_ff else model.network
        est = StateEstimator(net, process_noise=0.5, measurement_noise=0.05)
        est.update(dict(zip(model.nodes, plant.measured())))
        dev = []
        for j in range(plant.steps):
            d = np.array([plant.disturbances_now()[0]])
            u = tracker(j, est.mean[None, :], d[None, :])[0]
            if with_ff:
                u = u + feedforward(model.network, model, j // tracker.model.S, d, bias.now_kw())
            r = plant.step(np.clip(u, 0.0, 10.0))
            used = bias.filter_inputs() if with_ff else {}
            est.predict(plant.h, u=r["actuators"], d={"ambient": r["disturbances"]["ambient"], **used})
            prior = est.mean
            est.update(r["nodes"])
            bias.update(dict(zip(model.nodes, est.mean - prior)), plant.h, {"zone": used.get("model_bias_zone", 0.0)})
            dev.append(plant.x[0] - tracker.x_ref[j + 1, 0])
        offsets[with_ff] = float(np.mean(dev[-120:]))
    assert offsets[False] > 0.07  # ≈ 0.8 kW / 7.6 kW/K above the reference
    assert abs(offsets[True]) < 0.01, offsets
    assert bias.kw_now["zone"] == pytest.approx(0.8, abs=0.05)


def test_contract_replan_minutes_is_validated(tmp_path):
    from industriverse.fleet.contracts import load_contracts

    (tmp_path / "hvac.json").write_text(json.dumps(_hvac()))
    good = "contracts:\n  - {id: c1, client: x, domain: hvac, constraint: hvac.json, schedule: {every_minutes: 60}, replan_minutes: 15}\n"
    (tmp_path / "c.yaml").write_text(good)
    assert load_contracts(tmp_path / "c.yaml")[0][0].replan_minutes == 15
    (tmp_path / "c.yaml").write_text(good.replace("replan_minutes: 15", "replan_minutes: 0"))
    with pytest.raises(BadInput, match="replan_minutes"):
        load_contracts(tmp_path / "c.yaml")


@pytest.mark.parametrize("argv, code, message", [
    (["plant", "--site", "s", "--constraint_json", str(EXAMPLES / "hvac_testcase1.json"), "--fault", "door_open@99"], 2,
     "field '--fault': door_open@99: hour 99 is outside the run's 24 hours"),
    (["plant", "--site", "a/b", "--constraint_json", str(EXAMPLES / "hvac_testcase1.json")], 2, "field '--site'"),
    (["plant", "--site", "s", "--constraint_json", str(EXAMPLES / "hvac_testcase1.json"), "--mqtt", "http://x"], 2,
     "field '--mqtt': 'http://x' must start with mqtt:// or mqtts://"),
    (["plant", "--site", "s", "--constraint_json", str(EXAMPLES / "hvac_testcase1.json"), "--mqtt", "mqtt://127.0.0.1:9"], 3,
     "MQTT broker 127.0.0.1:9 unreachable"),
    (["operate", "--site", "s", "--contracts", str(EXAMPLES / "contracts.yaml"), "--contract", "nope"], 2,
     "field 'contracts': no contract 'nope'"),
])
def test_live_commands_say_what_is_wrong_in_one_line(argv, code, message, capsys, home):
    from cli.main import main

    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
