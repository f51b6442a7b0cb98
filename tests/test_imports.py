"""Processes that do not render never import the renderer's or scipy.stats' heavy modules (issue 10).

Each check runs in a fresh interpreter, since ``sys.modules`` of the test process is shared.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("matplotlib", "fpdf", "scipy.stats", "scipy.signal")


def imported_after(code: str, env: dict | None = None) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = dict(env or os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_workers_that_do_not_render_import_no_renderer():
    # together: if none of them alone imports a heavy module, neither do all four in one process
    kinds = ["optimizer", "simulator", "shield", "deployer"]
    assert imported_after(f"from workers.actor import load_actors; load_actors({kinds!r})") == []


def test_the_probe_sees_a_renderer_import():
    # the probe can see an import: the fit report's module draws with matplotlib at import
    assert "matplotlib" in imported_after("import industriverse.report.fit")


def test_the_reporter_loads_matplotlib_only_when_it_draws():
    assert "matplotlib" not in imported_after("from workers.actor import load_actors; load_actors(['reporter'])")


def test_statistics_need_no_scipy_stats():
    code = ("from industriverse.verify.stats import clopper_pearson_upper, t_interval\n"
            "from industriverse.plan.tracking import noise_backoff\n"
            "import industriverse.operate.monitor, industriverse.plan.idf\n"
            "clopper_pearson_upper(3, 200); t_interval([1.0, 2.0, 4.0])")
    assert imported_after(code) == []


def test_the_command_line_strike_renders_in_render_processes(tmp_path):
    """The strike's own process imports no renderer: plots and PDF are made in the render processes."""
    out = tmp_path / "run"
    code = ("import contextlib, io\nfrom cli.run_client_strike_loop import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['--domain', 'hvac', '--constraint_json', 'examples/hvac_testcase1.json', '--allow-past',"
            f" '--quiet', '--embedded', '--output_dir', {str(out)!r}]) == 0")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, INDUSTRIVERSE_HOME=str(home))
    env.pop("INDUSTRIVERSE_DB_URL", None)
    assert imported_after(code, env) == []
    assert {p.name for p in (out / "report").glob("*.p*")} == {
        "report.pdf", "states.png", "power_tariff.png", "cumulative_cost.png", "savings_distribution.png"}


def test_the_render_processes_start_before_the_command_imports_numpy():
    """The strike script starts its fork server (industriverse.report.pool) before its own heavy imports, so the
    server imports the renderers on the other core meanwhile: nothing up to pool.start imports numpy."""
    code = ("import sys\nimport cli.run_client_strike_loop\nfrom industriverse.report import pool\n"
            "print('numpy' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]


@pytest.mark.parametrize("numpy_first,threads", [(False, None), (True, None), (False, "4")])
def test_blas_runs_on_one_thread_however_numpy_was_loaded(numpy_first, threads):
    """numpy loaded after industriverse (one BLAS thread from the environment), before it, or told to use more
    threads: the BLAS numpy uses runs on one thread (reproducible reductions)."""
    code = ("import numpy\n" if numpy_first else "") + (
        "import industriverse, numpy\nfrom threadpoolctl import threadpool_info\n"
        "print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))")  # numpy's BLAS
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = threads
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[1]"]
