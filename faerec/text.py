"""Wording of messages shown to people: one helper, so every count reads the same way."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``, ``0 studies``, ``22,363 users``: a count and its noun.

    ``plural_form`` is for irregular nouns (``plural(n, "study", "studies")``); thousands are
    separated by commas, as in the report tables.
    """
    word = noun if count == 1 else (plural_form or f"{noun}s")
    return f"{count:,} {word}"


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'ml-100k'?)`` for the closest choice; empty if none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
