"""Structured logs: JSON lines for operators, a readable console on a terminal.

Every line written while a handler runs carries the message's ``strike_id``,
``contract_id``, ``stage``, ``message_id`` and ``worker`` (bound in contextvars by the
runtime, see :func:`log_context`), including lines from plain :mod:`logging` loggers of
the numeric core, which go through the same formatter.

Logs go to stderr: stdout belongs to the scripts' results.  Environment:
``INDUSTRIVERSE_LOG_LEVEL`` (default INFO), ``INDUSTRIVERSE_LOG_FORMAT`` = ``json`` |
``console`` (default: console on a TTY, JSON otherwise).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any

import structlog
from structlog.contextvars import bound_contextvars

# Processors applied to structlog and to plain logging records alike.
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]

_HANDLER_NAME = "industriverse"


def _configure_structlog() -> None:
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


# structlog's own default prints to stdout; route it through logging (stderr) from the start.
if not structlog.is_configured():
    _configure_structlog()


def configure_logging(level: str | int | None = None, *, json_output: bool | None = None, stream: IO[str] | None = None) -> None:
    """Install the structlog formatter on the root logger (idempotent).

    ``json_output=None`` chooses from ``INDUSTRIVERSE_LOG_FORMAT``, else JSON unless
    ``stream`` is a terminal.
    """
    stream = stream or sys.stderr
    level = level or os.environ.get("INDUSTRIVERSE_LOG_LEVEL", "INFO")
    if json_output is None:
        fmt = os.environ.get("INDUSTRIVERSE_LOG_FORMAT", "").lower()
        json_output = fmt == "json" if fmt in ("json", "console") else not (hasattr(stream, "isatty") and stream.isatty())
    renderer = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json_output else (lambda _l, _m, e: e),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    # third-party chatter (font subsetting in the PDF report) is not an operator's business
    for noisy in ("fontTools", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    # pika logs every frame hiccup at INFO and every failed connection with a traceback at ERROR;
    # each failure reaches our code as an exception, reported there in one line
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    _configure_structlog()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger (writes through :mod:`logging`)."""
    return structlog.get_logger(name)


def log_context(**fields: Any):
    """Context manager binding ``fields`` to every log line of this thread/task until it exits."""
    return bound_contextvars(**fields)
