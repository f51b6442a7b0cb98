"""Telemetry of a plant as arrays: times, node readings, actuator and disturbance inputs.

A telemetry CSV has a ``time`` column (ISO 8601, with an offset or naive, or plain seconds)
and one column per measured node (°C, or kWh for a storage node), per actuator (kW delivered
to the node: thermal for heaters, heat pumps and chillers) and per disturbance the network
reads (°C, kW), named as in the network.  Empty cells are missing readings.  Inputs are held
from their last sample (zero-order hold), so a missing input cell takes the previous value.

Rows whose time does not parse or does not increase are dropped, and so are rows where an
input has no value yet; :attr:`Telemetry.dropped` says what was dropped and why.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from industriverse.errors import BadInput
from industriverse.model.network import Network


@dataclass
class Telemetry:
    """Readings of a network, one row per sample.

    Attributes
    ----------
    t : (N,) float array, seconds since the first sample
    y : (N, n) float array, node readings in state units (°C or kWh), NaN where not measured
    w : (N, m + n_d) float array, inputs: actuators (kW) then disturbances, in
        ``network.actuator_names + network.disturbance_names`` order, held over each interval
    start : datetime of the first sample (None when the times were plain seconds)
    dropped : list of human-readable notes on what was dropped
    """

    t: np.ndarray
    y: np.ndarray
    w: np.ndarray
    start: datetime | None = None
    dropped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t)

    def slice(self, a: int, b: int) -> "Telemetry":
        """Rows ``a:b``, times still relative to the original first sample."""
        return Telemetry(self.t[a:b], self.y[a:b], self.w[a:b], self.start, list(self.dropped))


def input_names(network: Network) -> list[str]:
    return network.actuator_names + network.disturbance_names


def parse_columns(text: str | None, *, field_name: str = "--columns") -> dict[str, str]:
    """``"old=new,old2=new2"`` → ``{"old": "new", ...}``."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise BadInput(None, field_name, f"'{part}' is not old=new")
        old, new = (s.strip() for s in part.split("=", 1))
        if not old or not new:
            raise BadInput(None, field_name, f"'{part}' is not old=new")
        out[old] = new
    return out


def _parse_time(text: str) -> float | datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _to_seconds(times: list, file: str) -> tuple[np.ndarray, datetime | None]:
    if all(isinstance(x, float) for x in times):
        return np.asarray(times, dtype=float), None
    if not all(isinstance(x, datetime) for x in times):
        raise BadInput(file, "time", "mixes plain seconds and ISO 8601 times")
    aware = {x.tzinfo is not None for x in times}
    if len(aware) > 1:
        raise BadInput(file, "time", "mixes times with and without a UTC offset")
    base = times[0]
    if aware == {True}:
        sec = np.array([(x - base).total_seconds() for x in times])
    else:  # naive local times: read as given (no DST information)
        ref = base.replace(tzinfo=timezone.utc)
        sec = np.array([(x.replace(tzinfo=timezone.utc) - ref).total_seconds() for x in times])
    return sec, base


def read_telemetry(path: str | Path, network: Network, *, columns: dict[str, str] | None = None,
                   require_inputs: bool = True) -> Telemetry:
    """Read a telemetry CSV for ``network`` (see the module docstring).

    ``columns`` renames CSV columns (``{"old": "new"}``) before matching.  Every actuator and
    disturbance the network reads must have a column when ``require_inputs``; nodes may be
    unmeasured (their states are estimated), but at least one node must be measured.
    """
    from industriverse.model.canonical import read_text_checked  # regular file, size limit, UTF-8
    from industriverse.model.series import MAX_CSV_BYTES

    path, file = Path(path), str(path)
    reader = csv.reader(io.StringIO(read_text_checked(path, max_bytes=MAX_CSV_BYTES, what="telemetry CSV"), newline=""))
    try:
        header = next(reader)
        rows = list(reader)
    except StopIteration:
        raise BadInput(file, None, "empty file") from None
    except csv.Error:
        raise BadInput(file, None, "not a valid CSV file") from None
    header = [(columns or {}).get(h.strip(), h.strip()) for h in header]
    for old in columns or {}:
        if old not in [h.strip() for h in header] and columns[old] not in header:
            raise BadInput(file, "--columns", f"no column '{old}' to rename")
    if "time" not in header:
        raise BadInput(file, "time", f"no 'time' column (columns: {', '.join(header)})")
    col = {h: i for i, h in enumerate(header)}
    nodes, inputs = network.node_names, input_names(network)
    if not any(n in col for n in nodes):
        raise BadInput(file, None, f"no column names a node (nodes: {', '.join(nodes)})")
    missing = [n for n in inputs if n not in col]
    if missing and require_inputs:
        raise BadInput(file, missing[0], "no such column: the network reads this input (use --columns old=new to rename)")
    dropped: list[str] = []
    unused = [h for h in header if h not in col or (h != "time" and h not in nodes and h not in inputs)]
    if unused:
        dropped.append(f"columns not in the network, ignored: {', '.join(unused)}")

    def num(cell: str) -> float:
        cell = cell.strip()
        if not cell:
            return np.nan
        try:
            return float(cell)
        except ValueError:
            return np.nan

    times, keep_rows, bad_time = [], [], 0
    for r in rows:
        if not r or all(not c.strip() for c in r):
            continue
        tv = _parse_time(r[col["time"]]) if col["time"] < len(r) else None
        if tv is None:
            bad_time += 1
            continue
        times.append(tv)
        keep_rows.append(r)
    if bad_time:
        dropped.append(f"{bad_time} row(s) without a readable time")
    if not times:
        raise BadInput(file, "time", "no row with a readable time")
    t, start = _to_seconds(times, file)

    def column(name: str) -> np.ndarray:
        if name not in col:
            return np.full(len(keep_rows), np.nan)
        j = col[name]
        return np.array([num(r[j]) if j < len(r) else np.nan for r in keep_rows])

    y = np.column_stack([column(n) for n in nodes])
    w = np.column_stack([column(n) for n in inputs]) if inputs else np.zeros((len(t), 0))
    bad_values = int(np.sum(~np.isfinite(y) & ~np.isnan(y)))
    y[~np.isfinite(y)] = np.nan
    # time order, strictly increasing
    order = np.argsort(t, kind="stable")
    t, y, w = t[order], y[order], w[order]
    dup = np.concatenate([[False], np.diff(t) <= 0])
    if dup.any():
        dropped.append(f"{int(dup.sum())} row(s) with a repeated time")
        t, y, w = t[~dup], y[~dup], w[~dup]
    # inputs held from their last sample
    for j in range(w.shape[1]):
        ok = np.isfinite(w[:, j])
        idx = np.where(ok, np.arange(len(t)), 0)
        np.maximum.accumulate(idx, out=idx)
        held = w[idx, j]
        held[~ok & (np.cumsum(ok) == 0)] = np.nan
        w[:, j] = held
    lead = ~np.all(np.isfinite(w), axis=1) if w.shape[1] else np.zeros(len(t), bool)
    if lead.any():
        first = int(np.argmax(~lead))
        if lead.all():
            raise BadInput(file, inputs[int(np.argmax(~np.isfinite(w[0])))], "has no value in any row")
        dropped.append(f"{first} leading row(s) before every input had a value")
        t, y, w = t[first:], y[first:], w[first:]
    if bad_values:
        dropped.append(f"{bad_values} non-finite node reading(s)")
    empty = [nodes[i] for i in range(y.shape[1]) if np.isnan(y[:, i]).all()]
    if empty:
        dropped.append(f"node(s) never measured, their states estimated: {', '.join(empty)}")
    nmiss = int(np.isnan(y).sum() - len(empty) * len(t))
    if nmiss:
        dropped.append(f"{nmiss} missing node reading(s) (filtered through, not interpolated)")
    if len(t) < 2:
        raise BadInput(file, None, "fewer than two usable rows")
    dts = np.diff(t)
    long = dts > 3 * np.median(dts)
    if long.any():
        dropped.append(f"{int(long.sum())} gap(s) longer than 3 × the median interval of {np.median(dts):g} s "
                       f"(longest {dts.max() / 3600:.3g} h): bridged by the model with inputs held")
    if start is not None and t[0] > 0:
        start = start + timedelta(seconds=float(t[0]))
    t = t - t[0]
    return Telemetry(t, y, w, start, dropped)


def telemetry_from_arrays(network: Network, t, y: dict[str, np.ndarray], w: dict[str, np.ndarray]) -> Telemetry:
    """A :class:`Telemetry` from arrays keyed by name (missing nodes are unmeasured)."""
    t = np.asarray(t, dtype=float)
    Y = np.column_stack([np.asarray(y[n], float) if n in y else np.full(len(t), np.nan) for n in network.node_names])
    W = np.column_stack([np.asarray(w[n], float) for n in input_names(network)]) if input_names(network) else np.zeros((len(t), 0))
    return Telemetry(t - t[0], Y, W)


def write_telemetry(path: str | Path, network: Network, tel: Telemetry, *, start: datetime | None = None,
                    decimals: int = 3) -> None:
    """Write ``tel`` as a telemetry CSV (the layout :func:`read_telemetry` reads).

    Times are ISO 8601 from ``start`` (an aware datetime keeps its offset), or seconds when
    ``start`` is None; unmeasured values are empty cells.
    """
    names = network.node_names + input_names(network)
    data = np.hstack([tel.y, tel.w])
    with Path(path).open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["time"] + names)
        for k, tk in enumerate(tel.t):
            stamp = (start + timedelta(seconds=float(tk))).isoformat() if start is not None else f"{tk:g}"
            out.writerow([stamp] + ["" if not np.isfinite(v) else f"{v:.{decimals}f}" for v in data[k]])
