"""Tokens that authenticate requests: kept as hashes, compared in constant time.

A token agentbot generates (the webhook's `?token=`, the API's bearer token, when the operator
set none) is stored in `agentbot_settings` only as `sha256:<hex>`: a copy of the database does
not let anyone call the service. `agentbot tokens --reset` makes new ones.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "sha256:"
WEBHOOK_KEY = "webhook_token"
API_KEY = "api_token"


def digest(token: str) -> str:
    """What is stored for a token."""
    return PREFIX + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def generate() -> str:
    return secrets.token_urlsafe(24)


class Verifier:
    """Says whether a presented token is the right one, knowing only its hash."""

    __slots__ = ("_digest", "generated")

    def __init__(self, stored: str, *, generated: bool) -> None:
        self._digest = stored if stored.startswith(PREFIX) else digest(stored)
        self.generated = generated  # kept hashed in the database, not set by the operator

    @classmethod
    def of(cls, token: str) -> Verifier:
        """For a token the operator configured (the environment holds it in clear)."""
        return cls(digest(token), generated=False)

    def signing_key(self) -> str:
        """A key derived from the token, to sign what only its holder may make (the
        dashboard's session cookie): a new token makes every earlier signature invalid."""
        return "agentbot-signing:" + self._digest

    def matches(self, given: str) -> bool:
        return hmac.compare_digest(digest(given).encode(), self._digest.encode())

    def __repr__(self) -> str:
        return "Verifier('**********')"
