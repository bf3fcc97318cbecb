"""A/B arms: deterministic per conversation, spread in proportion to the weights."""

from __future__ import annotations

from collections import Counter

import pytest

from agentbot.splits import pick, split_key


@pytest.mark.parametrize(
    ("weights", "conversations", "share"),
    [
        ([50, 50], 4000, [0.5, 0.5]),
        ([90, 10], 4000, [0.9, 0.1]),
        ([1, 1, 2], 4000, [0.25, 0.25, 0.5]),
        ([100], 50, [1.0]),
    ],
)
def test_arms_follow_the_weights(
    weights: list[int], conversations: int, share: list[float]
) -> None:
    """Over many conversations each arm's share is within 3 points of its weight's."""
    counts = Counter(pick(weights, split_key("f", "ab", 1, c)) for c in range(conversations))
    for arm, expected in enumerate(share):
        assert abs(counts[arm] / conversations - expected) < 0.03


def test_same_conversation_same_arm() -> None:
    """The arm depends only on the key: the same conversation always gets the same one."""
    arms = {pick([50, 50], split_key("f", "ab", 1, 42)) for _ in range(20)}
    assert len(arms) == 1


def test_key_names_everything_that_matters() -> None:
    """Flow, block, account and conversation are all part of the key."""
    keys = {
        split_key("f", "ab", 1, 42),
        split_key("g", "ab", 1, 42),
        split_key("f", "cd", 1, 42),
        split_key("f", "ab", 2, 42),
        split_key("f", "ab", 1, 43),
        split_key("f", "ab", None, None),
    }
    assert len(keys) == 6


@pytest.mark.parametrize("weights", [[], [50, 0], [-1, 2]])
def test_bad_weights(weights: list[int]) -> None:
    """No arms, or a weight that is not positive, is refused (the loader never lets one by)."""
    with pytest.raises(ValueError, match="weights must be positive integers"):
        pick(weights, "k")
