"""Exact discretisation against closed forms, and the simulator's ensemble against exact moments."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad_vec
from scipy.linalg import expm

from industriverse.model.discretize import ou_step, van_loan, zoh
from industriverse.model.mapping import map_constraint
from industriverse.verify.simulate import run_ensemble
from industriverse.plan.tracking import PlanTracking, closed_loop_std, substep_model

HORIZON = {"start": "2026-01-13T00:00", "hours": 12, "step_minutes": 15}
NO_FORECAST_ERROR = {"ambient": {"std": 0.0, "correlation_hours": 1.0}}  # the domain default has one


def rc_problem(**extra):
    """BOPTEST testcase1's R1C1 zone (C = 1e6 J/K, R = 0.01 K/W) at a constant 5 °C ambient."""
    raw = {"horizon": HORIZON, "disturbances": {"ambient": 5.0},
           "uncertainty": {"process_noise": 0.0, "forecast_error": NO_FORECAST_ERROR}}
    raw.update(extra)
    return map_constraint("hvac", raw)


def test_zoh_matches_rc_step_response():
    C, R, T_amb, T0, Q = 1e6, 0.01, 5.0, 21.0, 3000.0  # J/K, K/W, °C, °C, W
    tau = R * C
    A = np.array([[-1.0 / tau]])
    B = np.array([[1.0 / C, 1.0 / (R * C)]])  # inputs: heat in W, ambient in °C
    dt = 900.0
    Ad, Bd = zoh(A, B, dt)
    x = np.array([T0])
    for k in range(1, 25):
        x = Ad @ x + Bd @ np.array([Q, T_amb])
        t = k * dt
        exact = T_amb + (T0 - T_amb) * np.exp(-t / tau) + R * Q * (1 - np.exp(-t / tau))
        assert x[0] == pytest.approx(exact, rel=1e-12, abs=1e-12)


def test_planning_prediction_is_the_rc_step_response():
    p = rc_problem()
    u = np.full((p.H, 1), 3.0)  # kW thermal
    x = p.predict(u)[:, 0]
    t = np.arange(p.H + 1) * p.dt_s
    tau = 0.01 * 1e6
    exact = 5.0 + (21.0 - 5.0) * np.exp(-t / tau) + 0.01 * 3000.0 * (1 - np.exp(-t / tau))
    np.testing.assert_allclose(x, exact, rtol=1e-12)


def test_van_loan_matches_the_ou_variance():
    tau, q, dt = 7200.0, 2.5e-4, 900.0  # s, units²/s, s
    Ad, Qd = van_loan(np.array([[-1.0 / tau]]), np.array([[q]]), dt)
    assert Ad[0, 0] == pytest.approx(np.exp(-dt / tau), rel=1e-14)
    assert Qd[0, 0] == pytest.approx(q * tau / 2 * (1 - np.exp(-2 * dt / tau)), rel=1e-12)


def test_van_loan_matches_quadrature_on_a_coupled_network():
    p = map_constraint("cold_storage", {"horizon": HORIZON})
    A = p.network.matrices[0]
    Qc = np.diag(p.process_noise ** 2 / 3600.0)
    dt = 120.0
    _, Qd = van_loan(A, Qc, dt)
    exact, _ = quad_vec(lambda s: expm(A * s) @ Qc @ expm(A * s).T, 0.0, dt, epsabs=1e-16, epsrel=1e-12)
    np.testing.assert_allclose(Qd, exact, rtol=1e-8, atol=1e-14)


def test_ou_step_keeps_the_stationary_variance():
    a, s = ou_step(np.array([6.0]), np.array([1.5]), 0.25)
    assert a[0] == pytest.approx(np.exp(-0.25 / 6.0))
    var = 1.5 ** 2
    assert a[0] ** 2 * var + s[0] ** 2 == pytest.approx(var, rel=1e-14)


def _open_loop(p):
    """The plan 'heater off' executed without feedback: the zone is a pure OU process."""
    u = np.zeros((p.H, p.m))
    return PlanTracking(p, u, K=np.zeros((p.m, p.n)))


def test_ensemble_mean_and_variance_of_a_pure_ou():
    sigma = 0.3  # K/√h
    p = rc_problem(initial_state={"zone": 21.0}, uncertainty={"process_noise": sigma, "forecast_error": NO_FORECAST_ERROR})
    N = 20_000
    ens = run_ensemble(p, [_open_loop(p)], N, seed=7)
    x = ens.x[0, :, :, 0]  # (N, H+1)
    tau = 1e4  # s
    t = np.arange(p.H + 1) * p.dt_s
    mean = 5.0 + 16.0 * np.exp(-t / tau)
    var = sigma ** 2 / 3600.0 * tau / 2 * (1 - np.exp(-2 * t / tau))
    for k in (4, 16, 48):
        se_mean = np.sqrt(var[k] / N)
        assert abs(x[:, k].mean() - mean[k]) < 4 * se_mean
        assert abs(x[:, k].var(ddof=1) / var[k] - 1) < 4 * np.sqrt(2 / (N - 1))
    assert np.all(x[:, 0] == 21.0)


def test_ensemble_spread_matches_the_closed_loop_covariance():
    """Process noise + OU ambient error, with and without feedback: Monte Carlo vs exact propagation."""
    p = rc_problem(uncertainty={"process_noise": 0.2, "forecast_error": {"ambient": {"std": 1.0, "correlation_hours": 3.0}}})
    model = substep_model(p)
    N = 8000
    final = []
    for tracker in (_open_loop(p), PlanTracking(p, np.full((p.H, p.m), 5.0), model)):
        ens = run_ensemble(p, [tracker], N, seed=11, model=model)
        std = closed_loop_std(p, tracker.K, model)[:, 0]
        dev = ens.x[0, :, :, 0] - tracker.x_ref[:: model.S, 0]
        for k in (8, 24, 48):
            assert abs(dev[:, k].mean()) < 4 * std[k] / np.sqrt(N)
            assert abs(dev[:, k].std(ddof=1) / std[k] - 1) < 4 * np.sqrt(1 / (2 * (N - 1)))
        final.append(std[-1])
    assert final[1] < 0.5 * final[0]  # the tracking law holds the zone much closer to the plan


def test_heun_integrates_radiation_like_a_fine_ode_solver():
    from industriverse.verify.balance import energy_balance

    p = map_constraint("hvac", radiation_network())
    assert p.network.has_nonlinear_dynamics
    u = np.full((p.H, p.m), 4.0)
    ens = run_ensemble(p, [PlanTracking(p, u, K=np.zeros((p.m, p.n)))], 1, seed=0, noise=False)
    ref = energy_balance(p, u)["states"]
    for i, node in enumerate(p.nodes):
        np.testing.assert_allclose(ens.x[0, 0, :, i], ref[node], atol=2e-3)
    # and the linearised planning model is visibly different (the simulator does integrate radiation)
    assert np.abs(p.predict(u)[-1] - ens.x[0, 0, -1]).max() > 0.05


def radiation_network():
    return {
        "horizon": HORIZON,
        "network": {
            "nodes": [{"name": "zone", "capacity_j_per_k": 1e6}, {"name": "roof", "capacity_j_per_k": 2e5}],
            "boundaries": [{"name": "ambient", "disturbance": "ambient"}, {"name": "sky", "disturbance": "sky"}],
            "conductances": [{"between": ["zone", "ambient"], "w_per_k": 80.0}, {"between": ["zone", "roof"], "w_per_k": 150.0},
                             {"between": ["roof", "ambient"], "w_per_k": 40.0}],
            "radiation": [{"node": "roof", "boundary": "sky", "emissivity": 0.9, "area_m2": 20.0, "linearize_at_c": 0.0}],
            "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10.0}],
        },
        "initial_state": {"zone": 21.0, "roof": 5.0},
        "envelope": {"zone": {"min": 20.0, "max": 24.0}},
        "disturbances": {"ambient": 5.0, "sky": -10.0},
        "uncertainty": {"process_noise": 0.1, "forecast_error": {"ambient": {"std": 1.0, "correlation_hours": 6.0}}},
    }


def test_coupled_network_spread_matches_the_closed_loop_covariance():
    """Two coupled zones, process noise + OU ambient error (the gains are clipped at zero but exact)."""
    p = map_constraint("hvac_two_zone", {"horizon": HORIZON, "uncertainty": {
        "process_noise": 0.3, "forecast_error": {"ambient": {"std": 1.5, "correlation_hours": 2.0},
                                                 "internal_gains": {"std": 0.0, "correlation_hours": 1.0}}}})
    model = substep_model(p)
    tracker = PlanTracking(p, np.full((p.H, p.m), 6.0), model)
    N = 6000
    ens = run_ensemble(p, [tracker], N, seed=5, model=model)
    std = closed_loop_std(p, tracker.K, model)
    dev = ens.x[0] - tracker.x_ref[:: model.S]
    for k in (6, 24, 48):
        for i in range(p.n):
            assert abs(dev[:, k, i].mean()) < 4 * std[k, i] / np.sqrt(N)
            assert abs(dev[:, k, i].std(ddof=1) / std[k, i] - 1) < 4 * np.sqrt(1 / (2 * (N - 1)))


@pytest.mark.parametrize("domain", ["hvac_two_zone", "cold_storage", "microgrid"])
def test_noise_free_open_loop_run_is_the_planning_prediction(domain):
    p = map_constraint(domain, {"horizon": HORIZON})
    u = np.random.default_rng(1).uniform(p.u_lo, p.u_hi)
    ens = run_ensemble(p, [PlanTracking(p, u, K=np.zeros((p.m, p.n)))], 2, seed=0, noise=False)
    np.testing.assert_allclose(ens.x[0, 0], p.predict(u), atol=1e-9)
    np.testing.assert_allclose(ens.u_mean[0, 0], u, atol=1e-12)
