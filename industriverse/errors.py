"""Errors the tools turn into exit codes.

Every script maps :class:`BadInput` to exit 2 with its one-line message,
:class:`Infeasible` to exit 1 (the conflicting constraints named) and
:class:`InfrastructureError` to exit 3.  Nothing else should escape as a traceback.
"""
from __future__ import annotations


class IndustriverseError(Exception):
    """Base of the errors a script reports in one line."""

    exit_code = 3


class BadInput(IndustriverseError):
    """A file or a field of it is wrong: the line names the file, the field and what is wrong."""

    exit_code = 2

    def __init__(self, file: str | None, field: str | None, problem: str):
        self.file, self.field, self.problem = file, field, problem
        where = ": ".join(p for p in (file, f"field '{field}'" if field else None) if p)
        super().__init__(f"{where}: {problem}" if where else problem)


class Infeasible(IndustriverseError):
    """The constraints contradict each other; ``conflicts`` names them with their time steps."""

    exit_code = 1

    def __init__(self, conflicts: list[str]):
        self.conflicts = list(conflicts)
        super().__init__("infeasible: " + "; ".join(self.conflicts))


class InfrastructureError(IndustriverseError):
    """Broker, database or file system failed in a way a retry later may fix."""

    exit_code = 3


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for error lines and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(str(url))
        if parts.password is None:
            return str(url)
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:  # not even a URL: say nothing of it that could hold a secret
        return "<unparseable URL>"


class ServiceUnavailable(InfrastructureError):
    """A database, broker or file system the command needs is unusable: names the service and its URL
    (password hidden) and why, in one line (exit 3)."""

    def __init__(self, service: str, url: str, problem: str):
        self.service, self.url, self.problem = service, safe_url(url), problem
        super().__init__(f"{service} {self.url}: {problem}")
