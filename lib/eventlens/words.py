"""Counts in words, for the command line and the pages alike: '1 duplicate', '2,620 duplicates'."""

from __future__ import annotations


def counted(n: int | float, noun: str, plural: str | None = None, *, grouped: bool = True) -> str:
    """`n` and the noun, singular for exactly one; `grouped` puts thousands separators in."""
    number = f"{n:,}" if grouped else f"{n}"
    return f"{number} {noun if n == 1 else plural or noun + 's'}"
