"""First law: the energy balance of nominal trajectories closes, and its flows are the physical ones."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from industriverse.verify.balance import energy_balance
from industriverse.model.catalog import list_domains
from industriverse.model.mapping import load_problem, map_constraint
from industriverse.verify.simulate import simulate
from networks import roof_radiation_constraint

ROOT = Path(__file__).resolve().parent.parent
HORIZON = {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}


@pytest.mark.parametrize("domain", list_domains())
def test_balance_closes_on_every_shipped_domain(domain):
    p = map_constraint(domain, {"horizon": HORIZON})
    u = np.random.default_rng(0).uniform(p.u_lo, p.u_hi)
    b = energy_balance(p, u, tolerance=1e-9)
    assert b["closes"] and b["relative_residual"] < 1e-9
    assert b["stored_kwh"] == pytest.approx(b["supplied_kwh"] - b["lost_kwh"], abs=1e-9 * b["throughput_kwh"])
    for node, f in b["per_node"].items():
        lhs = f["stored_kwh"]
        rhs = f["actuators_kwh"] + f["gains_kwh"] - f["lost_kwh"] - f["exchanged_kwh"]
        assert lhs == pytest.approx(rhs, abs=1e-9 * b["throughput_kwh"]), node
    assert sum(f["exchanged_kwh"] for f in b["per_node"].values()) == pytest.approx(0.0, abs=1e-9 * b["throughput_kwh"])
    # the balance's trajectory is the planning model's
    x = np.array([b["states"][n] for n in p.nodes]).T
    np.testing.assert_allclose(x, p.predict(u), atol=1e-9)


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.stem)
def test_balance_closes_on_the_examples(example):
    raw = json.loads(example.read_text())
    if "domain" not in raw:
        pytest.skip("not a constraint file")
    p = load_problem(raw["domain"], example)
    u = 0.5 * (p.u_lo + p.u_hi)
    assert energy_balance(p, u, tolerance=1e-9)["closes"]


def test_balance_of_the_rc_node_against_closed_forms():
    """R1C1 zone, 3 kW heat, 5 °C ambient: every flow has a closed form."""
    C, G, Q, Ta, T0 = 1e6, 100.0, 3000.0, 5.0, 21.0
    p = map_constraint("hvac", {"horizon": HORIZON, "disturbances": {"ambient": Ta}, "initial_state": {"zone": T0}})
    u = np.full((p.H, 1), Q / 1000.0)
    b = energy_balance(p, u)
    tau, t = C / G, p.H * p.dt_s
    T_ss = Ta + Q / G
    T_end = T_ss + (T0 - T_ss) * np.exp(-t / tau)
    integral = (T_ss - Ta) * t + (T0 - T_ss) * tau * (1 - np.exp(-t / tau))  # ∫(T − Ta) dt, K·s
    assert b["actuators_kwh"] == pytest.approx(Q * t / 3.6e6, rel=1e-12)
    assert b["stored_kwh"] == pytest.approx(C * (T_end - T0) / 3.6e6, rel=1e-10)
    assert b["lost_kwh"] == pytest.approx(G * integral / 3.6e6, rel=1e-10)
    assert b["actuator_electric_kwh"] == pytest.approx(Q * t / 3.6e6 / 0.99, rel=1e-12)
    assert abs(b["residual_kwh"]) < 1e-9


def test_balance_counts_radiation():
    raw = roof_radiation_constraint()
    p = map_constraint("hvac", raw)
    b = energy_balance(p, np.full((p.H, 1), 4.0), tolerance=1e-9)
    assert b["closes"] and "solve_ivp" in b["method"]
    roof = b["per_node"]["roof"]
    assert roof["lost_kwh"] > 0  # the roof radiates to the colder sky
    assert roof["exchanged_kwh"] == pytest.approx(-b["per_node"]["zone"]["exchanged_kwh"])


def test_balance_of_a_simulated_nominal_trajectory():
    """The baseline's nominal run (what the site does today) conserves energy too."""
    p = map_constraint("cold_storage", {"horizon": HORIZON})
    doc = simulate(p, None, ensemble_size=10, seed=0)
    nominal = doc["baseline"]["nominal"]
    u = np.array([nominal["plan_kw"][a] for a in p.actuators]).T  # step means of the set-points
    b = energy_balance(p, u, tolerance=1e-9)
    assert b["closes"]
    assert b["actuators_kwh"] < 0  # the compressor takes heat out


def test_tolerance_flag():
    p = map_constraint("hvac", {"horizon": HORIZON})
    b = energy_balance(p, np.full((p.H, 1), 2.0), tolerance=0.0)
    assert b["tolerance"] == 0.0 and b["closes"] == (b["relative_residual"] == 0.0)
    assert "closes" not in energy_balance(p, np.full((p.H, 1), 2.0))
