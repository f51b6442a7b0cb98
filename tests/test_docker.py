"""The compose file runs what the package has: every command it names parses."""
from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def test_compose_has_broker_database_every_worker_kind_and_the_regiment():
    services = _compose()["services"]
    assert {"rabbitmq", "postgres", "optimizer", "simulator", "shield", "deployer", "reporter", "regiment"} <= set(services)
    for kind in ("optimizer", "simulator", "shield", "deployer", "reporter"):
        assert services[kind]["command"][:2] == ["worker", kind]
        assert services[kind]["deploy"]["replicas"] >= 1
    assert max(services[k]["deploy"]["replicas"] for k in ("optimizer", "simulator", "reporter")) >= 2
    env = services["optimizer"]["environment"]
    assert env["INDUSTRIVERSE_AMQP_URL"].startswith("amqp://") and env["INDUSTRIVERSE_DB_URL"].startswith("postgresql")


def test_every_command_in_the_compose_file_exists_and_accepts_its_flags():
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if "build" not in service:
            continue  # third-party images (rabbitmq, postgres)
        assert command[0] in COMMANDS, f"{name}: unknown command {command[0]}"
        module = importlib.import_module(COMMANDS[command[0]][0])
        try:
            module.build_parser(f"industriverse {command[0]}").parse_args(command[1:])
        except SystemExit as exc:  # argparse rejects an unknown flag or a bad value this way
            raise AssertionError(f"{name}: {command} does not parse (exit {exc.code})") from None


def test_the_regiment_service_reads_a_shipped_contracts_file():
    command = _compose()["services"]["regiment"]["command"]
    contracts = command[command.index("--contracts") + 1]
    assert (ROOT / contracts).is_file()


def test_dockerfile_installs_the_package_and_runs_the_umbrella_command():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert "pip install" in text and 'ENTRYPOINT ["industriverse"]' in text
    for path in ("industriverse", "messages", "workers", "cli", "examples"):
        assert f"COPY {path}" in text and (ROOT / path).is_dir()
