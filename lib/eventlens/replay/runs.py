"""The run rules that the CLI and the Replay page share."""

from __future__ import annotations

from dataclasses import dataclass

from eventlens.replay.sessions import Session
from eventlens.replay.specs import SENDING, Run, RunState


def shown_state(run: Run, session: Session | None) -> RunState:
    """The state to show for a run, given its session in this process (if any).

    A live session's own state wins: the journal says "planned" until the session has read it
    and saved "running", and it never records a pause. A run the journal says is running or
    paused, with no live session here, was left so by a process that ended mid-run.
    """
    if session is not None and session.alive:
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
    if session is not None and session.alive:
        live, p = session.replay, session.replay.progress()
        if live.accepted_before is None or live.dead_lettered_before is None:
            return Listing(state, events, None, None, None)  # it has not read the journal yet
        return Listing(
            state,
            events,
            live.accepted_before + p.accepted,
            live.dead_lettered_before + p.rejected + p.invalid,
            p.rate,
        )
    if run.report is None:  # never started, or its session died before the end
        return Listing(state, events, None, run.invalid if run.sessions else None, None)
    report = run.report
    return Listing(state, events, report.accepted, report.dead_lettered, report.rate_per_s)
