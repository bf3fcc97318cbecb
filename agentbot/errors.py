"""The one error hierarchy of agentbot.

Subclasses exist only where a caller acts differently; attributes carry what the caller needs.
`app.py` maps them to HTTP answers once; the CLI maps them to one line and an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentbot.validation import Problem


class AgentbotError(Exception):
    """Base of every error agentbot raises on purpose."""


class ConfigError(AgentbotError):
    """A configuration variable is missing or malformed; the message names it and the fix."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


class FlowError(AgentbotError):
    """One or more flow files are invalid; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in flow files:\n{lines}")


class ChatwootError(AgentbotError):
    """A call to Chatwoot's API failed."""


class ChatwootUnavailable(ChatwootError):
    """Chatwoot did not answer usefully (connection error, timeout, 5xx, 429): retry later.

    `maybe_done` is True when Chatwoot may have acted all the same (the request reached it and
    the answer was lost: a read timeout, a cut connection, a 500 or a gateway's 502/504); False
    when it cannot have (no connection was made, or a 429 or 503 turned the request away).
    `unreachable` is True when no connection could be made at all.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        maybe_done: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_done = maybe_done
        self.unreachable = unreachable  # no connection could be made: Chatwoot is away


class ChatwootRejected(ChatwootError):
    """Chatwoot refused the request (a 4xx other than 429): retrying will not help."""

    def __init__(self, status_code: int, body: str, *, method: str, path: str) -> None:
        super().__init__(f"Chatwoot answered {status_code} to {method} {path}: {body[:500]}")
        self.status_code = status_code
        self.body = body


class StoreError(AgentbotError):
    """The database could not be reached or refused the statement."""


class DataRefused(StoreError):
    """The database is up but refused the data (a value out of range, text it cannot hold):
    bad input, answered 400, never reported as the database being away."""
