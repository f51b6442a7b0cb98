"""MQTT glue of the live loop (paho-mqtt 2): connection options, a connected client, JSON publishing.

A broker is named by URL: ``mqtt://[user[:password]@]host[:port]`` (default port 1883) or
``mqtts://…`` (TLS, default port 8883).  Username and password may also come from
``--mqtt-username``/``--mqtt-password`` or ``$INDUSTRIVERSE_MQTT_USERNAME``/``$INDUSTRIVERSE_MQTT_PASSWORD``
(so they stay out of the process list); TLS takes an optional CA file and a client
certificate/key pair.  Both the plant and the operate daemon publish a retained ``online``
status and leave ``offline`` as their last will, so a crash is visible on ``status``.
"""
from __future__ import annotations

import argparse
import os
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from industriverse.errors import BadInput, InfrastructureError

DEFAULT_URL = "mqtt://127.0.0.1:1883"


@dataclass
class MqttOptions:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    keepalive: int = 30


def site_name(value: str) -> str:
    """An argparse ``type`` for ``--site``: one MQTT topic level (letters, digits, '.', '_', '-')."""
    import re

    from messages.live import SITE_PATTERN

    if not re.match(SITE_PATTERN, value):
        raise argparse.ArgumentTypeError(f"'{value}' must be letters, digits, '.', '_' or '-' (it is an MQTT topic level)")
    return value


def add_mqtt_arguments(p: argparse.ArgumentParser) -> None:
    """The broker flags shared by ``plant`` and ``operate``."""
    p.add_argument("--mqtt", metavar="URL", default=None,
                   help=f"MQTT broker, mqtt://[user[:pass]@]host[:port] or mqtts:// for TLS "
                        f"(default: $INDUSTRIVERSE_MQTT_URL, else {DEFAULT_URL})")
    p.add_argument("--mqtt-username", default=None, help="broker user (default: $INDUSTRIVERSE_MQTT_USERNAME or the URL's)")
    p.add_argument("--mqtt-password", default=None, help="broker password (default: $INDUSTRIVERSE_MQTT_PASSWORD or the URL's)")
    p.add_argument("--mqtt-ca", metavar="FILE", default=None, help="TLS: CA certificate file (default: the system's)")
    p.add_argument("--mqtt-cert", metavar="FILE", default=None, help="TLS: client certificate file")
    p.add_argument("--mqtt-key", metavar="FILE", default=None, help="TLS: client private key file")
    p.add_argument("--mqtt-insecure", action="store_true", help="TLS: do not verify the broker's host name (test brokers only)")


def options_from_args(args: argparse.Namespace) -> MqttOptions:
    """Validate the broker flags; :class:`BadInput` naming the flag."""
    url = args.mqtt or os.environ.get("INDUSTRIVERSE_MQTT_URL") or DEFAULT_URL
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise BadInput(None, "--mqtt", f"'{url}' must start with mqtt:// or mqtts://")
    if not parsed.hostname:
        raise BadInput(None, "--mqtt", f"'{url}' names no host")
    tls = parsed.scheme in ("mqtts", "ssl") or any((args.mqtt_ca, args.mqtt_cert))
    try:
        port = parsed.port or (8883 if tls else 1883)
    except ValueError:
        raise BadInput(None, "--mqtt", f"'{url}' has an invalid port") from None
    for flag, path in (("--mqtt-ca", args.mqtt_ca), ("--mqtt-cert", args.mqtt_cert), ("--mqtt-key", args.mqtt_key)):
        if path is not None and not os.path.isfile(path):
            raise BadInput(path, flag, "no such file")
    if (args.mqtt_cert is None) != (args.mqtt_key is None):
        raise BadInput(None, "--mqtt-cert", "give the client certificate and --mqtt-key together")
    username = args.mqtt_username or os.environ.get("INDUSTRIVERSE_MQTT_USERNAME") or (unquote(parsed.username) if parsed.username else None)
    password = args.mqtt_password or os.environ.get("INDUSTRIVERSE_MQTT_PASSWORD") or (unquote(parsed.password) if parsed.password else None)
    if password is not None and username is None:
        raise BadInput(None, "--mqtt-password", "a password needs a username")
    return MqttOptions(host=parsed.hostname, port=port, tls=tls, username=username, password=password,
                       ca_file=args.mqtt_ca, cert_file=args.mqtt_cert, key_file=args.mqtt_key,
                       insecure=bool(args.mqtt_insecure))


def connect(options: MqttOptions, *, client_id: str, will: tuple[str, bytes] | None = None,
            on_message=None, subscriptions: list[tuple[str, int]] = (), timeout: float = 10.0, log=None):
    """A connected paho client with its network loop running in a background thread.

    ``will``: (topic, payload) published retained with QoS 1 if we vanish.  ``subscriptions``
    are (re)made on every connect, so a broker restart does not silently end them; paho
    reconnects on its own with backoff.  Raises :class:`InfrastructureError` when the first
    connection does not succeed within ``timeout`` seconds.
    """
    import paho.mqtt.client as mqtt

    # a clean session: a restarted plant must not be handed set-points queued for its previous run
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    if options.tls:
        client.tls_set(ca_certs=options.ca_file, certfile=options.cert_file, keyfile=options.key_file,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.tls_insecure_set(options.insecure)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    # queue QoS 1 messages published while disconnected instead of dropping them
    client.max_queued_messages_set(10000)
    connected = threading.Event()
    failure: list[str] = []

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            failure.append(str(reason_code))
            connected.set()
            return
        for topic, qos in subscriptions:
            c.subscribe(topic, qos=qos)
        if log is not None:
            log.info("mqtt connected", broker=f"{options.host}:{options.port}", client_id=client_id)
        connected.set()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        if log is not None and reason_code != 0:
            log.warning("mqtt disconnected, reconnecting", reason=str(reason_code))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    if on_message is not None:
        client.on_message = on_message
    try:
        client.connect(options.host, options.port, keepalive=options.keepalive)
    except (OSError, ssl.SSLError) as exc:
        raise InfrastructureError(f"MQTT broker {options.host}:{options.port} unreachable: {exc}") from None
    client.loop_start()
    if not connected.wait(timeout) or failure:
        client.loop_stop()
        raise InfrastructureError(f"MQTT broker {options.host}:{options.port} refused or did not answer: "
                                  f"{failure[0] if failure else 'timeout'}")
    return client


def publish_json(client, topic: str, model, *, qos: int = 0, retain: bool = False, wait: float | None = None) -> None:
    """Publish a pydantic model as JSON; with ``wait``, block until a QoS ≥ 1 message is acknowledged."""
    info = client.publish(topic, model.model_dump_json().encode(), qos=qos, retain=retain)
    if wait:
        deadline = time.monotonic() + wait
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.005)


__all__ = ["DEFAULT_URL", "MqttOptions", "add_mqtt_arguments", "connect", "options_from_args", "publish_json"]
