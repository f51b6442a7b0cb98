"""What every script shares: one-line errors with the right exit code, JSON output."""
from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable

from industriverse.errors import BadInput, IndustriverseError, InfrastructureError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: a bad flag is :class:`BadInput` (``error: field '--flag':
    what is wrong``, exit 2 through :func:`one_line_errors`), not argparse's usage text."""

    def error(self, message: str):
        message = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", message)  # never echo a URL's password
        m = re.match(r"argument ([^:]+): (.*)", message, re.S)
        field, problem = (m.group(1).split("/")[0], m.group(2)) if m else (None, message)  # the first spelling
        raise BadInput(None, field, problem.strip() + " (see --help)")  # one_line_errors prints it, exit 2


def live_parser(prog: str | None, description: str | None, own: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """The parser of a live command (``plant``, ``operate``): ``--site`` first, the command's own
    flags (``own(parser)``), then ``--log-level`` and the MQTT broker flags both share."""
    from workers.mqtt import add_mqtt_arguments, site_name

    p = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--site", required=True, type=site_name, help="site name: the topics are industriverse/<site>/...")
    own(p)
    p.add_argument("--log-level", default=None, metavar="LEVEL", help="log level (default: $INDUSTRIVERSE_LOG_LEVEL or INFO)")
    add_mqtt_arguments(p)
    return p

def number(lo: float | None = None, hi: float | None = None, *, integer: bool = False, lo_open: bool = False):
    """An argparse ``type``: a finite number (an integer when ``integer``) in [lo, hi] (lo excluded when
    ``lo_open``); NaN, infinities and out-of-range values are refused with the range named."""
    kind = "an integer" if integer else "a finite number"
    fmt = (lambda v: f"{int(v)}") if integer else (lambda v: f"{v:g}")
    rng = " ".join(filter(None, [(f"{'>' if lo_open else '>='} {fmt(lo)}" if lo is not None else None),
                                  ("and" if lo is not None and hi is not None else None),
                                  (f"<= {fmt(hi)}" if hi is not None else None)]))
    want = f"must be {kind}{' ' + rng if rng else ''}"

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{want}, got {text[:40]!r}") from None
        if not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) \
                or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{want}, got {text[:40]}")
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse


MAX_SEED = 2**63 - 1
MAX_WAIT_S = 7 * 24 * 3600.0  # the longest timeout or interval a command accepts (a week)


def one_line_errors(func: Callable[..., int]) -> Callable[..., int]:
    """Turn the project's errors into one line on stderr and their exit code (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        try:
            return func(*args, **kwargs)
        except IndustriverseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - only infrastructure failures are turned into a line here
            line = _infrastructure_line(exc)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return InfrastructureError.exit_code

    return wrapper


def _infrastructure_line(exc: BaseException) -> str | None:
    """One line for a database, broker or file-system failure that reached the command unconverted
    (exit 3, never a traceback); None for anything else (a bug: let it show)."""
    module = type(exc).__module__ or ""
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0][:200]
    if module.startswith("sqlalchemy"):
        return f"database: {type(exc).__name__}: {first}"
    if module.startswith("pika"):
        return f"broker: {type(exc).__name__}: {first}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"file system: {where}{exc.strerror or type(exc).__name__}"
    return None


def check_output_path(path: str | Path | None, field: str, *, directory: bool = False) -> None:
    """Refuse now (:class:`BadInput`, exit 2), before any work, an output path that cannot be written:
    a file path that is a directory, or a directory (or parent) that is an existing file."""
    if path is None:
        return
    p = Path(path)
    if not directory and p.is_dir():
        raise BadInput(None, field, f"'{p}' is a directory, expected a file path")
    for q in [p if directory else p.parent, *(p if directory else p.parent).parents]:
        if q.exists():
            if not q.is_dir():
                raise BadInput(None, field, f"'{q}' exists and is not a directory")
            break


def write_json(data: Any, path: str | Path | None) -> None:
    """Write ``data`` as indented JSON to ``path``, or to stdout when ``path`` is None."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    if path is None:
        print(text)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file
