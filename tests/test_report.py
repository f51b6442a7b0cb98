"""The value report on real runs: optimizer, simulator, shield and proof of every shipped domain.

Each run directory is built the way the strike loop builds it (request, optimization,
simulation with the plan, verdict, signed proof; capsule and gateway deployment for the
deployed case), with small ensembles (50) for speed.  The report must carry the numbers of
value.json into the PDF, keep the HTML free of external references, and say plainly when
a plan was rejected.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from industriverse.report.plots import PLOT_FILES
from industriverse.report.render import write_report

ROOT = Path(__file__).resolve().parent.parent
HVAC_EXAMPLE = ROOT / "examples" / "hvac_testcase1.json"
HORIZON = {"horizon": {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}}
# 59 trajectories is the smallest ensemble that can ever prove a 5 % violation limit at 95 %
# confidence (zero violations bound it at 1 − 0.05^(1/N)); 60 keeps the runs small and passable.
ENSEMBLE = 60


def write_json(path: Path, doc) -> None:
    path.write_text(json.dumps(doc, indent=1, allow_nan=False))


def make_run(run_dir: Path, domain: str, raw: dict, *, strike_id: str, deploy: bool = False,
             backoff_k: float = 1.0, ensemble_size: int = ENSEMBLE, seed: int = 0) -> Path:
    """A real run directory: optimize (envelope backed off by ``backoff_k`` noise deviations, as the
    strike loop's retry does) → simulate (plan and baseline, same draws) → shield → proof (→ capsule →
    gateway when ``deploy``), files named as DESIGN.md §4 names them."""
    from industriverse.model.mapping import map_constraint
    from industriverse.plan.optimize import load_plan, optimize
    from industriverse.trust.proof import build_proof
    from industriverse.verify.shield import check_plan
    from industriverse.verify.simulate import simulate
    from industriverse.plan.tracking import noise_backoff

    run_dir.mkdir(parents=True, exist_ok=True)
    problem = map_constraint(domain, raw)
    problem = problem.with_backoff(noise_backoff(problem, backoff_k))
    optimization = optimize(problem, "auto", seed)
    optimization["strike_id"] = strike_id
    plan_problem, u = load_plan(optimization)
    simulation = simulate(plan_problem, u, ensemble_size=ensemble_size, seed=seed)
    shield = check_plan(optimization, simulation)
    proof = build_proof(strike_id=strike_id, optimization=optimization, simulation=simulation, shield=shield)
    write_json(run_dir / "request.json", raw)
    write_json(run_dir / "optimization.json", optimization)
    write_json(run_dir / "simulation.json", simulation)
    write_json(run_dir / "verdict.json", shield)
    write_json(run_dir / "proof.json", proof)
    if deploy:
        assert shield["passed"], [c for c in shield["checks"] if not c["passed"]]
        from industriverse.trust.capsule import load_manifest, manifest_path_of, pack_capsule
        from industriverse.operate.gateway import CapsuleGatewayService

        manifest_path = manifest_path_of(pack_capsule(run_dir))
        manifest = load_manifest(manifest_path)
        activity_id = CapsuleGatewayService().register(manifest_path)
        write_json(run_dir / "deployment.json", {"activity_id": activity_id, "capsule_id": manifest.id})
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One real run per shipped example domain, plus a rejected one (built once per module)."""
    home = tmp_path_factory.mktemp("home")
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INDUSTRIVERSE_HOME", str(home))
        mp.delenv("INDUSTRIVERSE_DB_URL", raising=False)
        hvac = json.loads(HVAC_EXAMPLE.read_text())
        out = {
            "hvac": make_run(root / "hvac", "hvac", hvac, strike_id="test-hvac", deploy=True, backoff_k=1.5),
            "cold_storage": make_run(root / "cold_storage", "cold_storage", dict(HORIZON), strike_id="test-cold"),
            "microgrid": make_run(root / "microgrid", "microgrid", dict(HORIZON), strike_id="test-microgrid"),
            "hvac_two_zone": make_run(root / "hvac_two_zone", "hvac_two_zone", dict(HORIZON), strike_id="test-two-zone"),
        }
        # a chance limit no ensemble of 60 can prove (even 0 violations bound it at 0.049): rejected
        strict = dict(hvac, uncertainty=dict(hvac["uncertainty"], max_violation_probability=0.01))
        out["rejected"] = make_run(root / "rejected", "hvac", strict, strike_id="test-rejected", backoff_k=1.5)
        for name, run_dir in out.items():
            write_report(run_dir)
        yield out


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


def headline_numbers(value: dict) -> list[str]:
    """The digits a reader looks for first: every saving's mean and interval, the stability scores."""
    numbers = []
    for field in ("energy_saved_kwh", "energy_saved_pct", "cost_saved", "emissions_saved_kg"):
        text = value["display"][field]
        numbers += re.findall(r"-?\d+(?:\.\d+)?", text.split("(95% CI")[0])[:1]
        numbers += re.findall(r"-?\d+(?:\.\d+)?", text.split("(95% CI")[1])[:2]
    numbers += [value["display"]["stability_score_plan"], value["display"]["stability_score_baseline"]]
    return numbers


@pytest.mark.parametrize("domain", ["hvac", "cold_storage", "microgrid", "hvac_two_zone"])
def test_report_of_each_domain(runs, domain):
    report = runs[domain] / "report"
    value = json.loads((report / "value.json").read_text())
    assert value["domain"] == domain
    assert value["ensemble_size"] == ENSEMBLE
    for field in ("energy_saved_kwh", "energy_saved_pct", "cost_saved", "emissions_saved_kg"):
        lo, hi = value[field]["ci95"]
        assert lo <= value[field]["mean"] <= hi
        assert value[field]["significant"] == (lo > 0 or hi < 0)
    assert value["stability_score"]["definition"].startswith("one-sided 95% Clopper")

    # the PDF prints the numbers of value.json, formatted the same way
    text = pdf_text(report / "report.pdf")
    for number in headline_numbers(value):
        assert number in text, (number, domain)
    assert value["stability_score"]["definition"] in " ".join(text.split())
    if value["proof"]:
        assert value["proof"]["plan_sha256"] in text
        assert value["proof"]["signature_key_id"] in text

    # one self-contained HTML file: plots inline, no web reference anywhere
    html = (report / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert html.count('src="data:image/png;base64,') == 4
    for number in headline_numbers(value):
        assert number in html, (number, domain)

    # Markdown links the PNG files written beside it
    md = (report / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) == 4
    for rel in images:
        assert (report / rel).is_file() and (report / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for sentence in value["summary"]:
        assert sentence in md


def test_deployed_report_names_activity_and_capsule(runs):
    value = json.loads((runs["hvac"] / "report" / "value.json").read_text())
    deployment = json.loads((runs["hvac"] / "deployment.json").read_text())
    assert value["outcome"] == "deployed"
    assert value["deployment"]["activity_id"] == deployment["activity_id"]
    assert value["deployment"]["capsule_id"] == deployment["capsule_id"]
    text = pdf_text(runs["hvac"] / "report" / "report.pdf")
    assert deployment["activity_id"] in text and deployment["capsule_id"] in text
    assert value["summary"][0].startswith("Deployed:")


def test_rejected_plan_gets_a_report_saying_what_failed(runs):
    value = json.loads((runs["rejected"] / "report" / "value.json").read_text())
    verdict = json.loads((runs["rejected"] / "verdict.json").read_text())
    assert value["outcome"] == "rejected" and not verdict["passed"]
    failed = {c["name"] for c in verdict["checks"] if not c["passed"]}
    assert "chance_constraint" in failed
    summary = " ".join(value["summary"])
    assert summary.startswith("Rejected:")
    assert "nothing was deployed" in summary and "none of its savings will be realised" in summary
    # what the engineer could relax: 60 trajectories can never prove 1 %, so a bigger ensemble is named
    assert "raise uncertainty.ensemble_size to at least 299" in summary
    assert "max_violation_probability" in summary
    text = " ".join(pdf_text(runs["rejected"] / "report" / "report.pdf").split())
    assert "REJECTED" in text and "chance_constraint" in text and "FAIL" in text


def test_cli_writes_the_requested_formats(runs, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "cli" / "generate_value_report.py"), "--run", str(runs["microgrid"]),
                           "--output_dir", str(out), "--format", "md,html"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "value.json").is_file() and (out / "report.md").is_file() and (out / "report.html").is_file()
    assert not (out / "report.pdf").exists()
    assert f"md: {out / 'report.md'}" in proc.stdout


def test_cli_bad_input_exits_2_with_one_line(runs, tmp_path, home):
    script = str(ROOT / "cli" / "generate_value_report.py")
    proc = subprocess.run([sys.executable, script, "--run", "no-such-strike"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no-such-strike" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, script, "--run", str(runs["hvac"]), "--format", "docx"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--format" in proc.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "optimization.json").write_text((runs["hvac"] / "optimization.json").read_text())
    proc = subprocess.run([sys.executable, script, "--run", str(broken)], capture_output=True, text=True)
    assert proc.returncode == 2 and "simulation.json" in proc.stderr


def test_report_from_a_strike_id_in_the_store(tmp_path, home):
    """A real strike on the embedded bus; its run directory is then removed, so the report must be
    rebuilt from the stage results and artifacts in the store alone."""
    import shutil

    from cli.generate_value_report import main
    from cli.run_client_strike_loop import main as strike
    from industriverse.fleet import store

    raw = json.loads(HVAC_EXAMPLE.read_text())
    raw["uncertainty"]["ensemble_size"] = ENSEMBLE
    constraint = tmp_path / "hvac.json"
    constraint.write_text(json.dumps(raw))
    run_dir = tmp_path / "run"
    assert strike(["--domain", "hvac", "--constraint_json", str(constraint), "--output_dir", str(run_dir), "--quiet"]) == 0
    expected = json.loads((run_dir / "report" / "value.json").read_text())
    deployment = json.loads((run_dir / "deployment.json").read_text())
    (strike_row,) = store.list_strikes()
    shutil.rmtree(run_dir)

    out = tmp_path / "report"
    assert main(["--run", strike_row["strike_id"], "--output_dir", str(out), "--format", "pdf"]) == 0
    value = json.loads((out / "value.json").read_text())
    assert value["strike_id"] == strike_row["strike_id"]
    for field in ("energy_saved_kwh", "cost_saved", "emissions_saved_kg", "stability_score", "optimizer", "shield"):
        assert value[field] == expected[field], field
    assert value["outcome"] == "deployed"
    assert value["deployment"]["activity_id"] == deployment["activity_id"]
    assert value["deployment"]["capsule_id"] == deployment["capsule_id"]
    assert deployment["activity_id"] in pdf_text(out / "report.pdf")


def test_pdf_without_a_unicode_font_falls_back_to_latin1(runs, tmp_path, monkeypatch):
    """Where no DejaVu font exists the PDF is set in the core fonts: text reduced to latin-1, same numbers."""
    import industriverse.report.render as report

    monkeypatch.setattr(report, "_font_files", lambda: None)
    paths = write_report(runs["cold_storage"], tmp_path / "latin1", formats=("pdf",))
    value = json.loads(Path(paths["value"]).read_text())
    text = pdf_text(Path(paths["pdf"]))
    assert "Clopper-Pearson" in text  # the en dash became a hyphen
    for number in headline_numbers(value):
        assert number in text, number


def test_pdf_is_set_in_the_cut_faces_and_other_text_in_the_full_ones(runs, tmp_path):
    """Every shipped example's report prints only characters of the cut DejaVu faces (the fast path);
    a report with another character (a client name in Greek) is set in the full faces, text intact."""
    import industriverse.report.render as report
    from industriverse.report.fonts import REDUCED_CHARS, reduced_font_files
    from industriverse.report.value import compute_value

    assert reduced_font_files() is not None
    for name, run_dir in runs.items():
        run = report.read_run(run_dir)
        blocks = report.build_document(compute_value(run), {})
        assert report._document_chars(blocks, blocks[0].text) <= REDUCED_CHARS, name
    blocks[0].text = "Value report: Ωμέγα Α.Ε."
    path = report.render_pdf(blocks, tmp_path / "greek.pdf", title=blocks[0].text)
    text = pdf_text(path)
    assert "Ωμέγα Α.Ε." in text and "Clopper–Pearson" in text


def _artefacts(tmp_path_factory) -> Path:
    """Where the rendered pages go: $INDUSTRIVERSE_TEST_ARTIFACTS (CI keeps it) or a temporary directory."""
    import os

    root = os.environ.get("INDUSTRIVERSE_TEST_ARTIFACTS")
    path = Path(root) / "report-pages" if root else tmp_path_factory.mktemp("report-pages")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("domain", ["hvac", "microgrid", "hvac_two_zone", "rejected"])
def test_first_page_is_a_headline_a_client_reads_and_no_page_is_half_empty(runs, domain, tmp_path_factory):
    """Render every page to PNG (pdftoppm) the way a client sees it: page 1 carries the headline
    (per day and per year, with the interval), the outcome and one chart; hashes are not on it;
    every page but the last is filled to at least three quarters of its height."""
    import numpy as np
    from PIL import Image

    report = runs[domain] / "report"
    value = json.loads((report / "value.json").read_text())
    headline = value["headline"]
    assert headline.startswith("Per day, the plan ")
    assert value["currency"] in headline and "kWh" in headline and "kg CO2" in headline and "over a year" in headline
    assert "95% CI" in headline
    first = " ".join(subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(report / "report.pdf"), "-"],
                                    check=True, capture_output=True, text=True).stdout.split())
    assert " ".join(headline.split()) in first
    assert "Outcome: " + ("DEPLOYED" if domain == "hvac" else "REJECTED" if domain == "rejected" else "") in first
    assert value["proof"]["plan_sha256"] not in first and "SHA-256" not in first
    # the appendix carries the engineering material
    assert value["proof"]["plan_sha256"] in pdf_text(report / "report.pdf")

    out = _artefacts(tmp_path_factory)
    prefix = out / domain
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(report / "report.pdf"), str(prefix)], check=True)
    pages = sorted(out.glob(f"{domain}-*.png"))
    assert pages
    images = [np.asarray(Image.open(p).convert("L")) for p in pages]
    for i, img in enumerate(images[:-1]):  # every page but the last at least two thirds full (a block that does not fit moves on)
        body = img[: int(img.shape[0] * 0.95)]  # leave out the footer line
        inked = np.nonzero((body < 200).any(axis=1))[0]
        assert inked.size and inked[-1] / img.shape[0] >= 0.66, f"page {i + 1} of {domain} is under two thirds full ({pages[i]})"
    # the first page's chart: a large block of non-white pixels below the headline
    assert (images[0] < 250).mean() > 0.08


def test_figures_carry_no_more_digits_than_their_interval_supports(runs):
    """≤ 3 significant digits, never '0.000004 (0.000000 to 0.000000)', units on every savings row."""
    from industriverse.report.value import format_figure

    tiny = format_figure({"mean": 4.29e-6, "ci95": [1e-7, 8.1e-6], "significant": True}, "K·h")["text"]
    assert "0.0000" not in tiny and tiny == "0 K·h (95% CI 0 to 0 K·h)"
    for domain in ("hvac", "cold_storage", "microgrid", "hvac_two_zone"):
        value = json.loads((runs[domain] / "report" / "value.json").read_text())
        texts = dict(value["display"], headline=value["headline"])
        for scope in ("per_day", "per_year"):
            texts.update({f"{scope}.{k}": format_figure(fig, "")["text"] for k, fig in value[scope].items()})
        for field, text in texts.items():
            for number in re.findall(r"\d+(?:\.\d+)?", text.replace("95% CI", "").replace("CO2", "")):
                digits = number.replace(".", "").strip("0")
                assert len(digits) <= 3, (domain, field, number, text)
        md = (runs[domain] / "report" / "report.md").read_text()
        table = md.split("## Savings against the baseline")[1].split("\n\n")[1]
        for row in table.splitlines()[2:]:
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert all(cell == "n/a" or re.search(r"[A-Za-z%]", cell) for cell in cells[1:3]), row
        assert "0.00000" not in md


def test_a_urdb_tariff_s_charges_are_in_the_report(tmp_path, home, monkeypatch):
    """A URDB rate's demand charge (its planned peak and rate) and its fixed charge, stated per month
    as billed (reported, not optimised), appear in every format."""
    rate = ROOT / "examples" / "building" / "rate_sce_gs2_tou_b.json"
    monkeypatch.setenv("INDUSTRIVERSE_DATA_ROOTS", str(rate.parent))
    raw = json.loads(HVAC_EXAMPLE.read_text())
    raw["tariff"] = {"type": "urdb", "path": str(rate)}
    run_dir = make_run(tmp_path / "urdb", "hvac", raw, strike_id="test-urdb", backoff_k=1.5)
    paths = write_report(run_dir)
    value = json.loads(Path(paths["value"]).read_text())
    assert value["tariff"]["fixed_monthly_charge"] == pytest.approx(259.2)
    assert [d["rate_per_kw"] for d in value["tariff"]["demand_charges"]] == [pytest.approx(13.2)]
    texts = {"md": Path(paths["md"]).read_text(), "html": Path(paths["html"]).read_text(),
             "pdf": " ".join(pdf_text(Path(paths["pdf"])).split())}
    for fmt, text in texts.items():
        assert "Fixed charge: 259 USD per month" in text, fmt
        assert "not prorated" in text and "flat demand, 2026-01" in text, fmt


# --- the render processes (industriverse.report.pool) ------------------------------------------
@pytest.fixture()
def render_pool():
    from industriverse.report import pool

    pool.start()
    yield pool
    pool.stop()


def test_render_processes_write_the_same_report(runs, tmp_path, render_pool):
    """Plots drawn in the render processes (in parallel) and the PDF set there: the same PNG bytes as
    drawn in this process, and a PDF with the same text."""
    run_dir = runs["hvac"]
    paths = write_report(run_dir, tmp_path / "pooled")
    here = run_dir / "report"
    for name in PLOT_FILES.values():
        assert (tmp_path / "pooled" / name).read_bytes() == (here / name).read_bytes(), name
    assert pdf_text(Path(paths["pdf"])) == pdf_text(here / "report.pdf")
    assert (tmp_path / "pooled" / "report.md").read_text() == (here / "report.md").read_text()


def test_plots_started_ahead_are_collected_by_key(runs, tmp_path, render_pool):
    from industriverse.report.render import read_run

    run = read_run(runs["microgrid"])
    render_pool.prerender(("opt", "sim"), run)
    write_report(runs["microgrid"], tmp_path / "ahead", formats=("md",), plots_key=("opt", "sim"))
    for name in PLOT_FILES.values():
        assert (tmp_path / "ahead" / name).read_bytes() == (runs["microgrid"] / "report" / name).read_bytes(), name
    assert render_pool._pending == {}  # collected, scratch removed


def test_an_error_in_a_render_process_is_raised_here(runs, tmp_path, render_pool):
    from industriverse.report.render import read_run

    run = read_run(runs["hvac"])
    del run["simulation"]["baseline"]["bands"]  # what a plot needs and the value does not
    with pytest.raises(KeyError, match="bands") as error:
        write_report(None, tmp_path / "broken", run=run)
    assert "Traceback" in str(error.value.__cause__)  # the render process's traceback, carried over
    # the processes survive a task's error: the next report is drawn there again
    write_report(runs["hvac"], tmp_path / "after", formats=("md",))
    assert (tmp_path / "after" / PLOT_FILES["states"]).is_file()


def test_render_processes_can_be_turned_off(monkeypatch):
    from industriverse.report import pool

    monkeypatch.setenv("INDUSTRIVERSE_RENDER_PROCESSES", "0")
    pool.start()
    try:
        assert not pool.running()
    finally:
        pool.stop()


def test_a_render_process_that_dies_loses_no_report(runs, tmp_path, render_pool):
    """A render process killed (OOM killer, a crash): that report is drawn in this process, whole,
    and the render processes are started anew for the next one."""
    import os
    import signal

    write_report(runs["cold_storage"], tmp_path / "first", formats=("md",))  # the plot processes exist now
    victim = next(iter(render_pool._executor._processes))
    os.kill(victim, signal.SIGKILL)
    paths = write_report(runs["cold_storage"], tmp_path / "after-kill")
    here = runs["cold_storage"] / "report"
    for name in PLOT_FILES.values():
        assert (tmp_path / "after-kill" / name).read_bytes() == (here / name).read_bytes(), name
    assert Path(paths["pdf"]).is_file()
    assert not list((tmp_path / "after-kill").glob(".*"))  # no partial file left behind
    assert render_pool.running() and victim not in render_pool._executor._processes


# --- drawing report after report in one process: kept figures, recorded texts, the PDF's shortcuts --------
def _draw(run, out: Path) -> dict[str, Path]:
    """The four plots of ``run`` (a run directory or its documents) drawn into ``out`` in this process."""
    from industriverse.report import plots
    from industriverse.report.render import read_run
    from industriverse.report.value import compute_value

    run = read_run(run) if isinstance(run, Path) else run
    return plots.make_plots(run, compute_value(run), out)


def test_kept_figures_draw_the_same_png_bytes_as_new_ones(runs, tmp_path):
    """Plots drawn one report after another on this thread's kept figures, with the texts recorded by
    earlier reports replayed, are byte for byte the plots drawn on new figures with nothing recorded."""
    import copy

    from industriverse.report import agg, plots
    from industriverse.report.render import read_run

    # a run whose tariff cannot be rebuilt (the request is gone): the price axis gets no data
    no_tariff = copy.deepcopy(read_run(runs["microgrid"]))
    for key in ("optimization", "simulation"):
        no_tariff[key].pop("request", None)
    # times two hours ahead of UTC (a date axis keeps the time zone of its first data as its units; the
    # plots' locators and formatters are their own, so a kept axis labels these as a new one does)
    zoned = copy.deepcopy(read_run(runs["hvac"]))
    zoned["optimization"]["horizon"]["times"] = [t + "+02:00" for t in zoned["optimization"]["horizon"]["times"]]
    cases = {name: runs[name] for name in runs} | {"no_tariff": no_tariff, "zoned": zoned}
    plots.clear_cache()
    order = ["hvac", "cold_storage", "microgrid", "hvac_two_zone", "no_tariff", "rejected", "zoned", "hvac", "no_tariff",
             "hvac_two_zone", "microgrid", "zoned"]
    kept = [_draw(cases[name], tmp_path / f"kept{i}") for i, name in enumerate(order)]
    # the figures were kept (one per shape: one and two banded nodes, with and without a tariff) and texts replayed
    assert set(plots._KEPT.figures) >= {("states", (1,)), ("states", (2,)), ("power", (True,)), ("power", (False,)),
                                        ("savings", ())}
    assert agg._texts()
    for i, name in enumerate(order):
        plots.clear_cache()
        assert not plots._KEPT.__dict__.get("figures") and not agg._texts()
        fresh = _draw(cases[name], tmp_path / f"fresh{i}")
        for kind in PLOT_FILES:
            assert kept[i][kind].read_bytes() == fresh[kind].read_bytes(), (i, name, kind)


def test_each_thread_draws_on_its_own_figures(runs, tmp_path):
    import threading

    from industriverse.report import plots

    mine = _draw(runs["microgrid"], tmp_path / "main")
    figures = dict(plots._KEPT.figures)
    seen: dict = {}

    def draw() -> None:
        seen["paths"] = _draw(runs["microgrid"], tmp_path / "thread")
        seen["figures"] = dict(plots._KEPT.figures)

    thread = threading.Thread(target=draw)
    thread.start()
    thread.join()
    assert set(seen["figures"]) == set(figures)
    assert all(seen["figures"][key][0] is not figures[key][0] for key in figures)
    for kind in PLOT_FILES:
        assert seen["paths"][kind].read_bytes() == mine[kind].read_bytes(), kind


def test_pdf_embeds_the_plots_pixels_unchanged(runs, tmp_path):
    """The plots' PNG data go into the PDF as they are: the images in the PDF are the plots' pixels."""
    import numpy as np
    from PIL import Image

    from industriverse.report.render import png_passthrough

    report = runs["hvac"] / "report"
    subprocess.run(["pdfimages", "-png", str(report / "report.pdf"), str(tmp_path / "img")], check=True)
    embedded = [np.asarray(Image.open(p)) for p in sorted(tmp_path.glob("img-*.png"))]
    plots = [np.asarray(Image.open(report / name)) for name in PLOT_FILES.values()]
    assert len(embedded) == len(plots) == 4
    for pixels in plots:
        assert any(e.shape == pixels.shape and (e == pixels).all() for e in embedded)
    assert png_passthrough(report / PLOT_FILES["states"]) is not None
    # what a PDF image would not carry as it is: left to fpdf
    Image.new("RGBA", (4, 3), (10, 20, 30, 128)).save(tmp_path / "alpha.png")
    Image.new("P", (4, 3)).save(tmp_path / "palette.png")
    whole = (report / PLOT_FILES["states"]).read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[:5000])
    (tmp_path / "no_end.png").write_bytes(whole[:-12])  # cut at a chunk's end: no IEND
    for name in ("alpha.png", "palette.png", "cut.png", "no_end.png"):
        assert png_passthrough(tmp_path / name) is None, name


def test_document_fonts_break_lines_as_fpdf_does():
    """The per-document fonts remember text widths (render._memo_class): the same widths and line breaks
    as fpdf's own fonts."""
    from fpdf import FPDF

    import industriverse.report.render as report

    fonts = report._font_files()
    assert fonts
    text = ("Per day, the plan saves 0.0578 USD (95% CI 0.0578 to 0.0579) and 0.492 kWh, and avoids 0.326 kg CO₂ "
            "against the baseline controller – one-sided 95% Clopper–Pearson bound ≤ 0.05; "
            + "word " * 40 + "averyveryverylongwordthatdoesnotfitonalineofitsownatallnotevenclosetoitreally " * 2)
    ours, theirs = FPDF(), FPDF()
    report._add_fonts(ours, fonts)
    theirs.add_font("Body", "", str(fonts[""]))
    theirs.add_font("Body", "B", str(fonts["B"]))
    assert {type(f) for f in ours.fonts.values()} <= set(report._MEMO_CLASSES.values())  # the remembering fonts
    for pdf in (ours, theirs):
        pdf.add_page()
    for style, size, width in (("", 10, 182), ("", 8.5, 60), ("B", 12.5, 90), ("", 7, 25)):
        lines = []
        for pdf in (ours, theirs):
            pdf.set_font("Body", style, size)
            lines.append((pdf.get_string_width(text), pdf.multi_cell(width, 5, text, dry_run=True, output="LINES")))
        assert lines[0] == lines[1], (style, size, width)


def test_replayed_texts_take_the_current_colour_and_settings():
    """A text replayed from the record (industriverse.report.agg) is blended in its current colour, and
    a text drawn with other hinting is rendered anew: the pixels are matplotlib's own either way."""
    import matplotlib
    from matplotlib.figure import Figure

    from industriverse.report import agg

    def pixels(colour: str, hinting: str) -> bytes:
        fig = Figure(figsize=(2.5, 0.6), dpi=60)
        agg.Canvas(fig)
        with matplotlib.rc_context({"text.hinting": hinting}):
            fig.text(0.05, 0.4, "Clopper–Pearson ≤ 0.0578 °C", color=colour)
            fig.canvas.draw()
        return bytes(fig.canvas.buffer_rgba())

    cases = [("red", "no_hinting"), ("blue", "no_hinting"), ("red", "force_autohint"), ("red", "no_hinting")]
    agg.clear_cache()
    replayed = [pixels(*case) for case in cases]
    assert len(agg._texts()) == 2  # one record per hinting; the colour is not part of it
    fresh = []
    for case in cases:
        agg.clear_cache()
        fresh.append(pixels(*case))
    assert replayed == fresh
    assert len(set(fresh)) == 3  # colour and hinting do change the pixels
