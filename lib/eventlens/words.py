"""Counts in words, for the command line and the pages alike: '1 duplicate', '2,620 duplicates'."""

from __future__ import annotations


def counted(n: int | float, noun: str, plural: str | None = None, *, grouped: bool = True) -> str:
    """`n` and the noun, singular for exactly one; `grouped` puts thousands separators in."""
    number = f"{n:,}" if grouped else f"{n}"
    return f"{number} {noun if n == 1 else plural or noun + 's'}"


def span(seconds: float) -> str:
    """A length of time in the largest unit that keeps it at 1 or more ("30.0 days", "2.5 hours",
    "45 s", "1 ms"): a tile reads "1 ms" for a one-event range, not "0.0 days"."""
    for unit, size in (("days", 86_400), ("hours", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def bar(share: float, width: int = 30) -> str:
    """A text progress bar: `share` (0..1) of `width` as '#', the rest as '.'."""
    done = int(share * width)
    return "#" * done + "." * (width - done)
