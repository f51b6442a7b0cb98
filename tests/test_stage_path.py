"""The seed's stage-by-stage path with default flags: optimize → simulate → verify → deploy → report, each
script run on the files the one before wrote into one run directory, accepts and deploys the example of
every shipped domain, and the report then says it was deployed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.deploy_sovereign_dac import main as deploy
from cli.generate_value_report import main as report
from cli.optimize_diffusion_service import main as optimize
from cli.simulate_tnn_dynamics import main as simulate
from cli.verify_safety_compliance import main as verify

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHIPPED = sorted(EXAMPLES.glob("*.json"))

def _cases():
    # the two-zone office (its band changes at 18:00) and the cold store (a load step at 08:00) pass only
    # because the optimizer holds the envelope at every control sub-step, as the shield checks it
    for path in SHIPPED:
        yield pytest.param(path, id=path.stem)


def test_every_shipped_domain_has_an_example():
    domains = {json.loads(p.read_text())["domain"] for p in SHIPPED}
    assert domains == {"hvac", "hvac_two_zone", "cold_storage", "microgrid"}


@pytest.mark.parametrize("example", list(_cases()))
def test_stage_by_stage_with_defaults_deploys(example: Path, home, tmp_path, capsys):
    domain = json.loads(example.read_text())["domain"]
    run = tmp_path / "run"
    opt, sim = run / "optimization.json", run / "simulation.json"
    assert optimize(["--domain", domain, "--constraint_json", str(example), "--output", str(opt)]) == 0
    assert simulate(["--domain", domain, "--constraint_json", str(example), "--plan", str(opt), "--output", str(sim)]) == 0
    capsys.readouterr()
    code = verify(["--plan", str(opt), "--simulation", str(sim), "--output_dir", str(run)])
    out = capsys.readouterr()
    assert code == 0, out.err
    manifest = run / "capsule" / "manifest.yaml"
    assert f"capsule: {manifest}" in out.out and manifest.is_file()
    assert deploy(["--manifest", str(manifest)]) == 0
    activity = capsys.readouterr().out.strip().splitlines()[-1]
    deployment = json.loads((run / "deployment.json").read_text())
    assert deployment["activity_id"] == activity and deployment["manifest"] == "capsule/manifest.yaml"
    assert report(["--run", str(run), "--format", "md"]) == 0
    value = json.loads((run / "report" / "value.json").read_text())
    assert value["deployment"]["activity_id"] == activity
    text = (run / "report" / "report.md").read_text()
    assert "has not been deployed" not in text and activity in text
    # the plan was made with the strike loop's noise back-off (zero where the domain has no state noise)
    from industriverse.model.mapping import load_problem
    from industriverse.plan.tracking import noise_backoff

    doc = json.loads(opt.read_text())
    expected = noise_backoff(load_problem(domain, example))
    assert doc["backoff_k"] == 1.0 and list(doc["backoff"].values()) == pytest.approx(list(expected), rel=1e-12)
