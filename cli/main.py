"""The ``industriverse`` umbrella command.

Each subcommand is a module with ``main(argv) -> int``; the seven scripts of the plan are
the same modules run as files (``python cli/NAME.py``).  Modules import lazily so that
``industriverse --help`` stays fast.
"""
from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv, prog), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "strike": ("cli.run_client_strike_loop", "run the whole loop for one client (optimize, simulate, verify, deploy, report)"),
    "optimize": ("cli.optimize_diffusion_service", "optimize a plan for a constraint (IDF or exact LP) with a proven bound"),
    "simulate": ("cli.simulate_tnn_dynamics", "simulate the plan and the baseline under noise (Monte-Carlo ensemble)"),
    "verify": ("cli.verify_safety_compliance", "run the shield on a plan and its simulation; write verdict and signed proof"),
    "deploy": ("cli.deploy_sovereign_dac", "deploy a signed capsule to the gateway and arm the runtime monitor"),
    "report": ("cli.generate_value_report", "write the value report (Markdown, HTML, PDF, value.json) of a run"),
    "regiment": ("cli.orchestrate_full_regiment", "run the strike loop for every due contract ('regiment status' lists outcomes)"),
    "proof": ("cli.proof", "verify a proof's hashes and signature ('proof verify PROOF [--replay]')"),
    "capsule": ("cli.capsule", "pack a run directory into a signed capsule ('capsule pack RUN_DIR')"),
    "gateway": ("cli.gateway", "list what the capsule gateway holds ('gateway capsules|activities [--json]')"),
    "monitor": ("cli.monitor", "check telemetry of a deployed capsule against its envelope; alert and roll back"),
    "twin": ("cli.twin", "write simulated telemetry of a deployed capsule, with injectable faults"),
    "worker": ("cli.worker", "run worker processes on RabbitMQ (optimizer|simulator|shield|deployer|reporter|all)"),
    "fit": ("cli.fit_thermal_network", "fit a thermal network's parameters and noise to telemetry (grey-box, Kalman likelihood)"),
    "plant": ("cli.plant", "an emulated site on MQTT: the stochastic plant, mismatched, faults, its own baseline"),
    "operate": ("cli.operate", "the live loop for one site on MQTT: estimate, dispatch, monitor, re-plan"),
    "serve": ("cli.serve", "serve the operator console and REST API (pages, /api/v1, /docs)"),
    "token": ("cli.api_token", "make, list or revoke API tokens of the console ('token create --name N --role viewer|operator')"),
    "schema": ("cli.schema", "export the JSON Schemas of every message"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: industriverse COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'industriverse COMMAND --help' for the flags of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"industriverse: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(rest, prog=f"industriverse {name}")


if __name__ == "__main__":
    sys.exit(main())
