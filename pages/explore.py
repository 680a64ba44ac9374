"""Explore: metrics by event type over time, the traces behind a point, a shareable URL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from eventlens import analytics, charts, traces, view
from eventlens.analytics import DetailFilter, QueryError, SeriesQuery, Threshold
from eventlens.export import safe_csv
from eventlens.ui import cache
from eventlens.ui.errors import guarded
from eventlens.ui.format import md_escape
from eventlens.ui.scope import left_out_note, test_data_checkbox
from eventlens.ui.state import get_store, require_router
from eventlens.ui.tables import counts_config
from eventlens.words import counted, span

log = logging.getLogger("eventlens")
require_router()
store = get_store()
ss = st.session_state

st.title("Explore")
st.caption(
    "Metrics by event type over time. Click a point on the chart to list the traces behind it "
    "(drag to zoom; for a span of time, pick Box Select in the chart's toolbar and drag). The "
    "URL holds every control: copy it to share this view."
)

if store.event_count() == 0:
    st.info("The store holds no events yet. Load an export on the Data page.")
    st.stop()


@st.cache_resource(show_spinner=False)
def time_zone_names(path: str) -> list[str]:
    """DuckDB's IANA zone names (the same data the buckets use), UTC first."""
    names = analytics.time_zones(store)
    return ["UTC", *[n for n in names if n != "UTC"]]


# -- state: from the URL on arrival, then from the widgets ---------------------------------------


def editor_frame(rows: list[list[object]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def seed_widgets(v: view.ExploreView) -> None:
    """Put a view into the widgets' session state (on arrival, or after a URL was opened)."""
    q = v.query
    ss.x_agg, ss.x_metric, ss.x_split, ss.x_top = q.agg, q.metric, q.split, q.top
    ss.x_metric_wanted, ss.x_split_wanted = q.metric, q.split
    ss.x_bucket, ss.x_range, ss.x_tz, ss.x_chart = q.bucket, v.preset, q.tz, v.chart
    ss.x_ds, ss.x_test, ss.x_types = list(q.datasets), q.include_test, list(q.event_types)
    ss.x_prev, ss.x_cum, ss.x_roll, ss.x_board = q.previous, q.cumulative, q.rolling, v.board
    if q.start and q.end:
        first = pd.Timestamp(q.start).tz_convert(q.tz).date()
        last = (pd.Timestamp(q.end).tz_convert(q.tz) - pd.Timedelta(milliseconds=1)).date()
        ss.x_dates = (first, last)
    ss.x_where_base = editor_frame(
        [[f.key, f.op, f.value] for f in q.details], ["detail", "is", "value"]
    )
    ss.x_thr_base = editor_frame(
        [[t.key, t.op, t.value] for t in q.thresholds], ["metric", "is", "value"]
    )
    for key in ("x_where", "x_thr"):
        ss.pop(key, None)


if "x_agg" not in ss:
    # A fresh visit: the URL wins; coming back from another page, the last view returns.
    params = st.query_params.to_dict() or ss.get("explore_params", {})
    arrived, warnings = view.from_params(params)
    arrived, more = view.check_against_store(store, arrived)
    ss.explore_warnings = warnings + more
    seed_widgets(arrived)

for message in ss.get("explore_warnings", []):
    st.warning(md_escape(message), icon=":material/link_off:")


def filter_editor(
    caption: str, key: str, keys: list[str], ops: tuple[str, ...], value: object, default: str
) -> pd.DataFrame:
    """An editable table of (key, operator, value) filters, seeded from the view once."""
    st.caption(caption)
    base = ss[f"{key}_base"]
    name = base.columns[0]
    return st.data_editor(
        base,
        key=key,
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={
            name: st.column_config.SelectboxColumn(options=keys, required=True),
            "is": st.column_config.SelectboxColumn(
                options=list(ops), default=default, required=True
            ),
            "value": value,
        },
    )


# -- controls ----------------------------------------------------------------------------------

version = cache.version()  # cached results are reused until the store's data changes
datasets = store.dataset_names()
types_all = cache.event_types(version, tuple(ss.x_ds), bool(ss.x_test))

filtering = bool(ss.x_ds or ss.x_test or ss.x_types or len(ss.x_where_base) or len(ss.x_thr_base))
with st.expander("Filters", expanded=filtering):
    f1, f2 = st.columns(2)
    with f1:
        st.multiselect("Datasets", datasets, key="x_ds", placeholder="all but test data")
        test_data_checkbox("x_test", bool(ss.x_ds))
    ss.x_types = [t for t in ss.x_types if t in types_all]
    f2.multiselect("Event types", types_all, key="x_types", placeholder="all event types")
    scope = SeriesQuery(
        datasets=tuple(ss.x_ds), include_test=bool(ss.x_test), event_types=tuple(ss.x_types)
    )
    metric_keys = cache.metric_keys(version, scope)
    detail_keys = cache.detail_keys(version, scope)
    g1, g2 = st.columns(2)
    with g1:
        where = filter_editor(
            "Event detail filters (an event without the key counts as not equal)",
            "x_where",
            detail_keys,
            analytics.DETAIL_OPS,
            st.column_config.TextColumn(required=True),
            "=",
        )
    with g2:
        thresholds = filter_editor(
            "Metric thresholds (an event without the metric does not pass)",
            "x_thr",
            metric_keys,
            analytics.THRESHOLD_OPS,
            st.column_config.NumberColumn(required=True),
            ">",
        )

left_out_note("x_test", bool(ss.x_ds), "under Filters")

c1, c2, c3, c4 = st.columns([1.1, 1.3, 1.3, 1])
c1.selectbox(
    "Measure",
    analytics.AGGREGATIONS,
    key="x_agg",
    format_func=lambda a: {"count": "events (count)"}.get(a, analytics.AGGREGATION_LABELS[a]),
)
needs_metric = ss.x_agg in analytics.METRIC_AGGREGATIONS
set_aside: list[str] = []  # choices the current filters cannot show, said under the controls
if needs_metric:
    ss.x_metric, missing_metric = view.keep_choice(
        ss.x_metric_wanted, ss.x_metric, metric_keys, (metric_keys or [None])[0]
    )
    if ss.x_metric_wanted is None:  # the first metric offered counts as chosen
        ss.x_metric_wanted = ss.x_metric
    if missing_metric and ss.x_metric:
        set_aside.append(
            f"No {missing_metric} on these events, so the chart shows {ss.x_metric}; it goes "
            f"back to {missing_metric} when the filters include events that carry it."
        )
c2.selectbox(
    "of metric",
    metric_keys,
    key="x_metric",
    disabled=not needs_metric,
    placeholder="no metric needed" if not needs_metric else "no metrics on these events",
    on_change=lambda: ss.update(x_metric_wanted=ss.x_metric),
)
splits = [analytics.SPLIT_TYPE, analytics.SPLIT_NONE] + [
    analytics.DETAIL_PREFIX + k for k in detail_keys
]
ss.x_split, missing_split = view.keep_choice(
    ss.x_split_wanted, ss.x_split, splits, analytics.SPLIT_TYPE
)
if missing_split:
    set_aside.append(
        f"No event detail {missing_split.removeprefix(analytics.DETAIL_PREFIX)} on these"
        " events, so the chart is split by event type; the split comes back when the filters"
        " include events that carry it."
    )
c3.selectbox(
    "Split by",
    splits,
    key="x_split",
    format_func=lambda s: {"event_type": "event type", "none": "nothing (one series)"}.get(
        s, s.replace(analytics.DETAIL_PREFIX, "detail: ")
    ),
    on_change=lambda: ss.update(x_split_wanted=ss.x_split),
)
c4.number_input(
    "Top values",
    min_value=1,
    max_value=view.MAX_TOP,
    key="x_top",
    disabled=not ss.x_split.startswith(analytics.DETAIL_PREFIX),
    help="With a detail split: the values kept; the rest is 'other'.",
)

split_key = ss.x_split.removeprefix(analytics.DETAIL_PREFIX)
auto_board = split_key if split_key in detail_keys else (detail_keys or [None])[0]

d1, d2, d3, d4 = st.columns([1.1, 1.3, 1.3, 1])
d1.selectbox(
    "Time range", list(view.PRESET_LABELS), key="x_range", format_func=view.PRESET_LABELS.get
)
d2.selectbox("Bucket", analytics.BUCKETS, key="x_bucket", format_func=analytics.BUCKET_LABELS.get)
d3.selectbox("Time zone", time_zone_names(store.path), key="x_tz")
d4.selectbox("Chart", view.CHARTS, key="x_chart", format_func=str.capitalize)

if ss.x_range == "custom":
    first, last = analytics.time_bounds(store, scope)
    zone = ss.x_tz
    default = (
        pd.Timestamp(first).tz_convert(zone).date(),
        pd.Timestamp(last).tz_convert(zone).date(),
    )
    chosen_dates = ss.get("x_dates", default)
    if "x_dates" not in ss:
        ss.x_dates = default
    # Bounds wide enough for the data and for any date a link brings.
    days = [*default, *(d for d in chosen_dates if isinstance(d, dt.date))]
    st.date_input(
        f"Dates (whole days in {zone})",
        key="x_dates",
        min_value=min([dt.date(1900, 1, 1), *days]),
        max_value=max([dt.date(2100, 12, 31), *days]),
    )

e1, e2, e3 = st.columns([1.1, 1.3, 2.3])
e1.checkbox(
    "Previous period",
    key="x_prev",
    help="Also draw the equally long period just before the range, dashed, and compare.",
)
cumulative_ok = ss.x_agg in analytics.CUMULATIVE_AGGREGATIONS
if not cumulative_ok:
    ss.x_cum = False
e2.checkbox(
    "Cumulative",
    key="x_cum",
    disabled=not cumulative_ok,
    help="Running total (count, traces, sum) or running avg / min / max from the range start.",
)
e3.number_input(
    "Rolling mean over N buckets (0: off)", min_value=0, max_value=view.MAX_ROLLING, key="x_roll"
)


for note in set_aside:
    st.info(md_escape(note), icon=":material/swap_horiz:")


def custom_range() -> tuple[dt.datetime | None, dt.datetime | None]:
    """The chosen whole days, as instants in the chosen zone; None when not yet complete."""
    dates = ss.get("x_dates")
    if ss.x_range != "custom" or not isinstance(dates, (tuple, list)) or len(dates) != 2:
        return None, None
    start = analytics.local_to_instant(store, dt.datetime.combine(dates[0], dt.time()), ss.x_tz)
    end_day = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time())
    return start, analytics.local_to_instant(store, end_day, ss.x_tz)


def rows_of(frame: pd.DataFrame) -> list[list[object]]:
    return [list(r) for r in frame.itertuples(index=False) if all(pd.notna(x) for x in r)]


start, end = custom_range()
preset = ss.x_range if ss.x_range != "custom" or start else "all"
current = view.ExploreView(
    query=SeriesQuery(
        agg=ss.x_agg,
        metric=ss.x_metric if needs_metric else None,
        bucket=ss.x_bucket,
        tz=ss.x_tz,
        split=ss.x_split,
        top=int(ss.x_top),
        datasets=tuple(ss.x_ds),
        include_test=bool(ss.x_test),
        event_types=tuple(ss.x_types),
        start=start,
        end=end,
        details=tuple(DetailFilter(str(k), str(o), str(v)) for k, o, v in rows_of(where)),
        thresholds=tuple(Threshold(str(k), str(o), float(v)) for k, o, v in rows_of(thresholds)),
        previous=bool(ss.x_prev),
        cumulative=bool(ss.x_cum),
        rolling=int(ss.x_roll),
    ),
    preset=preset,
    chart=ss.x_chart,
    board=None if ss.get("x_board") in (None, auto_board) else ss.x_board,
)
params = view.to_params(current)
ss.explore_params = params
if st.query_params.to_dict() != params:
    st.query_params.from_dict(params)

if needs_metric and not current.query.metric:
    st.info("These events carry no metrics; choose events (count) or distinct traces.")
    st.stop()

# -- the series --------------------------------------------------------------------------------

with guarded("the chart", stop=True):
    query = view.resolve_preset(store, current)
    try:
        # Fix the range once: series, headline, leaderboard and traces all use the same one.
        start, end = cache.resolve_range(version, query)
        if start is not None and end is not None:
            query = dataclasses.replace(query, start=start, end=end)
        result = cache.series(version, query)
        numbers = cache.headline(version, query)
    except QueryError as exc:
        st.warning(md_escape(exc))
        st.stop()

    label = charts.measure_label(query.agg, query.metric)
    if result.empty:
        st.info("No events match these filters and this time range.")
        st.stop()

    now, before = numbers["current"], numbers.get("previous", {})
    comparable = numbers.get("comparable", False)
    compared = view.comparison_help(numbers, result.tz)

    def delta(name: str) -> str | None:
        change = analytics.change(now[name], before.get(name)) if comparable else None
        return None if change is None else f"{change:+.1%}"

    h1, h2, h3 = st.columns(3)
    h1.metric("Events", f"{now['events']:,}", delta=delta("events"), help=compared)
    h2.metric("Traces", f"{now['traces']:,}", delta=delta("traces"), help=compared)
    if query.uses_metric:
        value = now["value"]
        h3.metric(
            label,
            "no data" if value is None else f"{value:,.4g}",
            delta=delta("value"),
            help="Over the whole range. " + compared,
        )
    else:
        h3.metric("Time range", span((result.end - result.start).total_seconds()))
    if headline_notes := view.headline_notes(numbers, query, current.preset):
        st.caption(" ".join(md_escape(n) for n in headline_notes))

    figure = cache.series_figure(version, query, current.chart)
    picked = st.plotly_chart(
        figure,
        key="x_chart_pick",
        on_select="rerun",
        selection_mode=("points", "box"),
        width="stretch",
        config={"displaylogo": False},
    )
    notes = [f"Buckets: {analytics.BUCKET_LABELS[result.bucket]} in {result.tz}."]
    if result.frame["incomplete"].any():
        notes.append("Dotted or hatched: a bucket the time range only partly covers.")
    if result.without_timestamp:
        notes.append(
            f"{result.without_timestamp:,} matching events have no timestamp and are not drawn."
        )
    notes += result.notes
    st.caption(" ".join(md_escape(n) for n in notes))

    export = result.frame.assign(
        bucket=result.frame["bucket"].map(lambda t: t.isoformat()),
        bucket_end=result.frame["bucket_end"].map(lambda t: t.isoformat()),
    )
    parquet = io.BytesIO()
    result.frame.to_parquet(parquet, index=False)
    b1, b2, b3 = st.columns([1, 1, 3])
    b1.download_button(
        "Download CSV", safe_csv(export), file_name="eventlens-series.csv", mime="text/csv"
    )
    b2.download_button(
        "Download Parquet",
        parquet.getvalue(),
        file_name="eventlens-series.parquet",
        mime="application/vnd.apache.parquet",
    )
    with b3.popover("Link to this view"):
        st.caption("The page's URL reproduces this view. Its query part:")
        st.code("?" + urlencode(params) if params else "(the default view: no parameters)")

    # -- from the chart to traces ------------------------------------------------------------------

with guarded("the traces behind the selection"):
    selection = picked.selection if picked else None
    chosen = charts.selection_from_points(selection.points) if selection else None
    st.subheader("Traces behind the selection")
    if chosen is None:
        st.caption(
            "Click a point on the chart to list the traces behind it (or pick Box Select in "
            "the chart's toolbar and drag across a span of time)."
        )
    else:
        # A partly covered bucket reaches outside the range; the traces stay inside it.
        chosen = dataclasses.replace(
            chosen, start=max(chosen.start, result.start), end=min(chosen.end, result.end)
        )
        behind = analytics.traces_for(store, query, chosen.start, chosen.end, list(chosen.series))
        shown = [pd.Timestamp(t).tz_convert(result.tz) for t in (chosen.start, chosen.end)]
        when = f"{shown[0]:%Y-%m-%d %H:%M} to {shown[1]:%Y-%m-%d %H:%M} ({result.tz})"
        st.caption(
            f"{counted(len(behind), 'trace')} with events of"
            f" {md_escape(', '.join(chosen.series))} "
            f"from {md_escape(when)}" + (" (the first 1,000)" if len(behind) == 1_000 else "")
        )
        behind["first_time"] = behind["first_time"].dt.tz_convert(result.tz)
        behind["last_time"] = behind["last_time"].dt.tz_convert(result.tz)
        behind["series"] = behind["series"].map(", ".join)
        if query.agg in ("count", "traces"):
            behind = behind.drop(columns=["value"])  # the same as its event count
        listed = behind.rename(
            columns={
                "events": "matching events",
                "value": label,
                "first_time": "first event",
                "last_time": "last event",
            }
        )
        picked_trace = st.dataframe(
            listed,
            key=f"x_traces_{hash((chosen.start, chosen.end, chosen.series))}",
            on_select="rerun",
            selection_mode="single-row",
            hide_index=True,
            width="stretch",
            column_config=counts_config(listed),
        )
        rows = picked_trace.selection.rows if picked_trace else []
        if rows:
            row = behind.iloc[rows[0]]
            trace_id, dataset = row["trace_id"], row["dataset"]
            st.markdown(
                f"**Events of trace {md_escape(trace_id)}** in {md_escape(dataset)}"
                " (all of its events there)"
            )
            st.page_link(
                "pages/traces.py",
                label="Open it on the Traces page (timeline, full values, compare)",
                icon=":material/timeline:",
                # The Traces page opens it as seen here: this dataset's copy, this time zone.
                query_params={"trace": trace_id, "trace_ds": dataset, "tz": result.tz},
            )
            events = traces.events(store, trace_id, dataset)
            local = events.assign(timestamp=events["timestamp"].dt.tz_convert(result.tz))
            shared = traces.shared_details(events)
            if shared:
                st.caption(
                    "The same on every event that has them: "
                    + ", ".join(f"{md_escape(k)}={md_escape(v)}" for k, v in shared.items())
                )
            st.dataframe(
                traces.compact_table(local).rename(columns={"offset_ms": "+ms"}),
                hide_index=True,
                width="stretch",
                column_config={"+ms": st.column_config.NumberColumn(format="%.0f")},
            )
        else:
            st.caption("Choose a trace in the table to see its events.")

# -- leaderboard -------------------------------------------------------------------------------

with guarded("the top detail values"):
    st.subheader("Top detail values")
    if not detail_keys:
        st.caption("These events carry no event details.")
    else:
        if ss.get("x_board") not in detail_keys:
            ss.x_board = auto_board
        board_key = st.selectbox("Detail", detail_keys, key="x_board")
        board = cache.leaderboard(version, query, board_key)
        board["share"] = board["share"] * 100
        board = board.rename(columns={"metric": label})
        st.dataframe(
            board,
            hide_index=True,
            width="stretch",
            column_config=counts_config(
                board,
                share=st.column_config.ProgressColumn(
                    "share of events", format="%.1f%%", min_value=0, max_value=100
                ),
            ),
        )
        # The URL names the leaderboard's key only when it is not the one chosen automatically.
        chosen_board = None if board_key == auto_board else board_key
        if chosen_board != current.board:
            params = view.to_params(dataclasses.replace(current, board=chosen_board))
            ss.explore_params = params
            st.query_params.from_dict(params)
