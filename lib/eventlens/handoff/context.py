"""What a command running as a hand-off job knows about the terminal that sent it."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Job:
    """A handed-off command's view of its sender: where its output goes, whether each stream
    is a terminal there, and how each path argument was typed (shown back as typed)."""

    emit: Callable[[str, str], None]  # ("out" | "err", text)
    tty: Mapping[str, bool] = field(default_factory=dict)
    typed: Mapping[str, str] = field(default_factory=dict)


CURRENT: contextvars.ContextVar[Job | None] = contextvars.ContextVar("eventlens_job", default=None)


def in_job() -> bool:
    """True inside a command the running app took over from another process."""
    return CURRENT.get() is not None


def shown(path: str) -> str:
    """A path as the person typed it: a handed-off command gets absolute paths (they must mean
    the same file in the server) but speaks of them as they were given."""
    job = CURRENT.get()
    return job.typed.get(path, path) if job else path
