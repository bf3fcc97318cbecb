"""A customer's reply to a question with buttons, read in the customer's own words.

This module does no I/O: no network, no database, no clock, no logging. It compares texts.

Tried in order; the first rule that finds anything decides:

1. **exact**: the whole reply, ignoring case, accents and spaces, is a button's title (in any of
   the flow's languages), its value, one of its `aliases`, or its position number ("1", "2"...).
2. **contained**: the reply's words contain a title or alias, as whole words in order ("sim,
   quero" names `Sim`; "quero o plano básico" names `Plano básico`). A phrase that is part of a
   longer phrase found whole or by typo counts as the longer one ("plano pro" and "plano
   basicp" are not `Plano`).
3. **typo**: the reply, or a run of as many of its words as a title or alias has, is close to it:
   rapidfuzz's `ratio` (an edit distance, 0-100) of at least `CLOSE` ("simm" is `Sim`, "plano
   basicp" is `Plano básico`). Phrases shorter than `MIN_TYPO` letters never match by typo.

When rule 2 or 3 finds two or more buttons the reply is **ambiguous**: nothing is picked and the
question is asked again, as after a miss. `confusable` lists the titles and aliases of one
question that a single typo could make ambiguous, for `agentbot check` to warn about.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz

from agentbot.flows import Button, normalize
from agentbot.jsonsafe import ascii_int

CLOSE = 80  # rapidfuzz ratio: one letter doubled or dropped in "sim", one wrong in "basico"
MIN_TYPO = 3
WORD = re.compile(r"\w+")

Kind = Literal["exact", "alias", "position", "contained", "typo", "ambiguous", "none"]


@dataclass(frozen=True, slots=True)
class Match:
    """How a reply was read: the button it picks (None when ambiguous or none) and by which rule."""

    kind: Kind
    button: Button | None = None


NO_MATCH = Match("none")


def match(
    buttons: Sequence[Button], replies: Sequence[str], *, positions: bool = True, loose: bool = True
) -> Match:
    """The button `replies` pick (a click sends its value and title: both are tried exactly).

    `positions=False` leaves "1", "2"... to a free-text input; `loose=False` tries only exact
    matches (a block that also takes free text, where any text may be the answer).
    """
    said = [normalize(reply) for reply in replies if reply]
    for text in said:
        for button in buttons:
            if text in (normalize(title) for title in button.titles) or text == normalize(
                button.value
            ):
                return Match("exact", button)
        for button in buttons:
            if text in (normalize(alias) for alias in button.aliases):
                return Match("alias", button)
        position = ascii_int(text, max_digits=3) if positions else None
        if position is not None and 1 <= position <= len(buttons):
            return Match("position", buttons[position - 1])
    if not loose or not said:
        return NO_MATCH
    words = WORD.findall(said[0])
    return _loose(buttons, words) or NO_MATCH


def phrases(button: Button) -> tuple[tuple[str, ...], ...]:
    """The button's titles and aliases as normalized words, each once."""
    found = (tuple(WORD.findall(normalize(text))) for text in (*button.titles, *button.aliases))
    return tuple(dict.fromkeys(phrase for phrase in found if phrase))


def confusable(buttons: Sequence[Button]) -> list[tuple[int, str, int, str]]:
    """(i, text, j, other) for each title or alias of button i that is as close to one of
    button j's (i < j) as a typo would be: a reply near both would be ambiguous."""
    found: list[tuple[int, str, int, str]] = []
    texts = [(*button.titles, *button.aliases) for button in buttons]
    for i, mine in enumerate(texts):
        for j in range(i + 1, len(texts)):
            pair = next(
                (
                    (a, b)
                    for a in mine
                    for b in texts[j]
                    if fuzz.ratio(_joined(a), _joined(b)) >= CLOSE
                ),
                None,
            )
            if pair is not None:
                found.append((i, pair[0], j, pair[1]))
    return found


def _joined(text: str) -> str:
    return " ".join(WORD.findall(normalize(text)))


def _loose(buttons: Sequence[Button], words: list[str]) -> Match | None:
    """Rules 2 and 3 together: a phrase found whole, unless it is part of a longer phrase found
    whole or by typo ("plano basicp" is `Plano básico`, not `Plano`); else the typos."""
    whole: list[tuple[int, tuple[str, ...]]] = []
    typos: list[tuple[int, tuple[str, ...]]] = []
    for index, button in enumerate(buttons):
        for phrase in phrases(button):
            if _find(phrase, words):
                whole.append((index, phrase))
            elif len("".join(phrase)) >= MIN_TYPO and _near(phrase, words):
                typos.append((index, phrase))
    longer = [phrase for _, phrase in whole + typos]
    kept = {
        index
        for index, phrase in whole
        if not any(len(other) > len(phrase) and _find(phrase, other) for other in longer)
    }
    if kept:
        return _one(buttons, kept, "contained")
    return _one(buttons, {index for index, _ in typos}, "typo")


def _near(phrase: tuple[str, ...], words: list[str]) -> bool:
    """Whether the reply, or a run of as many of its words as `phrase` has, is a typo away."""
    target = " ".join(phrase)
    return any(
        fuzz.ratio(" ".join(words[start : start + len(phrase)]), target) >= CLOSE
        for start in range(max(1, len(words) - len(phrase) + 1))
    )


def _one(buttons: Sequence[Button], indexes: set[int], kind: Kind) -> Match | None:
    if not indexes:
        return None
    if len(indexes) > 1:
        return Match("ambiguous")
    return Match(kind, buttons[indexes.pop()])


def _find(phrase: Sequence[str], words: Sequence[str]) -> bool:
    """Whether `phrase` occurs in `words` as consecutive whole words."""
    size = len(phrase)
    return any(tuple(words[i : i + size]) == tuple(phrase) for i in range(len(words) - size + 1))
