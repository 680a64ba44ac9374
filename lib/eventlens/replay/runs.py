"""The run rules that both front ends follow, `eventlens replay` and the Replay page: what an
option left out means, where a resume sends, which plans a dry run leaves behind, whether a run
may start, and the state and counts a run is shown with.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

from eventlens.replay.journal import delete_run, get_run
from eventlens.replay.sessions import Session
from eventlens.replay.specs import (
    SENDING,
    Endpoint,
    Pacing,
    ReplayError,
    Run,
    RunState,
    Source,
    Transforms,
)
from eventlens.store import Store

Spec = TypeVar("Spec", Pacing, Transforms, Endpoint)


def given(spec: Spec, **options: Any) -> Spec:
    """spec with the options a person gave. One left out (None, or empty text) keeps spec's own
    value: the default for a new run (Pacing(), Transforms(), Endpoint()), the run's setting for
    a resume. A 0 is given."""
    chosen = {k: v for k, v in options.items() if v is not None and v != ""}
    return dataclasses.replace(spec, **chosen)


def same_endpoint(run: Run, url: str) -> bool:
    """Whether url is where the run sends (a trailing slash aside)."""
    return url.rstrip("/") == run.endpoint.url.rstrip("/")


def check_resume_endpoint(run: Run, url: str | None) -> None:
    """A resume sends to the run's own endpoint: the server deduplicates per project, so the same
    events sent elsewhere would be stored again. Another endpoint asked for is refused."""
    if url and not same_endpoint(run, url):
        raise ReplayError(
            f"run {run.run_id} sends to {run.endpoint.url}; a resume must send to the same place"
            " (the server's deduplication is per project)"
        )


def is_live(session: Session | None) -> TypeGuard[Session]:
    """Whether a session of this process is at the run (sending or paused)."""
    return session is not None and session.alive


def can_start(run: Run, session: Session | None) -> bool:
    """Whether a session may start: the run has not finished and no session here is at it."""
    return run.state != RunState.FINISHED and not is_live(session)


def discard_unstarted(store: Store, run_id: str, session: Session | None) -> None:
    """Delete a run planned for a dry run and never started: planned in the journal, with no
    session journalled and none started in this process (even one that failed at once). A
    started run stays, whatever happens to the form."""
    try:
        run = get_run(store, run_id)
    except ReplayError:
        return  # already deleted
    if run.state == RunState.PLANNED and not run.sessions and session is None:
        delete_run(store, run_id)


def shown_state(run: Run, session: Session | None) -> RunState:
    """The state to show for a run, given its session in this process (if any).

    A live session's own state wins: the journal says "planned" until the session has read it
    and saved "running", and it never records a pause. A run the journal says is running or
    paused, with no live session here, was left so by a process that ended mid-run.
    """
    if is_live(session):
        return session.replay.state
    if run.state in SENDING:
        return RunState.INTERRUPTED
    return run.state


@dataclass
class Listing:
    """A run as the runs list shows it; a count is None where it does not exist yet."""

    state: RunState
    events: int  # planned plus invalid: every record of the source
    accepted: int | None
    dead_lettered: int | None
    rate_per_s: float | None


def listing(run: Run, session: Session | None) -> Listing:
    """The run's state and counts: a live session's, run-wide, else its last report's."""
    state = shown_state(run, session)
    events = run.planned + run.invalid
    if is_live(session):
        sending, p = session.replay, session.replay.progress()
        if sending.accepted_before is None or sending.dead_lettered_before is None:
            return Listing(state, events, None, None, None)  # it has not read the journal yet
        return Listing(
            state,
            events,
            sending.accepted_before + p.accepted,
            sending.dead_lettered_before + p.rejected + p.invalid,
            p.rate,
        )
    if run.report is None:  # never started, or its session died before the end
        return Listing(state, events, None, run.invalid if run.sessions else None, None)
    report = run.report
    return Listing(state, events, report.accepted, report.dead_lettered, report.rate_per_s)


def resume_differences(run: Run, source: Source | None, transforms: Transforms) -> list[str]:
    """How a resume's SOURCE, filters and transforms differ from what the run planned, in words
    (none: the same command may resume it). `transforms` is the run's with the options given."""
    out: list[str] = []
    if source is not None:
        planned = run.source
        if _where(source.path) != _where(planned.path):
            out.append(f"SOURCE is {source.label}, the run replays {planned.label}")
        for name, option in FILTER_OPTIONS.items():
            given, kept = getattr(source, name), getattr(planned, name)
            if given != kept:
                out.append(f"{option} {_shown(given)}, the run has {_shown(kept)}")
    for name, option in TRANSFORM_OPTIONS.items():
        given, kept = getattr(transforms, name), getattr(run.transforms, name)
        if given != kept:
            out.append(f"{option} {_shown(given)}, the run has {_shown(kept)}")
    return out


FILTER_OPTIONS = {
    "datasets": "--dataset",
    "event_types": "--type",
    "trace_ids": "--trace",
    "start": "--since",
    "end": "--until",
}
TRANSFORM_OPTIONS = {"timestamps": "--timestamps", "trace_ids": "--trace-ids", "redact": "--redact"}


def _where(path: str | None) -> str | None:
    return os.path.realpath(path) if path else None


def _shown(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return str(value)
