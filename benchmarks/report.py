"""Time the value report (plots, Markdown, HTML, PDF) of one strike, cold and warm.

    python benchmarks/report.py [--run_dir DIR] [--repeats 5]

Without ``--run_dir`` a run directory is made first with the command-line strike of the hvac
example (examples/hvac_testcase1.json).  Prints, as medians over ``--repeats``:

* cold: a fresh interpreter that imports the reporter and writes one report (what the
  command-line strike pays), CPU and wall seconds;
* warm: ``write_report`` again in the same process (what a reporter worker pays per strike),
  split into plots (and each plot) and PDF, median and best;
* floor: the same fresh interpreter that only imports matplotlib and fpdf, saves one empty
  8.5 x 6 in figure as PNG and one one-line PDF page, i.e. what any report drawn with these
  libraries pays before drawing anything.

CPU seconds (``time.process_time``) are printed beside wall seconds: on a shared machine
the wall time mostly measures the other processes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COLD = """
import json, sys, time
c, w = time.process_time(), time.perf_counter()
from industriverse.report.render import write_report
write_report(sys.argv[1], sys.argv[2])
print(json.dumps({"cpu": time.process_time() - c, "wall": time.perf_counter() - w}))
"""
WARM = """
import json, sys, time
from industriverse.report import plots, render
from industriverse.report.value import compute_value
run = render.read_run(sys.argv[1])
render.write_report(sys.argv[1], sys.argv[2], run=run)
out = {"total": [], "plots": [], "pdf": []}
for _ in range(int(sys.argv[3])):
    c = time.process_time(); render.write_report(sys.argv[1], sys.argv[2], run=run); out["total"].append(time.process_time() - c)
    value = compute_value(run)
    c = time.process_time(); paths = plots.make_plots(run, value, sys.argv[2]); out["plots"].append(time.process_time() - c)
    ctx = plots.series_context(run)
    for name, draw in (("states", lambda: plots.plot_state_bands(run, paths["states"], ctx)),
                       ("power", lambda: plots.plot_power_and_tariff(run, paths["power"], ctx)),
                       ("cumulative_cost", lambda: plots.plot_cumulative_cost(run, paths["cumulative_cost"], ctx)),
                       ("savings", lambda: plots.plot_savings_distribution(run, value, paths["savings"]))):
        c = time.process_time(); draw(); out.setdefault(name, []).append(time.process_time() - c)
    blocks = render.build_document(value, paths)
    c = time.process_time(); render.render_pdf(blocks, sys.argv[2] + "/bench.pdf", title="x"); out["pdf"].append(time.process_time() - c)
print(json.dumps(out))
"""
FLOOR = """
import json, sys, time
c, w = time.process_time(), time.perf_counter()
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from fpdf import FPDF
fig = Figure(figsize=(8.5, 6), dpi=110); FigureCanvasAgg(fig); fig.add_subplot().plot([0, 1]); fig.savefig(sys.argv[1] + "/floor.png")
pdf = FPDF(); pdf.add_page(); pdf.set_font("Helvetica", size=10); pdf.cell(0, 5, "x"); pdf.output(sys.argv[1] + "/floor.pdf")
print(json.dumps({"cpu": time.process_time() - c, "wall": time.perf_counter() - w}))
"""


def _python(code: str, *args: str) -> dict:
    # all drawing in the calling process, as a worker process does (one core per process)
    env = dict(os.environ, PYTHONPATH=str(ROOT), INDUSTRIVERSE_RENDER_PROCESSES="0")
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", help="a run directory (default: make one with the hvac example strike)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = str(tmp / "run")
        subprocess.run([sys.executable, str(ROOT / "cli" / "run_client_strike_loop.py"), "--domain", "hvac",
                        "--constraint_json", str(ROOT / "examples" / "hvac_testcase1.json"), "--allow-past", "--quiet",
                        "--output_dir", run_dir], env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True,
                       stdout=subprocess.DEVNULL)
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    cold = [_python(COLD, run_dir, str(tmp / f"cold{i}")) for i in range(args.repeats)]
    floor = [_python(FLOOR, str(tmp)) for _ in range(args.repeats)]
    warm = _python(WARM, run_dir, str(tmp / "warm"), str(args.repeats))
    med = statistics.median
    print(f"cold report (fresh interpreter: imports + first report): cpu {med(c['cpu'] for c in cold):.2f} s, "
          f"wall {med(c['wall'] for c in cold):.2f} s")
    print(f"floor (fresh interpreter: import matplotlib + fpdf, one empty figure, one-line PDF): "
          f"cpu {med(c['cpu'] for c in floor):.2f} s, wall {med(c['wall'] for c in floor):.2f} s")
    print(f"warm write_report: cpu {med(warm['total']):.3f} s (plots {med(warm['plots']):.3f} s, PDF {med(warm['pdf']):.3f} s); "
          f"best {min(warm['total']):.3f} s (plots {min(warm['plots']):.3f} s, PDF {min(warm['pdf']):.3f} s)")
    print("warm plots, each (median / best cpu s): " + ", ".join(
        f"{name} {med(warm[name]):.3f} / {min(warm[name]):.3f}" for name in ("states", "power", "cumulative_cost", "savings")))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
