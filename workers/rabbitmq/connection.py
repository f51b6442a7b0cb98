"""Connecting to the broker: the URL (resolved, redacted for messages), pika parameters, and
the capped exponential back-off that every reconnecting loop (worker, client, regiment) uses.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions

from industriverse.errors import BadInput

# Connection-level failures after which a loop reconnects (the broker restarted, closed the
# connection, or cannot be reached for a moment).
RECONNECT_ON: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError, OSError)


def resolve_url(url: str | None = None) -> str:
    """``url``, else ``INDUSTRIVERSE_AMQP_URL``; :class:`BadInput` when neither is set."""
    url = url or os.environ.get("INDUSTRIVERSE_AMQP_URL")
    if not url:
        raise BadInput(None, "--broker", "no broker URL given (pass --broker amqp://... or set INDUSTRIVERSE_AMQP_URL)")
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise BadInput(None, "--broker", f"broker URL must start with amqp:// or amqps://, not {redact(url)!r}")
    return url


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connection_parameters(url: str, name: str) -> pika.URLParameters:
    """pika parameters for ``url``, naming the connection (visible in ``rabbitmqctl list_connections``)."""
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": name}
    params.connection_attempts = 1  # we do our own backoff
    params.socket_timeout = 5
    params.blocked_connection_timeout = 60
    return params


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close ``connection`` if it is open; a broker that is gone already is no error here."""
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except RECONNECT_ON:
        pass


class Backoff:
    """Capped exponential back-off: ``initial``, ``2 initial``, ... up to ``maximum`` seconds.

    :meth:`next` returns the wait before the next attempt and doubles it; :meth:`reset`
    starts over (call it once a connection has stayed up for a while, so a broker that
    drops connections once a day is not answered with the maximum wait).
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0):
        if not (0 < initial <= maximum):
            raise ValueError(f"back-off needs 0 < initial <= maximum, not {initial}, {maximum}")
        self.initial, self.maximum = initial, maximum
        self._delay = initial

    def next(self) -> float:
        """The wait (s) before the next attempt."""
        delay = self._delay
        self._delay = min(self.maximum, self._delay * 2)
        return delay

    def reset(self) -> None:
        self._delay = self.initial
