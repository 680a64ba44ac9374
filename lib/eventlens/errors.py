"""The one root of eventlens's own errors: each says what went wrong in words for the person who
asked (a locked store, a query that cannot run, a file that is not an export, a run that cannot
resume), so the CLI and the pages show it as it is, never as a traceback."""

from __future__ import annotations


class EventlensError(Exception):
    """A problem worded for a person; the message is safe to show (it never holds a key)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An error's first line, cut to `limit` characters (its type's name when it has no text):
    what a log or a one-sentence message shows of a driver's multi-line error."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__
