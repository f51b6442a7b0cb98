"""Shared fixtures.

Broker and database tests use the services running on this machine.  With ``CI=true`` a
missing service is a failure, not a skip (CI must prove the distributed mode); locally the
test is skipped with the reason, or a testcontainers service is started where Docker runs.
"""
from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

import pytest

# The shipped examples plan fixed dates in January 2026, which the strike loop refuses as the past
# unless told it is a replay (--allow-past); the tests replay them.  tests/test_horizons.py unsets it.
os.environ.setdefault("INDUSTRIVERSE_ALLOW_PAST", "1")

AMQP_URL = os.environ.get("INDUSTRIVERSE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PG_URL = os.environ.get("INDUSTRIVERSE_TEST_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _service_or_container(name: str, url: str, port: int, container_factory):
    if _reachable(url, port):
        return url, None
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is not reachable at {url} and CI=true: broker/database tests must not skip")
    try:
        container = container_factory()
        container.start()
    except Exception as exc:  # no Docker engine here: say so and skip locally
        pytest.skip(f"{name} not reachable at {url} and no test container could start ({exc.__class__.__name__})")
    return None, container


@pytest.fixture(scope="session")
def amqp_url():
    def factory():
        from testcontainers.rabbitmq import RabbitMqContainer

        return RabbitMqContainer("rabbitmq:3.13-management")

    url, container = _service_or_container("RabbitMQ", AMQP_URL, 5672, factory)
    if container is None:
        yield url
        return
    params = container.get_connection_params()
    yield f"amqp://guest:guest@{params.host}:{params.port}/%2F"
    container.stop()


@pytest.fixture(scope="session")
def pg_url():
    def factory():
        from testcontainers.postgres import PostgresContainer

        return PostgresContainer("postgres:16", driver="psycopg")

    url, container = _service_or_container("PostgreSQL", PG_URL, 5432, factory)
    if container is None:
        yield url
        return
    yield container.get_connection_url()
    container.stop()


@pytest.fixture()
def prefix(amqp_url, request):
    """A throw-away exchange/queue name prefix for one broker test; its queues and exchanges
    are deleted afterwards."""
    from strike_helpers import delete_topology

    name = f"iv{request.module.__name__.removeprefix('test_')}-{uuid.uuid4().hex[:8]}"
    yield name
    delete_topology(amqp_url, name)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An isolated data directory (keys, SQLite store) for one test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("INDUSTRIVERSE_HOME", str(path))
    monkeypatch.delenv("INDUSTRIVERSE_DB_URL", raising=False)
    return path


MQTT_URL = os.environ.get("INDUSTRIVERSE_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


@pytest.fixture(scope="session")
def mqtt_url():
    """The Mosquitto broker (no test container: the live tests need the machine's broker, or CI fails)."""
    if _reachable(MQTT_URL, 1883):
        return MQTT_URL
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Mosquitto is not reachable at {MQTT_URL} and CI=true: MQTT tests must not skip")
    pytest.skip(f"Mosquitto not reachable at {MQTT_URL} (start it: mosquitto -d)")
