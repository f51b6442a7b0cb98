"""The fit report of `industriverse fit`: fit.json (numbers) and fit.html (tables and plots).

Plots (matplotlib, Agg canvas, embedded in the HTML as PNG data):

* per measured node, measured vs one-step-ahead and free-run predictions over the held-back
  validation slice (the whole slice, and its first three days);
* per measured node, the autocorrelation of the standardized one-step residuals with the
  ±1.96/√n band of white noise, and the Ljung–Box p-value in the title.
"""
from __future__ import annotations

import base64
import html
import io
from datetime import timedelta

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from industriverse.report.plots import DPI, PNG_METADATA

MEAS_COLOR, ONE_COLOR, FREE_COLOR = "#222222", "#1f5fa8", "#c8571b"


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf, metadata=PNG_METADATA)
    return base64.b64encode(buf.getvalue()).decode()


def _axis(series: dict, idx: np.ndarray):
    t = series["t"][idx]
    if series.get("start") is not None:
        return [series["start"] + timedelta(seconds=float(s)) for s in t], "time"
    return t / 3600.0, "hours since the first sample"


def plot_predictions(series: dict, i: int, unit: str) -> str | None:
    """PNG (base64) of node ``i``: measured vs one-step and free-run on the validation slice."""
    split, y = series["split"], series["y"][:, i]
    N = len(y)
    if split >= N or series["free_run"] is None:
        return None
    idx = np.arange(split, N)
    first = idx[series["t"][idx] <= series["t"][split] + 3 * 86400]
    fig = Figure(figsize=(8.5, 5.2), dpi=DPI)
    for ax, sel, title in ((fig.add_subplot(2, 1, 1), idx, "validation slice"),
                           (fig.add_subplot(2, 1, 2), first, "its first three days")):
        x, label = _axis(series, sel)
        ax.plot(x, y[sel], ".", ms=2, color=MEAS_COLOR, label="measured")
        ax.plot(x, series["one_step"][sel, i], lw=0.8, color=ONE_COLOR, label="one-step-ahead")
        ax.plot(x, series["free_run"][sel - split, i], lw=0.8, color=FREE_COLOR, label="free run")
        ax.set_ylabel(unit)
        ax.set_title(f"{series['names'][i]}: {title}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _png(fig)


def plot_acf(name: str, res: dict) -> str:
    acf = np.asarray(res["acf"])
    n = max(len(acf) * 5, 1)
    fig = Figure(figsize=(8.5, 2.6), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    lags = np.arange(1, len(acf) + 1)
    ax.bar(lags, acf, color=ONE_COLOR, width=0.6)
    band = 1.96 / np.sqrt(res.get("n", n))
    ax.axhline(band, color="#888", ls="--", lw=0.8)
    ax.axhline(-band, color="#888", ls="--", lw=0.8)
    ax.axhline(0, color="#000", lw=0.6)
    lb = res["ljung_box"]
    ax.set_title(f"{name}: residual autocorrelation ({res['slice']}); Ljung–Box Q = {lb['Q']:.1f} "
                 f"at {lb['lags']} lags, p = {lb['p_value']:.3f}", fontsize=9)
    ax.set_xlabel("lag (samples)")
    fig.tight_layout()
    return _png(fig)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def render_fit_html(report: dict, series: dict, units: dict[str, str]) -> str:
    """The fit report as one self-contained HTML page."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(p['name'])}</td><td>{_fmt(p['value'])}</td><td>{e(p['unit'])}</td>"
        f"<td>{_fmt(p['std_error'])}</td><td>{'[' + _fmt(p['ci95'][0]) + ', ' + _fmt(p['ci95'][1]) + ']' if p['ci95'] else '—'}</td>"
        f"<td>{_fmt(p['initial'])}</td><td>{'yes' if p['identifiable'] else '<b>no</b>'}</td></tr>"
        for p in report["parameters"])
    nodes = list(report["residuals"])
    val = "".join(
        f"<tr><td>{e(n)}</td><td>{_fmt(report['one_step_rmse_train'].get(n))}</td><td>{_fmt(report['one_step_rmse'].get(n))}</td>"
        f"<td>{_fmt(report['free_run_rmse'].get(n))}</td><td>{_fmt(report['residuals'][n]['ljung_box']['Q'])}</td>"
        f"<td>{_fmt(report['residuals'][n]['ljung_box']['p_value'])}</td></tr>" for n in nodes)
    imgs = []
    for n in nodes:
        i = series["names"].index(n)
        png = plot_predictions(series, i, units.get(n, ""))
        if png:
            imgs.append(f'<h3>{e(n)}: predicted vs measured</h3><img alt="predicted vs measured, {e(n)}" src="data:image/png;base64,{png}">')
        res = dict(report["residuals"][n])
        imgs.append(f'<img alt="residual autocorrelation, {e(n)}" src="data:image/png;base64,{plot_acf(n, res)}">')
    notes = "".join(f"<li>{e(d)}</li>" for d in report["dropped"]) or "<li>nothing</li>"
    probs = "".join(f"<li><b>{e(p)}</b></li>" for p in report["problems"]) + "".join(f"<li>{e(w)}</li>" for w in report["warnings"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fit report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}</style>
</head><body>
<h1>Fit report</h1>
<p>Telemetry: {e(str(report.get('telemetry', '')))} · template: {e(str(report.get('template', '')))} ·
{report['samples']} samples over {report['span_hours']:.1f} h ({report['train_samples']} fitted, last
{report['validation_samples']} held back for validation) · maximum likelihood of the Kalman filter's innovations,
{len(report['starts'])} start(s), {report['evaluations']} likelihood evaluations, {report['seconds']:.1f} s.</p>
<h2>Parameters</h2>
<p>95 % intervals from the observed information (numerical Hessian of the log-likelihood on the log scale).</p>
<table><tr><th>parameter</th><th>value</th><th>unit</th><th>std. error</th><th>95 % interval</th><th>initial</th><th>identifiable</th></tr>{rows}</table>
{'<h2>Problems</h2><ul>' + probs + '</ul>' if probs else ''}
<h2>Validation</h2>
<p>RMSE in the node's unit; one-step-ahead = the filter's prediction before each reading; free run = the model
alone from the state estimated at the start of the validation slice, inputs only. Ljung–Box on the standardized
one-step residuals: a small p-value means the residuals are not white (unmodelled dynamics).</p>
<table><tr><th>node</th><th>one-step RMSE (fit)</th><th>one-step RMSE (validation)</th><th>free-run RMSE (validation)</th><th>Ljung–Box Q</th><th>p-value</th></tr>{val}</table>
{''.join(imgs)}
<h2>Dropped from the telemetry</h2><ul>{notes}</ul>
</body></html>
"""
