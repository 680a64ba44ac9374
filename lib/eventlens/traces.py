"""Traces: find them, read one trace's events, compare two, and export them as track_event bodies.

The trace list reads the `trace_summary` table (one row per dataset and trace, kept by the store),
so ordering and paging a million traces never groups every event. Every user value is a bound
parameter; sort columns come from a fixed table.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
from dataclasses import dataclass
from typing import Any

import pandas as pd

from eventlens import analytics, settings
from eventlens.store import Store

SORTS = {
    "last": "last_time",
    "first": "first_time",
    "events": "events",
    "duration": "duration_ms",
    "trace_id": "trace_id",
}
SORT_LABELS = {
    "last": "last event",
    "first": "first event",
    "events": "events",
    "duration": "duration",
    "trace_id": "trace_id",
}
PAGE_SIZE = 50
DEFAULT_ENDPOINT = str(settings.ENDPOINT.default)
KEY_PLACEHOLDER = "$LANGWATCH_API_KEY"
SHORT_TEXT = 120  # characters of a long detail shown in tables; the full value is on demand
SHORT_PAIR = 60  # the same inside a row's key=value list, which holds several values


@dataclass(frozen=True)
class TraceSearch:
    """What the trace list is filtered and ordered by."""

    text: str = ""  # a trace_id, or its beginning
    exact: bool = False
    datasets: tuple[str, ...] = ()  # none: every dataset but test data (see include_test)
    include_test: bool = False
    event_types: tuple[str, ...] = ()  # traces with at least one event of these types
    detail_key: str | None = None  # traces with an event whose detail key has this value
    detail_value: str | None = None
    start: dt.datetime | None = None  # traces with events in [start, end)
    end: dt.datetime | None = None
    sort: str = "last"
    descending: bool = True


def _where(
    s: TraceSearch, indexed: bool = False, sql: analytics.Dialect | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause over trace_summary (alias t) for a search; values are bound. The detail
    filter is the caller's when `sql` is another engine's (see clickhouse/traces_sql.py).

    With `indexed`, the detail filter reads detail_index instead of every event.
    """
    sql = sql or analytics.dialect(None)
    conds: list[str] = ["true"]
    params: list[Any] = []
    text = s.text.strip()
    if text:
        conds.append("t.trace_id = ?" if s.exact else sql.starts_with.format("t.trace_id"))
        params.append(text)
    scope, scope_params = analytics.dataset_conds(s.datasets, s.include_test, "t.dataset", sql)
    conds += scope
    params += scope_params
    if s.event_types:
        conds.append(sql.has_any.format("t.event_types"))
        params.append(list(s.event_types))
    if s.start is not None:
        conds.append("t.last_time >= ?")
        params.append(s.start)
    if s.end is not None:
        conds.append("t.first_time < ?")
        params.append(s.end)
    if s.detail_key:
        source = (
            "detail_index e WHERE e.key = ? AND e.value = ?"
            if indexed
            else "events e WHERE e.event_details[?] = ?"  # a read-only store: read the events
        )
        conds.append(
            f"EXISTS (SELECT 1 FROM {source} AND e.dataset = t.dataset AND e.trace_id = t.trace_id)"
        )
        params += [s.detail_key, s.detail_value]
    return " AND ".join(conds), params


def search(
    store: Store | Any, s: TraceSearch, limit: int = PAGE_SIZE, offset: int = 0
) -> tuple[pd.DataFrame, int]:
    """One page of matching traces, ordered in DuckDB, and how many match in all."""
    if s.sort not in SORTS:
        raise ValueError(f"unknown sort {s.sort!r}; use one of {', '.join(SORTS)}")
    if store.engine == "clickhouse":
        from eventlens.clickhouse import traces_sql

        return traces_sql.search(store, s, limit, offset)
    indexed = bool(s.detail_key) and store.ensure_detail_index(str(s.detail_key))
    where, params = _where(s, indexed)
    order = f"{SORTS[s.sort]} {'DESC' if s.descending else 'ASC'} NULLS LAST, trace_id, dataset"
    # Ordinarily two queries: a top-N page, then a count; a window count would stop DuckDB's
    # top-N and sort every match. A detail filter without its index reads the events, so
    # there one query with the window reads them once rather than twice.
    windowed = bool(s.detail_key) and not indexed
    # The page is found without the type lists, then they are joined to its 50 rows: a deep
    # page keeps thousands of candidates while sorting, and carrying each one's list costs.
    frame = store.df(
        f"""
        SELECT p.* EXCLUDE (rid), l.event_types
        FROM (
            SELECT rowid AS rid, trace_id, dataset, events, first_time, last_time,
                   date_diff('millisecond', first_time, last_time) AS duration_ms
                   {", count(*) OVER () AS total" if windowed else ""}
            FROM trace_summary t WHERE {where}
            ORDER BY {order} LIMIT ? OFFSET ?
        ) p
        JOIN (SELECT rowid AS rid, event_types FROM trace_summary) l USING (rid)
        ORDER BY {order}
        """,
        [*params, int(limit), int(offset)],
    )
    frame = frame[
        ["trace_id", "dataset", "events", "first_time", "last_time", "duration_ms", "event_types"]
        + (["total"] if windowed else [])
    ]
    if windowed and not frame.empty:
        return frame.drop(columns=["total"]), int(frame["total"].iloc[0])
    total = store.scalar(f"SELECT count(*) FROM trace_summary t WHERE {where}", params)
    return frame.drop(columns=["total"], errors="ignore"), int(total or 0)


@dataclass(frozen=True)
class Copy:
    """One dataset's events of a trace id: each dataset's copy is a trace of its own."""

    dataset: str
    events: int
    test: bool


def copies(store: Store | Any, trace_id: str) -> list[Copy]:
    """The datasets that hold this trace id: analysis data first, then test data, by name."""
    if store.engine == "clickhouse":
        from eventlens.clickhouse.traces_sql import COPIES

        rows = store.rows(COPIES, [trace_id])
        return [Copy(str(d), int(n), bool(test)) for d, n, test in rows]
    rows = store.rows(
        """
        SELECT t.dataset, t.events, coalesce(d.test, false) AS test
        FROM trace_summary t LEFT JOIN datasets d ON d.name = t.dataset
        WHERE t.trace_id = ? ORDER BY test, t.dataset
        """,
        [trace_id],
    )
    return [Copy(str(d), int(n), bool(test)) for d, n, test in rows]


def choose_copy(found: list[Copy], wanted: str | None) -> Copy | None:
    """The copy to open: the wanted dataset's if it holds the trace, else the first found."""
    return next((c for c in found if c.dataset == wanted), found[0] if found else None)


@dataclass(frozen=True)
class TraceMetadata:
    """A pulled trace's metadata as LangWatch holds it (trace_metadata; only pulled datasets
    have it): user, thread, customer, labels and when LangWatch last updated the trace."""

    user_id: str | None = None
    thread_id: str | None = None
    customer_id: str | None = None
    labels: tuple[str, ...] = ()
    updated_at: dt.datetime | None = None

    def fields(self) -> dict[str, str]:
        """The fields that are set, as text, in LangWatch's names."""
        found = {
            "user_id": self.user_id,
            "thread_id": self.thread_id,
            "customer_id": self.customer_id,
            "labels": ", ".join(self.labels) if self.labels else None,
        }
        return {k: v for k, v in found.items() if v}


def metadata(store: Store | Any, trace_id: str, dataset: str) -> TraceMetadata | None:
    """One dataset's metadata of a trace; None when it has none (a loaded, not pulled, trace)."""
    rows = store.rows(
        "SELECT user_id, thread_id, customer_id, labels, updated_at FROM trace_metadata"
        " WHERE trace_id = ? AND dataset = ? LIMIT 1",
        [trace_id, dataset],
    )
    if not rows:
        return None
    user, thread, customer, labels, updated = rows[0]
    return TraceMetadata(
        user_id=user,
        thread_id=thread,
        customer_id=customer,
        labels=tuple(str(label) for label in labels or ()),
        updated_at=updated,
    )


def events(store: Store | Any, trace_id: str, dataset: str | None = None) -> pd.DataFrame:
    """A trace's events in time order; ties and events without a time keep file order.

    `offset_ms` is the time since the trace's first event ("+N ms"); NaN without a timestamp.
    """
    ms = (
        "toUnixTimestamp64Milli(timestamp)"
        if store.engine == "clickhouse"
        else "epoch_ms(timestamp)"
    )
    frame = store.df(
        f"""
        SELECT timestamp, {ms} - min({ms}) OVER () AS offset_ms,
               event_type, metrics, event_details, event_id, dataset, source_file, source_line,
               {ms} AS timestamp_ms
        FROM events
        WHERE trace_id = ? {"" if dataset is None else "AND dataset = ?"}
        ORDER BY timestamp NULLS LAST, source_file, source_line, event_key
        """,
        [trace_id] if dataset is None else [trace_id, dataset],
    )
    # Whole milliseconds, computed by DuckDB (floats of seconds would give 1004.9999...).
    frame["offset_ms"] = frame["offset_ms"].astype("Float64").astype(float)
    for column in ("metrics", "event_details"):
        frame[column] = frame[column].map(lambda m: dict(m) if m is not None else {})
    return frame


def summarise(frame: pd.DataFrame) -> dict[str, Any]:
    """Events, first and last time, span, and events per type of one trace's events."""
    times = frame["timestamp"].dropna()
    return {
        "events": len(frame),
        "first": times.min() if len(times) else None,
        "last": times.max() if len(times) else None,
        "span_ms": float((times.max() - times.min()).total_seconds() * 1000) if len(times) else 0.0,
        "untimed": int(frame["timestamp"].isna().sum()),
        "types": frame["event_type"].value_counts().to_dict(),
        "datasets": sorted(frame["dataset"].unique().tolist()),
    }


def shares_keys(frame: pd.DataFrame) -> bool:
    """Whether every event has the same metric keys and the same detail keys."""
    metric_sets = {frozenset(m) for m in frame["metrics"]}
    detail_sets = {frozenset(d) for d in frame["event_details"]}
    return len(metric_sets) <= 1 and len(detail_sets) <= 1


def short(value: Any, limit: int = SHORT_TEXT) -> Any:
    """A long text cut to `limit` characters with an ellipsis; other values as they are."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def wide_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per event, a column per metric (metric.KEY) and per detail (detail.KEY)."""
    out = frame[["timestamp", "offset_ms", "event_type"]].copy()
    metric_keys = sorted({k for m in frame["metrics"] for k in m})
    detail_keys = sorted({k for d in frame["event_details"] for k in d})
    for key in metric_keys:
        out[f"metric.{key}"] = [m.get(key) for m in frame["metrics"]]
    for key in detail_keys:
        out[f"detail.{key}"] = [short(d.get(key)) for d in frame["event_details"]]
    return out


def shared_details(frame: pd.DataFrame) -> dict[str, str]:
    """The details with one value on every event that carries them, carried by at least half
    the events (and two): the trace's user, session, country. A table says them once instead
    of on every row."""
    seen: dict[str, set[Any]] = {}
    carried: dict[str, int] = {}
    for details in frame["event_details"]:
        for k, v in details.items():
            seen.setdefault(k, set()).add(v)
            carried[k] = carried.get(k, 0) + 1
    enough = max(2, -(-len(frame) // 2))
    return {
        k: next(iter(values))
        for k, values in sorted(seen.items())
        if len(values) == 1 and None not in values and carried[k] >= enough
    }


def _pairs(values: dict[str, Any], skip: dict[str, str], numbers: bool) -> str:
    """`key=value` pairs in key order, long values cut, the shared details left out."""
    return ", ".join(
        f"{k}={_number_text(v) if numbers else short(v if v is not None else 'null', SHORT_PAIR)}"
        for k, v in sorted(values.items())
        if k not in skip
    )


def compact_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per event with its metrics and its own details as `key=value` text: a mixed
    40-event trace is 40 rows, not one row per key. The details in shared_details() are left
    out (say them once); the selected event shows every value whole."""
    shared = shared_details(frame)
    out = frame[["timestamp", "offset_ms", "event_type"]].copy()
    out["metrics"] = [_pairs(m, {}, True) for m in frame["metrics"]]
    out["details"] = [_pairs(d, shared, False) for d in frame["event_details"]]
    return out


def _number_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.15g}" if isinstance(value, float) else str(value)


def body(event: Any, trace_id: str) -> dict[str, Any]:
    """One stored event as the track_event request body that would send it again."""
    out: dict[str, Any] = {
        "trace_id": trace_id,
        "event_type": event["event_type"],
        "metrics": {k: _json_number(v) for k, v in dict(event["metrics"]).items()},
        "event_details": dict(event["event_details"]),
    }
    if pd.notna(event.get("timestamp_ms")):
        out["timestamp"] = int(event["timestamp_ms"])  # from DuckDB: exact, any year
    event_id = event.get("event_id")
    if isinstance(event_id, str) and event_id:  # absent comes back as None or NaN
        out["event_id"] = event_id
    return out


def _json_number(value: Any) -> Any:
    """A metric as JSON has it: 17 stays 17, 17.5 stays 17.5."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def jsonl(frame: pd.DataFrame, trace_id: str) -> bytes:
    """A trace's events as JSON lines of track_event bodies, in time order."""
    lines = [json.dumps(body(row, trace_id), ensure_ascii=False) for _, row in frame.iterrows()]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def curl(
    event_body: dict[str, Any],
    endpoint: str = DEFAULT_ENDPOINT,
    *,
    path: str = "/api/track_event",
    auth: str = "x-auth-token",
    key: str | None = None,
) -> str:
    """A curl command that sends the body; the key is the shell variable unless one is given."""
    url = endpoint.rstrip("/") + path
    data = json.dumps(event_body, ensure_ascii=False)
    name = "Authorization: Bearer " if auth == "bearer" else "X-Auth-Token: "
    # The placeholder in double quotes so the shell fills it in; a given key quoted as data.
    header = f"-H {shlex.quote(name + key)}" if key else f'-H "{name}{KEY_PLACEHOLDER}"'
    return (
        f"curl -X POST {shlex.quote(url)} \\\n"
        f"  {header} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(data)}"
    )


# -- comparing two traces ----------------------------------------------------------------------


@dataclass
class Comparison:
    """Two traces side by side, event by event, with what differs."""

    table: pd.DataFrame  # step, a_offset_ms, a_type, b_offset_ms, b_type, same_type, metrics
    only_a: list[str]  # event types in A and not in B
    only_b: list[str]
    count_changes: dict[str, tuple[int, int]]  # type -> (count in A, count in B), if different
    same_order: bool  # the event types come in the same sequence

    @property
    def differs(self) -> bool:
        return bool(self.only_a or self.only_b or self.count_changes or not self.same_order)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> Comparison:
    """Pair the i-th event of each trace (both in time order) and note the differences."""
    rows = []
    for step in range(max(len(a), len(b))):
        ea = a.iloc[step] if step < len(a) else None
        eb = b.iloc[step] if step < len(b) else None
        same = ea is not None and eb is not None and ea["event_type"] == eb["event_type"]
        rows.append(
            {
                "step": step + 1,
                "a_offset_ms": None if ea is None else ea["offset_ms"],
                "a_type": None if ea is None else ea["event_type"],
                "b_offset_ms": None if eb is None else eb["offset_ms"],
                "b_type": None if eb is None else eb["event_type"],
                "same_type": same,
                "metrics": (
                    _metric_changes(ea["metrics"], eb["metrics"])
                    if same and ea is not None and eb is not None
                    else ""
                ),
            }
        )
    types_a, types_b = a["event_type"].value_counts(), b["event_type"].value_counts()
    counts = {
        t: (int(types_a.get(t, 0)), int(types_b.get(t, 0)))
        for t in sorted(set(types_a.index) | set(types_b.index))
        if types_a.get(t, 0) != types_b.get(t, 0)
    }
    return Comparison(
        table=pd.DataFrame(rows),
        only_a=sorted(set(types_a.index) - set(types_b.index)),
        only_b=sorted(set(types_b.index) - set(types_a.index)),
        count_changes=counts,
        same_order=a["event_type"].tolist() == b["event_type"].tolist(),
    )


def _metric_changes(ma: dict[str, float], mb: dict[str, float]) -> str:
    """How the metrics of two events of one type differ, e.g. 'latency_ms 120 → 340 (+183%)'."""
    parts = []
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        if va == vb:
            continue
        if va is None or vb is None:
            parts.append(f"{key} {'only in B' if va is None else 'only in A'}")
            continue
        change = f" ({(vb - va) / abs(va):+.0%})" if va else ""
        parts.append(f"{key} {_number_text(va)} → {_number_text(vb)}{change}")
    return "; ".join(parts)
