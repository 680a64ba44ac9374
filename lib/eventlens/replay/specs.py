"""What a run is: its source, transforms, pacing and endpoint, and the journal row they make up."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventlens import client
from eventlens.client import Outcome
from eventlens.errors import EventlensError

if TYPE_CHECKING:
    from eventlens.replay.report import Report

TIMESTAMPS = ("keep", "shift", "now")
FINAL = (Outcome.ACCEPTED, Outcome.REJECTED, Outcome.INVALID)  # never sent again by a resume
DEAD = (Outcome.REJECTED, Outcome.INVALID)  # what goes to the dead-letter file


class RunState(enum.StrEnum):
    """Where a run is. The journal keeps all but INTERRUPTED, which is only ever shown."""

    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # journalled running or paused, but no session is at it


SENDING = (RunState.RUNNING, RunState.PAUSED)  # journalled while a session is at the run


class ReplayError(EventlensError):
    """A replay problem worded for a person (bad source, unknown run, missing plan)."""


@dataclass(frozen=True)
class Source:
    """What to replay: a file, or the store's events under Explore's filters."""

    path: str | None = None
    datasets: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    trace_ids: tuple[str, ...] = ()
    display_name: str | None = None  # an upload's own name, for the journal

    @property
    def label(self) -> str:
        return self.display_name or self.path or "store"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "datasets": list(self.datasets),
            "event_types": list(self.event_types),
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "trace_ids": list(self.trace_ids),
            "display_name": self.display_name,
        }


@dataclass(frozen=True)
class Transforms:
    """How events change on the way: timestamps, trace ids, redacted detail keys."""

    timestamps: str = "keep"  # keep | shift (first event at the start, gaps kept) | now
    trace_ids: str = "keep"  # keep | prefix:P | fresh (a new id per trace, the same all run)
    redact: tuple[str, ...] = ()

    def check(self) -> None:
        if self.timestamps not in TIMESTAMPS:
            raise ReplayError(f"timestamps must be one of {', '.join(TIMESTAMPS)}")
        if self.trace_ids not in ("keep", "fresh") and not (
            self.trace_ids.startswith("prefix:") and len(self.trace_ids) > len("prefix:")
        ):
            raise ReplayError("trace ids must be keep, fresh or prefix:SOMETHING")


@dataclass(frozen=True)
class Pacing:
    """How fast: a cap in events/s, or the original timing sped up; and how many at once."""

    rate: float | None = None  # events per second at most (retries included)
    speed: float | None = None  # original gaps divided by this (None: as fast as allowed)
    max_gap_s: float = 60.0  # original gaps longer than this count as this long
    concurrency: int = 16
    max_retries: int = 8  # per event, for 5xx, 429, connection errors and timeouts
    backoff_s: float = 0.25  # first retry delay; doubles each time, with jitter
    max_backoff_s: float = 30.0
    timeout_s: float = 10.0

    def check(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ReplayError("the rate must be above 0 events/s")
        if self.speed is not None and self.speed <= 0:
            raise ReplayError("the speed factor must be above 0")
        if self.concurrency < 1 or self.concurrency > 1024:
            raise ReplayError("concurrency must be between 1 and 1024")
        if self.max_retries < 0:
            raise ReplayError("max retries must be 0 or more")


@dataclass(frozen=True)
class Endpoint:
    """Where to send, without the key: the key is looked up when a session starts."""

    url: str = client.DEFAULT_ENDPOINT
    path: str = client.PATHS[0]
    auth: str = "x-auth-token"
    key_env: str = client.KEY_ENV  # the environment variable the CLI reads the key from

    def target(self, key: str | None, key_source: str = "environment") -> client.Target:
        return client.Target(self.url, key, key_source, self.auth, self.path)


@dataclass
class Run:
    """A journalled run: its id, spec and counts (the row of replay_runs)."""

    run_id: str
    source: Source
    transforms: Transforms
    pacing: Pacing
    endpoint: Endpoint
    plan_path: str
    planned: int = 0
    invalid: int = 0
    duplicates: int = 0
    state: RunState = RunState.PLANNED
    message: str | None = None
    sessions: int = 0
    elapsed_s: float = 0.0
    anchor_ms: int | None = None  # where "shift" puts the first event (set when first started)
    created_at: dt.datetime | None = None
    report: Report | None = None  # the one its last session closed it with

    def spec(self) -> dict[str, Any]:
        return {
            "source": self.source.as_dict(),
            "transforms": dataclasses.asdict(self.transforms),
            "pacing": dataclasses.asdict(self.pacing),
            "endpoint": dataclasses.asdict(self.endpoint),
            "anchor_ms": self.anchor_ms,
        }
