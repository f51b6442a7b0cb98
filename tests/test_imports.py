"""Processes that do not render never import the renderer's or scipy.stats' heavy modules (issue 10).

Each check runs in a fresh interpreter, since ``sys.modules`` of the test process is shared.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
