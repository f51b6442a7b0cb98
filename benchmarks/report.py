"""Time the value report (plots, Markdown, HTML, PDF) of one strike, cold and warm.

    python benchmarks/report.py [--run_dir DIR [--run_dir DIR2 ...]] [--repeats 5]
    python benchmarks/report.py --strikes 6 [--rounds 2] [--root OTHER_TREE ...]

Without ``--run_dir`` a run directory is made first with the command-line strike of the hvac
example (examples/hvac_testcase1.json).  Prints, as medians over ``--repeats``:

* cold: a fresh interpreter that imports the reporter and writes one report (what the
  command-line strike pays), CPU and wall seconds;
* warm: ``write_report`` again in the same process (what a reporter worker pays per strike),
  split into plots (and each plot) and PDF, median and best.  A process keeps its figures and
  the texts it drew (industriverse.report.plots, .agg), so the same run drawn again is the best
  case; with several ``--run_dir`` each warm draw follows another run's (other data, other texts);
* floor: the same fresh interpreter that only imports matplotlib and fpdf, saves one empty
  8.5 x 6 in figure as PNG and one one-line PDF page, i.e. what any report drawn with these
  libraries pays before drawing anything.

With ``--strikes N``: a worker process's strike instead, i.e. ``workers.runner.run_embedded`` on
the hvac example (seeds 0..N-1, so each strike's data differ) in one process, drawing in-process
as a worker does; prints the first (cold) strike and the best and median of the warm ones.
``--root`` names other source trees (e.g. a worktree of an older commit) measured the same way,
alternating with this one ``--rounds`` times, each in a fresh process with its own store.

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
import json, os, sys, time
from industriverse.report import plots, render
from industriverse.report.value import compute_value
run_dirs = sys.argv[1].split(os.pathsep)
runs = [render.read_run(d) for d in run_dirs]
for d, run in zip(run_dirs, runs):
    render.write_report(d, sys.argv[2], run=run)
values = {id(run): compute_value(run) for run in runs}
out = {"total": [], "plots": [], "pdf": []}

def timed(key, fn):
    # every run in turn: with several run directories each draw follows another run's
    for run in runs:
        c = time.process_time(); fn(run); out.setdefault(key, []).append(time.process_time() - c)

for _ in range(int(sys.argv[3])):
    timed("total", lambda run: render.write_report(None, sys.argv[2], run=run))
    timed("plots", lambda run: plots.make_plots(run, values[id(run)], sys.argv[2]))
    paths = {name: os.path.join(sys.argv[2], file) for name, file in plots.PLOT_FILES.items()}
    timed("states", lambda run: plots.plot_state_bands(run, paths["states"]))
    timed("power", lambda run: plots.plot_power_and_tariff(run, paths["power"]))
    timed("cumulative_cost", lambda run: plots.plot_cumulative_cost(run, paths["cumulative_cost"]))
    timed("savings", lambda run: plots.plot_savings_distribution(run, values[id(run)], paths["savings"]))
    blocks = {id(run): render.build_document(values[id(run)], paths) for run in runs}
    timed("pdf", lambda run: render.render_pdf(blocks[id(run)], sys.argv[2] + "/bench.pdf", title="x"))
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
STRIKE = """
import json, sys, time
from messages import Message, StrikeRequested
from workers.runner import run_embedded
constraint = json.load(open(sys.argv[1]))
out = []
for seed in range(int(sys.argv[2])):
    message = Message.start(StrikeRequested(domain="hvac", constraint=constraint, seed=seed, backoff_k=1.0))
    c = time.process_time(); outcome = run_embedded(message); out.append(time.process_time() - c)
print(json.dumps({"cpu": out, "outcome": outcome.body.outcome}))
"""


def _python(code: str, *args: str) -> dict:
    # all drawing in the calling process, as a worker process does (one core per process)
    env = dict(os.environ, PYTHONPATH=str(ROOT), INDUSTRIVERSE_RENDER_PROCESSES="0")
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def strikes(roots: list[Path], n: int, rounds: int) -> None:
    """Warm worker strikes (module docstring) of each source tree in ``roots``, alternating."""
    results: dict[Path, list[dict]] = {root: [] for root in roots}
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    for _ in range(rounds):
        for root in roots:
            with tempfile.TemporaryDirectory(prefix="strike-bench-") as home:
                env = dict(os.environ, PYTHONPATH=str(root), INDUSTRIVERSE_HOME=home, INDUSTRIVERSE_RENDER_PROCESSES="0",
                           OPENBLAS_NUM_THREADS="1")
                env.pop("INDUSTRIVERSE_DB_URL", None)
                done = subprocess.run([sys.executable, "-c", STRIKE, str(ROOT / "examples" / "hvac_testcase1.json"), str(n)],
                                      cwd=root, env=env, capture_output=True, text=True, check=True)
                results[root].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for root, runs in results.items():
        warm = [c for r in runs for c in r["cpu"][1:]]
        first = [r["cpu"][0] for r in runs]
        print(f"{root}: worker strike cpu, first {statistics.median(first):.2f} s; warm best {min(warm):.3f} s, "
              f"median {statistics.median(warm):.3f} s ({len(warm)} strikes, outcome {runs[-1]['outcome']})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", action="append", help="a run directory (default: make one with the hvac example strike); "
                    "repeat it to draw several runs in turn (each warm report then follows another run's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--strikes", type=int, help="time N worker strikes per process instead of the report")
    ap.add_argument("--rounds", type=int, default=2, help="with --strikes: processes per source tree, alternating")
    ap.add_argument("--root", action="append", default=[], help="with --strikes: another source tree to measure too")
    args = ap.parse_args()
    if args.strikes:
        strikes([ROOT, *(Path(r).resolve() for r in args.root)], args.strikes, args.rounds)
        return
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    run_dirs = args.run_dir
    if not run_dirs:
        run_dir = str(tmp / "run")
        run_dirs = [run_dir]
        subprocess.run([sys.executable, str(ROOT / "cli" / "run_client_strike_loop.py"), "--domain", "hvac",
                        "--constraint_json", str(ROOT / "examples" / "hvac_testcase1.json"), "--allow-past", "--quiet",
                        "--output_dir", run_dir], env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True,
                       stdout=subprocess.DEVNULL)
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    cold = [_python(COLD, run_dirs[0], str(tmp / f"cold{i}")) for i in range(args.repeats)]
    floor = [_python(FLOOR, str(tmp)) for _ in range(args.repeats)]
    warm = _python(WARM, os.pathsep.join(run_dirs), str(tmp / "warm"), str(args.repeats))
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
