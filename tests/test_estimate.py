"""The Kalman filter of a network: batch kernel, online estimator and their agreement."""
from __future__ import annotations

import numpy as np
import pytest

from industriverse.errors import BadInput
from industriverse.model.estimate import StateEstimator, continuous_model, estimate_state, run_filter
from industriverse.model.identify import simulate_telemetry
from industriverse.model.network import Network

NET = Network.model_validate({
    "nodes": [{"name": "zone", "capacity_j_per_k": 1e6}, {"name": "wall", "capacity_j_per_k": 5e6}],
    "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
    "conductances": [{"between": ["zone", "ambient"], "w_per_k": 50}, {"between": ["zone", "wall"], "w_per_k": 200},
                     {"between": ["wall", "ambient"], "w_per_k": 80}],
    "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10}],
})
Q, R = np.array([0.3, 0.1]), np.array([0.1, 0.1])


def _telemetry(N=3000, seed=0, irregular=False, measured=("zone",)):
    rng = np.random.default_rng(seed)
    dt = rng.uniform(200, 400, N - 1) if irregular else np.full(N - 1, 300.0)
    if irregular:
        dt[rng.choice(N - 1, 5, replace=False)] = 3 * 3600.0  # gaps of three hours
    t = np.concatenate([[0.0], np.cumsum(dt)])
    w = np.column_stack([rng.uniform(0, 5, N), 5 + 5 * np.sin(2 * np.pi * t / 86400)])
    return simulate_telemetry(NET, t, w, x0=[20.0, 15.0], process_noise=Q, measurement_noise=R,
                              measured=list(measured), seed=seed)


def _online(tel, **kw):
    est = StateEstimator(NET, process_noise=dict(zip(NET.node_names, Q)), measurement_noise=0.1, **kw)
    post = np.empty_like(tel.y)
    for k in range(len(tel.t)):
        if k:
            est.predict(tel.t[k] - tel.t[k - 1], u=tel.w[k - 1, :1], d=tel.w[k - 1, 1:])
        est.update({n: tel.y[k, i] for i, n in enumerate(NET.node_names)})
        post[k] = est.mean
    return est, post


@pytest.mark.parametrize("irregular", [False, True])
def test_batch_filter_matches_online_estimator(irregular):
    tel, _ = _telemetry(1500, seed=1, irregular=irregular)
    tel.y[100:130, 0] = np.nan  # a sensor outage
    A, G, c = continuous_model(NET)
    res = run_filter(A, G, Q, R, tel, store=True, capacities=c)
    est, post = _online(tel)
    # the batch kernel reuses the steady-state gain; the online filter recomputes every step
    np.testing.assert_allclose(res.posterior, post, atol=1e-8)
    assert res.loglik == pytest.approx(est.loglik, rel=1e-9)
    np.testing.assert_allclose(res.covariance, est.covariance, rtol=1e-6)
    mean, cov = estimate_state(NET, tel, process_noise=dict(zip(NET.node_names, Q)), measurement_noise=0.1)
    np.testing.assert_allclose(mean, est.mean, atol=1e-8)


def test_filter_is_calibrated_on_the_unmeasured_wall():
    tel, X = _telemetry(4000, seed=2)
    A, G, c = continuous_model(NET)
    res = run_filter(A, G, Q, R, tel, store=True, capacities=c)
    z = res.innovations[50:, 0] / np.sqrt(res.innovation_var[50:, 0])
    assert abs(np.mean(z)) < 0.1 and 0.9 < np.std(z) < 1.1
    # the wall is never measured: its estimate tracks the truth within the filter's own spread
    err = res.posterior[200:, 1] - X[200:, 1]
    assert np.sqrt(np.mean(err**2)) < 0.5
    assert abs(err[-1]) < 4 * np.sqrt(res.covariance[1, 1])


def test_online_estimator_errors_name_the_field():
    est = StateEstimator(NET)
    with pytest.raises(BadInput, match="readings.kitchen"):
        est.update({"kitchen": 20.0})
    with pytest.raises(BadInput, match="initial"):
        est.predict(60, u={"heater": 1.0}, d={"ambient": 0.0})
    est.update({"zone": 20.0})
    with pytest.raises(BadInput, match="input.heater"):
        StateEstimator(NET, initial={"zone": 20, "wall": 18}).predict(60, d={"ambient": 0.0})
    est.predict(60, u={"heater": 1.0}, d={"ambient": 0.0})
    est.predict(60)  # inputs held
    assert est.std["wall"] > est.std["zone"]


def test_eigen_discretisation_matches_zoh_and_van_loan():
    from industriverse.model.discretize import van_loan, zoh
    from industriverse.model.estimate import discretize_intervals

    A, G, c = continuous_model(NET)
    Qc = np.diag(Q**2 / 3600)
    dts = [1.0, 300.0, 7200.0]
    Ad, Gd, Qd = discretize_intervals(A, G, Qc, dts, c)
    for k, dt in enumerate(dts):
        a, g = zoh(A, G, dt)
        np.testing.assert_allclose(Ad[k], a, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(Gd[k], g, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(Qd[k], van_loan(A, Qc, dt)[1], rtol=1e-8, atol=1e-14)
    # long intervals, where Van Loan's expm(-A dt) overflows: Qd = P∞ − Ad P∞ Adᵀ (P∞ the stationary covariance)
    from scipy.linalg import solve_continuous_lyapunov

    Pinf = solve_continuous_lyapunov(A, -Qc)
    Ad, Gd, Qd = discretize_intervals(A, G, Qc, [3 * 86400.0, 30 * 86400.0], c)
    for k in range(2):
        np.testing.assert_allclose(Qd[k], Pinf - Ad[k] @ Pinf @ Ad[k].T, rtol=1e-8)
    # a stiff node (tiny capacity): Van Loan overflows, the eigen route stays finite and stationary
    stiff = Network.model_validate({**NET.model_dump(), "nodes": [{"name": "zone", "capacity_j_per_k": 10.0},
                                                                 {"name": "wall", "capacity_j_per_k": 5e6}]})
    A, G, c = continuous_model(stiff)
    Ad, Gd, Qd = discretize_intervals(A, G, Qc, [86400.0], c)
    assert np.all(np.isfinite(Qd)) and Qd[0, 0, 0] > 0
