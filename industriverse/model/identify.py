"""Grey-box identification of a thermal network from telemetry.

See :func:`fit_network`.  :func:`simulate_telemetry` makes telemetry of a known network (the
exact solution of its linear SDE at the sample times, plus sensor noise), for tests, the
benchmark and the example dataset.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from scipy.optimize import minimize
from scipy.special import chdtrc

from industriverse.errors import BadInput
from industriverse.model.estimate import Discretization, continuous_model, discretize_intervals, initial_guess, run_filter
from industriverse.model.network import Network
from industriverse.model.telemetry import Telemetry


def simulate_telemetry(network: Network, t: np.ndarray, w: np.ndarray, *, x0: np.ndarray,
                       process_noise: np.ndarray, measurement_noise: np.ndarray,
                       measured: list[str] | None = None, seed: int = 0) -> tuple[Telemetry, np.ndarray]:
    """Telemetry of ``network`` sampled at ``t`` (s) with inputs ``w`` (N, m + n_d) held between samples.

    ``process_noise`` per node, state units/√h; ``measurement_noise`` per node, state units;
    ``measured`` the nodes with a sensor (default: all).  Returns ``(telemetry, true states)``.
    """
    rng = np.random.default_rng(seed)
    t = np.asarray(t, dtype=float)
    A, G, c = continuous_model(network)
    q = np.asarray(process_noise, float) * np.ones(A.shape[0])
    keys, idx = np.unique(np.round(np.diff(t), 3), return_inverse=True)
    Ad, Gd, Qd = discretize_intervals(A, G, np.diag(q**2 / 3600.0), keys, c)
    Lq = np.array([np.linalg.cholesky(Q + 1e-300 * np.eye(len(Q))) for Q in Qd])
    N, n = len(t), A.shape[0]
    X = np.empty((N, n))
    x = np.asarray(x0, dtype=float).copy()
    xi = rng.standard_normal((N, n))
    for k in range(N):
        X[k] = x
        if k + 1 < N:
            j = idx[k]
            x = Ad[j] @ x + Gd[j] @ w[k] + Lq[j] @ xi[k]
    r = np.asarray(measurement_noise, float) * np.ones(n)
    Y = X + rng.standard_normal((N, n)) * r
    if measured is not None:
        for i, name in enumerate(network.node_names):
            if name not in measured:
                Y[:, i] = np.nan
    return Telemetry(t - t[0], Y, np.asarray(w, dtype=float)), X


# ---------------------------------------------------------------------------------------------
# the template: a network with {"fit": true, "initial": v, "min": a, "max": b} in place of numbers

_MARKER_KEYS = {"fit", "initial", "min", "max"}
Z95 = 1.959963984540054
#: log-space step of the numerical Hessian
HESSIAN_STEP = 2e-3
_UNITS = {"capacity_j_per_k": "J/K", "capacity_kwh": "kWh", "w_per_k": "W/K", "scale": "", "efficiency": "",
          "area_m2": "m²", "emissivity": "", "value": "", "eta": ""}


class NotIdentifiable(BadInput):
    """A parameter the data cannot pin down (flat likelihood, or a 95 % interval wider than the value)."""


@dataclass
class Parameter:
    """One estimated quantity, optimised as ``log(value)``.

    ``kind``: ``physical`` (a number of the template), ``process_noise`` (state units/√h) or
    ``measurement_noise`` (state units).
    """

    name: str
    kind: str
    initial: float
    lo: float
    hi: float
    unit: str = ""
    path: tuple = ()
    node: str | None = None


def _label(items: list, i: int, key: str) -> str:
    item = items[i] if isinstance(items, list) else None
    if isinstance(item, dict):
        if isinstance(item.get("name"), str):
            return f"{key}[{item['name']}]"
        if isinstance(item.get("between"), list):
            return f"{key}[{'–'.join(map(str, item['between']))}]"
        if isinstance(item.get("node"), str):
            return f"{key}[{item['node']}]"
    return f"{key}[{i}]"


def parse_template(template: Any, *, file: str | None = None) -> tuple[dict, list[Parameter]]:
    """Find the ``{"fit": true, ...}`` markers of a network template.

    Returns the template with each marker replaced by its initial value, and the parameters in
    document order.  A ``{"fit": false, "initial": v}`` marker is the fixed number ``v``.
    """
    if isinstance(template, dict) and "network" in template and "nodes" not in template:
        template = template["network"]
    if not isinstance(template, dict):
        raise BadInput(file, None, "the template must be a JSON object (a network with fit markers)")
    params: list[Parameter] = []

    def walk(obj, path: tuple, label: str):
        if isinstance(obj, dict):
            if "fit" in obj:
                return marker(obj, path, label)
            return {k: walk(v, path + (k,), f"{label}.{k}" if label else k) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, path + (i,), _label(obj, i, label)) for i, v in enumerate(obj)]
        return obj

    def marker(obj: dict, path: tuple, label: str):
        extra = set(obj) - _MARKER_KEYS
        if extra:
            raise BadInput(file, label, f"unknown key(s) in a fit marker: {', '.join(sorted(extra))} (allowed: fit, initial, min, max)")
        if not isinstance(obj.get("fit"), bool):
            raise BadInput(file, f"{label}.fit", "must be true or false")
        vals = {}
        for k in ("initial", "min", "max"):
            v = obj.get(k)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise BadInput(file, f"{label}.{k}", f"must be a positive number (parameters are fitted on a log scale), got {v!r}")
            vals[k] = float(v)
        if "initial" not in vals:
            raise BadInput(file, f"{label}.initial", "is required: the starting value of the fit")
        init = vals["initial"]
        lo, hi = vals.get("min", init / 1e3), vals.get("max", init * 1e3)
        if not lo <= init <= hi:
            raise BadInput(file, label, f"initial {init:g} is not within [min {lo:g}, max {hi:g}]")
        if lo == hi:
            raise BadInput(file, label, f"min and max are both {lo:g}: write the number instead")
        if obj["fit"]:
            params.append(Parameter(label, "physical", init, lo, hi, _UNITS.get(str(path[-1]), ""), path))
        return init

    filled = walk(template, (), "")
    return filled, params


def _set(doc, path: tuple, value: float):
    """``doc`` with ``value`` at ``path``, copying only the containers on the path."""
    if not path:
        return value
    out = copy.copy(doc)
    out[path[0]] = _set(doc[path[0]], path[1:], value)
    return out


def network_with(filled: dict, params: list[Parameter], values: np.ndarray, *, file: str | None = None) -> Network:
    """The template with the physical parameters set to ``values`` (same order as ``params``)."""
    doc = filled
    for p, v in zip(params, values):
        if p.kind == "physical":
            doc = _set(doc, p.path, float(v))
    try:
        return Network.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or None
        raise BadInput(file, where, err["msg"].removeprefix("Value error, ")) from None


# ---------------------------------------------------------------------------------------------
# the likelihood


class _Objective:
    """Negative mean log-likelihood of the innovations as a function of log-parameters."""

    def __init__(self, filled, params, tel: Telemetry, file=None):
        self.filled, self.params, self.tel, self.file = filled, params, tel, file
        self.phys = [i for i, p in enumerate(params) if p.kind == "physical"]
        self.qi = {p.node: i for i, p in enumerate(params) if p.kind == "process_noise"}
        self.ri = {p.node: i for i, p in enumerate(params) if p.kind == "measurement_noise"}
        self.names = network_with(filled, params, [p.initial for p in params], file=file).node_names
        self._model: dict = {}
        self.cache: dict = {}
        self.evaluations = 0

    def model(self, v: np.ndarray):
        key = tuple(v[self.phys])
        if key not in self._model:
            if len(self._model) > 64:
                self._model.clear()
            net = network_with(self.filled, self.params, v, file=self.file)
            A, G, c = continuous_model(net)
            if "dts" not in self.cache:  # the distinct intervals of the telemetry, once
                keys, idx = np.unique(np.round(np.diff(self.tel.t), 3), return_inverse=True)
                self.cache["dts"] = (keys, idx.astype(np.int64), initial_guess(self.tel.y[0], None))
            self._model[key] = (A, G, c, Discretization(A, G, self.cache["dts"][0], c))
        return self._model[key]

    def noise(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.array([v[self.qi[n]] if n in self.qi else 0.0 for n in self.names])
        r = np.array([v[self.ri[n]] if n in self.ri else 1.0 for n in self.names])
        return q, r

    def filter(self, theta: np.ndarray, tel: Telemetry | None = None, **kw):
        v = np.exp(theta)
        A, G, c, disc = self.model(v)
        q, r = self.noise(v)
        if tel is None or tel is self.tel:
            return run_filter(A, G, q, r, self.tel, cache=self.cache, capacities=c, disc=disc, **kw)
        return run_filter(A, G, q, r, tel, capacities=c, **kw)

    def __call__(self, theta: np.ndarray) -> float:
        self.evaluations += 1
        try:
            res = self.filter(np.asarray(theta, float))
        except (BadInput, np.linalg.LinAlgError, ValueError):
            return 1e10
        if not np.isfinite(res.loglik) or res.count == 0:
            return 1e10
        return -res.loglik / res.count


def _noise_parameters(network: Network, tel: Telemetry) -> list[Parameter]:
    """Process noise for every node, measurement noise for every measured node, with starting
    values from the data (second differences of a reading are mostly sensor noise)."""
    out = []
    dt_h = float(np.median(np.diff(tel.t))) / 3600.0
    q_meas = []
    for i, name in enumerate(network.node_names):
        y = tel.y[:, i]
        if np.isfinite(y).sum() < 3:
            continue
        d1 = np.diff(y)
        d2 = np.diff(y, 2)
        r0 = max(np.nanstd(d2) / np.sqrt(6.0), 1e-3)
        q0 = max(np.nanstd(d1) / np.sqrt(dt_h) * 0.3, 1e-3)
        q_meas.append(q0)
        unit = "kWh" if network.nodes[i].is_storage else "K"
        out.append(Parameter(f"measurement_noise[{name}]", "measurement_noise", r0, 1e-5, 1e3, unit, node=name))
        out.append(Parameter(f"process_noise[{name}]", "process_noise", q0, 1e-5, 1e3, unit + "/√h", node=name))
    q_other = float(np.mean(q_meas)) * 0.3 if q_meas else 0.1
    for i, name in enumerate(network.node_names):
        if not any(p.node == name for p in out):
            unit = "kWh" if network.nodes[i].is_storage else "K"
            out.append(Parameter(f"process_noise[{name}]", "process_noise", q_other, 1e-5, 1e3, unit + "/√h", node=name))
    return out


def _hessian(f, x: np.ndarray, h: float) -> np.ndarray:
    """Central-difference Hessian of ``f`` at ``x`` (step ``h`` in every coordinate)."""
    k = len(x)
    H = np.empty((k, k))
    f0 = f(x)
    E = np.eye(k) * h
    fp = np.array([f(x + E[i]) for i in range(k)])
    fm = np.array([f(x - E[i]) for i in range(k)])
    for i in range(k):
        H[i, i] = (fp[i] - 2 * f0 + fm[i]) / h**2
        for j in range(i + 1, k):
            v = (f(x + E[i] + E[j]) - f(x + E[i] - E[j]) - f(x - E[i] + E[j]) + f(x - E[i] - E[j])) / (4 * h * h)
            H[i, j] = H[j, i] = v
    return H


def ljung_box(z: np.ndarray, lags: int) -> tuple[np.ndarray, float, float]:
    """Autocorrelation of ``z`` at lags 1..``lags`` and the Ljung–Box ``(Q, p-value)``."""
    z = z[np.isfinite(z)]
    z = z - z.mean()
    n = len(z)
    denom = float(z @ z)
    acf = np.array([float(z[:-k] @ z[k:]) / denom for k in range(1, lags + 1)])
    Q = n * (n + 2) * float(np.sum(acf**2 / (n - np.arange(1, lags + 1))))
    return acf, Q, float(chdtrc(lags, Q))


@dataclass
class FitResult:
    network: Network
    process_noise: dict[str, float]
    measurement_noise: dict[str, float]
    report: dict
    problems: list[str] = field(default_factory=list)

    def network_document(self) -> dict:
        """The output file: the fitted network plus its noise, ready for a constraint."""
        return {
            "network": self.network.model_dump(mode="json", exclude_defaults=True),
            "uncertainty": {"process_noise": self.process_noise, "measurement_noise": self.measurement_noise},
        }


def fit_network(template: dict, tel: Telemetry, *, file: str | None = None, starts: int = 4, validation: float = 0.2,
                seed: int = 0, start_samples: int = 2016, acf_lags: int = 24) -> FitResult:
    """Maximum-likelihood grey-box fit of a network template to telemetry.

    Parameters
    ----------
    template : network schema with ``{"fit": true, "initial": v, "min": a, "max": b}`` markers
    tel : the readings (see :func:`industriverse.model.telemetry.read_telemetry`)
    starts : optimiser starts (the template's initial values, then random ×/÷ 3 perturbations)
    validation : fraction of the time span held back at the end for validation
    start_samples : the starts run on the first ``start_samples`` training samples; the best is
        then polished on the whole training slice
    acf_lags : lags of the residual autocorrelation and the Ljung–Box test

    Returns a :class:`FitResult`; ``problems`` lists the parameters the data cannot identify
    (the caller decides whether that is an error).
    """
    t0 = time.perf_counter()
    filled, phys = parse_template(template, file=file)
    net0 = network_with(filled, phys, [p.initial for p in phys], file=file)
    if not 0 <= validation < 0.9:
        raise BadInput(None, "--validation", f"must be in [0, 0.9), got {validation}")
    N = len(tel.t)
    split = int(np.searchsorted(tel.t, tel.t[-1] * (1 - validation), side="right")) if validation > 0 else N
    split = min(max(split, 2), N)
    train = tel.slice(0, split)
    if np.isfinite(train.y).sum() < 10:
        raise BadInput(file, None, "fewer than 10 node readings in the training slice: nothing to fit")
    params = phys + _noise_parameters(net0, train)
    obj = _Objective(filled, params, train, file)
    lo = np.log([p.lo for p in params])
    hi = np.log([p.hi for p in params])
    x_init = np.log([p.initial for p in params])
    rng = np.random.default_rng(seed)
    sub = train if split <= start_samples else train.slice(0, start_samples)
    obj_sub = _Objective(filled, params, sub, file) if sub is not train else obj
    runs = []
    isphys = np.array([p.kind == "physical" for p in params])
    for s in range(max(1, starts)):
        x = x_init if s == 0 else np.clip(x_init + rng.uniform(-np.log(3), np.log(3), len(x_init)), lo, hi)
        # stage 1: the physics with the noise held at its start (the filter gain fixed), so that a
        # wrong start cannot explain the data by noise alone; stage 2: everything together
        def phys_only(xp, x=x):
            y = x.copy()
            y[isphys] = xp
            return obj_sub(y)

        if isphys.any():
            r1 = minimize(phys_only, x[isphys], method="L-BFGS-B", bounds=list(zip(lo[isphys], hi[isphys])),
                          options={"maxiter": 200})
            x = x.copy()
            x[isphys] = r1.x
        r = minimize(obj_sub, x, method="L-BFGS-B", bounds=list(zip(lo, hi)), options={"maxiter": 500})
        runs.append({"start": s, "nll_per_sample": float(r.fun), "converged": bool(r.success), "iterations": int(r.nit),
                     "x": r.x})
    timing = {"starts": time.perf_counter() - t0}
    best = min(runs, key=lambda d: d["nll_per_sample"])
    x = best["x"]
    if obj_sub is not obj:
        r = minimize(obj, x, method="L-BFGS-B", bounds=list(zip(lo, hi)), options={"maxiter": 500})
        x, polish = r.x, {"nll_per_sample": float(r.fun), "converged": bool(r.success), "iterations": int(r.nit)}
    else:
        polish = None
    timing["polish"] = time.perf_counter() - t0 - sum(timing.values())
    # observed information of the total log-likelihood, on the log scale, for parameters off their bounds
    count = obj.filter(x).count
    at_bound = (x <= lo + 1e-6) | (x >= hi - 1e-6)
    free = np.flatnonzero(~at_bound)

    def total(xf):
        y = x.copy()
        y[free] = xf
        return obj(y) * count

    H = _hessian(total, x[free], HESSIAN_STEP) if len(free) else np.zeros((0, 0))
    se_log = np.full(len(params), np.nan)
    problems: list[str] = []  # about the template's parameters: the fit is not usable
    warnings: list[str] = []  # about the noise only
    flat: set[int] = set()
    keep = list(range(len(free)))
    while keep:
        Hs = H[np.ix_(keep, keep)]
        w_, V = np.linalg.eigh(0.5 * (Hs + Hs.T))
        tiny = w_ <= 1e-8 * max(np.max(np.abs(w_)), 1e-300)
        if not tiny.any():
            se_log[free[keep]] = np.sqrt(np.diag(np.linalg.inv(Hs)))
            break
        # a flat direction: name the parameters along it, set them aside, invert the rest
        v = np.abs(V[:, int(np.argmax(tiny))])
        involved = [keep[i] for i in np.flatnonzero(v > 0.3 * v.max())]
        names = [params[free[i]].name for i in involved]
        flat.update(int(free[i]) for i in involved)
        if any(params[free[i]].kind == "physical" for i in involved):
            problems.append("flat likelihood along " + " and ".join(names) + ": the data cannot pin these down")
        else:
            warnings.append("flat likelihood along " + " and ".join(names) + " (noise; kept at its estimate)")
        keep = [i for i in keep if i not in involved]
    timing["hessian"] = time.perf_counter() - t0 - sum(timing.values())
    values = np.exp(x)
    table = []
    for i, p in enumerate(params):
        s = se_log[i]
        ci = [float(values[i] * np.exp(-Z95 * s)), float(values[i] * np.exp(Z95 * s))] if np.isfinite(s) else None
        ok = ci is not None and (ci[1] - ci[0]) <= values[i] and i not in flat
        row = {"name": p.name, "kind": p.kind, "unit": p.unit, "value": float(values[i]), "initial": p.initial,
               "std_error": float(values[i] * s) if np.isfinite(s) else None, "ci95": ci,
               "at_bound": bool(at_bound[i]), "identifiable": bool(ok)}
        table.append(row)
        if p.kind == "physical" and not ok and i not in flat:
            why = (f"at its bound {values[i]:g}" if at_bound[i] else
                   f"95 % interval [{ci[0]:.4g}, {ci[1]:.4g}] is wider than the value {values[i]:.4g}" if ci else
                   "no interval (singular information)")
            problems.append(f"{p.name}: not identifiable from this data ({why})")
        elif p.kind != "physical" and not ok and i not in flat:
            warnings.append(f"{p.name}: poorly determined ({'at its bound' if at_bound[i] else 'wide interval'})")
    net = network_with(filled, params, values, file=file)
    qn = {p.node: float(values[i]) for i, p in enumerate(params) if p.kind == "process_noise"}
    rn = {p.node: float(values[i]) for i, p in enumerate(params) if p.kind == "measurement_noise"}
    report = {
        "samples": N, "train_samples": split, "validation_samples": N - split,
        "span_hours": float(tel.t[-1] / 3600.0), "start": tel.start.isoformat() if tel.start else None,
        "dropped": list(tel.dropped),
        "parameters": table,
        "loglik": float(-obj(x) * count), "innovations": int(count),
        "starts": [{k: v for k, v in d.items() if k != "x"} for d in runs], "polish": polish,
        "evaluations": obj.evaluations + obj_sub.evaluations * (obj_sub is not obj),
        "identifiable": not problems, "problems": problems, "warnings": warnings,
    }
    report.update(_validate(obj, x, tel, split, acf_lags))
    timing["validation"] = time.perf_counter() - t0 - sum(timing.values())
    report["seconds"] = time.perf_counter() - t0
    report["timing_seconds"] = timing
    return FitResult(net, qn, rn, report, problems)


def _validate(obj: _Objective, x: np.ndarray, tel: Telemetry, split: int, lags: int) -> dict:
    """One-step-ahead and free-run errors on the held-back slice, residual whiteness."""
    names = obj.names
    res = obj.filter(x, tel, store=True)
    N = len(tel.t)
    out: dict = {"one_step_rmse_train": {}, "one_step_rmse": {}, "free_run_rmse": {}, "residuals": {}, "series": {}}
    free = None
    if split < N:
        from dataclasses import replace

        tail = tel.slice(split - 1, N)
        blind = replace(tail, y=np.full_like(tail.y, np.nan))
        fr = obj.filter(x, blind, store=True, x0=res.posterior[split - 1], P0=np.zeros((len(names), len(names))))
        free = fr.prior[1:]
    for i, name in enumerate(names):
        y = tel.y[:, i]
        if np.isfinite(y).sum() == 0:
            continue
        e1 = y - res.prior[:, i]
        out["one_step_rmse_train"][name] = float(np.sqrt(np.nanmean(e1[1:split] ** 2)))
        if free is not None and np.isfinite(y[split:]).any():
            out["one_step_rmse"][name] = float(np.sqrt(np.nanmean(e1[split:] ** 2)))
            out["free_run_rmse"][name] = float(np.sqrt(np.nanmean((y[split:] - free[:, i]) ** 2)))
        zs = res.innovations[:, i] / np.sqrt(res.innovation_var[:, i])
        zv = zs[split:] if split < N and np.isfinite(zs[split:]).sum() > 3 * lags else zs[1:split]
        L = max(1, min(lags, np.isfinite(zv).sum() // 5))
        acf, Q, p = ljung_box(zv, L)
        out["residuals"][name] = {"slice": "validation" if zv is not zs[1:split] else "training", "acf": acf.tolist(),
                                  "ljung_box": {"lags": L, "Q": Q, "p_value": p}, "n": int(np.isfinite(zv).sum()),
                                  "standardized_std": float(np.nanstd(zv))}
    # what the HTML report plots (kept out of fit.json by the caller)
    out["series"] = {"t": tel.t, "y": tel.y, "one_step": res.prior, "free_run": free, "split": split,
                     "names": names, "start": tel.start}
    return out


def read_template(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(str(path), None, "no such file") from None
    except json.JSONDecodeError as exc:
        raise BadInput(str(path), None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
