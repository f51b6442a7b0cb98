"""The report's plots (matplotlib, headless: Agg canvas, no pyplot state, safe in worker threads).

* :func:`plot_state_bands` — per banded node, the ensemble's median, 5–95 % and 1–99 % bands
  against the shaded envelope, baseline and plan side by side;
* :func:`plot_power_and_tariff` — the plan's power schedule against the baseline's, the tariff
  underneath;
* :func:`plot_cumulative_cost` — cumulative energy cost over the horizon, plan vs baseline
  (nominal, noise-free trajectories × price);
* :func:`plot_savings_distribution` — histograms of the per-trajectory paired savings with the
  mean and its 95 % interval marked.

Figures are drawn once, with a fixed layout (margins in inches, legends placed in space kept
for them inside the canvas), and saved without a tight bounding box: a constrained layout or
``bbox_inches="tight"`` draws every figure twice.

A process draws report after report (a reporter worker): each thread keeps each plot's figure
(:func:`_figure`) and the next report of the same shape redraws it with its data artists
replaced, so the figure, its axes and their tick artists (most of a plot's cost) are made once.
What a figure shows depends only on the data drawn into it: a kept figure and a new one write
the same PNG bytes.

Every function takes the run's documents (``run``: optimization, simulation, ...) and writes a
PNG; :func:`make_plots` writes all four and returns their paths.  The envelope and the tariff
are re-derived from the optimization's request through :func:`industriverse.model.mapping.map_constraint`.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib itself is imported only when drawing
    from matplotlib.figure import Figure

from industriverse.report.value import format_figure, format_number, spread_decimals

# matplotlib is imported inside the functions: a process that never draws (an optimizer worker,
# the optimize script) does not pay for it.

DPI = 110
FIG_WIDTH = 8.5  # inches: text stays legible when the PDF scales the figure to the page width
PLAN_COLOR = "#1f5fa8"
BASE_COLOR = "#c8571b"
ENVELOPE_COLOR = "#2e9e4a"
# PNG metadata for savefig elsewhere (report.fit): drop matplotlib's "Software" entry (it carries a web address)
PNG_METADATA = {"Software": None}
PRICE_COLOR = "#555555"
# Tick intervals on a value axis at most: every tick is five artists matplotlib makes and lays out at
# draw time (a fifth of a plot's time); matplotlib's default fits up to ~9 on our axes
VALUE_BINS = 5
# Axes titles at a fixed height: matplotlib otherwise measures every axis's tick labels once more per
# title at draw time to lift the title over them (nothing sits above our axes; ~20 % of a plot's time)
TITLE_Y = 1.0


# rc settings of every plot: unhinted glyphs.  Text layout is most of a plot's drawing, and FreeType's
# hinting of each glyph a third of that (at 110 dpi unhinted DejaVu Sans reads as well)
STYLE = {"text.hinting": "no_hinting"}


def style():
    """A context in which a report plot is made and drawn (matplotlib's ``rc_context`` of :data:`STYLE`)."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def _styled(fn):
    """Run a plot function inside :func:`style` (its figure is drawn and saved inside it too)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)

    return wrapper


@dataclass
class SeriesContext:
    """Time axis, envelope and tariff of a run, in plotting units.

    ``times``: H+1 datetimes (state instants; step k spans times[k]..times[k+1]);
    ``envelope``: {node: (lo (H+1,), hi (H+1,))} with ±inf where free; ``units``: {node: unit};
    ``price``/``export_price``: (H,) currency/kWh or None when the tariff could not be rebuilt.
    """

    times: list[datetime]
    dt_h: float
    envelope: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    price: np.ndarray | None = None
    export_price: np.ndarray | None = None
    demand_charge: float = 0.0
    currency: str = "USD"


def series_context(run: dict) -> SeriesContext:
    """Rebuild the time axis, envelope and tariff of a run from its optimization document."""
    opt, sim = run.get("optimization") or {}, run.get("simulation") or {}
    horizon = opt.get("horizon") or sim.get("horizon") or {}
    currency = (opt.get("objective") or {}).get("currency") or "USD"
    problem = None
    request = opt.get("request") or sim.get("request")
    domain = opt.get("domain") or sim.get("domain")
    if request is not None and domain:
        from industriverse.errors import IndustriverseError
        from industriverse.model.mapping import map_constraint

        base_dir = opt.get("request_dir") or sim.get("request_dir")
        try:
            problem = map_constraint(domain, request, base_dir=Path(base_dir) if base_dir else None)
        except (IndustriverseError, OSError, ValueError):
            problem = None  # e.g. a CSV series moved away: plot without envelope and tariff
    if horizon.get("times"):
        times = [datetime.fromisoformat(t) for t in horizon["times"]]
    elif problem is not None:
        times = [datetime.fromisoformat(t) for t in problem.step_times()]
    else:
        steps = int(horizon.get("steps") or len(opt.get("power_kw") or []))
        start = datetime.fromisoformat(horizon.get("start") or "2000-01-01T00:00")
        times = [start + timedelta(minutes=float(horizon.get("step_minutes") or 15) * k) for k in range(steps + 1)]
    dt_h = (times[1] - times[0]).total_seconds() / 3600.0 if len(times) > 1 else 0.25
    ctx = SeriesContext(times=times, dt_h=dt_h, currency=currency)
    if problem is not None:
        for i, node in enumerate(problem.network.nodes):
            ctx.units[node.name] = "kWh" if node.is_storage else "°C"
            lo, hi = problem.x_lo[:, i], problem.x_hi[:, i]
            if np.isfinite(lo[1:]).any() or np.isfinite(hi[1:]).any():
                ctx.envelope[node.name] = (lo, hi)
        ctx.price, ctx.export_price = problem.price, problem.export_price
        ctx.demand_charge = float(problem.demand_charge) + sum(rate for _, rate, _ in problem.demand_groups)
        ctx.currency = problem.constraint.tariff.currency or currency
    return ctx


def banded_nodes(run: dict, ctx: SeriesContext) -> list[str]:
    """Nodes with an envelope somewhere (else every node the simulation has bands for)."""
    bands = ((run.get("simulation") or {}).get("plan") or {}).get("bands") or {}
    nodes = [n for n in ctx.envelope if n in bands]
    return nodes or list(bands)


# --- helpers ---------------------------------------------------------------------------------
def _new_figure(width: float, height: float, *, left: float = 0.95, right: float = 0.2, top: float = 0.45,
                bottom: float = 0.6, hspace: float = 0.45, wspace: float = 0.75):
    """A figure on an Agg canvas with fixed margins (inches; spacing between axes in inches too)."""
    from matplotlib.figure import Figure

    from industriverse.report.agg import Canvas

    fig = Figure(figsize=(width, height), dpi=DPI)
    Canvas(fig)  # Agg, each text's glyphs rendered once and replayed (industriverse.report.agg)
    _margins(fig, left=left, right=right, top=top, bottom=bottom, hspace=hspace, wspace=wspace)
    return fig


_KEPT = threading.local()  # this thread's figures: {(plot kind, shape): (figure, axes)}, least recently used first
SHAPES_KEPT = 3  # figures kept per plot kind (a worker's reports come in a few shapes: one or two banded nodes, ...)


def _figure(kind: str, shape: tuple, make):
    """``(figure, axes)`` for plot ``kind``: this thread's figure of the same ``shape`` (anything that
    decides which axes it has, how big it is, and which of its axes get no data nor set limits, since
    those keep the last report's limits), emptied of what the last report drew into it
    (:func:`_empty`), else ``make()``'s, kept for the next report (up to :data:`SHAPES_KEPT` per kind).

    Per thread: a worker may run reporters in several threads, and matplotlib figures are not
    thread-safe."""
    from collections import OrderedDict

    kept = _KEPT.__dict__.setdefault("figures", OrderedDict())
    entry = kept.get((kind, shape))
    if entry is not None:
        kept.move_to_end((kind, shape))
        _empty(entry[0])
        return entry
    entry = kept[(kind, shape)] = make()
    same_kind = [key for key in kept if key[0] == kind]
    for key in same_kind[:-SHAPES_KEPT]:
        del kept[key]
    return entry


def _empty(fig) -> None:
    """Remove the data artists (lines, fills, patches, texts, legends) from ``fig`` and return its axes to
    their state before any data: data limits empty, autoscaling on, colour cycle from the start.

    Axes, axis labels, titles, spines and tick artists stay (their texts and positions are set anew by
    the plot and at draw time)."""
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts, *ax.images, *ax.artists, *ax.tables]:
            artist.remove()
        if ax.legend_ is not None:
            ax.legend_.remove()
        ax.containers.clear()
        ax.relim()  # no data left: empty data limits, as a new axes has
        ax.set_autoscale_on(True)  # set_xlim/set_ylim turned it off
        ax.set_prop_cycle(None)
    for legend in list(fig.legends):
        legend.remove()


def clear_cache() -> None:
    """Forget this thread's kept figures and recorded texts (the next plots are drawn from scratch)."""
    from industriverse.report import agg

    _KEPT.__dict__.pop("figures", None)
    _DATE_TICKS.clear()
    agg.clear_cache()


def _margins(fig, *, left: float, right: float, top: float, bottom: float, hspace: float = 0.45,
             wspace: float = 0.75, rows: int = 1, cols: int = 1) -> None:
    """Fixed margins in inches (hspace/wspace: the gap between axes, inches, for ``rows`` × ``cols`` axes)."""
    w, h = fig.get_size_inches()
    plot_h = max(h - top - bottom, 0.5)
    plot_w = max(w - left - right, 0.5)
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h,
                        hspace=hspace / max((plot_h - hspace * (rows - 1)) / rows, 0.1),
                        wspace=wspace / max((plot_w - wspace * (cols - 1)) / cols, 0.1))


def _subplots(fig, *args, **kwargs):
    """``(fig, fig.subplots(*args, **kwargs))``."""
    return fig, fig.subplots(*args, **kwargs)


def _time_axis(ax, times: list[datetime], *, max_ticks: int = 8) -> None:
    """Readable time ticks for any horizon, hours to months: concise labels (the date once where it
    changes, not on every tick); at most :data:`VALUE_BINS` intervals on the value axis."""
    from matplotlib.ticker import MaxNLocator

    Locator, Formatter = _date_ticks()
    locator = Locator(minticks=3, maxticks=max_ticks)
    formatter = Formatter(locator, show_offset=True)
    formatter.offset_formats = ["", "%Y", "%b %Y", "%d %b %Y", "%d %b %Y", "%d %b %Y %H:%M"]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlim(times[0], times[-1])
    ax.yaxis.set_major_locator(MaxNLocator(nbins=VALUE_BINS, steps=[1, 2, 2.5, 5, 10]))
    ax.grid(True, alpha=0.3)


_DATE_TICKS: dict = {}  # ("ticks", view interval, settings) -> positions; ("labels", positions, inverted) -> (labels, offset)
DATE_TICKS_KEPT = 256  # entries at most (a worker meets a new horizon every day): then it starts afresh


@functools.lru_cache(maxsize=None)
def _date_ticks():
    """matplotlib's AutoDateLocator and ConciseDateFormatter, each remembering what it worked out for a view
    interval (a worker's reports share their horizon): the same ticks and labels without the date
    arithmetic (num2date, rrules) at every draw."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    class Locator(AutoDateLocator):
        def __init__(self, *, minticks: int, maxticks: int):
            super().__init__(minticks=minticks, maxticks=maxticks)
            self._settings = (minticks, maxticks)

        def __call__(self):
            key = ("ticks", *self.axis.get_view_interval(), *self._settings)
            locs = _DATE_TICKS.get(key)
            if locs is None:
                locs = _remember(key, super().__call__())
            return locs

    class Formatter(ConciseDateFormatter):
        _offset = ""  # the offset text of the last ticks formatted

        def format_ticks(self, values):
            key = ("labels", *values, self._locator.axis is not None and self._locator.axis.get_inverted())
            done = _DATE_TICKS.get(key)
            if done is None:
                done = _remember(key, (super().format_ticks(values), super().get_offset()))
            self._offset = done[1]
            return list(done[0])

        def get_offset(self):
            return self._offset

    return Locator, Formatter


def _remember(key, value):
    if len(_DATE_TICKS) >= DATE_TICKS_KEPT:
        _DATE_TICKS.clear()
    _DATE_TICKS[key] = value
    return value


def _held(values: np.ndarray) -> np.ndarray:
    """Values held over each step, padded to H+1 points for a 'post' step plot."""
    values = np.asarray(values, dtype=float)
    return np.append(values, values[-1])


def _save(fig: Figure, path: Path) -> Path:
    """Draw once and write an RGB PNG: the canvas is opaque, so the alpha channel matplotlib would
    write is all 255; without it the PNG is smaller (also inside the HTML) and fpdf embeds it with
    no alpha scan or soft mask.  PIL writes no "Software" entry (the HTML report carries no web address)."""
    from PIL import Image

    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    w, h = fig.canvas.get_width_height(physical=True)
    # RGB read straight from the canvas's RGBA buffer by PIL's unpacker (no strided copy in numpy)
    rgb = Image.frombytes("RGB", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBX")
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    # zlib level 1: a third less encoding time than the default 6, files within ±10 % (flat plot colours)
    rgb.save(part, format="png", dpi=(fig.dpi, fig.dpi), compress_level=1)
    os.replace(part, path)  # whole or absent: the PDF may be set in another process meanwhile
    return path


# --- 1. state bands --------------------------------------------------------------------------
@_styled
def plot_state_bands(run: dict, path: str | Path, ctx: SeriesContext | None = None) -> Path:
    """Median, 5–95 % and 1–99 % bands of each banded node against the shaded envelope.

    One row per node; the baseline's ensemble on the left, the plan's on the right (same y
    scale), the plan's nominal (planned) trajectory dashed.  Units: °C or kWh.
    """
    ctx = ctx or series_context(run)
    sim, opt = run["simulation"], run.get("optimization") or {}
    nodes = banded_nodes(run, ctx)
    t = ctx.times
    n_rows = max(1, len(nodes))
    height = 1.9 + 2.4 * n_rows
    fig, axes = _figure("states", (len(nodes),), lambda: _subplots(_new_figure(FIG_WIDTH, height), n_rows, 2,
                                                                  sharex=True, squeeze=False))
    for row, node in enumerate(nodes):
        unit = ctx.units.get(node, "")
        lows, highs = [], []
        for side in ("baseline", "plan"):
            b = sim[side]["bands"][node]
            lows.append(np.min(b["p1"]))
            highs.append(np.max(b["p99"]))
        lo_env, hi_env = ctx.envelope.get(node, (np.full(len(t), -np.inf), np.full(len(t), np.inf)))
        finite = np.concatenate([lo_env[np.isfinite(lo_env)], hi_env[np.isfinite(hi_env)]])
        y_min = min(min(lows), finite.min() if finite.size else np.inf)
        y_max = max(max(highs), finite.max() if finite.size else -np.inf)
        pad = 0.08 * max(y_max - y_min, 1e-6)
        y_min, y_max = y_min - pad, y_max + pad
        for col, side in enumerate(("baseline", "plan")):
            ax = axes[row, col]
            color = BASE_COLOR if side == "baseline" else PLAN_COLOR
            b = {k: np.asarray(v, dtype=float) for k, v in sim[side]["bands"][node].items()}
            n_t = min(len(t), len(b["p50"]))
            tt = t[:n_t]
            if node in ctx.envelope:
                ax.fill_between(tt, np.clip(lo_env[:n_t], y_min, y_max), np.clip(hi_env[:n_t], y_min, y_max),
                                color=ENVELOPE_COLOR, alpha=0.13, lw=0, label="envelope (allowed band)")
                for edge in (lo_env, hi_env):
                    if np.isfinite(edge).any():
                        ax.plot(tt, np.where(np.isfinite(edge[:n_t]), edge[:n_t], np.nan), color=ENVELOPE_COLOR,
                                lw=1.0, ls="--")
                # a bound on the final state only (e.g. the battery back to its start) is one point: mark it
                for edge, marker in ((lo_env, "^"), (hi_env, "v")):
                    if len(edge) > 2 and np.isfinite(edge[-1]) and edge[-1] != edge[-2]:
                        ax.plot([tt[-1]], [edge[-1]], marker=marker, ms=9, color=ENVELOPE_COLOR, ls="none",
                                clip_on=False, label="terminal bound")
            ax.fill_between(tt, b["p1"][:n_t], b["p99"][:n_t], color=color, alpha=0.15, lw=0, label=f"{side}: 1–99 % of trajectories")
            ax.fill_between(tt, b["p5"][:n_t], b["p95"][:n_t], color=color, alpha=0.35, lw=0, label=f"{side}: 5–95 %")
            ax.plot(tt, b["p50"][:n_t], color=color, lw=1.6, label=f"{side}: median")
            if side == "plan" and node in (opt.get("states") or {}):
                planned = np.asarray(opt["states"][node], dtype=float)[:n_t]
                ax.plot(tt, planned, color="black", lw=1.0, ls=":", label="planned (nominal)")
            violations = sim[side].get("violations") or {}
            by_node = violations.get("by_node") or {}
            n = sim.get("ensemble_size")
            title = f"{'Baseline' if side == 'baseline' else 'Plan'}: {node}"
            if node in by_node and n:
                title += f"  ({by_node[node]} of {n} trajectories leave this band)"
            elif violations.get("count") is not None and n:
                title += f"  ({violations['count']} of {n} trajectories leave the envelope)"
            ax.set_title(title, fontsize=10, y=TITLE_Y)
            ax.set_ylim(y_min, y_max)
            quantity = {"°C": "temperature", "kWh": "stored energy"}.get(unit, "")
            ax.set_ylabel(f"{node} {quantity} ({unit})".replace("  ", " ") if unit else node)
            _time_axis(ax, t, max_ticks=5)
            if row == len(nodes) - 1:
                ax.set_xlabel("local time")
    # one legend for the figure, below the plots, so no curve hides behind it
    entries: dict[str, object] = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    ncol = 3
    legend_rows = -(-len(entries) // ncol) if entries else 0
    legend_h = 0.2 * legend_rows + 0.1
    # fixed layout: title on top, x labels, then the legend in space kept for it inside the canvas
    _margins(fig, left=0.85, right=0.2, top=0.55, bottom=0.75 + legend_h, hspace=0.55, wspace=0.7, rows=n_rows, cols=2)
    if entries:
        fig.legend(list(entries.values()), list(entries.keys()), loc="lower center", bbox_to_anchor=(0.5, 0.05 / height),
                   ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle("Ensemble of states under noise against the envelope", fontsize=12, y=1 - 0.12 / height)
    return _save(fig, path)


# --- 2. power schedule and tariff ---------------------------------------------------------------
@_styled
def plot_power_and_tariff(run: dict, path: str | Path, ctx: SeriesContext | None = None) -> Path:
    """The plan's scheduled site power against the baseline's (median and 5–95 % of the ensemble), kW,
    with the import (and export) price underneath, currency/kWh."""
    ctx = ctx or series_context(run)
    sim, opt = run["simulation"], run.get("optimization") or {}
    t = ctx.times
    # the price axis has no data without a tariff: a kept figure's limits would outlive their data
    new = lambda: _new_figure(FIG_WIDTH, 5.0, left=1.0, top=0.4, bottom=0.75)  # noqa: E731
    fig, (ax, ax_p) = _figure("power", (ctx.price is None,),
                              lambda: _subplots(new(), 2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}))
    _margins(fig, left=1.0, right=0.2, top=0.4, bottom=0.75, hspace=0.25, rows=2)
    for side, color, label in (("baseline", BASE_COLOR, "baseline"), ("plan", PLAN_COLOR, "plan")):
        bands = sim[side].get("power_bands") or {}
        if bands:
            ax.fill_between(t, _held(bands["p5"]), _held(bands["p95"]), step="post", color=color, alpha=0.18, lw=0,
                            label=f"{label}: 5–95 % of trajectories")
        if side == "baseline" and bands:
            ax.step(t, _held(bands["p50"]), where="post", color=color, lw=1.6, label="baseline: median of ensemble")
    scheduled = opt.get("power_kw") or ((sim["plan"].get("nominal") or {}).get("power_kw"))
    if scheduled:
        ax.step(t, _held(scheduled), where="post", color=PLAN_COLOR, lw=1.8, label="plan: scheduled power")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_ylabel("site electric power (kW)\n+ import / − export")
    ax.set_title("Power schedule: plan against baseline", fontsize=11, y=TITLE_Y)
    ax.legend(loc="upper left", fontsize=7.5, framealpha=0.85, ncol=2)
    lo_y, hi_y = ax.get_ylim()
    ax.set_ylim(lo_y, hi_y + 0.3 * (hi_y - lo_y))  # headroom: the legend sits above the curves, not on them
    _time_axis(ax, t)
    if ctx.price is not None:
        ax_p.step(t, _held(ctx.price), where="post", color=PRICE_COLOR, lw=1.6, label="import price")
        if ctx.export_price is not None and np.any(ctx.export_price > 0):
            ax_p.step(t, _held(ctx.export_price), where="post", color=PRICE_COLOR, lw=1.2, ls="--", label="export price")
        ax_p.set_ylim(0, max(float(np.max(ctx.price)) * 1.45, 1e-6))
        ax_p.legend(loc="upper left", fontsize=7.5, ncol=2, framealpha=0.85)
    else:
        ax_p.text(0.5, 0.5, "tariff not available (the request could not be re-read)", ha="center",
                  va="center", transform=ax_p.transAxes)
    ax_p.set_ylabel(f"price ({ctx.currency}/kWh)")
    ax_p.set_xlabel("local time")
    _time_axis(ax_p, t)
    return _save(fig, path)


# --- 3. cumulative cost -------------------------------------------------------------------------
def cumulative_cost(power_kw: np.ndarray, price: np.ndarray, export_price: np.ndarray, dt_h: float) -> np.ndarray:
    """Cumulative energy cost (H+1,), currency, of site power (H,) kW: import × price − export × export price.

    The demand charges (on the horizon's or a demand period's peak) are not spread over time and are left out.
    """
    p = np.asarray(power_kw, dtype=float)
    step = (np.maximum(p, 0.0) * price - np.maximum(-p, 0.0) * export_price) * dt_h
    return np.concatenate([[0.0], np.cumsum(step)])


@_styled
def plot_cumulative_cost(run: dict, path: str | Path, ctx: SeriesContext | None = None) -> Path:
    """Cumulative energy cost of the nominal (noise-free) plan and baseline trajectories over the horizon,
    and underneath the cumulative saving (baseline − plan): where in the day the plan gains or loses."""
    ctx = ctx or series_context(run)
    sim, opt = run["simulation"], run.get("optimization") or {}
    t = ctx.times
    new = lambda: _new_figure(FIG_WIDTH, 4.9, left=1.0, top=0.55, bottom=0.75)  # noqa: E731
    if ctx.price is None:
        fig, ax = _figure("cumulative_cost", (False,), lambda: _subplots(new()))
        ax.text(0.5, 0.5, "tariff not available (the request could not be re-read)", ha="center", va="center",
                transform=ax.transAxes)
        return _save(fig, path)
    fig, (ax, ax_d) = _figure("cumulative_cost", (True,),
                              lambda: _subplots(new(), 2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]}))
    _margins(fig, left=1.0, right=0.2, top=0.55, bottom=0.75, hspace=0.25, rows=2)
    curves = {}
    for side, color in (("baseline", BASE_COLOR), ("plan", PLAN_COLOR)):
        nominal = (sim[side].get("nominal") or {}).get("power_kw")
        source = "nominal run"
        if nominal is None:
            if side == "plan" and opt.get("power_kw"):
                nominal, source = opt["power_kw"], "scheduled"
            else:
                nominal, source = sim[side]["power_bands"]["p50"], "median power"
        cum = cumulative_cost(nominal, ctx.price, ctx.export_price, ctx.dt_h)
        curves[side] = cum
        ax.plot(t, cum, color=color, lw=1.8, label=f"{side} ({source}): {format_number(cum[-1])} {ctx.currency}")
    kpis = {side: ((sim[side].get("kpis") or {}).get("cost") or {}).get("mean") for side in ("plan", "baseline")}
    note = "noise-free trajectories × price"
    if ctx.demand_charge > 0:
        note += ", without the demand charges"
    title = f"Cumulative energy cost ({note})"
    if all(v is not None for v in kpis.values()):  # in the title: text inside the axes would sit on a curve
        d = spread_decimals({"mean": max(abs(kpis["plan"]), abs(kpis["baseline"])), "p5": 0.0, "p95": 0.0})
        title += (f"\nensemble means (all charges): plan {format_number(kpis['plan'], d)}, "
                  f"baseline {format_number(kpis['baseline'], d)} {ctx.currency}")
    ax.set_title(title, fontsize=9.5, y=TITLE_Y)
    ax.set_ylabel(f"cumulative cost ({ctx.currency})")
    ax.legend(loc="upper left", fontsize=8.5)
    _time_axis(ax, t)
    saved = curves["baseline"] - curves["plan"]
    ax_d.fill_between(t, saved, 0.0, where=saved >= 0, color="#2e9e4a", alpha=0.45, lw=0, interpolate=True,
                      label="plan ahead")
    ax_d.fill_between(t, saved, 0.0, where=saved < 0, color="#c0392b", alpha=0.45, lw=0, interpolate=True,
                      label="plan behind")
    ax_d.plot(t, saved, color="black", lw=1.0)
    ax_d.axhline(0.0, color="black", lw=0.6)
    ax_d.set_ylabel(f"saved so far\n({ctx.currency})")
    ax_d.set_xlabel("local time")
    ax_d.legend(loc="upper left", fontsize=7.5, ncol=2, framealpha=0.85)
    lo_d, hi_d = ax_d.get_ylim()
    ax_d.set_ylim(lo_d, hi_d + 0.45 * (hi_d - lo_d))  # headroom for the legend
    _time_axis(ax_d, t)
    return _save(fig, path)


# --- 4. distribution of savings -----------------------------------------------------------------
@_styled
def plot_savings_distribution(run: dict, value: dict, path: str | Path) -> Path:
    """Histograms of the per-trajectory paired savings (baseline − plan) of energy and cost, with the
    mean, its 95 % interval and the zero line marked."""
    sim = run["simulation"]
    cur = value.get("currency", "USD")
    panels = (("energy_kwh", "energy_saved_kwh", "energy saved (kWh)", "kWh"),
              ("cost", "cost_saved", f"cost saved ({cur})", cur),
              ("emissions_kg", "emissions_saved_kg", "CO2 avoided (kg)", "kg"))
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure("savings", (), lambda: _subplots(_new_figure(FIG_WIDTH, 4.0), 1, len(panels)))
    _margins(fig, left=0.6, right=0.15, top=0.85, bottom=1.1, wspace=0.55, cols=len(panels))
    n = value.get("ensemble_size")
    for ax, (kpi, name, label, unit) in zip(axes, panels):
        saved = np.asarray(sim["baseline"]["per_trajectory"][kpi], float) - np.asarray(sim["plan"]["per_trajectory"][kpi], float)
        fig_v = value[name]
        lo, hi = fig_v["ci95"]
        # one filled step patch and one line collection for the gaps, rather than a patch per bar (ax.hist)
        counts, edges = np.histogram(saved, bins=min(30, max(8, saved.size // 5)))
        ax.stairs(counts, edges, fill=True, color="#8aa9cc", label=f"{n} paired trajectories")
        ax.vlines(edges[1:-1], 0, np.maximum(counts[:-1], counts[1:]), color="white", lw=0.8)
        ax.axvspan(lo, hi, color=PLAN_COLOR, alpha=0.25, label="95% CI of the mean")
        ax.axvline(fig_v["mean"], color=PLAN_COLOR, lw=2.0, label="mean saving")
        lo_x, hi_x = float(min(saved.min(), lo)), float(max(saved.max(), hi))
        spread = max(hi_x - lo_x, 1e-12)
        distance = 0.0 if lo_x <= 0.0 <= hi_x else min(abs(lo_x), abs(hi_x))
        where = ""
        if distance <= 3.0 * spread:  # zero fits without squashing the histogram
            ax.axvline(0.0, color="black", lw=1.2, ls="--", label="zero (no saving)")
        else:  # zero is far off: say where it is instead of drawing it
            ax.set_xlim(lo_x - 0.15 * spread, hi_x + 0.15 * spread)
            where = "\n(zero is off to the left: all save)" if lo_x > 0 else "\n(zero is off to the right: all lose)"
        f = format_figure(fig_v, unit)
        verdict = "significant" if fig_v["significant"] else "not significant"
        ax.set_title(f"{f['mean']} {unit} ({f['lo']} to {f['hi']})\n{verdict}", fontsize=9, y=TITLE_Y)
        ax.set_xlabel(label + where, fontsize=9)
        ax.set_ylabel("trajectories")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=VALUE_BINS, integer=True))  # counts: whole trajectories
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    # one legend for the three panels, in space kept for it at the bottom of the canvas
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
    fig.legend(list(entries.values()), list(entries.keys()), loc="lower center", ncol=len(entries), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 0.02))
    fig.suptitle("Per-trajectory savings, baseline − plan on the same noise draws (> 0 = the plan saves)", fontsize=10.5,
                 y=1 - 0.1 / 4.0)
    return _save(fig, path)


PLOT_FILES = {
    "states": "states.png",
    "power": "power_tariff.png",
    "cumulative_cost": "cumulative_cost.png",
    "savings": "savings_distribution.png",
}
PLOT_TITLES = {
    "states": "States under noise against the envelope",
    "power": "Power schedule and tariff",
    "cumulative_cost": "Cumulative energy cost",
    "savings": "Distribution of the paired savings",
}


def make_plots(run: dict, value: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write the four plots as PNG files under ``out_dir``; ``{name: path}`` (names of :data:`PLOT_FILES`)."""
    out_dir = Path(out_dir)
    ctx = series_context(run)
    return {
        "states": plot_state_bands(run, out_dir / PLOT_FILES["states"], ctx),
        "power": plot_power_and_tariff(run, out_dir / PLOT_FILES["power"], ctx),
        "cumulative_cost": plot_cumulative_cost(run, out_dir / PLOT_FILES["cumulative_cost"], ctx),
        "savings": plot_savings_distribution(run, value, out_dir / PLOT_FILES["savings"]),
    }
