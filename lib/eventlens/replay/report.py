"""What happened to a run's events over all its sessions: the report and the dead letters."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventlens.client import Outcome
from eventlens.replay.specs import DEAD, Run, RunState
from eventlens.store import Store

EXACT_QUANTILES = 1_000_000  # latency percentiles are estimated above this many events

# Each event's latest outcome (a resume's outcome wins over the earlier session's).
_LATEST = """
    SELECT * FROM replay_outcomes WHERE run_id = ?
    QUALIFY row_number() OVER (PARTITION BY seq ORDER BY session DESC, logged_at DESC) = 1
"""


@dataclass(frozen=True)
class Latency:
    """p50/p95/p99 of the accepted events' latency in ms (None while nothing is accepted)."""

    p50: float | None
    p95: float | None
    p99: float | None
    # DuckDB's t-digest estimate, above EXACT_QUANTILES accepted events (a report journalled
    # before estimates existed has no such key: it was exact).
    estimated: bool = False


@dataclass(frozen=True)
class Report:
    """What happened to every event of a run, over all its sessions.

    as_dict() is the report as `eventlens replay --json` prints it, the page shows it and the
    journal keeps it: these keys in this order, with `message` only in the report a session
    closes the run with, and `dead_letter_file` only once the CLI has written one.
    """

    run_id: str
    state: RunState
    source: str  # the source's label
    endpoint: str  # URL and route
    events: int  # every record of the source: planned plus invalid
    planned: int
    sent: int  # events sent at least once
    requests: int
    accepted: int
    rejected: int
    invalid: int
    dead_lettered: int  # rejected plus invalid
    retried: int
    failed: int
    unknown: int
    not_sent: int
    duplicates_in_source: int
    elapsed_s: float  # sending time over all sessions, pauses left out
    rate_per_s: float | None
    latency_ms: Latency
    by_type: dict[str, dict[str, int]]  # event type -> outcome -> planned events
    sessions: int
    closing: bool = False  # written as a session ended: it carries the run's message
    message: str | None = None
    dead_letter_file: str | None = None

    @property
    def all_accepted(self) -> bool:
        """Whether every valid event of the source was accepted."""
        return self.accepted == self.planned

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not out.pop("closing"):
            del out["message"]
        if self.dead_letter_file is None:
            del out["dead_letter_file"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The report as_dict() gave (as the journal keeps it)."""
        return cls(
            **{
                **data,
                "state": RunState(data["state"]),
                "latency_ms": Latency(**data["latency_ms"]),
                "closing": "message" in data,
            }
        )

    def __getitem__(self, key: str) -> Any:
        """The report read as the dict it used to be, for a caller not moved to attributes yet
        (benchmarks/bench_replay.py)."""
        return self.as_dict()[key]


def build_report(store: Store, run: Run) -> Report:
    """What happened to every event of the run, over all its sessions."""
    latest = f"({_LATEST})"
    counts: collections.Counter[str] = collections.Counter()
    by_type: dict[str, dict[str, int]] = {}
    planned_seen = sent = 0
    # One pass over each event's latest outcome gives every count (a 10M-event run's journal
    # is read a handful of times at most, under the CLI's memory limit).
    for event_type, outcome, planned, n, with_attempts in store.rows(
        "SELECT event_type, outcome, seq > 0, count(*), count(*) FILTER (WHERE attempts > 0)"
        f" FROM {latest} GROUP BY ALL ORDER BY ALL",
        [run.run_id],
    ):
        counts[outcome] += n
        sent += with_attempts
        if planned:
            planned_seen += n
            by_type.setdefault(event_type, {})[outcome] = n
    retried, requests = store.rows(
        "SELECT coalesce(sum(greatest(attempts - 1, 0)), 0), coalesce(sum(attempts), 0)"
        " FROM replay_outcomes WHERE run_id = ?",
        [run.run_id],
    )[0]
    accepted = counts[Outcome.ACCEPTED]
    rejected = counts[Outcome.REJECTED]
    invalid = counts[Outcome.INVALID]
    return Report(
        run_id=run.run_id,
        state=run.state,
        source=run.source.label,
        endpoint=run.endpoint.url + run.endpoint.path,
        events=run.planned + run.invalid,
        planned=run.planned,
        sent=sent,
        requests=int(requests),
        accepted=accepted,
        rejected=rejected,
        invalid=invalid,
        dead_lettered=rejected + invalid,
        retried=int(retried),
        failed=counts[Outcome.FAILED],
        unknown=counts[Outcome.UNKNOWN],
        not_sent=run.planned - planned_seen,
        duplicates_in_source=run.duplicates,
        elapsed_s=round(run.elapsed_s, 2),
        rate_per_s=round(planned_seen / run.elapsed_s, 1) if run.elapsed_s else None,
        latency_ms=_latency_quantiles(store, run.run_id, accepted),
        by_type=by_type,
        sessions=run.sessions,
    )


def _latency_quantiles(store: Store, run_id: str, accepted: int) -> Latency:
    """p50/p95/p99 of the accepted events' latency: exact up to EXACT_QUANTILES events, then
    DuckDB's t-digest estimate (exact quantiles hold every value in memory at once)."""
    estimated = accepted > EXACT_QUANTILES
    quantile = "approx_quantile" if estimated else "quantile_cont"
    values = store.rows(
        f"SELECT {quantile}(latency_ms, [0.5, 0.95, 0.99]) FROM ({_LATEST}) WHERE outcome = ?",
        [run_id, Outcome.ACCEPTED],
    )[0][0] or [None, None, None]
    p50, p95, p99 = (_round(v) for v in values)
    return Latency(p50, p95, p99, estimated)


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def dead_letters(store: Store, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's dead letters: each original event (or raw record) plus why it was refused."""
    with store.cursor() as cur:
        cur.execute(
            f"SELECT seq, outcome, status, message, record, line FROM ({_LATEST})"
            " WHERE list_contains(?, outcome) ORDER BY line NULLS LAST, seq",
            [run_id, list(DEAD)],
        )
        while rows := cur.fetchmany(10_000):
            for seq, outcome, status, message, record, line in rows:
                letter = {
                    "reason": message,
                    "outcome": outcome,
                    "status": status,
                    "run_id": run_id,
                    "line": line,
                    "seq": seq if seq > 0 else None,
                }
                try:
                    event = json.loads(record) if record is not None else None
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    yield {**event, "dead_letter": letter}
                else:
                    yield {"raw": record, "dead_letter": letter}


def write_dead_letters(store: Store, run_id: str, path: str | os.PathLike[str]) -> int:
    """Write the run's dead letters as JSONL (replayable: ingest ignores the extra key)."""
    n = 0
    tmp = Path(str(path) + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        for letter in dead_letters(store, run_id):
            fh.write(json.dumps(letter, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n
