"""Known plants and their telemetry, for the identification tests, the benchmark and the example.

Telemetry comes from :func:`industriverse.model.identify.simulate_telemetry` (the exact
solution of the plant's linear SDE at the sample times, plus sensor noise).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from industriverse.model.identify import simulate_telemetry
from industriverse.model.network import Network

_HEATER = {"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10.0}
PLANTS = {
    1: {"nodes": [{"name": "zone", "capacity_j_per_k": 1e6}],
        "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
        "conductances": [{"between": ["zone", "ambient"], "w_per_k": 100.0}],
        "actuators": [_HEATER]},
    2: {"nodes": [{"name": "zone", "capacity_j_per_k": 1e6}, {"name": "wall", "capacity_j_per_k": 5e6}],
        "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
        "conductances": [{"between": ["zone", "ambient"], "w_per_k": 50.0}, {"between": ["zone", "wall"], "w_per_k": 200.0},
                         {"between": ["wall", "ambient"], "w_per_k": 80.0}],
        "actuators": [_HEATER]},
    3: {"nodes": [{"name": "zone", "capacity_j_per_k": 1e6}, {"name": "wall", "capacity_j_per_k": 5e6},
                  {"name": "floor", "capacity_j_per_k": 3e6}],
        "boundaries": [{"name": "ambient", "disturbance": "ambient"}, {"name": "ground", "disturbance": "ground"}],
        "conductances": [{"between": ["zone", "ambient"], "w_per_k": 50.0}, {"between": ["zone", "wall"], "w_per_k": 200.0},
                         {"between": ["wall", "ambient"], "w_per_k": 80.0}, {"between": ["zone", "floor"], "w_per_k": 150.0},
                         {"between": ["floor", "ground"], "w_per_k": 40.0}],
        "actuators": [_HEATER]},
}
PROCESS_NOISE = {"zone": 0.3, "wall": 0.1, "floor": 0.1}  # K/√h
MEASUREMENT_NOISE = 0.1  # K
X0 = {"zone": 20.0, "wall": 15.0, "floor": 14.0}
#: the designed experiment (:func:`experiment`): an unoccupied building, shutters closed, a
#: logger with Pt100-class sensors.  Unmodelled heat is small (0.05 K/√h on the 1e6 J/K zone
#: is 14 W rms over an hour), sensor noise 0.02 K.
EXPERIMENT_PROCESS_NOISE = {"zone": 0.05, "wall": 0.025, "floor": 0.025}  # K/√h
EXPERIMENT_MEASUREMENT_NOISE = 0.02  # K
EXPERIMENT_HEATER_KW = 5.0
EXPERIMENT_CLOCK_H = 3.0
EPW = Path(__file__).resolve().parents[1] / "examples" / "building" / "site.epw"


def template(nodes: int, *, off: float = 1.6) -> dict:
    """The plant with every capacity and conductance to fit, started ``off``× away from the truth
    (capacities low, conductances high)."""
    t = copy.deepcopy(PLANTS[nodes])
    for n in t["nodes"]:
        n["capacity_j_per_k"] = {"fit": True, "initial": n["capacity_j_per_k"] / off}
    for c in t["conductances"]:
        c["w_per_k"] = {"fit": True, "initial": c["w_per_k"] * off}
    return t


def true_values(nodes: int) -> dict[str, float]:
    p = PLANTS[nodes]
    out = {f"nodes[{n['name']}].capacity_j_per_k": n["capacity_j_per_k"] for n in p["nodes"]}
    out.update({f"conductances[{'–'.join(c['between'])}].w_per_k": c["w_per_k"] for c in p["conductances"]})
    return out


def _times(rng, samples: int, step_s: float, irregular: bool, gaps: int, quantum_s: float = 0.0) -> np.ndarray:
    dt = rng.uniform(0.5, 1.5, samples - 1) * step_s if irregular else np.full(samples - 1, step_s)
    if quantum_s:
        dt = np.maximum(np.round(dt / quantum_s), 1) * quantum_s
    if gaps:
        dt[rng.choice(samples - 1, gaps, replace=False)] = rng.uniform(2, 12, gaps) * 3600.0
    return np.concatenate([[0.0], np.cumsum(dt)])


def _simulate(nodes, t, cols, *, q, r, measured, seed):
    net = Network.model_validate(PLANTS[nodes])
    w = np.column_stack([cols[k] for k in net.actuator_names + net.disturbance_names])
    names = net.node_names
    tel, X = simulate_telemetry(net, t, w, x0=[X0[n] for n in names], process_noise=[q[n] for n in names],
                                measurement_noise=r, measured=measured, seed=seed + 1000)
    return net, tel, X


def experiment(nodes: int, samples: int, *, seed: int = 0, step_s: float = 300.0, irregular: bool = False,
               gaps: int = 0, measured: list[str] | None = None):
    """``(network, telemetry, true states)`` of a designed identification experiment.

    The heater is a pseudo-random binary sequence, 0 or ``EXPERIMENT_HEATER_KW``, a fresh
    random bit every ``EXPERIMENT_CLOCK_H`` hours (runs of 3, 6, 9 … h excite the zone's
    0.7 h and the wall's and floor's 4–5 h time constants); ambient is real weather, the
    January TMY3 of ``examples/building/site.epw`` from day ``seed % 24`` (linear between
    hours); ground a constant 10 °C; noise ``EXPERIMENT_*``.  ``irregular`` intervals are drawn
    in [0.5, 1.5] × ``step_s`` and stamped to the whole minute, as a trend log is.  Why this design: wall and floor
    have nearly the same time constant and are heated by the same zone, so the heater moves
    them together; what tells them apart is the weather (the wall sees ambient, the floor
    ground), and what blurs it is the zone's unmodelled heat (see benchmarks/fit.py).
    """
    from industriverse.model.series import read_epw

    rng = np.random.default_rng(seed)
    t = _times(rng, samples, step_s, irregular, gaps, quantum_s=60.0)
    clock = EXPERIMENT_CLOCK_H * 3600.0
    bits = rng.integers(0, 2, int(t[-1] // clock) + 2)
    u = EXPERIMENT_HEATER_KW * bits[(t // clock).astype(int)]
    temp = read_epw(EPW)[1]["temp_air"][: 31 * 24]  # January
    amb = np.interp(t / 3600.0 + (seed % 24) * 24, np.arange(len(temp)), temp)
    cols = {"heater": u, "ambient": amb, "ground": np.full(len(t), 10.0)}
    return _simulate(nodes, t, cols, q=EXPERIMENT_PROCESS_NOISE, r=EXPERIMENT_MEASUREMENT_NOISE, measured=measured,
                     seed=seed)


def telemetry(nodes: int, samples: int, *, seed: int = 0, step_s: float = 300.0, irregular: bool = False,
              gaps: int = 0, measured: list[str] | None = None):
    """``(network, telemetry, true states)``: ``samples`` readings about ``step_s`` apart.

    Inputs: the heater switches to a random level every half hour (0–8 kW by day, 0–2 kW at
    night, 7–19 h being day); ambient is a daily
    sinusoid plus a random walk; ground a constant 10 °C.  ``irregular`` draws each interval
    uniformly in [0.5, 1.5] × ``step_s``; ``gaps`` inserts that many outages of 2–12 hours.
    """
    rng = np.random.default_rng(seed)
    t = _times(rng, samples, step_s, irregular, gaps)
    # a day/night schedule (the slow nodes need slow excitation) with a random level every half hour
    level = rng.uniform(0, 8, int(t[-1] // 1800) + 2)
    day = ((t % 86400) >= 7 * 3600) & ((t % 86400) < 19 * 3600)
    u = level[(t // 1800).astype(int)] * np.where(day, 1.0, 0.25)
    amb = 5 + 5 * np.sin(2 * np.pi * t / 86400) + np.cumsum(rng.normal(0, 0.05, samples))
    cols = {"heater": u, "ambient": amb, "ground": np.full(samples, 10.0)}
    return _simulate(nodes, t, cols, q=PROCESS_NOISE, r=MEASUREMENT_NOISE, measured=measured, seed=seed)
