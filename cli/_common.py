"""What every script shares: one-line errors with the right exit code, JSON output."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

from industriverse.errors import IndustriverseError


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

    return wrapper


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
