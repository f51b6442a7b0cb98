"""The value report of a run: value.json, Markdown, one self-contained HTML file and a PDF.

The report is built once as a list of blocks (headings, paragraphs, bullet lists, tables,
images) from value.json (:func:`industriverse.report.value.compute_value`) and rendered three
ways, so every format prints the same sentences and the same digits:

* ``report.md`` — Markdown, the plots as PNG files beside it;
* ``report.html`` — one file: inline CSS, the plots as ``data:`` URIs, no external reference;
* ``report.pdf`` — fpdf2: title, summary, tables, plots, the proof's hashes and signature
  key ID.  Text is set in DejaVu Sans (shipped with matplotlib) so °C, CO₂-style and
  Clopper–Pearson render as written; without that font the text is reduced to latin-1.

A run is a run directory (DESIGN.md §4: request.json, optimization.json, simulation.json,
verdict.json, proof.json, capsule/manifest.yaml, deployment.json when deployed) or a strike
ID whose stage results and artifacts are in the store (:func:`read_strike`).
"""
from __future__ import annotations

import base64
import functools
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from industriverse.errors import BadInput
from industriverse.fleet.rundir import DOCUMENTS, write_json_file
from industriverse.report.fonts import REDUCED_CHARS, dejavu_files, reduced_font_files
from industriverse.report.plots import PLOT_FILES, PLOT_TITLES
from industriverse.report.value import (STABILITY_DEFINITION, compute_value, format_figure, format_number, format_percent,
                                        format_probability, optimizer_sentence, spread_decimals)

FORMATS = ("md", "html", "pdf")
RUN_FILES = DOCUMENTS  # the run directory's documents (industriverse.fleet.rundir)
MANIFEST_FILE = Path("capsule") / "manifest.yaml"
REQUIRED = ("optimization", "simulation")


# --- reading a run ----------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    from industriverse.model.canonical import read_json

    return read_json(path)  # stat, size, depth, integer-length and finite-number limits


def read_run(run_dir: str | Path) -> dict:
    """The documents of a run directory as dicts (absent optional files are left out).

    Keys: request, optimization, simulation, verdict, proof, deployment, manifest, run_dir.
    A missing optimization.json or simulation.json is :class:`BadInput`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInput(str(run_dir), None, "is not a directory")
    run: dict[str, Any] = {"run_dir": str(run_dir)}
    for key, name in RUN_FILES.items():
        path = run_dir / name
        if path.is_file():
            run[key] = _read_json(path)
        elif key in REQUIRED:
            raise BadInput(str(path), None, "is missing: a run directory needs optimization.json and simulation.json")
    manifest = run_dir / MANIFEST_FILE
    if manifest.is_file():
        try:
            from industriverse.model.canonical import yaml_load

            run["manifest"] = yaml_load(manifest.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise BadInput(str(manifest), None, f"is not valid YAML ({exc.__class__.__name__})") from None
    if isinstance(run.get("proof"), dict):
        run.setdefault("strike_id", run["proof"].get("strike_id"))
    return run


def _refs(payload: Any, found: dict) -> None:
    """Collect ``*_ref`` artifact keys and the deployment IDs from a stage payload (any nesting);
    later finds replace earlier ones (the stages are read in the order they were stored)."""
    if isinstance(payload, dict):
        for key, val in payload.items():
            if isinstance(val, str) and key.endswith("_ref"):
                found[key[:-4]] = val
            elif key in ("activity_id", "capsule_id", "run_dir") and isinstance(val, str):
                found[key] = val
            else:
                _refs(val, found)
    elif isinstance(payload, list):
        for item in payload:
            _refs(item, found)


def _round_of(stage: str) -> int:
    """The re-optimization round of a stage key (``stage`` is round 0, ``stage#r`` round r)."""
    _, sep, tail = stage.rpartition("#")
    return int(tail) if sep and tail.isdigit() else 0


def read_strike(strike_id: str, *, engine=None) -> dict | None:
    """The documents of a strike from the store, or None when the store knows no such strike.

    Uses the strike's run directory when it still holds the files; otherwise resolves the
    ``*_ref`` artifacts (optimization, simulation, verdict, proof) and the deployment IDs
    (activity_id, capsule_id) of the stage results of the strike's last round that got as far
    as a simulation (a strike the shield rejected may have been re-optimized in later rounds).
    """
    from industriverse.fleet import store

    row = store.get_strike(strike_id, engine=engine)
    stages = store.list_stage_results(strike_id, engine=engine)
    if row is None and not stages:
        return None
    by_round: dict[int, dict[str, str]] = {}
    for stage, payload in stages.items():
        _refs(payload, by_round.setdefault(_round_of(stage), {}))
    complete = [r for r, f in by_round.items() if "optimization" in f and "simulation" in f]
    found = by_round.get(max(complete) if complete else max(by_round, default=0), {})
    run_dir = (row or {}).get("run_dir") or found.get("run_dir")
    if run_dir and (Path(run_dir) / RUN_FILES["optimization"]).is_file() and (Path(run_dir) / RUN_FILES["simulation"]).is_file():
        run = read_run(run_dir)
    else:
        run = {"run_dir": run_dir}
        for key in ("optimization", "simulation", "verdict", "proof"):
            if key in found:
                try:
                    run[key] = store.get_json_artifact(found[key], engine=engine)
                except KeyError:
                    raise BadInput("store", f"{key}_ref", f"artifact {found[key]} of strike {strike_id} is not in the store") from None
        for key in REQUIRED:
            if key not in run:
                status = (row or {}).get("status", "unknown")
                raise BadInput("--run", None, f"strike {strike_id} (status {status}) has no {key} result in the store yet")
    if found.get("activity_id") or found.get("capsule_id"):
        dep = run.setdefault("deployment", {})
        dep.setdefault("activity_id", found.get("activity_id"))
        dep.setdefault("capsule_id", found.get("capsule_id"))
    run["strike_id"] = strike_id
    return run


# --- the document ---------------------------------------------------------------------------
@dataclass
class Block:
    """One piece of the report: kind in h1 | h2 | p | note | bullets | table | image | code."""

    kind: str
    text: str = ""
    items: list | None = None  # bullets: [str]; table: rows [[str]]; code: [str]
    header: list | None = None  # table header
    path: Path | None = None  # image


def _fmt(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return format_number(x)
    if x is None:
        return "n/a"
    return str(x)


OUTCOME_TITLES = {
    "deployed": "DEPLOYED",
    "rejected": "REJECTED by the shield - nothing deployed",
    "verified": "VERIFIED by the shield, not deployed",
    "unverified": "NOT VERIFIED - no shield verdict in this run",
}
KPI_LABELS = {
    "energy_kwh": "Energy imported (kWh)",
    "cost": "Cost ({cur})",
    "emissions_kg": "Emissions (kg CO2)",
    "peak_kw": "Peak power, 15-min mean (kW)",
    "discomfort_kh": "Discomfort outside the band (K·h, time integral)",
}


SAVING_ROWS = (("energy_saved_kwh", "Energy saved", "kWh"), ("energy_saved_pct", "Energy saved", "%"),
               ("cost_saved", "Cost saved", None), ("emissions_saved_kg", "CO2 avoided", "kg CO2"),
               ("peak_reduction_kw", "Peak reduction", "kW"))
KPI_UNITS = {"energy_kwh": "kWh", "cost": None, "emissions_kg": "kg CO2", "peak_kw": "kW", "discomfort_kh": "K·h"}
KPI_NAMES = {"energy_kwh": "Energy imported", "cost": "Cost", "emissions_kg": "Emissions",
             "peak_kw": "Peak power (15-min mean)", "discomfort_kh": "Discomfort outside the band"}
OUTCOME_LINES = {
    "deployed": "Outcome: DEPLOYED - the plan passed every safety check and is running on site.",
    "rejected": "Outcome: REJECTED by the safety shield - nothing was deployed and none of these savings will be realised.",
    "verified": "Outcome: VERIFIED by the safety shield, not deployed.",
    "unverified": "Outcome: NOT VERIFIED - no safety verdict in this run; do not act on these figures.",
}
FRONT_PLOT = "cumulative_cost"  # the one chart on the first page: where in the day the plan gains or loses


def _verdict(fig: dict) -> str:
    if not fig["significant"]:
        return "not significant (no saving can be claimed)"
    return "saving" if fig["mean"] > 0 else "LOSS"


def _with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit else text


def build_document(value: dict, plots: dict[str, Path]) -> list[Block]:
    """The report as blocks, from value.json and the plot files.

    First page: title, the headline sentence (per day and per year, with the interval), the
    outcome and one chart.  Then the detail a client reads (summary, savings with their units
    and verdicts, KPIs, stability, the other plots).  Engineering material (optimizer bound,
    shield checks, IDs, hashes, signature) is in the appendix.
    """
    cur = value["currency"]
    blocks: list[Block] = []
    who = value.get("client")
    title = f"Value report: {who} ({value.get('domain')})" if who else f"Value report: {value.get('domain')}"
    blocks.append(Block("h1", title))
    blocks.append(Block("lead", value.get("headline") or ""))
    blocks.append(Block("p", OUTCOME_LINES.get(value["outcome"], f"Outcome: {value['outcome']}")))
    hz = value.get("horizon") or {}
    start = str(hz.get("start") or "")[:16].replace("T", " ")
    hours = (hz.get("steps") or 0) * (hz.get("step_minutes") or 0) / 60.0
    blocks.append(Block("note", f"Plan for {_fmt(hours)} h from {start} in steps of {_fmt(hz.get('step_minutes'))} min, "
                                f"tested on {value['ensemble_size']} simulated days of weather and load noise "
                                "against the site's baseline controller."))
    if FRONT_PLOT in plots:
        blocks.append(Block("image", PLOT_TITLES.get(FRONT_PLOT, FRONT_PLOT), path=Path(plots[FRONT_PLOT])))

    blocks.append(Block("h2", "Summary"))
    blocks.append(Block("bullets", items=list(value["summary"])))

    blocks.append(Block("h2", "Savings against the baseline"))
    rows = []
    for field, label, unit in SAVING_ROWS:
        unit = unit or cur
        fig = value[field]
        if fig.get("mean") is None:
            rows.append([label, "n/a", "n/a", "n/a"])
            continue
        f = format_figure(fig, "")
        rows.append([label, _with_unit(f["mean"], unit), _with_unit(f"{f['lo']} to {f['hi']}", unit), _verdict(fig)])
    blocks.append(Block("table", header=["Over the horizon", "Mean", "95% interval", "Verdict"], items=rows))
    if value.get("per_day"):
        rows = []
        for field, label, unit in SAVING_ROWS:
            if field not in value["per_day"]:
                continue
            unit = unit or cur
            d, y = format_figure(value["per_day"][field], unit), format_figure(value["per_year"][field], unit)
            rows.append([label, d["text"].replace("95% CI ", ""), y["text"].replace("95% CI ", "")])
        blocks.append(Block("table", header=["At this pattern", "Per day (95% interval)", "Per year (95% interval)"], items=rows))
        blocks.append(Block("note", f"Per day and per year: {value['extrapolation']}."))
    blocks.append(Block("note", f"Each figure: mean and {value['interval']}. "
                                "Significant = the interval excludes zero. A negative saving is a loss. "
                                f"Energy saved in % = {value['energy_saved_pct']['definition']}. "
                                "Figures are rounded to what their interval supports."))

    blocks.append(Block("h2", "Key performance indicators"))
    rows = []
    for kpi, name in KPI_NAMES.items():
        k = value["kpis"].get(kpi)
        if not k:
            continue
        unit = KPI_UNITS[kpi] or cur
        cells = [name]
        for side in ("plan", "baseline"):
            d = spread_decimals({key: max(abs(k["plan"][key]), abs(k["baseline"][key])) for key in ("mean", "p5", "p95")})
            cells += [_with_unit(format_number(k[side]["mean"], d), unit),
                      _with_unit(f"{format_number(k[side]['p5'], d)} to {format_number(k[side]['p95'], d)}", unit)]
        rows.append(cells)
    blocks.append(Block("table", header=["Per simulated horizon", "Plan: mean", "Plan: 5-95 %", "Baseline: mean", "Baseline: 5-95 %"],
                        items=rows))
    blocks.append(Block("note", "Mean over the ensemble, and the range in which 90 % of the simulated trajectories fall "
                                "(for a skewed quantity the mean can lie outside that range)."))

    tariff = value.get("tariff")
    if tariff:
        blocks.append(Block("h2", "Tariff" + (f": {tariff['name']}" if tariff.get("name") else "")))
        rows = [[str(d.get("name")), _with_unit(format_number(d.get("rate_per_kw")), f"{cur}/kW"),
                 _with_unit(format_number(d.get("peak_kw")), "kW"),
                 _with_unit(format_number((d.get("rate_per_kw") or 0.0) * (d.get("peak_kw") or 0.0)), cur)]
                for d in tariff.get("demand_charges") or []]
        if rows:
            blocks.append(Block("table", header=["Demand charge", "Rate", "Planned peak", "Charge"], items=rows))
            blocks.append(Block("note", "Each demand period is charged on its own 15-minute peak within the month; these "
                                        "charges are inside every cost above."))
        if tariff.get("fixed_monthly_charge"):
            blocks.append(Block("p", f"Fixed charge: {_with_unit(format_number(tariff['fixed_monthly_charge']), cur)} per month "
                                     "(as billed, not prorated to the horizon). It is in none of the costs or savings above: "
                                     "no plan changes it."))

    s = value["stability_score"]
    vp = value["violation_probability"]
    blocks.append(Block("h2", "Stability score"))
    blocks.append(Block("p", f"Definition: {STABILITY_DEFINITION}, under the stochastic plant model, "
                             f"from {s['ensemble_size']} simulated trajectories."))
    rows = [
        ["Stability score (probability, 0-1)", format_probability(s["plan"]), format_probability(s["baseline"])],
        ["Trajectories leaving the envelope (count)", f"{s['violating_trajectories']['plan']} of {s['ensemble_size']}",
         f"{s['violating_trajectories']['baseline']} of {s['ensemble_size']}"],
        [f"Violation probability, upper bound ({format_number(100 * vp['plan']['confidence'], 0)}%; probability, 0-1)",
         format_probability(vp["plan"]["upper"]), format_probability(vp["baseline"]["upper"])],
    ]
    if vp.get("limit") is not None:
        rows.append(["Client's maximum violation probability (0-1)", format_probability(vp["limit"]), ""])
    blocks.append(Block("table", header=["", "Plan", "Baseline"], items=rows))

    blocks.append(Block("h2", "Plots"))
    for name, path in plots.items():
        if name != FRONT_PLOT:
            blocks.append(Block("image", PLOT_TITLES.get(name, name), path=Path(path)))

    blocks.append(Block("h2", "Appendix: engineering detail"))
    o = value["optimizer"]
    blocks.append(Block("h3", "Optimizer"))
    rows = [["Method", _fmt(o.get("method"))],
            ["Planned cost", _with_unit(_fmt(o.get("cost")), cur)],
            ["Proven lower bound", _with_unit(_fmt(o.get("lower_bound")), cur) + (f" ({o['lower_bound_method']})" if o.get("lower_bound_method") else "")],
            ["Gap to the bound", format_percent(o.get("gap")) if o.get("gap") is not None else "unknown (no proven bound)"],
            ["Feasible", _fmt(o.get("feasible"))]]
    blocks.append(Block("table", header=["", ""], items=rows))
    sentence = optimizer_sentence(value)
    if sentence:
        blocks.append(Block("p", sentence))

    blocks.append(Block("h3", "Shield checks"))
    shield = value.get("shield")
    if shield:
        rows = [[str(c.get("name")), _fmt(c.get("value")), _fmt(c.get("limit")), _fmt(c.get("margin")),
                 "pass" if c.get("passed") else "FAIL"] for c in shield["checks"]]
        blocks.append(Block("table", header=["Check", "Value", "Limit", "Margin", "Result"], items=rows))
        failed = [c for c in shield["checks"] if not c["passed"]]
        blocks.append(Block("p", "All checks passed." if shield["passed"] else
                            f"{len(failed)} check(s) failed: the plan was rejected."))
        if any(c.get("detail") for c in failed):
            blocks.append(Block("bullets", items=[f"{c['name']}: {c['detail']}" for c in failed if c.get("detail")]))
        if value.get("relax"):
            blocks.append(Block("p", "What could be relaxed:"))
            blocks.append(Block("bullets", items=[f"{r['check']}: {r['advice']}" for r in value["relax"]]))
    else:
        blocks.append(Block("p", "No shield verdict in this run: the plan is not verified."))

    blocks.append(Block("h3", "Deployment and proof"))
    dep = value.get("deployment") or {}
    proof = value.get("proof") or {}
    rows = [["Outcome", value["outcome"]],
            ["Strike ID", _fmt(value.get("strike_id"))],
            ["Deployed activity ID", _fmt(dep.get("activity_id"))],
            ["Capsule ID", _fmt(dep.get("capsule_id"))],
            ["Ensemble", f"{value['ensemble_size']} trajectories, seed {value.get('seed')}"]]
    if proof:
        rows += [["Proof strike ID", _fmt(proof.get("strike_id"))],
                 ["Inputs SHA-256", _fmt(proof.get("inputs_sha256"))],
                 ["Plan SHA-256", _fmt(proof.get("plan_sha256"))],
                 ["Signature", f"{_fmt(proof.get('signature_algorithm'))}, key ID {_fmt(proof.get('signature_key_id'))}"],
                 ["Code version", _fmt(proof.get("code_version"))],
                 ["Proof created", _fmt(proof.get("created_at"))]]
    else:
        rows.append(["Proof", "none in this run"])
    blocks.append(Block("table", header=["", ""], items=rows))
    return blocks


# --- Markdown ---------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], out_dir: Path) -> str:
    """Markdown text; images are linked by their path relative to ``out_dir``."""
    lines: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            lines += [f"# {b.text}", ""]
        elif b.kind == "h2":
            lines += [f"## {b.text}", ""]
        elif b.kind == "h3":
            lines += [f"### {b.text}", ""]
        elif b.kind == "lead":
            lines += [f"**{b.text}**", ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "note":
            lines += [f"*{b.text}*", ""]
        elif b.kind == "bullets":
            lines += [f"- {item}" for item in b.items] + [""]
        elif b.kind == "table":
            header = b.header if any(b.header) else [" "] * len(b.header)
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.items]
            lines.append("")
        elif b.kind == "image":
            rel = os.path.relpath(b.path, out_dir)
            lines += [f"### {b.text}", "", f"![{b.text}]({rel})", ""]
    return "\n".join(lines)


# --- HTML -------------------------------------------------------------------------------------
CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;max-width:1060px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #1f5fa8;padding-bottom:6px}
h2{font-size:1.2em;margin-top:1.6em;color:#1f5fa8}
h3{font-size:1em}
.note{color:#555;font-size:.9em}
.lead{font-size:1.2em;font-weight:bold;line-height:1.4}
.outcome{font-weight:bold;font-size:1.1em;padding:8px 12px;border-radius:4px;background:#eef3fa}
.outcome.rejected,.outcome.unverified{background:#fbeaea;color:#8a1c1c}
.outcome.deployed{background:#e8f5ec;color:#1d5e30}
table{border-collapse:collapse;margin:8px 0 12px 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f7}
td.mono{font-family:"DejaVu Sans Mono",monospace;font-size:.85em;word-break:break-all}
img{max-width:100%;height:auto;border:1px solid #ddd}
li{margin:4px 0}
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(blocks: list[Block], outcome: str) -> str:
    """One self-contained HTML page: inline CSS, images as data URIs, no external reference."""
    esc = html.escape
    body: list[str] = []
    title = next((b.text for b in blocks if b.kind == "h1"), "Value report")
    for b in blocks:
        if b.kind == "h1":
            body.append(f"<h1>{esc(b.text)}</h1>")
        elif b.kind == "h2":
            body.append(f"<h2>{esc(b.text)}</h2>")
        elif b.kind == "h3":
            body.append(f"<h3>{esc(b.text)}</h3>")
        elif b.kind == "lead":
            body.append(f'<p class="lead">{esc(b.text)}</p>')
        elif b.kind == "p":
            cls = f' class="outcome {esc(outcome)}"' if b.text.startswith("Outcome:") else ""
            body.append(f"<p{cls}>{esc(b.text)}</p>")
        elif b.kind == "note":
            body.append(f'<p class="note">{esc(b.text)}</p>')
        elif b.kind == "bullets":
            body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in b.header) if any(b.header) else ""
            rows = []
            for row in b.items:
                cells = []
                for c in row:
                    mono = ' class="mono"' if len(str(c)) >= 40 and " " not in str(c) else ""
                    cells.append(f"<td{mono}>{esc(str(c))}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            body.append("<table>" + (f"<thead><tr>{head}</tr></thead>" if head else "") + "<tbody>" + "".join(rows) + "</tbody></table>")
        elif b.kind == "image":
            body.append(f"<h3>{esc(b.text)}</h3><img alt=\"{esc(b.text)}\" src=\"{_data_uri(b.path)}\">")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


# --- PDF --------------------------------------------------------------------------------------
LATIN1_REPLACEMENTS = {
    "–": "-", "—": "-", "−": "-", "≤": "<=", "≥": ">=", "₂": "2", "₀": "0", "×": "x", "…": "...",
    "“": '"', "”": '"', "‘": "'", "’": "'", "·": "·", "°": "°",
}


def _font_files() -> dict[str, Path] | None:
    """DejaVu Sans regular and bold (:func:`industriverse.report.fonts.dejavu_files`), or None."""
    return dejavu_files()


def to_latin1(text: str) -> str:
    """``text`` reduced to what the PDF core fonts can show (latin-1)."""
    for a, b in LATIN1_REPLACEMENTS.items():
        text = text.replace(a, b)
    return text.encode("latin-1", "replace").decode("latin-1")


def _document_chars(blocks: list[Block], title: str) -> set[str]:
    """Every character the PDF of ``blocks`` prints."""
    chars = set(title)
    for b in blocks:
        chars.update(b.text)
        for item in (b.items or []) + [b.header or []]:
            for cell in (item if isinstance(item, list) else [item]):
                chars.update(str(cell))
    return chars


_PARSED_FONTS: dict[tuple, dict] = {}  # font files -> parsed fpdf fonts, pristine (never used by a document)


def _clone_font(font):
    """A copy of a parsed fpdf font for another document.

    What parsing built and no document changes (widths, cmap, glyph IDs, descriptor) is shared;
    what a document changes is fresh: the subset map of the glyphs it used, and the fontTools
    font, reopened lazily (well under a millisecond), since subsetting at output changes it in place.
    """
    from fontTools import ttLib
    from fpdf.fonts import SubsetMap

    memo = _fpdf_internals_known()
    clone = object.__new__(_memo_class(type(font)) if memo else type(font))
    for name in type(font).__slots__:
        if hasattr(font, name):
            setattr(clone, name, getattr(font, name))
    clone.ttfont = ttLib.TTFont(font.ttffile, recalcTimestamp=False, recalcBBoxes=False, fontNumber=font.collection_font_number,
                                lazy=True)
    clone._hbfont = None
    clone.missing_glyphs = []
    clone.biggest_size_pt = 0
    clone.subset = SubsetMap(clone)
    if memo:
        clone._units = {}
    return clone


_MEMO_CLASSES: dict[type, type] = {}


@functools.cache
def _fpdf_internals_known() -> bool:
    """Whether fpdf is a version whose font width method and image cache records :func:`_memo_class` and
    :func:`png_passthrough` were written against (2.8; pyproject allows 2.7, which gets fpdf's own paths)."""
    import fpdf

    try:
        return tuple(int(part) for part in fpdf.FPDF_VERSION.split(".")[:2]) >= (2, 8)
    except ValueError:
        return False


def _memo_class(cls: type) -> type:
    """``cls`` (fpdf's TrueType font) with text widths summed once per prefix.

    fpdf's line breaking (``multi_cell``) asks for the width of the line so far after every character
    it adds, and ``get_text_width`` sums the character widths of the whole line each time: quadratic in
    the line's length, half of the PDF's time.  The subclass remembers each text's width in font units
    and gets a text one character longer than a text it has seen with one addition, in the same order
    as fpdf's sum (the widths are integers): the same widths, so the same line breaks."""
    sub = _MEMO_CLASSES.get(cls)
    if sub is not None:
        return sub

    def get_text_width(self, text, font_size_pt, text_shaping_params):
        if text_shaping_params or self.is_symbol:  # shaped or remapped text: fpdf's own
            return cls.get_text_width(self, text, font_size_pt, text_shaping_params)
        if font_size_pt > self.biggest_size_pt:
            self.biggest_size_pt = font_size_pt
        units = self._units.get(text)
        if units is None:
            head = self._units.get(text[:-1]) if text else None
            units = head + self.cw[ord(text[-1])] if head is not None else sum(self.cw[ord(c)] for c in text)
            self._units[text] = units
        return len(text), units * font_size_pt * 0.001

    sub = _MEMO_CLASSES[cls] = type(cls.__name__, (cls,), {"__slots__": ("_units",), "get_text_width": get_text_width,
                                                           "__module__": __name__, "__doc__": _memo_class.__doc__})
    return sub


def _add_fonts(pdf, fonts: dict[str, Path]) -> None:
    """Add the body fonts (regular, bold) to ``pdf``, parsing each TTF file once per process.

    fpdf2 parses a TrueType file (cmap, widths) on every ``add_font``: ~0.05-0.1 s a face.
    Each document gets a clone of a pristine parsed font (:func:`_clone_font`), since the font
    object records which glyphs that document used (its subset)."""
    key = tuple(str(fonts[k]) for k in ("", "B"))
    parsed = _PARSED_FONTS.get(key)
    if parsed is None:
        from fpdf import FPDF

        template = FPDF()
        template.add_font("Body", "", str(fonts[""]))
        template.add_font("Body", "B", str(fonts["B"]))
        parsed = _PARSED_FONTS[key] = dict(template.fonts)
    for name, font in parsed.items():  # same order as add_font, so each font keeps its index
        pdf.fonts[name] = _clone_font(font)


def _image_height(path: Path, width: float) -> float:
    from PIL import Image

    with Image.open(path) as im:
        w_px, h_px = im.size
    return width * h_px / w_px


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour types a PDF image takes as they are: greyscale and RGB (no palette, no alpha), 8 bits
_PNG_COLOURS = {0: (1, "DeviceGray"), 2: (3, "DeviceRGB")}


def png_passthrough(path: Path):
    """fpdf's image record of the PNG file ``path`` with its compressed pixels as they are, or None.

    A PDF's FlateDecode filter with PNG predictors (``/Predictor 15``) reads a PNG's IDAT stream (filtered
    rows, zlib) unchanged, so a plot need not be decoded and compressed again (fpdf does both: a third
    of the PDF's time).  Only 8-bit greyscale or RGB, not interlaced, without a colour profile, gamma or
    transparency chunk (the plots as :mod:`industriverse.report.plots` writes them); None for anything else,
    which fpdf reads itself."""
    import struct
    import zlib

    data = Path(path).read_bytes()
    if data[:8] != PNG_SIGNATURE:
        return None
    pos, idat, header, ended = 8, [], None, False
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]:
            return None  # truncated or corrupt: let fpdf say so
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
        elif kind in (b"PLTE", b"tRNS", b"iCCP", b"gAMA", b"cHRM", b"sRGB", b"sBIT"):
            return None  # colour information a plain DeviceRGB/DeviceGray image would drop
        pos += 12 + length
    if header is None or not idat or not ended:  # cut short (at a chunk's end): fpdf says what is wrong
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if depth != 8 or colour not in _PNG_COLOURS or compression or filtering or interlace:
        return None
    from fpdf.image_datastructures import RasterImageInfo

    channels, space = _PNG_COLOURS[colour]
    return RasterImageInfo(data=b"".join(idat), w=width, h=height, cs=space, iccp=None, dpn=channels, bpc=8,
                           f="FlateDecode", inverted=False, dp=f"/Predictor 15 /Colors {channels} /Columns {width}")


# the PDF's headings: bold size (pt), line height (mm), colour (None: black), space before and after (mm),
# and the room (mm from the page's bottom edge) under which a heading starts a new page (None: never)
HEADINGS = {
    "h1": (16, 8, (31, 95, 168), 0, 1, None),
    "h2": (12.5, 7, (31, 95, 168), 3, 1, 45),
    "h3": (11, 6, None, 1.5, 0.5, 40),
    "lead": (12.5, 6.6, (20, 33, 61), 1, 2, None),
}
IMAGE_COMPRESSION = 3  # zlib level of the plots inside the PDF
TABLE_LINE_MM = 4.6  # table text line height
TABLE_PAD_MM = 1.2  # cell padding, every side
TABLE_HEAD_FILL = (235, 239, 245)


def _table(pdf, block: Block, *, body: str, mono: str, clean) -> None:
    """``block``'s table at the current position, full text width: bordered cells, text top-left in each
    line, the header row bold on a tint and repeated atop a page the table runs onto.

    Each cell's text is broken into lines once (fpdf's ``multi_cell`` in a dry run, and only where it
    is wider than its cell) and then set line by line: fpdf's ``table()`` lays every cell out twice, a
    dry run for the row height and the real run, which was half of the PDF's time."""
    n_cols = len(block.header)
    fractions = (0.32, 0.68) if n_cols == 2 else (1.0 / n_cols,) * n_cols
    widths = [pdf.epw * f for f in fractions]

    def cells(row: list, header: bool) -> list:
        """(font family, style, size, lines) of each cell of ``row``."""
        out = []
        for c, w in zip(row, widths):
            text = clean(str(c))
            family, style, size = body, "B" if header else "", 8.5
            if not header and len(text) >= 40 and " " not in text:  # hashes: small (monospace with the core fonts)
                family, size = mono, 7
            pdf.set_font(family, style, size)
            room = w - 2 * TABLE_PAD_MM
            if "\n" not in text and pdf.get_string_width(text) <= room:
                lines = [text]
            else:
                lines = pdf.multi_cell(room, TABLE_LINE_MM, text, align="L", dry_run=True, output="LINES", padding=0)
            out.append((family, style, size, lines))
        return out

    def draw(row_cells: list, header: bool) -> None:
        height = max(len(lines) for *_, lines in row_cells) * TABLE_LINE_MM + 2 * TABLE_PAD_MM
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.add_page()
            if head is not None and not header:
                draw(head, True)
        x, y = pdf.l_margin, pdf.get_y()
        for (family, style, size, lines), w in zip(row_cells, widths):
            if header:
                pdf.set_fill_color(*TABLE_HEAD_FILL)
            pdf.rect(x, y, w, height, style="DF" if header else "D")
            pdf.set_font(family, style, size)
            for k, line in enumerate(lines):
                pdf.set_xy(x + TABLE_PAD_MM, y + TABLE_PAD_MM + k * TABLE_LINE_MM)
                pdf.cell(w - 2 * TABLE_PAD_MM, TABLE_LINE_MM, line, align="L")
            x += w
        pdf.set_xy(pdf.l_margin, y + height)

    head = cells(block.header, True) if any(block.header) else None
    if head is not None:
        draw(head, True)
    for row in block.items:
        draw(cells(row, False), False)
    pdf.set_font(body, "", 8.5)


def render_pdf(blocks: list[Block], path: Path, *, title: str, wait=None) -> Path:
    """The PDF report (A4): headline page, detail, plots, appendix with the proof's hashes and signature key ID.

    Pages are filled: a plot that does not fit the rest of a page is shrunk to fit (down to
    60 % of the text width) before it is moved to the next page.  ``wait(path)``, when given,
    is called before a plot file is read (plots still being drawn in other processes)."""
    from fpdf import FPDF
    from fpdf.image_parsing import SETTINGS

    # fpdf re-compresses each plot's pixels (zlib): level 3 rather than the default 6 takes a third
    # less time (~0.025 s a report) for a PDF ~9 % larger
    SETTINGS.compression_level = IMAGE_COMPRESSION
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=14)
    pdf.set_margins(14, 14, 14)
    fonts = _font_files()
    if fonts:
        if _document_chars(blocks, title) <= REDUCED_CHARS:
            fonts = reduced_font_files(fonts) or fonts
        _add_fonts(pdf, fonts)
        body, mono, clean = "Body", "Body", (lambda s: s)
    else:
        body, mono, clean = "Helvetica", "Courier", to_latin1
    pdf.set_title(clean(title))
    pdf.set_author("industriverse value report")
    pdf.set_creator("industriverse")
    pdf.alias_nb_pages()

    def footer():
        pdf.set_y(-10)
        pdf.set_font(body, "", 7.5)
        pdf.set_text_color(120)
        pdf.cell(0, 5, clean(f"{title} - page {pdf.page_no()}/{{nb}}"), align="C")
        pdf.set_text_color(0)

    pdf.footer = footer
    pdf.add_page()
    width = pdf.epw
    for b in blocks:
        if b.kind in HEADINGS:
            size, line_mm, color, before, after, keep_mm = HEADINGS[b.kind]
            if keep_mm is not None and pdf.get_y() > pdf.h - keep_mm:  # not the last lines of a page
                pdf.add_page()
            if before:
                pdf.ln(before)
            pdf.set_font(body, "B", size)
            if color is not None:
                pdf.set_text_color(*color)
            pdf.multi_cell(width, line_mm, clean(b.text), align="L")
            if color is not None:
                pdf.set_text_color(0)
            pdf.ln(after)
        elif b.kind in ("p", "note"):
            pdf.set_font(body, "B" if b.text.startswith("Outcome:") else "", 8.5 if b.kind == "note" else 10)
            if b.kind == "note":  # notes in grey (an oblique face would be a third font to embed)
                pdf.set_text_color(85)
            pdf.multi_cell(width, 5, clean(b.text), align="L")
            pdf.set_text_color(0)
            pdf.ln(1.5)
        elif b.kind == "bullets":
            pdf.set_font(body, "", 9.5)
            for item in b.items:
                pdf.set_x(pdf.l_margin)
                pdf.cell(5, 5, "-")
                pdf.multi_cell(width - 5, 5, clean(item), align="L")
                pdf.ln(1)
        elif b.kind == "table":
            pdf.set_font(body, "", 8.5)
            # a short table is kept on one page (rows up to ~9 mm each, with the heading)
            if len(b.items) <= 8 and pdf.get_y() + 9.0 * (len(b.items) + 1) > pdf.h - pdf.b_margin:
                pdf.add_page()
            _table(pdf, b, body=body, mono=mono, clean=clean)
            pdf.ln(2)
        elif b.kind == "image":
            w = width
            if wait is not None:
                wait(b.path)
            h_mm = _image_height(b.path, w)
            room = pdf.h - pdf.b_margin - pdf.get_y() - 8  # 8 mm: the plot's title line
            if h_mm > room:
                if room / h_mm >= 0.6:  # shrink to fill this page rather than leave it half empty
                    w, h_mm = w * room / h_mm, room
                else:
                    pdf.add_page()
            pdf.set_font(body, "B", 10)
            pdf.multi_cell(width, 6, clean(b.text), align="L")
            info = png_passthrough(b.path) if _fpdf_internals_known() else None
            if info is not None and str(b.path) not in pdf.image_cache.images:  # fpdf takes it from its cache
                info.update(i=len(pdf.image_cache.images) + 1, usages=0, iccp_i=None)
                pdf.image_cache.images[str(b.path)] = info
            pdf.image(str(b.path), x=pdf.l_margin + (width - w) / 2, w=w)
            pdf.ln(3)
    path = Path(path)
    pdf.output(str(path))
    return path


# --- the whole report -------------------------------------------------------------------------
def parse_formats(text: str | list | tuple) -> tuple[str, ...]:
    """``"md,html,pdf"`` (or a sequence) as a tuple of known formats; an unknown one is :class:`BadInput`."""
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if str(s).strip()]
    unknown = [s for s in items if s not in FORMATS]
    if unknown or not items:
        raise BadInput(None, "--format", f"must be a comma-separated subset of {','.join(FORMATS)}, got {text!r}")
    return tuple(dict.fromkeys(items))


def write_report(run_dir: str | Path | None, output_dir: str | Path | None = None,
                 formats=FORMATS, *, run: dict | None = None, plots_key: tuple | None = None) -> dict[str, str]:
    """Write value.json and the report files of a run; ``{"value"|"md"|"html"|"pdf": path}``.

    ``run_dir``: the run directory (read with :func:`read_run` unless ``run`` holds the
    documents already).  ``output_dir`` defaults to ``run_dir/report``.  The plots (PNG)
    are written into ``output_dir`` beside report.md.  Where this process started render
    processes (:mod:`industriverse.report.pool`), the plots and the PDF are made there;
    ``plots_key`` (the store keys of the optimization and simulation) collects plots
    started ahead with :func:`industriverse.report.pool.prerender`.
    """
    formats = parse_formats(formats)
    if run is None:
        if run_dir is None:
            raise BadInput(None, "--run", "no run directory given")
        run = read_run(run_dir)
    if output_dir is None:
        if run_dir is None:
            raise BadInput(None, "--output_dir", "is needed when the run has no run directory")
        output_dir = Path(run_dir) / "report"
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    value = compute_value(run)
    paths: dict[str, str] = {}
    value_path = out / "value.json"
    write_json_file(value_path, value)
    paths["value"] = str(value_path)

    from industriverse.report import pool
    from industriverse.report.plots import PLOT_FILES

    plots = {name: out / file for name, file in PLOT_FILES.items()}
    blocks = build_document(value, plots)
    title = blocks[0].text
    handle = pool.start_plots(run, value, out, key=plots_key)
    pdf = None
    if "pdf" in formats and handle is not None:  # set in a render process while the plots are drawn
        pdf = pool.submit(render_pdf, blocks, out / "report.pdf", title=title, wait=pool.wait_for_file)
    try:
        pool.finish_plots(handle, run, value, out)
    except BaseException:
        pool.abandon(pdf, plots.values())
        raise
    if "md" in formats:
        p = out / "report.md"
        p.write_text(render_markdown(blocks, out), encoding="utf-8")
        paths["md"] = str(p)
    if "html" in formats:
        p = out / "report.html"
        p.write_text(render_html(blocks, value["outcome"]), encoding="utf-8")
        paths["html"] = str(p)
    if "pdf" in formats:
        paths["pdf"] = str(pool.result(pdf, render_pdf, blocks, out / "report.pdf", title=title))
    return paths


__all__ = ["read_run", "read_strike", "write_report", "build_document", "render_markdown", "render_html",
           "render_pdf", "parse_formats", "PLOT_FILES"]
