"""The shield: every check passes on real runs of the shipped examples, and each check fails on a
real optimization/simulation document edited to break exactly that check.

The documents come from the real optimizer and simulator (small ensembles: 60 trajectories, the
fewest for which zero violations can prove a 5 % limit at 95 % confidence).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from industriverse.model.catalog import load_domain
from industriverse.errors import BadInput
from industriverse.model.mapping import load_problem
from industriverse.plan.optimize import load_plan, optimize
from industriverse.verify.shield import (FOOD_SAFETY_LIMIT_C, check_plan, check_second_law_heat_flow, nominal_states)
from industriverse.verify.simulate import simulate
from industriverse.plan.tracking import noise_backoff

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUNS = {
    "hvac": "hvac_testcase1",
    "cold_storage": "cold_storage_display_case",
    "microgrid": "microgrid_pv_battery",
}
ENSEMBLE = 60
# Noise back-offs the fixtures plan with (the optimizer holds the envelope at every control sub-step, so the
# cold store's 08:00 load step needs no more than the others).
BACKOFF_K = {"hvac": 1.5, "cold_storage": 1.5, "microgrid": 1.5}
COMMON = {"finite_values", "envelope", "envelope_between_samples", "complementarity", "nominal_states", "actuator_limits", "ramp_limits", "chance_constraint", "energy_budget",
          "peak_budget", "first_law", "second_law_cop", "second_law_heat_flow", "optimizer_feasible"}
DOMAIN_CHECKS = {
    "hvac": {"domain.heater_rating"},
    "cold_storage": {"domain.goods_food_safety"},
    "microgrid": {"domain.soc_capacity", "domain.grid_import", "domain.grid_export"},
}


def strike_documents(domain: str, *, backoff_k: float | None = None, ensemble: int = ENSEMBLE, seed: int = 0) -> tuple[dict, dict]:
    """(optimization, simulation) JSON of a real run of the domain's shipped example.

    As the strike loop does: plan against the envelope tightened by ``backoff_k`` noise
    back-offs, simulate the plan and the baseline on the untightened problem.  Both documents
    go through JSON, as they would on disk.
    """
    path = EXAMPLES / f"{RUNS[domain]}.json"
    problem = load_problem(domain, path)
    planning = problem.with_backoff(noise_backoff(problem, BACKOFF_K[domain] if backoff_k is None else backoff_k))
    opt = optimize(planning, "auto", 0, request_dir=str(EXAMPLES))
    u = np.column_stack([opt["plan"][a] for a in problem.actuators])
    sim = simulate(problem, u, ensemble_size=ensemble, seed=seed, request_dir=str(EXAMPLES))
    return json.loads(json.dumps(opt)), json.loads(json.dumps(sim))


@pytest.fixture(scope="module")
def runs():
    return {domain: strike_documents(domain) for domain in RUNS}


def docs(runs, domain):
    opt, sim = runs[domain]
    return copy.deepcopy(opt), copy.deepcopy(sim)


def failed(shield: dict) -> set[str]:
    return {c["name"] for c in shield["checks"] if not c["passed"]}


def check(shield: dict, name: str) -> dict:
    return next(c for c in shield["checks"] if c["name"] == name)


def edit_request(opt: dict, sim: dict, edit) -> None:
    """Apply ``edit`` to the request of both documents (they must stay a plan and its simulation)."""
    edit(opt["request"])
    sim["request"] = copy.deepcopy(opt["request"])


def domain_network(domain: str) -> dict:
    return copy.deepcopy(load_domain(domain).defaults["network"])


# --- real runs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", sorted(RUNS))
def test_every_check_passes_on_a_real_run(runs, domain):
    opt, sim = docs(runs, domain)
    shield = check_plan(opt, sim)
    assert failed(shield) == set(), [c for c in shield["checks"] if not c["passed"]]
    assert shield["passed"] is True
    assert {c["name"] for c in shield["checks"]} == COMMON | DOMAIN_CHECKS[domain]
    for c in shield["checks"]:
        assert set(c) == {"name", "value", "limit", "margin", "passed", "detail"}
        if c["limit"] is not None and c["value"] is not None:
            assert c["margin"] >= -1e-6, c  # positive margin = slack
    json.dumps(shield, allow_nan=False)  # strict JSON
    # the limits are the client's: the envelope check holds the plan to 21 °C, not to the back-off
    if domain == "hvac":
        env = check(shield, "envelope")
        assert env["limit"] in (21.0, 24.0)
        assert "gap" in check(shield, "optimizer_feasible")["detail"]


def test_nominal_states_are_recomputed_not_trusted(runs):
    opt, sim = docs(runs, "hvac")
    problem, u = load_plan(opt)
    x = nominal_states(problem, u)
    assert np.allclose(x[:, 0], opt["states"]["zone"], atol=1e-9)


# --- each check broken by a crafted document -----------------------------------------------------------
def test_envelope(runs):
    opt, sim = docs(runs, "hvac")
    lowest = min(opt["states"]["zone"][1:])
    edit_request(opt, sim, lambda r: r["envelope"]["zone"].update(min=lowest + 0.05))
    shield = check_plan(opt, sim)
    assert failed(shield) == {"envelope", "envelope_between_samples"}
    c = check(shield, "envelope")
    assert c["limit"] == pytest.approx(lowest + 0.05) and c["margin"] == pytest.approx(-0.05, abs=1e-9)


def test_nominal_states(runs):
    opt, sim = docs(runs, "hvac")
    opt["states"]["zone"][40] += 0.5  # a trajectory the plan does not produce
    shield = check_plan(opt, sim)
    assert failed(shield) == {"nominal_states"}
    assert check(shield, "nominal_states")["value"] == pytest.approx(0.5)


def test_actuator_limits(runs):
    opt, sim = docs(runs, "hvac")
    top = max(opt["plan"]["heater"])
    edit_request(opt, sim, lambda r: r.setdefault("actuators", {}).update(heater={"max_kw": top - 0.5}))
    shield = check_plan(opt, sim)
    assert failed(shield) == {"actuator_limits"}
    c = check(shield, "actuator_limits")
    assert (c["value"], c["limit"]) == (pytest.approx(top), pytest.approx(top - 0.5))


def test_ramp_limits(runs):
    opt, sim = docs(runs, "hvac")
    jump = float(np.abs(np.diff(opt["plan"]["heater"])).max())
    edit_request(opt, sim, lambda r: r.setdefault("actuators", {}).update(heater={"ramp_kw_per_step": jump / 2}))
    shield = check_plan(opt, sim)
    assert failed(shield) == {"ramp_limits"}
    assert check(shield, "ramp_limits")["value"] == pytest.approx(jump)


def test_chance_constraint_from_the_simulation(runs):
    opt, sim = docs(runs, "hvac")
    sim["plan"]["violation_probability"]["upper"] = 0.2
    shield = check_plan(opt, sim)
    assert failed(shield) == {"chance_constraint"}
    assert check(shield, "chance_constraint")["margin"] == pytest.approx(0.05 - 0.2)


def test_chance_constraint_limit_is_the_clients(runs):
    opt, sim = docs(runs, "hvac")
    upper = sim["plan"]["violation_probability"]["upper"]
    edit_request(opt, sim, lambda r: r["uncertainty"].update(max_violation_probability=upper / 2))
    shield = check_plan(opt, sim)
    assert failed(shield) == {"chance_constraint"}
    assert check(shield, "chance_constraint")["limit"] == pytest.approx(upper / 2)


def test_energy_budget(runs):
    opt, sim = docs(runs, "hvac")
    energy = opt["objective"]["energy_kwh"]
    edit_request(opt, sim, lambda r: r.update(budgets={"energy_kwh": energy - 1.0}))
    shield = check_plan(opt, sim)
    assert failed(shield) == {"energy_budget"}
    assert check(shield, "energy_budget")["margin"] == pytest.approx(-1.0)


def test_peak_budget(runs):
    opt, sim = docs(runs, "hvac")
    peak = opt["objective"]["peak_kw"]
    edit_request(opt, sim, lambda r: r.update(budgets={"peak_kw": peak - 0.1}))
    shield = check_plan(opt, sim)
    assert failed(shield) == {"peak_budget"}
    assert check(shield, "peak_budget")["value"] == pytest.approx(peak)


def test_budgets_that_hold_pass(runs):
    opt, sim = docs(runs, "hvac")
    edit_request(opt, sim, lambda r: r.update(budgets={"energy_kwh": opt["objective"]["energy_kwh"] + 1,
                                                         "peak_kw": opt["objective"]["peak_kw"] + 1}))
    shield = check_plan(opt, sim)
    assert shield["passed"]
    assert check(shield, "energy_budget")["margin"] == pytest.approx(1.0)


def test_first_law_on_the_simulators_trajectory(runs):
    opt, sim = docs(runs, "hvac")
    sim["plan"]["nominal"]["states"]["zone"][40] += 0.3  # the simulator "created" heat
    shield = check_plan(opt, sim)
    assert failed(shield) == {"first_law"}
    assert "simulation's nominal trajectory" in check(shield, "first_law")["detail"]


def test_first_law_closes_on_real_runs(runs):
    for domain in RUNS:
        c = check(check_plan(*docs(runs, domain)), "first_law")
        assert c["value"] < 1e-9, (domain, c)


def test_second_law_cop_above_carnot(runs):
    opt, sim = docs(runs, "cold_storage")

    def impossible_compressor(r):
        net = domain_network("cold_storage")
        net["actuators"][0]["cop"] = {"model": "constant", "value": 40.0}  # Carnot at 2 °C vs 15-29 °C is < 21
        r["network"] = net

    edit_request(opt, sim, impossible_compressor)
    shield = check_plan(opt, sim)
    assert failed(shield) == {"second_law_cop"}
    assert check(shield, "second_law_cop")["value"] > 1.0


def test_second_law_cop_holds_for_carnot_fraction(runs):
    c = check(check_plan(*docs(runs, "cold_storage")), "second_law_cop")
    assert c["passed"] and 0 < c["value"] <= 0.5 + 1e-12  # eta = 0.5 of Carnot at most


def test_second_law_heat_flow(runs):
    # A negative conductance (heat flowing up the gradient) is refused by the network schema...
    opt, sim = docs(runs, "hvac")
    edit_request(opt, sim, lambda r: r["network"]["conductances"][0].update(w_per_k=-100.0))
    with pytest.raises(BadInput) as err:
        check_plan(opt, sim)
    assert "request.network.conductances" in str(err.value)
    # ... and a model that has one anyway fails the check on its trajectory
    opt, _ = docs(runs, "hvac")
    problem, u = load_plan(opt)
    x = nominal_states(problem, u)
    assert check_second_law_heat_flow(problem, x)["passed"]
    net = problem.network
    reversed_wall = net.conductances[0].model_copy(update={"w_per_k": -100.0})
    problem.network = net.model_copy(update={"conductances": [reversed_wall]})
    c = check_second_law_heat_flow(problem, x)
    assert not c["passed"] and c["value"] < 0


def test_optimizer_feasible(runs):
    opt, sim = docs(runs, "hvac")
    opt["feasible"] = False
    shield = check_plan(opt, sim)
    assert failed(shield) == {"optimizer_feasible"}


def test_heater_rating(runs):
    opt, sim = docs(runs, "hvac")
    top = max(opt["plan"]["heater"])

    def derated(r):
        r["network"]["actuators"][0]["max_kw"] = top - 0.5  # the heater's nameplate
        r.setdefault("actuators", {})["heater"] = {"max_kw": 10.0}  # the client allows more than it can give

    edit_request(opt, sim, derated)
    shield = check_plan(opt, sim)
    assert failed(shield) == {"domain.heater_rating"}
    c = check(shield, "domain.heater_rating")
    assert c["value"] == pytest.approx(top / 0.99) and c["limit"] == pytest.approx((top - 0.5) / 0.99)


def test_goods_food_safety(runs):
    opt, sim = docs(runs, "cold_storage")
    sim["plan"]["bands"]["goods"]["p99"][50] = FOOD_SAFETY_LIMIT_C + 0.5
    shield = check_plan(opt, sim)
    assert failed(shield) == {"domain.goods_food_safety"}
    assert check(shield, "domain.goods_food_safety")["limit"] == 8.0


def test_simultaneous_charge_and_discharge(runs):
    opt, sim = docs(runs, "microgrid")
    eta = domain_network("microgrid")["actuators"][0]["efficiency"]
    charge, discharge = opt["plan"]["battery_charge"], opt["plan"]["battery_discharge"]
    k = next(i for i in range(len(charge)) if charge[i] < 4 and discharge[i] < 4)
    # burn energy in the battery's losses without changing its charge: the trajectory is unchanged
    charge[k] += 0.5
    discharge[k] += 0.5 * eta * eta
    applied = sim["plan"]["nominal"]["plan_kw"]
    applied["battery_charge"][k], applied["battery_discharge"][k] = charge[k], discharge[k]
    shield = check_plan(opt, sim)
    assert failed(shield) == {"complementarity"}
    c = check(shield, "complementarity")
    assert c["value"] == pytest.approx(min(charge[k], discharge[k])) and c["limit"] == 1e-6
    assert c["margin"] == pytest.approx(1e-6 - c["value"])
    assert "1 of 96 steps" in c["detail"]


def test_envelope_between_samples(runs):
    """A band that falls from 21 to 16 °C at 18:00 and a plan that stops heating over 17:45-18:00: every sample
    meets its band (18:00 the night band), but the zone leaves the day band, still in force until 18:00."""
    from scipy.integrate import solve_ivp

    opt, sim = docs(runs, "hvac")
    edit_request(opt, sim, lambda r: r["envelope"]["zone"].update(
        min={"type": "time_of_use", "periods": [{"days": "all", "hours": [6, 18], "value": 21.0}], "default": 16.0}))
    problem, u = load_plan(opt)
    k = 71  # 17:45
    u[k] = 0.0
    opt["plan"]["heater"] = [float(v) for v in u[:, 0]]
    x = nominal_states(problem, u)
    opt["states"]["zone"] = [float(v) for v in x[:, 0]]
    sim = json.loads(json.dumps(simulate(problem, u, ensemble_size=ENSEMBLE, seed=0, request_dir=str(EXAMPLES))))
    shield = check_plan(opt, sim)
    assert "envelope" not in failed(shield) and "envelope_between_samples" in failed(shield)
    assert x[k + 1, 0] < 21.0 - 0.1  # the 18:00 state is below the day band, which the sample check never sees
    # independently: the exact response over the step, the ambient held (ZOH), minimum below 21 °C
    net = problem.network
    amb = problem.d[k, 0]
    sol = solve_ivp(lambda t, T: [net.conductances[0].w_per_k * (amb - T[0]) / net.nodes[0].capacity_j_per_k],
                    (0.0, problem.dt_s), [x[k, 0]], rtol=1e-11, atol=1e-11, dense_output=True)
    lowest = float(sol.sol(np.linspace(0.0, problem.dt_s, 901))[0].min())
    c = check(shield, "envelope_between_samples")
    assert c["value"] == pytest.approx(21.0 - lowest, abs=1e-6)
    assert c["limit"] == 1e-6 and c["margin"] == pytest.approx(1e-6 - c["value"])
    assert "T18:00:00 (the end of the step, approached from the left)" in c["detail"] and "1 of 96 steps" in c["detail"]


def test_soc_capacity(runs):
    opt, sim = docs(runs, "microgrid")
    top = max(opt["states"]["soc"])

    def smaller_battery(r):
        net = domain_network("microgrid")
        net["nodes"][0]["capacity_kwh"] = top - 0.5  # the envelope still allows up to 13.5 kWh
        r["network"] = net

    edit_request(opt, sim, smaller_battery)
    shield = check_plan(opt, sim)
    assert failed(shield) == {"domain.soc_capacity"}


@pytest.mark.parametrize("direction", ["import", "export"])
def test_grid_limits(runs, direction):
    opt, sim = docs(runs, "microgrid")
    power = np.array(opt["power_kw"])
    most = float(power.max()) if direction == "import" else float(-power.min())
    assert most > 1.0

    def tighter_grid(r):
        net = domain_network("microgrid")
        net["site"][f"{direction}_max_kw"] = most - 0.5
        r["network"] = net

    edit_request(opt, sim, tighter_grid)
    shield = check_plan(opt, sim)
    assert failed(shield) == {f"domain.grid_{direction}"}
    assert check(shield, f"domain.grid_{direction}")["value"] == pytest.approx(most)


# --- documents that do not belong together, or are broken -------------------------------------------------
def test_simulation_of_another_request_is_bad_input(runs):
    opt, sim = docs(runs, "hvac")
    sim["request"]["tariff"]["energy"] = 0.1
    with pytest.raises(BadInput) as err:
        check_plan(opt, sim, sim_file="sim.json")
    assert err.value.file == "sim.json" and err.value.field == "request"


def test_simulation_of_another_plan_is_bad_input(runs):
    opt, sim = docs(runs, "hvac")
    sim["plan"]["nominal"]["plan_kw"]["heater"][3] += 1.0
    with pytest.raises(BadInput) as err:
        check_plan(opt, sim)
    assert err.value.field == "plan.nominal.plan_kw" and "another plan" in str(err.value)


def test_simulation_of_another_domain_or_horizon_is_bad_input(runs):
    opt, sim = docs(runs, "hvac")
    sim["domain"] = "hvac_two_zone"
    with pytest.raises(BadInput, match="domain"):
        check_plan(opt, sim)
    opt, sim = docs(runs, "hvac")
    sim["horizon"]["steps"] = 48
    with pytest.raises(BadInput, match="horizon"):
        check_plan(opt, sim)


def test_baseline_only_simulation_is_bad_input(runs):
    opt, sim = docs(runs, "hvac")
    del sim["plan"]
    with pytest.raises(BadInput) as err:
        check_plan(opt, sim)
    assert err.value.field == "plan"


@pytest.mark.parametrize("field", ["plan", "states", "request", "feasible"])
def test_missing_field_is_named(runs, field):
    opt, sim = docs(runs, "hvac")
    del opt[field]
    with pytest.raises(BadInput) as err:
        check_plan(opt, sim, opt_file="opt.json")
    assert err.value.file == "opt.json" and err.value.field == field


def test_malformed_plan_is_named(runs):
    opt, sim = docs(runs, "hvac")
    opt["plan"]["heater"][5] = "hot"
    with pytest.raises(BadInput) as err:
        check_plan(opt, sim, opt_file="opt.json")
    assert err.value.field == "plan.heater"
    opt, sim = docs(runs, "hvac")
    opt["plan"]["heater"] = opt["plan"]["heater"][:10]
    with pytest.raises(BadInput, match="plan.heater"):
        check_plan(opt, sim)


# --- the script: verdict, signed proof, exit codes; a rejected proof cannot be deployed -------------------------
def write_run(run_dir: Path, opt: dict, sim: dict) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "optimization.json").write_text(json.dumps(opt))
    (run_dir / "simulation.json").write_text(json.dumps(sim))
    return run_dir / "optimization.json", run_dir / "simulation.json"


def verify_cli(opt_path, sim_path, out_dir, *extra) -> int:
    from cli.verify_safety_compliance import main

    return main(["--plan", str(opt_path), "--simulation", str(sim_path), "--output_dir", str(out_dir), *extra])


def test_cli_pass_writes_verdict_and_signed_proof(runs, home, tmp_path, capsys):
    from industriverse.trust.proof import verify_proof

    opt, sim = docs(runs, "hvac")
    opt_path, sim_path = write_run(tmp_path / "run", opt, sim)
    assert verify_cli(opt_path, sim_path, tmp_path / "run", "--strike-id", "s-pass") == 0
    verdict = json.loads((tmp_path / "run" / "verdict.json").read_text())
    proof = json.loads((tmp_path / "run" / "proof.json").read_text())
    assert verdict["passed"] is True and verdict["summary"]["failed"] == []
    assert verdict["summary"]["strike_id"] == "s-pass" and verdict["summary"]["optimizer"]["gap"] is not None
    assert all("detail" in c for c in verdict["checks"])
    assert proof["strike_id"] == "s-pass" and proof["shield"]["passed"] is True
    assert [c["name"] for c in proof["shield"]["checks"]] == [c["name"] for c in verdict["checks"]]
    assert verify_proof(proof, optimization=opt, simulation=sim) == []
    assert "passed" in capsys.readouterr().out


def test_cli_fail_exits_1_and_lists_failing_checks(runs, home, tmp_path, capsys):
    opt, sim = docs(runs, "hvac")
    sim["plan"]["violation_probability"]["upper"] = 0.3
    opt_path, sim_path = write_run(tmp_path / "run", opt, sim)
    assert verify_cli(opt_path, sim_path, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "FAILED chance_constraint" in err and "FAILED envelope" not in err
    proof = json.loads((tmp_path / "run" / "proof.json").read_text())
    assert proof["shield"]["passed"] is False  # the rejection is recorded and signed too
    assert proof["strike_id"].startswith("verify-")


def test_cli_bad_input_exits_2_naming_file_and_field(runs, home, tmp_path, capsys):
    opt, sim = docs(runs, "hvac")
    opt_path, sim_path = write_run(tmp_path / "run", opt, sim)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert verify_cli(broken, sim_path, tmp_path / "out") == 2
    assert "broken.json" in capsys.readouterr().err
    assert verify_cli(tmp_path / "missing.json", sim_path, tmp_path / "out") == 2
    assert "missing.json: no such file" in capsys.readouterr().err
    del opt["objective"]
    opt_path2, _ = write_run(tmp_path / "run2", opt, sim)
    assert verify_cli(opt_path2, sim_path, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(opt_path2) in err and "objective" in err and "Traceback" not in err
    sim["request"]["initial_state"] = {"zone": 22.0}
    _, sim_path3 = write_run(tmp_path / "run3", docs(runs, "hvac")[0], sim)
    assert verify_cli(opt_path, sim_path3, tmp_path / "out") == 2
    assert "field 'request'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "proof.json").exists()


def test_a_rejected_plan_cannot_be_deployed(runs, home, tmp_path, capsys):
    from cli.deploy_sovereign_dac import main as deploy
    from industriverse.trust.capsule import pack_capsule
    from industriverse.operate.gateway import CapsuleGatewayService, DeploymentRefused

    opt, sim = docs(runs, "hvac")
    top = max(opt["plan"]["heater"])
    edit_request(opt, sim, lambda r: r.setdefault("actuators", {}).update(heater={"max_kw": top - 0.5}))
    run = tmp_path / "run"
    opt_path, sim_path = write_run(run, opt, sim)
    assert verify_cli(opt_path, sim_path, run) == 1
    manifest = pack_capsule(run)
    assert deploy(["--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "proof did not pass the shield (failed: actuator_limits)" in err
    gateway = CapsuleGatewayService()
    with pytest.raises(DeploymentRefused, match="did not pass the shield"):
        gateway.register(manifest)
    assert gateway.list_capsules() == [] or all(c["active_version"] is None for c in gateway.list_capsules())
    assert gateway.list_activities(activity_type="deployment") == []

    # the same plan, verified against the client's real limits, deploys
    opt, sim = docs(runs, "hvac")
    run = tmp_path / "run_ok"
    opt_path, sim_path = write_run(run, opt, sim)
    assert verify_cli(opt_path, sim_path, run) == 0
    assert deploy(["--manifest", str(pack_capsule(run))]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("act-")


def test_complementarity_of_heating_and_cooling_one_node():
    """A zone with a heater and a chiller (BOPTEST testcase1's element, which heats and cools): both at once fails."""
    from industriverse.model.mapping import map_constraint
    from industriverse.verify.shield import check_complementarity
    from test_kpis import _boptest_testcase1

    problem = map_constraint("hvac", _boptest_testcase1(60.0))
    u = np.zeros((problem.H, problem.m))
    u[::2, 0], u[1::2, 1] = 1.0, 0.5  # alternating: never both
    assert check_complementarity(problem, u)["passed"]
    u[7] = [1.0, 2e-6]
    c = check_complementarity(problem, u)
    assert not c["passed"] and c["value"] == pytest.approx(2e-6) and "zone heats and cools at step 7" in c["detail"]


@pytest.mark.parametrize("network", ["linear", "radiation"])
def test_substep_states_meet_the_nominal_trajectory_at_the_plan_steps(network):
    """The sub-step trajectory the between-samples check reads is the nominal one: at every plan step it is
    the recomputed state (exact recursion for linear networks, solve_ivp for radiation)."""
    from industriverse.model.mapping import map_constraint
    from industriverse.verify.shield import substep_states
    from networks import roof_radiation_constraint

    problem = (load_problem("hvac", EXAMPLES / "hvac_testcase1.json") if network == "linear"
               else map_constraint("hvac", roof_radiation_constraint()))
    u = np.full((problem.H, problem.m), 3.0)
    xs, S, h = substep_states(problem, u)
    assert S == 15 and h == pytest.approx(60.0) and xs.shape == (problem.H * S + 1, problem.n)
    np.testing.assert_allclose(xs[::S], nominal_states(problem, u), atol=1e-9 if network == "linear" else 1e-6)
