"""A/B splits: which arm of a `split:` block a conversation takes.

This module does no I/O: no network, no database, no clock, no randomness and no logging. The
arm is a function of the key alone (the flow, the block and the Chatwoot conversation), so the
same conversation always takes the same arm, on every replica and after every restart, and
conversations spread over the arms in proportion to their weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def split_key(flow: str, block: str, account_id: int | None, conversation_id: int | None) -> str:
    """What the arm is chosen from. Two split blocks of one flow choose independently."""
    return f"{flow}\x1f{block}\x1f{account_id}\x1f{conversation_id}"


def pick(weights: Sequence[int], key: str) -> int:
    """The index of the arm `key` falls in, arm i taking weights[i] / sum(weights) of the keys."""
    if not weights or any(w <= 0 for w in weights):
        raise ValueError(f"weights must be positive integers, got {list(weights)}")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    point = int.from_bytes(digest[:8], "big") % sum(weights)
    for index, weight in enumerate(weights[:-1]):
        if point < weight:
            return index
        point -= weight
    return len(weights) - 1
