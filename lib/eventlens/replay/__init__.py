"""Replay exported events to a track_event endpoint: paced, concurrent, retried safely, resumable.

A run is planned once (`planning`): its events (a file read through ingest, or the store's events
under Explore's filters) are written in replay order to a Parquet plan beside the store, and the
run is recorded in the store's journal (`journal`). A session (`engine`) sends what has no final
outcome yet, paced by a `clock`, journals every outcome, and ends with the run's report
(`report`). The Replay page runs sessions in background threads (`sessions`); the rules its
front ends share, the CLI's and the page's, are in `runs`.

This package re-exports the public API: `from eventlens import replay; replay.plan(...)`.
"""

from eventlens.replay.clock import Clock
from eventlens.replay.engine import Progress, Replay
from eventlens.replay.journal import delete_run, get_run, invalid_reasons, list_runs
from eventlens.replay.planning import (
    CHUNK,
    PLAN_LINE_BYTES,
    PLAN_MEMORY,
    PLAN_THREADS,
    REDACTED,
    DryRun,
    Planned,
    cleanup_plan_dir,
    dry_run,
    estimate_seconds,
    hold_memory,
    new_run_id,
    plan,
    plan_dir,
    read_plan,
)
from eventlens.replay.report import (
    EXACT_QUANTILES,
    Latency,
    Report,
    build_report,
    dead_letters,
    write_dead_letters,
)
from eventlens.replay.runs import (
    Listing,
    can_start,
    check_resume_endpoint,
    discard_unstarted,
    given,
    is_live,
    listing,
    resume_differences,
    same_endpoint,
    shown_state,
)
from eventlens.replay.sessions import Session, start_background
from eventlens.replay.specs import (
    DEAD,
    FINAL,
    SENDING,
    TIMESTAMPS,
    Endpoint,
    Pacing,
    ReplayError,
    Run,
    RunState,
    Source,
    Transforms,
)

__all__ = [
    "CHUNK",
    "Clock",
    "DEAD",
    "EXACT_QUANTILES",
    "FINAL",
    "PLAN_LINE_BYTES",
    "PLAN_MEMORY",
    "PLAN_THREADS",
    "REDACTED",
    "SENDING",
    "TIMESTAMPS",
    "DryRun",
    "Endpoint",
    "Latency",
    "Listing",
    "Pacing",
    "Planned",
    "Progress",
    "Replay",
    "ReplayError",
    "Report",
    "Run",
    "RunState",
    "Session",
    "Source",
    "Transforms",
    "build_report",
    "can_start",
    "check_resume_endpoint",
    "cleanup_plan_dir",
    "dead_letters",
    "delete_run",
    "discard_unstarted",
    "dry_run",
    "estimate_seconds",
    "get_run",
    "given",
    "hold_memory",
    "invalid_reasons",
    "is_live",
    "list_runs",
    "listing",
    "new_run_id",
    "plan",
    "plan_dir",
    "read_plan",
    "resume_differences",
    "same_endpoint",
    "shown_state",
    "start_background",
    "write_dead_letters",
]
