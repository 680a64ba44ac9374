"""The Explore view as URL query parameters: plain JSON-safe strings in, a checked view out.

Every control of the Explore page lives in the URL, so a copied link reproduces the view. A
parameter that is malformed or names something the store does not have falls back to its
default, with a warning that says which parameter and why; nothing here raises.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from eventlens import analytics
from eventlens.analytics import DetailFilter, SeriesQuery, Threshold
from eventlens.store import Store
from eventlens.traces import SORTS, TraceSearch
from eventlens.words import counted

PRESETS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}
PRESET_LABELS = {
    "24h": "last 24 hours",
    "7d": "last 7 days",
    "30d": "last 30 days",
    "all": "all",
    "custom": "custom",
}
CHARTS = ("line", "bar", "stacked", "area")
MAX_TOP = 50
MAX_ROLLING = 100


@dataclass(frozen=True)
class ExploreView:
    """The Explore page's state: the series query plus how it is shown."""

    query: SeriesQuery = field(default_factory=SeriesQuery)
    preset: str = "all"  # 24h | 7d | 30d | all | custom (query.start / query.end)
    chart: str = "line"
    board: str | None = None  # the detail key of the leaderboard


def to_params(view: ExploreView) -> dict[str, str]:
    """The view as query parameters; defaults are left out so links stay short."""
    q, default = view.query, SeriesQuery()
    out: dict[str, str] = {}

    def put(name: str, value: Any, default_value: Any) -> None:
        if value != default_value:
            out[name] = value if isinstance(value, str) else json.dumps(value)

    put("agg", q.agg, default.agg)
    put("metric", q.metric or "", "")
    put("bucket", q.bucket, default.bucket)
    put("tz", q.tz, default.tz)
    put("by", q.split, default.split)
    put("top", q.top, default.top)
    put("ds", list(q.datasets), [])
    put("test", int(q.include_test), 0)
    put("types", list(q.event_types), [])
    put("range", view.preset, "all")
    if view.preset == "custom":
        put("from", q.start.isoformat() if q.start else "", "")
        put("to", q.end.isoformat() if q.end else "", "")
    put("where", [[f.key, f.op, f.value] for f in q.details], [])
    put("thr", [[t.key, t.op, t.value] for t in q.thresholds], [])
    put("prev", int(q.previous), 0)
    put("cum", int(q.cumulative), 0)
    put("roll", q.rolling, 0)
    put("chart", view.chart, "line")
    put("board", view.board or "", "")
    return out


class ParamReader:
    """Reads query parameters one by one; a bad one falls back to its default with a warning."""

    def __init__(self, params: Mapping[str, Any]):
        self.params = params
        self.warnings: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.params.get(name)
        if isinstance(value, list):  # a parameter given twice: the last one counts
            value = value[-1] if value else None
        return None if value is None else str(value)

    def warn(self, name: str, value: str, why: str, fallback: str) -> None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        self.warnings.append(f"The link's {name}={shown!r} was ignored ({why}); using {fallback}.")

    def choice(self, name: str, options: tuple[str, ...] | list[str], fallback: str) -> str:
        value = self.raw(name)
        if value is None or value in options:
            return value or fallback
        self.warn(name, value, f"not one of {', '.join(options)}", fallback)
        return fallback

    def integer(self, name: str, low: int, high: int, fallback: int) -> int:
        value = self.raw(name)
        if value is None:
            return fallback
        try:
            number = int(value)
        except ValueError:
            self.warn(name, value, "not a whole number", str(fallback))
            return fallback
        if not low <= number <= high:
            self.warn(name, value, f"not between {low} and {high}", str(fallback))
            return fallback
        return number

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        if value is None or value in ("0", "1", "true", "false"):
            return value in ("1", "true")
        self.warn(name, value, "use 1 or 0", "off")
        return False

    def json_list(self, name: str) -> list[Any]:
        value = self.raw(name)
        if value is None:
            return []
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: hand-made deep nesting
            parsed = None
        if not isinstance(parsed, list):
            self.warn(name, value, "not a JSON list", "none")
            return []
        return parsed

    def strings(self, name: str) -> tuple[str, ...]:
        items = self.json_list(name)
        if all(isinstance(i, str) for i in items):
            return tuple(dict.fromkeys(items))
        self.warn(name, self.raw(name) or "", "a list of names was expected", "none")
        return ()

    def when(self, name: str) -> dt.datetime | None:
        value = self.raw(name)
        if not value:
            return None
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            self.warn(name, value, "not an ISO 8601 date-time", "no bound")
            return None
        if parsed.tzinfo is None:
            self.warn(name, value, "it needs a UTC offset such as +00:00", "no bound")
            return None
        return parsed


def from_params(params: Mapping[str, Any]) -> tuple[ExploreView, list[str]]:
    """A view from query parameters, and a warning for each one that was not usable."""
    read = ParamReader(params)
    warnings = read.warnings
    default = SeriesQuery()
    raw, warn, choice, integer = read.raw, read.warn, read.choice, read.integer
    flag, json_list, strings, when = read.flag, read.json_list, read.strings, read.when

    details: list[DetailFilter] = []
    for item in json_list("where"):
        if (
            isinstance(item, list)
            and len(item) == 3
            and all(isinstance(x, str) for x in item)
            and item[1] in analytics.DETAIL_OPS
        ):
            details.append(DetailFilter(*item))
        else:
            warn("where", json.dumps(item), 'each filter is ["key", "=" or "!=", "value"]', "none")
    thresholds: list[Threshold] = []
    for item in json_list("thr"):
        if (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and item[1] in analytics.THRESHOLD_OPS
            and _finite_number(item[2])
        ):
            thresholds.append(Threshold(item[0], item[1], float(item[2])))
        else:
            warn("thr", json.dumps(item), 'each filter is ["key", "<", 1.5]', "none")

    agg = choice("agg", analytics.AGGREGATIONS, default.agg)
    metric = raw("metric") or None
    if agg in analytics.METRIC_AGGREGATIONS and not metric:
        warn("agg", agg, "it needs a metric", "count")
        agg = "count"
    split = raw("by") or default.split
    if split not in (analytics.SPLIT_NONE, analytics.SPLIT_TYPE) and not (
        split.startswith(analytics.DETAIL_PREFIX) and len(split) > len(analytics.DETAIL_PREFIX)
    ):
        warn("by", split, "use event_type, none or detail:KEY", "event_type")
        split = default.split
    preset = choice("range", tuple(PRESET_LABELS), "all")
    start, end = when("from"), when("to")
    if preset == "custom" and start and end and start >= end:
        warn("from", raw("from") or "", "it is not before 'to'", "all")
        preset, start, end = "all", None, None
    if preset == "custom" and not (start and end):
        warnings.append("The link's custom range needs both from and to; showing all.")
        preset = "all"
    if preset != "custom":
        start = end = None
    cumulative = flag("cum")
    if cumulative and agg not in analytics.CUMULATIVE_AGGREGATIONS:
        warn("cum", "1", f"cumulative does not apply to {agg}", "off")
        cumulative = False
    query = SeriesQuery(
        agg=agg,
        metric=metric if agg in analytics.METRIC_AGGREGATIONS else None,
        bucket=choice("bucket", analytics.BUCKETS, default.bucket),
        tz=raw("tz") or default.tz,
        split=split,
        top=integer("top", 1, MAX_TOP, default.top),
        datasets=strings("ds"),
        include_test=flag("test"),
        event_types=strings("types"),
        start=start,
        end=end,
        details=tuple(details),
        thresholds=tuple(thresholds),
        previous=flag("prev"),
        cumulative=cumulative,
        rolling=integer("roll", 0, MAX_ROLLING, 0),
    )
    view = ExploreView(
        query=query,
        preset=preset,
        chart=choice("chart", CHARTS, "line"),
        board=raw("board") or None,
    )
    return view, warnings


def _finite_number(value: Any) -> bool:
    """A JSON number that fits a double (a 400-digit integer does not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _known_names(
    store: Store, datasets: tuple[str, ...], event_types: tuple[str, ...], include_test: bool
) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """The datasets and event types a link names that the store has, and a warning per gap."""
    warnings: list[str] = []
    known = set(store.dataset_names())
    missing = [d for d in datasets if d not in known]
    if missing:
        warnings.append(f"No dataset named {', '.join(map(repr, missing))}; it was left out.")
        datasets = tuple(d for d in datasets if d in known)
    known = set(analytics.event_types(store, datasets, include_test))
    missing = [t for t in event_types if t not in known]
    if missing:
        warnings.append(
            f"No events of type {', '.join(map(repr, missing))} here; the filter left them out."
        )
        event_types = tuple(t for t in event_types if t in known)
    return datasets, event_types, warnings


def check_against_store(store: Store, view: ExploreView) -> tuple[ExploreView, list[str]]:
    """The view with names the store does not know replaced by defaults, and why."""
    q = view.query
    datasets, event_types, warnings = _known_names(store, q.datasets, q.event_types, q.include_test)
    q = dataclasses.replace(q, datasets=datasets, event_types=event_types)
    if q.metric and q.metric not in analytics.metric_keys(store, q):
        warnings.append(
            f"No metric {q.metric!r} on the chosen event types; showing the event count."
        )
        q = dataclasses.replace(q, agg="count", metric=None, cumulative=False)
    if q.detail_key and q.detail_key not in analytics.detail_keys(store, q):
        warnings.append(f"No event detail {q.detail_key!r} to split by; splitting by event type.")
        q = dataclasses.replace(q, split=analytics.SPLIT_TYPE)
    if not analytics.is_time_zone(store, q.tz):
        warnings.append(f"Unknown time zone {q.tz!r}; using UTC.")
        q = dataclasses.replace(q, tz="UTC")
    return dataclasses.replace(view, query=q), warnings


def headline_notes(numbers: Mapping[str, Any], q: SeriesQuery, preset: str) -> list[str]:
    """What a reader of the headline needs to know to read its numbers right (see
    analytics.headline): why a range of "all" holds fewer events than the filters match, and
    how many events the measure is over."""
    notes = []
    events, matching = numbers["current"]["events"], numbers.get("matching", 0)
    if q.uses_metric and preset == "all" and matching > events:
        notes.append(
            f"The range runs from the first to the last event that carries {q.metric}, so "
            f"{counted(matching - events, 'event')} of the {matching:,} the filters match "
            f"{'lies' if matching - events == 1 else 'lie'} outside it."
        )
    if q.uses_metric and numbers.get("measured") is not None:
        notes.append(
            f"The {analytics.AGGREGATION_LABELS[q.agg]} is over the"
            f" {counted(numbers['measured'], 'event')} that carry {q.metric}."
        )
    return notes


def comparison_help(numbers: Mapping[str, Any], tz: str) -> str:
    """The headline tiles' help: what their change compares, or why there is none."""
    if numbers.get("comparable"):
        return "Change against the equally long period just before the range."
    first = numbers.get("data_start")
    if first is None:
        return "No change is shown: there is no data before this range."
    return (
        f"No change is shown: the data starts at {first.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M}"
        f" ({tz}), after the start of the equally long period before this range, so a"
        " comparison would not be like with like."
    )


def keep_choice(
    wanted: str | None, current: str | None, options: list[str], fallback: str | None
) -> tuple[str | None, str | None]:
    """The value a control shows when its options change (new filters), and the choice it had
    to set aside, if any. The person's choice (`wanted`) returns as soon as it is an option
    again, so narrowing the filters for a moment does not lose it."""
    if wanted in options:
        return wanted, None
    shown = current if current in options else fallback
    return shown, wanted if wanted is not None and wanted != shown else None


def resolve_preset(store: Store, view: ExploreView) -> SeriesQuery:
    """The query with its range set from the preset, relative to the newest matching event."""
    q = view.query
    if view.preset not in PRESETS:
        return q
    _, newest = analytics.time_bounds(store, dataclasses.replace(q, start=None, end=None))
    if newest is None:
        return q
    end = newest + dt.timedelta(milliseconds=1)
    return dataclasses.replace(q, start=end - PRESETS[view.preset], end=end)


# -- the Traces page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TracesView:
    """The Traces page's state: the search, the page of results, the open trace(s)."""

    search: TraceSearch = field(default_factory=TraceSearch)
    page: int = 1
    tz: str = "UTC"
    trace: str | None = None
    trace_dataset: str | None = None  # a trace id may be in several datasets: whose copy
    compare: str | None = None
    compare_dataset: str | None = None


MAX_PAGE = 1_000_000


def traces_to_params(v: TracesView) -> dict[str, str]:
    """The Traces view as query parameters; defaults are left out."""
    s, out = v.search, {}
    pairs = {
        "trace": v.trace or "",
        "trace_ds": v.trace_dataset if v.trace and v.trace_dataset else "",
        "compare": v.compare or "",
        "compare_ds": v.compare_dataset if v.compare and v.compare_dataset else "",
        "q": s.text,
        "exact": "1" if s.exact else "",
        "ds": json.dumps(list(s.datasets)) if s.datasets else "",
        "test": "1" if s.include_test else "",
        "types": json.dumps(list(s.event_types)) if s.event_types else "",
        "dk": s.detail_key or "",
        "dv": s.detail_value if s.detail_key and s.detail_value is not None else "",
        "from": s.start.isoformat() if s.start else "",
        "to": s.end.isoformat() if s.end else "",
        "sort": s.sort if s.sort != "last" else "",
        "asc": "1" if not s.descending else "",
        "page": str(v.page) if v.page != 1 else "",
        "tz": v.tz if v.tz != "UTC" else "",
    }
    out.update({k: value for k, value in pairs.items() if value})
    return out


def traces_from_params(params: Mapping[str, Any]) -> tuple[TracesView, list[str]]:
    """The Traces view from query parameters, and a warning for each unusable one."""
    read = ParamReader(params)
    start, end = read.when("from"), read.when("to")
    if start and end and start >= end:
        read.warn("from", read.raw("from") or "", "it is not before 'to'", "no bound")
        start = None
    search = TraceSearch(
        text=(read.raw("q") or "").strip(),
        exact=read.flag("exact"),
        datasets=read.strings("ds"),
        include_test=read.flag("test"),
        event_types=read.strings("types"),
        detail_key=read.raw("dk") or None,
        detail_value=read.raw("dv") if read.raw("dk") else None,
        start=start,
        end=end,
        sort=read.choice("sort", tuple(SORTS), "last"),
        descending=not read.flag("asc"),
    )
    view = TracesView(
        search=search,
        page=read.integer("page", 1, MAX_PAGE, 1),
        tz=read.raw("tz") or "UTC",
        trace=(read.raw("trace") or "").strip() or None,
        trace_dataset=read.raw("trace_ds") or None,
        compare=(read.raw("compare") or "").strip() or None,
        compare_dataset=read.raw("compare_ds") or None,
    )
    return view, read.warnings


def check_traces_against_store(store: Store, v: TracesView) -> tuple[TracesView, list[str]]:
    """The Traces view with names the store does not have left out, and a warning for each."""
    s = v.search
    datasets, event_types, warnings = _known_names(store, s.datasets, s.event_types, s.include_test)
    s = dataclasses.replace(s, datasets=datasets, event_types=event_types)
    scope = SeriesQuery(datasets=s.datasets, include_test=s.include_test)
    if s.detail_key and s.detail_key not in analytics.detail_keys(store, scope):
        warnings.append(f"No event detail {s.detail_key!r}; the detail filter was left out.")
        s = dataclasses.replace(s, detail_key=None, detail_value=None)
    if not analytics.is_time_zone(store, v.tz):
        warnings.append(f"Unknown time zone {v.tz!r}; using UTC.")
        v = dataclasses.replace(v, tz="UTC")
    return dataclasses.replace(v, search=s), warnings
