"""The simulator: output contract, common random numbers, reproducibility, KPIs, back-off, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st
from scipy.optimize import linprog

import industriverse.verify.simulate as sim
from industriverse.errors import BadInput
from industriverse.model.kpis import energy_kpis
from industriverse.model.mapping import load_problem, map_constraint
from industriverse.verify.simulate import plan_from_optimization, run_ensemble, simulate
from industriverse.verify.stats import clopper_pearson_lower, clopper_pearson_upper, t_interval
from industriverse.plan.tracking import PlanTracking, noise_backoff
from networks import roof_radiation_constraint

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hvac_testcase1.json"
KPIS = ("energy_kwh", "cost", "emissions_kg", "peak_kw", "discomfort_kh", "travel_kw")


def lp_plan(p):
    """Cheapest plan of a linear problem inside its (backed-off) envelope, by HiGHS (a test-side LP)."""
    lo, hi = p.envelope()
    G = p.G_flat[p.n:]
    xf = p.x_free[1:].ravel()
    lo, hi = lo[1:].ravel(), hi[1:].ravel()
    fl, fh = np.isfinite(lo), np.isfinite(hi)
    _, W = p.linear_power()
    res = linprog((p.price[:, None] * W).ravel(), A_ub=np.vstack([G[fh], -G[fl]]),
                  b_ub=np.concatenate([hi[fh] - xf[fh], xf[fl] - lo[fl]]),
                  bounds=list(zip(p.u_lo.ravel(), p.u_hi.ravel())), method="highs")
    assert res.status == 0, res.message
    return res.x.reshape(p.H, p.m)


@pytest.fixture(scope="module")
def hvac():
    return load_problem("hvac", EXAMPLE)


@pytest.fixture(scope="module")
def hvac_plan(hvac):
    return lp_plan(hvac.with_backoff(noise_backoff(hvac)))


@pytest.fixture(scope="module")
def hvac_doc(hvac, hvac_plan):
    return simulate(hvac, hvac_plan, ensemble_size=200, seed=3)


def test_simulation_json_has_the_contract_fields(hvac, hvac_doc):
    doc = hvac_doc
    for key in ("domain", "request", "request_dir", "ensemble_size", "seed", "confidence", "horizon", "baseline", "plan",
                "paired_differences", "stats"):
        assert key in doc, key
    assert doc["domain"] == "hvac" and doc["ensemble_size"] == 200 and doc["seed"] == 3 and doc["confidence"] == 0.95
    assert doc["horizon"]["steps"] == 96 and doc["horizon"]["step_minutes"] == 15 and len(doc["horizon"]["times"]) == 97
    assert doc["horizon"]["start"] == "2026-01-13T00:00"
    assert doc["plan"]["controller"] == "tracking" and doc["baseline"]["controller"] == "proportional"
    for side in ("plan", "baseline"):
        r = doc[side]
        assert set(r["bands"]["zone"]) == {"p1", "p5", "p50", "p95", "p99"}
        assert all(len(v) == 97 for v in r["bands"]["zone"].values())
        b = r["bands"]["zone"]
        assert np.all(np.diff(np.array([b["p1"], b["p5"], b["p50"], b["p95"], b["p99"]]), axis=0) >= 0)
        assert all(len(v) == 96 for v in r["power_bands"].values())
        assert set(r["violations"]) >= {"count", "by_node", "first_steps"}
        assert set(r["violation_probability"]) >= {"estimate", "upper"}
        for k in KPIS:
            assert set(r["kpis"][k]) == {"mean", "std", "p5", "p50", "p95"}
            assert len(r["per_trajectory"][k]) == 200
        assert len(r["nominal"]["states"]["zone"]) == 97 and len(r["nominal"]["power_kw"]) == 96
        n_ok = 200 - r["violations"]["count"]
        assert r["stability_score"]["value"] == pytest.approx(clopper_pearson_lower(n_ok, 200, 0.95))
        assert "Clopper" in r["stability_score"]["definition"]
    for k in KPIS:
        d = doc["paired_differences"][k]
        assert set(d["percentiles"]) == {"p1", "p5", "p50", "p95", "p99"} and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
        assert "per_trajectory" not in d  # summarised: the differences are the two per_trajectory lists subtracted
    assert doc["stats"]["path_steps"] > 0 and doc["stats"]["seconds"] > 0
    json.dumps(doc, allow_nan=False)  # the file a tool can read back


def test_nominal_run_of_a_plan_is_the_planning_prediction(hvac, hvac_plan, hvac_doc):
    nom = hvac_doc["plan"]["nominal"]
    np.testing.assert_allclose(nom["states"]["zone"], hvac.predict(hvac_plan)[:, 0], atol=1e-9)
    np.testing.assert_allclose(nom["power_kw"], hvac.site_power(hvac_plan), atol=1e-9)
    np.testing.assert_allclose(nom["power_kw"], hvac_plan[:, 0] / 0.99, atol=1e-9)  # heater at efficiency 0.99


def test_per_trajectory_kpis_are_consistent(hvac_doc):
    for side in ("plan", "baseline"):
        r = hvac_doc[side]
        e = np.array(r["per_trajectory"]["energy_kwh"])
        assert np.all(e > 0)
        np.testing.assert_allclose(r["per_trajectory"]["emissions_kg"], 0.6618 * e, rtol=1e-12)
        assert r["kpis"]["energy_kwh"]["mean"] == pytest.approx(e.mean())
        assert np.all(np.array(r["per_trajectory"]["peak_kw"]) <= 10.0 / 0.99 + 1e-9)


def test_paired_differences_are_plan_minus_baseline(hvac_doc):
    for k in KPIS:
        diff = np.array(hvac_doc["plan"]["per_trajectory"][k]) - np.array(hvac_doc["baseline"]["per_trajectory"][k])
        pct = hvac_doc["paired_differences"][k]["percentiles"]
        np.testing.assert_allclose([pct[q] for q in ("p1", "p5", "p50", "p95", "p99")],
                                   np.percentile(diff, [1, 5, 50, 95, 99]), atol=1e-12)
        assert hvac_doc["paired_differences"][k]["mean"] == pytest.approx(diff.mean(), abs=1e-12)


def test_common_random_numbers(hvac, hvac_plan, hvac_doc):
    # the baseline alone, same seed: trajectory for trajectory the same as next to the plan
    alone = simulate(hvac, None, ensemble_size=200, seed=3)
    assert "plan" not in alone and "paired_differences" not in alone
    for k in KPIS:
        assert alone["baseline"]["per_trajectory"][k] == hvac_doc["baseline"]["per_trajectory"][k]
    # pairing makes the interval of the saving much tighter than comparing independent ensembles
    plan_e = np.array(hvac_doc["plan"]["per_trajectory"]["energy_kwh"])
    other = simulate(hvac, None, ensemble_size=200, seed=4)
    base_indep = np.array(other["baseline"]["per_trajectory"]["energy_kwh"])
    welch = st.ttest_ind(plan_e, base_indep, equal_var=False).confidence_interval(0.95)
    lo, hi = hvac_doc["paired_differences"]["energy_kwh"]["ci95"]
    assert (hi - lo) < 0.5 * (welch.high - welch.low)


def test_reproducible_by_seed(hvac, hvac_plan, hvac_doc):
    again = simulate(hvac, hvac_plan, ensemble_size=200, seed=3)
    strip = lambda d: {k: v for k, v in d.items() if k != "stats"}  # noqa: E731
    assert json.dumps(strip(again)) == json.dumps(strip(hvac_doc))
    other = simulate(hvac, hvac_plan, ensemble_size=200, seed=5)
    assert other["plan"]["per_trajectory"]["energy_kwh"] != hvac_doc["plan"]["per_trajectory"]["energy_kwh"]


def test_chunked_ensembles_are_reproducible(hvac, hvac_plan, monkeypatch):
    monkeypatch.setattr(sim, "CHUNK", 64)
    a = simulate(hvac, hvac_plan, ensemble_size=150, seed=1)
    b = simulate(hvac, hvac_plan, ensemble_size=150, seed=1)
    assert a["plan"]["per_trajectory"]["cost"] == b["plan"]["per_trajectory"]["cost"]
    assert len(set(a["plan"]["per_trajectory"]["cost"])) == 150  # every chunk draws its own noise


@pytest.mark.parametrize("domain,example,ramp", [
    ("hvac", "hvac_testcase1.json", False),              # tracking + proportional thermostat, heater
    ("hvac", "hvac_testcase1.json", True),               # the tracking law's ramp limit
    ("hvac", "hvac_testcase1.json", "short"),            # 42 steps of 10 min: a last block of 2 steps, 5-min peaks
    ("hvac_two_zone", "hvac_two_zone_office.json", False),  # two nodes, heat pumps (COP)
    ("cold_storage", "cold_storage_display_case.json", False),  # hysteresis thermostat, chiller (Carnot COP)
])
def test_the_compiled_kernel_gives_the_numpy_paths_numbers(domain, example, ramp, monkeypatch):
    """The fused kernel (industriverse.verify.fused) and the numpy path integrate the same draws to the same
    states, envelope excesses, discomfort, power, set-points and KPIs (up to the rounding of a different
    summation order), with and without noise, over more than one chunk."""
    raw = json.loads((ROOT / "examples" / example).read_text())
    if ramp == "short":
        raw["horizon"] = {"start": "2026-01-13T00:00", "hours": 7, "step_minutes": 10}
        raw["tariff"]["demand_charge_per_kw"] = 5.0
    elif ramp:
        raw.setdefault("actuators", {}).setdefault("heater", {})["ramp_kw_per_step"] = 1.5
    p = map_constraint(domain, raw)
    if ramp is True:
        assert np.isfinite(p.ramp).any()
    model = sim.substep_model(p)
    u = np.clip(np.linspace(0.0, 1.0, p.H)[:, None] * p.u_hi + (1 - np.linspace(0.0, 1.0, p.H))[:, None] * p.u_lo,
                p.u_lo, p.u_hi)
    ctrls = [PlanTracking(p, u, model), sim.make_baseline(p, model)]
    monkeypatch.setattr(sim, "CHUNK", 96)
    runs = {}
    for mode in ("never", "always"):
        monkeypatch.setattr(sim, "FUSED", mode)
        runs[mode] = [run_ensemble(p, ctrls, n, 5, model=model, noise=noise) for n, noise in ((150, True), (1, False))]
    for numpy_run, fused_run in zip(runs["never"], runs["always"]):
        for name in ("x", "sub_excess", "discomfort", "power", "travel", "u_mean"):
            a, b = getattr(numpy_run, name), getattr(fused_run, name)
            assert np.allclose(a, b, rtol=1e-9, atol=1e-9), name
        assert set(fused_run.energy) == set(numpy_run.energy)
        for name, v in numpy_run.energy.items():
            assert np.allclose(v, fused_run.energy[name], rtol=1e-9, atol=1e-9), name
    noisy = runs["always"][0]
    assert noisy.x[:, :, -1].std() > 0 and (noisy.sub_excess > 0).any()  # real noise, real excursions


def test_controllers_the_kernel_does_not_know_stay_on_the_numpy_path():
    from industriverse.verify import fused

    p = load_problem("microgrid", ROOT / "examples" / "microgrid_pv_battery.json")
    assert not fused.supported(p, [sim.make_baseline(p, sim.substep_model(p))])  # self-consumption
    hv = load_problem("hvac", EXAMPLE)
    assert fused.supported(hv, [PlanTracking(hv, np.zeros((hv.H, hv.m))), sim.make_baseline(hv, sim.substep_model(hv))])
    radiant = map_constraint("hvac", roof_radiation_constraint())
    assert not fused.supported(radiant, [PlanTracking(radiant, np.zeros((radiant.H, radiant.m)))])


def test_violation_count_matches_the_paths(hvac):
    """A plan hugging the lower band (no back-off) under noise violates about half the time."""
    u = lp_plan(hvac)
    doc = simulate(hvac, u, ensemble_size=300, seed=2)
    ens = run_ensemble(hvac, [PlanTracking(hvac, u)], 300, seed=2)
    # at the plan steps, and between them at every control sub-step after the first step (against the band in force)
    between = ens.sub_excess[0, :, :, 0].copy()
    between[:, 0] = 0.0
    below = (ens.x[0, :, 1:, 0] < hvac.x_lo[1:, 0] - 1e-6) | (between > 1e-6)
    assert doc["plan"]["violations"]["count"] == int(below.any(axis=1).sum())
    assert doc["plan"]["violations"]["by_node"]["zone"] == doc["plan"]["violations"]["count"]
    first = int(np.flatnonzero(below.any(axis=0))[0]) + 1
    assert doc["plan"]["violations"]["first_steps"]["zone"] == first
    assert doc["plan"]["violation_probability"]["estimate"] > 0.5
    vp = doc["plan"]["violation_probability"]
    assert vp["upper"] == pytest.approx(clopper_pearson_upper(doc["plan"]["violations"]["count"], 300, 0.95))


def test_backoff_meets_the_chance_constraint(hvac, hvac_doc):
    bo = noise_backoff(hvac)
    assert 0.0 < bo[0] < 1.0
    vp = hvac_doc["plan"]["violation_probability"]
    assert vp["estimate"] <= hvac.constraint.uncertainty.max_violation_probability
    assert noise_backoff(hvac, 2.0)[0] == pytest.approx(2 * bo[0])


@pytest.mark.parametrize("step_minutes,demand", [(10, 0.0), (60, 5.0)])
def test_energy_kpis_at_the_substep_equal_the_whole_horizon_ones(step_minutes, demand):
    """Block-wise KPIs (peak windows across plan steps, demand charge) equal energy_kpis on the whole path."""
    raw = json.loads(EXAMPLE.read_text())
    raw["horizon"] = {"start": "2026-01-13T00:00", "hours": 7, "step_minutes": step_minutes}
    raw["tariff"]["demand_charge_per_kw"] = demand
    p = map_constraint("hvac", raw)
    u = np.linspace(0.5, 9.5, p.H)[:, None] * (1 + 0.3 * np.sin(np.arange(p.H)))[:, None]
    u = np.clip(u, 0, 10)
    ens = run_ensemble(p, [PlanTracking(p, u, K=np.zeros((1, 1)))], 1, seed=0, noise=False)
    S = ens.S
    power = np.repeat(u[:, 0] / 0.99, S)  # open-loop plan: the heater's power is held over each step
    ref = energy_kpis(power, ens.h / 3600, np.repeat(p.price, S), np.repeat(p.export_price, S), np.repeat(p.emission, S), demand)
    for name, v in ref.items():
        assert ens.energy[name][0, 0] == pytest.approx(float(v), rel=1e-12), name
    assert ens.travel[0, 0] == pytest.approx(np.abs(np.diff(u[:, 0])).sum(), rel=1e-12)


def test_clopper_pearson_known_values():
    # k = 0 and k = n have closed forms (the "rule of three" family)
    assert clopper_pearson_upper(0, 200, 0.95) == pytest.approx(1 - 0.05 ** (1 / 200), rel=1e-10)
    assert clopper_pearson_lower(200, 200, 0.95) == pytest.approx(0.05 ** (1 / 200), rel=1e-10)
    assert clopper_pearson_upper(200, 200) == 1.0 and clopper_pearson_lower(0, 200) == 0.0
    # the defining tail equations of the exact bounds
    for k, n, c in ((3, 200, 0.95), (17, 100, 0.9), (50, 60, 0.99)):
        up, lo = clopper_pearson_upper(k, n, c), clopper_pearson_lower(k, n, c)
        assert st.binom.cdf(k, n, up) == pytest.approx(1 - c, rel=1e-8)
        assert st.binom.sf(k - 1, n, lo) == pytest.approx(1 - c, rel=1e-8)
        assert lo < k / n < up
    # one-sided 95 % bounds equal the two-sided 90 % exact interval's ends
    ci = st.binomtest(7, 120).proportion_ci(0.90, method="exact")
    assert clopper_pearson_lower(7, 120, 0.95) == pytest.approx(ci.low, rel=1e-10)
    assert clopper_pearson_upper(7, 120, 0.95) == pytest.approx(ci.high, rel=1e-10)
    with pytest.raises(ValueError):
        clopper_pearson_upper(5, 3)


def test_t_interval():
    x = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    lo, hi = t_interval(x, 0.95)
    half = st.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert (lo, hi) == pytest.approx((3 - half, 3 + half))
    assert t_interval(np.full(10, 2.5)) == (2.5, 2.5)


def test_radiation_network_simulates():
    raw = roof_radiation_constraint()
    p = map_constraint("hvac", raw)
    doc = simulate(p, np.full((p.H, p.m), 4.0), ensemble_size=20, seed=0)
    assert "Heun" in doc["noise"]["method"]
    json.dumps(doc, allow_nan=False)


def test_plan_document_checks(hvac, hvac_plan):
    good = {"domain": "hvac", "horizon": {"start": "2026-01-13T00:00", "steps": 96, "step_minutes": 15},
            "plan": {"heater": list(map(float, hvac_plan[:, 0]))}}
    np.testing.assert_array_equal(plan_from_optimization(hvac, good, "opt.json"), hvac_plan)
    bad = [
        (dict(good, domain="cold_storage"), "domain"),
        (dict(good, horizon=dict(good["horizon"], start="2026-01-14T00:00")), "horizon.start"),
        (dict(good, horizon=dict(good["horizon"], steps=48)), "horizon.steps"),
        (dict(good, plan={"heater": [1.0] * 95}), "plan.heater"),
        (dict(good, plan={"heater": [1.0] * 95 + ["x"]}), "plan.heater"),
        (dict(good, plan={"heater": [1.0] * 95 + [float("nan")]}), "plan.heater"),
        (dict(good, plan={"heater": good["plan"]["heater"], "cooler": [0.0] * 96}), "plan.cooler"),
        ({"domain": "hvac"}, "plan"),
        ({k: v for k, v in good.items() if k != "horizon"} | {"request": {"horizon": {"start": "2026-01-13T00:00", "hours": 12, "step_minutes": 15}}},
         "horizon.steps"),
    ]
    for doc, field in bad:
        with pytest.raises(BadInput) as exc:
            plan_from_optimization(hvac, doc, "opt.json")
        assert exc.value.field == field and exc.value.file == "opt.json"


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli" / "simulate_tnn_dynamics.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_plan_and_baseline(tmp_path, hvac_plan):
    opt = tmp_path / "optimization.json"
    opt.write_text(json.dumps({"domain": "hvac", "request": json.loads(EXAMPLE.read_text()),
                               "horizon": {"start": "2026-01-13T00:00", "steps": 96, "step_minutes": 15},
                               "plan": {"heater": [float(v) for v in hvac_plan[:, 0]]}}))
    out = tmp_path / "simulation.json"
    r = _cli("--domain", "hvac", "--constraint_json", str(EXAMPLE), "--plan", str(opt), "--ensemble", "40", "--seed", "9",
             "--output", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["ensemble_size"] == 40 and doc["seed"] == 9 and "paired_differences" in doc
    assert doc["plan"]["controller"] == "tracking" and doc["baseline"]["controller"] == "proportional"
    assert doc["request_dir"] == str(EXAMPLE.parent)



def test_cli_baseline_alone_to_stdout(capsys):
    from cli.simulate_tnn_dynamics import main

    assert main(["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--ensemble", "20"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "plan" not in doc and "paired_differences" not in doc and doc["ensemble_size"] == 20
    assert doc["baseline"]["controller"] == "proportional" and doc["seed"] == 0  # the constraint's seed


def test_cli_bad_input(tmp_path, capsys):
    from cli.simulate_tnn_dynamics import main

    opt = tmp_path / "opt.json"
    opt.write_text(json.dumps({"domain": "microgrid", "plan": {}}))
    bad = tmp_path / "bad_baseline.json"
    raw = json.loads(EXAMPLE.read_text())
    raw["baseline"] = {"controller": "proportional", "gain_kw_per_k": -1}
    bad.write_text(json.dumps(raw))
    cases = [
        (["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--plan", str(opt)], "field 'domain'"),
        (["--domain", "hvac", "--constraint_json", str(tmp_path / "missing.json")], "no such file"),
        (["--domain", "nowhere", "--constraint_json", str(EXAMPLE)], "--domain"),
        (["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--ensemble", "5"], "--ensemble"),
        (["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--seed", "-1"], "--seed"),
        (["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--plan", str(tmp_path / "none.json")], "no such file"),
        (["--domain", "hvac", "--constraint_json", str(bad)], "baseline.gain_kw_per_k"),
    ]
    for args, word in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert word in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(bad) in err


def test_help_explains_the_flags(capsys):
    from cli.simulate_tnn_dynamics import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--domain", "--constraint_json", "--plan", "--ensemble", "--seed", "--output", "kW", "°C"):
        assert flag in out


def test_tracking_respects_the_ramp_limit():
    raw = json.loads(EXAMPLE.read_text())
    raw["uncertainty"]["process_noise"] = 1.0  # large deviations: the feedback wants big moves
    free = map_constraint("hvac", raw)
    raw["actuators"] = {"heater": {"ramp_kw_per_step": 0.3}}
    ramped = map_constraint("hvac", raw)
    k = np.arange(ramped.H)
    u = (4.0 + np.sin(k / 5.0))[:, None]  # the plan itself moves ≤ 0.2 kW per step
    jumps = []
    for p in (free, ramped):
        ens = run_ensemble(p, [PlanTracking(p, u)], 50, seed=4)
        jumps.append(np.abs(np.diff(ens.u_mean[0, :, :, 0], axis=1)).max())
    assert jumps[0] > 0.3  # without the limit the tracking law moves faster
    assert jumps[1] <= 0.3 + 1e-9


@pytest.mark.parametrize("example", ["hvac_testcase1.json", "cold_storage_display_case.json"])
def test_nominal_run_rides_in_the_ensemble_pass(example):
    # simulate() integrates the nominal run as extra rows of the ensemble's pass: the noisy trajectories must
    # come out bit for bit as in a pass of their own (common random numbers), the nominal one as alone, to rounding
    from industriverse.verify.baselines import make_baseline

    raw = json.loads((Path(__file__).resolve().parent.parent / "examples" / example).read_text())
    p = map_constraint(raw["domain"], raw)
    model = sim.substep_model(p)
    u = 0.5 * (np.maximum(p.u_lo, 0.0) + np.minimum(p.u_hi, 0.6 * np.max(p.u_hi)))  # any plan within the limits
    ctrls = lambda: [PlanTracking(p, u, model), make_baseline(p, model)]  # noqa: E731
    nom, ens = run_ensemble(p, ctrls(), 37, 5, model=model, fused=False, with_nominal=True)
    alone_nom = run_ensemble(p, ctrls(), 1, 5, model=model, noise=False, fused=False)
    alone_ens = run_ensemble(p, ctrls(), 37, 5, model=model, fused=False)
    for field in ("x", "sub_excess", "discomfort", "power", "travel", "u_mean"):
        assert np.array_equal(getattr(ens, field), getattr(alone_ens, field)), field
        np.testing.assert_allclose(getattr(nom, field), getattr(alone_nom, field), rtol=1e-12, atol=1e-12, err_msg=field)
    assert ens.energy.keys() == alone_ens.energy.keys() == nom.energy.keys()
    for k in ens.energy:
        assert np.array_equal(ens.energy[k], alone_ens.energy[k]), k
        np.testing.assert_allclose(nom.energy[k], alone_nom.energy[k], rtol=1e-12, atol=1e-12, err_msg=k)
    assert (nom.path_steps, ens.path_steps) == (alone_nom.path_steps, alone_ens.path_steps)
    assert np.std(ens.x[:, :, -1]) > 0 and nom.x.shape[1] == 1  # the noisy rows are noisy, the nominal one is one
