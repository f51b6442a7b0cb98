"""``deploy_sovereign_dac.py --manifest PATH [--db URL]``: deploy a signed capsule.

Validates the capsule (signature by a trusted key, every file's SHA-256, a valid proof
that passed the shield), registers it with the capsule gateway, arms the runtime
monitor (``industriverse.operate.monitor.arm_monitor``) when this installation has one, and
prints the deployed activity ID as the last line of stdout.  Registering the same
capsule again prints the same ID.  When the capsule sits in a run directory
(``RUN_DIR/capsule/manifest.yaml`` next to ``RUN_DIR/proof.json``), the deployment is recorded in
``RUN_DIR/deployment.json`` (activity ID, capsule ID and version, strike ID, manifest path), so the
value report of that run says it was deployed.

Exit 0 deployed · 1 refused (each reason on stderr) or registered but not activated (superseded by
a newer version, or rolled back: said on stderr) · 2 bad input (missing file,
unreadable YAML, a field error named) · 3 deployed but the monitor could not be armed
(the activity ID is still the last line; running the command again re-arms it).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/deploy_sovereign_dac.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, one_line_errors
from industriverse.trust.capsule import CAPSULE_DIR, load_manifest, manifest_path_of
from industriverse.errors import BadInput, InfrastructureError
from industriverse.operate.gateway import CapsuleGatewayService, DeploymentRefused


def _arm_monitor(gateway: CapsuleGatewayService, capsule_dir: Path, activity_id: str) -> str:
    """Arm the runtime monitor if the installation has one; a line saying what happened."""
    try:
        monitor = importlib.import_module("industriverse.operate.monitor")
    except ModuleNotFoundError as exc:
        if exc.name != "industriverse.operate.monitor":
            raise
        return "monitor: not available"
    arm = getattr(monitor, "arm_monitor", None)
    if arm is None:
        return "monitor: not available (industriverse.operate.monitor has no arm_monitor)"
    result = arm(gateway, capsule_dir, activity_id)
    return f"monitor: armed{f' ({result})' if isinstance(result, str) and result else ''}"


def record_deployment(mpath: Path, manifest, activity_id: str) -> Path | None:
    """Write ``deployment.json`` into the run directory holding the capsule, if it is in one; its path."""
    from industriverse.fleet.rundir import DOCUMENTS, write_json_file

    capsule_dir = mpath.resolve().parent
    run_dir = capsule_dir.parent
    if capsule_dir.name != CAPSULE_DIR or not (run_dir / "proof.json").is_file():
        return None
    path = run_dir / DOCUMENTS["deployment"]
    write_json_file(path, {"activity_id": activity_id, "capsule_id": manifest.id, "version": manifest.version,
                           "strike_id": manifest.strike_id, "manifest": f"{CAPSULE_DIR}/{mpath.name}"})
    return path


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description="Deploy a signed capsule to the capsule gateway.")
    parser.add_argument("--manifest", required=True, metavar="PATH", help="the capsule's manifest.yaml (or its directory)")
    parser.add_argument("--db", metavar="URL", help="gateway database URL (default: INDUSTRIVERSE_DB_URL or the local SQLite file)")
    args = parser.parse_args(argv)

    mpath = manifest_path_of(args.manifest)
    if not mpath.exists():
        raise BadInput(str(mpath), None, "no such file")
    manifest = load_manifest(mpath)  # BadInput (exit 2) for unreadable YAML or a field error
    gateway = CapsuleGatewayService(args.db)
    try:
        activity_id = gateway.register(mpath)  # refuses a legacy layout with what it lacks
    except DeploymentRefused as exc:
        for reason in exc.reasons:
            print(f"refused: {reason}", file=sys.stderr)
        return exc.exit_code
    reason = gateway.not_active_reason(activity_id)
    if reason is not None:  # registered, but another version runs: not a deployment of this plan
        print(f"not activated: {reason}", file=sys.stderr)
        print(activity_id)
        return 1
    code = 0
    recorded = record_deployment(mpath, manifest, activity_id)
    if recorded is not None:
        print(f"recorded: {recorded}", file=sys.stderr)
    try:
        print(_arm_monitor(gateway, mpath.parent, activity_id), file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - the capsule is deployed: report the ID whatever arming did
        print(f"monitor: arming failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        code = InfrastructureError.exit_code
    print(f"deployed capsule {manifest.id} version {manifest.version} (strike {manifest.strike_id})")
    print(activity_id)
    return code


if __name__ == "__main__":
    sys.exit(main())
