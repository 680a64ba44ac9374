"""Plotly figures from series results, and chart selections back into time ranges."""

from __future__ import annotations

import datetime as dt
import html
import json

import numpy as np
import pandas as pd
import pytest
from ingest_helpers import store_holding

from eventlens import analytics
from eventlens.analytics import SeriesQuery
from eventlens.charts import ChartSelection, measure_label, selection_from_points, series_figure

EVIL = "<img src=x onerror=alert(1)>"
TZ = "Europe/Amsterdam"


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Types a and b twice an hour from 00:05 to 05:35 UTC; details name (EVIL or ok). Shared
    by the module's tests, which only read it."""
    bodies, i = [], 0
    for hour in range(6):
        for minute in (5, 35):
            for event_type in ("a", "b"):
                i += 1
                bodies.append(
                    {
                        "trace_id": f"t{i % 4}",
                        "event_id": f"e{i}",
                        "event_type": event_type,
                        "timestamp": int(at(f"2024-01-01T{hour:02d}:{minute:02d}Z").timestamp())
                        * 1000,
                        "metrics": {"v": float(i)},
                        "event_details": {"name": EVIL if i % 3 else "ok"},
                    }
                )
    with store_holding(tmp_path_factory.mktemp("tiny"), {"tiny": bodies}) as store:
        yield store


# 02:30 to 05:30 UTC in hour buckets: the first and last bucket are only partly covered, and
# the previous period (23:30 to 02:30) has events too.
PARTIAL = {"start": at("2024-01-01T02:30Z"), "end": at("2024-01-01T05:30Z")}
WHOLE = {"start": at("2024-01-01T02:00Z"), "end": at("2024-01-01T05:00Z")}


def result(store, **kw):
    q = SeriesQuery(**{"bucket": "1h", "tz": TZ, **kw})
    return analytics.series(store, q)


def current(fig):
    return [t for t in fig.data if "previous period" not in (t.name or "")]


def previous(fig):
    return [t for t in fig.data if "previous period" in (t.name or "")]


# -- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agg", "metric", "label"),
    [
        ("count", None, "events"),
        ("count", "v", "events"),
        ("traces", None, "distinct traces"),
        ("traces", "v", "distinct traces"),
        ("p95", "latency_ms", "p95 of latency_ms"),
        ("avg", "v", "average of v"),
        ("median", "v", "median of v"),
        ("sum", "cost_usd", "sum of cost_usd"),
    ],
)
def test_measure_label(agg, metric, label):
    assert measure_label(agg, metric) == label


# -- one figure per chart type -----------------------------------------------------------------


def test_the_tiny_result_has_partial_buckets(tiny):
    r = result(tiny, previous=True, **PARTIAL)
    assert sorted(set(r.frame["series"])) == ["a", "b"]
    assert r.frame["incomplete"].tolist() == [True, False, False, True] * 2
    assert r.previous is not None and not r.previous.empty


@pytest.mark.parametrize(
    ("chart", "traces", "kind"),
    [("line", 6, "scatter"), ("bar", 4, "bar"), ("stacked", 4, "bar"), ("area", 6, "scatter")],
)
def test_figure_traces_names_and_axes(tiny, chart, traces, kind):
    r = result(tiny, previous=True, agg="p95", metric="v", **PARTIAL)
    fig = series_figure(r, chart, "p95", "v")
    assert len(fig.data) == traces
    now = current(fig)
    assert {t.type for t in now} == {kind}
    assert list(dict.fromkeys(t.name for t in now)) == ["a", "b"]
    assert [t.name for t in previous(fig)] == ["a (previous period)", "b (previous period)"]
    assert TZ in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.title.text == "p95 of v"
    # Not "select" or "lasso": Streamlit makes a click a selection only in other drag modes.
    assert fig.layout.dragmode == "zoom"
    if kind == "bar":  # their hover text is not printed inside the bars
        assert {t.textposition for t in now} == {"none"}
    assert fig.layout.barmode == ("stack" if chart == "stacked" else "group")
    # Areas overlap rather than stack, so partial buckets can be drawn as for lines.
    assert all(getattr(t, "stackgroup", None) is None for t in now)
    if chart == "area":
        assert {t.fill for t in now if t.line.dash is None} == {"tozeroy"}
    # One legend entry per series and one per previous series.
    shown = [t.name for t in fig.data if t.showlegend is not False]
    assert shown == ["a", "b", "a (previous period)", "b (previous period)"]
    # x is the wall clock of the chosen zone: 02:30 UTC lies in the 03:00 bucket of Amsterdam.
    first = current(fig)[0]
    assert first.x[0] == np.datetime64("2024-01-01T03:00")
    fig.to_json()  # serialisable


def test_line_draws_partial_buckets_as_a_dotted_trace(tiny):
    r = result(tiny, **PARTIAL)
    fig = series_figure(r, "line")
    solid = [t for t in fig.data if t.line.dash is None]
    dotted = [t for t in fig.data if t.line.dash == "dot"]
    assert [t.name for t in solid] == ["a", "b"]
    assert [t.name for t in dotted] == ["a", "b"]
    assert all(t.showlegend is False for t in dotted)
    incomplete = np.array([True, False, False, True])
    for t in solid:
        y = np.asarray(t.y, dtype=float)
        assert np.isnan(y[incomplete]).all() and not np.isnan(y[~incomplete]).any()
    for t in dotted:
        y = np.asarray(t.y, dtype=float)
        # Each partial bucket joined to its complete neighbour.
        assert not np.isnan(y).any()
        assert t.customdata is not None


def test_line_without_partial_buckets_has_no_dotted_trace(tiny):
    r = result(tiny, **WHOLE)
    assert not r.frame["incomplete"].any()
    fig = series_figure(r, "line")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert all(t.line.dash is None for t in fig.data)
    assert not any(np.isnan(np.asarray(t.y, dtype=float)).any() for t in fig.data)


@pytest.mark.parametrize("chart", ["bar", "stacked"])
def test_bars_of_partial_buckets_are_hatched_and_faded(tiny, chart):
    r = result(tiny, **PARTIAL)
    fig = series_figure(r, chart)
    for t in fig.data:
        assert list(t.marker.pattern.shape) == ["/", "", "", "/"]
        assert list(t.marker.opacity) == [0.45, 1.0, 1.0, 0.45]
    fig = series_figure(result(tiny, **WHOLE), chart)
    for t in fig.data:
        assert set(t.marker.pattern.shape) == {""}
        assert set(t.marker.opacity) == {1.0}


def test_area_marks_partial_buckets(tiny):
    fig = series_figure(result(tiny, **PARTIAL), "area")
    extra = [t for t in fig.data if t.showlegend is False or t.line.dash == "dot"]
    per_point = [
        t
        for t in fig.data
        for prop in (t.marker.symbol, t.marker.size, t.marker.color, t.marker.opacity)
        if isinstance(prop, (tuple, list, np.ndarray)) and len(set(map(str, prop))) > 1
    ]
    assert extra or per_point


@pytest.mark.parametrize("chart", ["line", "bar", "stacked", "area"])
def test_previous_period_is_dashed_in_every_chart(tiny, chart):
    r = result(tiny, previous=True, **PARTIAL)
    fig = series_figure(r, chart)
    before = previous(fig)
    assert len(before) == 2
    for t in before:
        assert t.type == "scatter" and t.line.dash == "dash" and t.mode == "lines"
        assert "previous period" in t.text[0]
    # The previous series shares its colour and legend group with its current series.
    for name, t in zip(["a", "b"], before, strict=True):
        same = next(c for c in current(fig) if c.name == name)
        assert t.legendgroup == same.legendgroup == name
        color = same.marker.color if same.type == "bar" else same.line.color
        assert t.line.color == color


def test_no_previous_traces_without_previous(tiny):
    fig = series_figure(result(tiny, **PARTIAL), "line")
    assert previous(fig) == []


def test_hover_text_names_bucket_and_completeness(tiny):
    fig = series_figure(result(tiny, agg="avg", metric="v", **PARTIAL), "bar", "avg", "v")
    text = list(fig.data[0].text)
    assert text[0].startswith("<b>a</b><br>2024-01-01 03:00 to 2024-01-01 04:00")
    assert "incomplete" in text[0] and "incomplete" not in text[1]
    assert "average of v" in fig.data[0].hovertemplate


def test_empty_result_gives_an_empty_figure(tiny):
    r = result(tiny, event_types=("nope",))
    assert r.empty
    fig = series_figure(r, "line")
    assert len(fig.data) == 0
    fig.to_json()


# -- names are user data -----------------------------------------------------------------------


def walk(node, path=()):
    """(path, string) for every string in a decoded figure."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for value in node:
            yield from walk(value, path)
    elif isinstance(node, str):
        yield path, node


@pytest.mark.parametrize("chart", ["line", "bar", "stacked", "area"])
def test_hover_text_escapes_html_in_series_names(tiny, chart):
    r = result(tiny, split="detail:name", previous=True, **PARTIAL)
    assert EVIL in set(r.frame["series"])
    fig = series_figure(r, chart)
    raw = fig.to_json()
    assert EVIL not in raw
    assert "<img" not in raw
    decoded = json.loads(raw)
    escaped = html.escape(EVIL)
    hover = [(p, s) for p, s in walk(decoded["data"]) if p[-1] in ("text", "hovertemplate")]
    assert any(escaped in s for _, s in hover)
    assert not [s for _, s in hover if "<img" in s]
    # The raw name is kept only where Plotly shows it as plain text (legend), in the legend
    # group, and in the point data a selection reads back.
    assert {p[-1] for p, s in walk(decoded["data"]) if "<img" in s} <= {
        "name",
        "legendgroup",
        "customdata",
    }


def test_a_metric_name_with_html_is_escaped_in_the_hover_template(tiny):
    r = result(tiny, agg="max", metric="v", **PARTIAL)
    fig = series_figure(r, "line", "max", "<b onmouseover=x>v")
    for t in fig.data:
        assert "<b onmouseover" not in t.hovertemplate
        assert "&lt;b onmouseover=x&gt;v" in t.hovertemplate


def test_a_selection_of_escaped_hover_points_gives_the_raw_name(tiny):
    r = result(tiny, split="detail:name", **PARTIAL)
    fig = series_figure(r, "bar")
    trace = next(t for t in fig.data if t.legendgroup == EVIL)
    assert trace.name == html.escape(EVIL)  # Plotly reads tags in legend names
    chosen = selection_from_points([{"customdata": list(row)} for row in trace.customdata])
    assert chosen.series == (EVIL,)


# -- selections --------------------------------------------------------------------------------


def point(start: str, end: str, series: str, **extra) -> dict:
    return {"customdata": [start, end, series], **extra}


def test_selection_spans_the_selected_buckets_and_names_their_series():
    points = [
        point("2024-01-01T04:00:00+01:00", "2024-01-01T05:00:00+01:00", "b", x=1, y=2),
        point("2024-01-01T03:00:00+01:00", "2024-01-01T04:00:00+01:00", "a"),
        point("2024-01-01T05:00:00+01:00", "2024-01-01T06:00:00+01:00", "a"),
        {"x": "2024-01-01 03:00", "y": 5},  # a previous-period point: no customdata
        {"customdata": None},
        {"customdata": ["2024-01-01T00:00:00+00:00", "2024-01-01T09:00:00+00:00"]},
        {"customdata": "2024-01-01T00:00:00+00:00"},
        {"customdata": ["yesterday", "today", "c"]},
        {"customdata": [1, 2, "d"]},
    ]
    chosen = selection_from_points(points)
    assert chosen == ChartSelection(
        at("2024-01-01T02:00:00Z"), at("2024-01-01T05:00:00Z"), ("b", "a")
    )
    assert chosen.start.utcoffset() is not None


def test_selection_accepts_tuples_and_a_single_point():
    chosen = selection_from_points(
        [{"customdata": ("2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00", "x")}]
    )
    assert chosen.start == at("2024-03-31T00:00:00Z")
    assert chosen.end == at("2024-03-31T01:00:00Z")
    assert chosen.series == ("x",)


@pytest.mark.parametrize(
    "points",
    [[], [{"x": 1, "y": 2}], [{"customdata": []}], [{"customdata": ["a", "b", "c"]}]],
    ids=["none", "no-customdata", "empty-customdata", "not-iso"],
)
def test_no_usable_point_gives_no_selection(points):
    assert selection_from_points(points) is None


def test_selection_from_a_figures_own_points(tiny):
    r = result(tiny, previous=True, **PARTIAL)
    fig = series_figure(r, "line")
    points = [
        {"customdata": None if t.customdata is None else list(row), "x": x}
        for t in fig.data
        for row, x in zip(
            t.customdata if t.customdata is not None else [None] * len(t.x), t.x, strict=True
        )
    ]
    chosen = selection_from_points(points)
    frame = r.frame
    assert chosen.start == frame["bucket"].min()
    assert chosen.end == frame["bucket_end"].max()
    assert chosen.series == ("a", "b")
    # Previous-period points carry no customdata, so they never widen a selection.
    assert all(t.customdata is None for t in previous(fig))
    # The bucket of one point.
    bar = series_figure(r, "bar").data[1]
    one = selection_from_points([{"customdata": list(bar.customdata[2])}])
    assert one == ChartSelection(
        pd.Timestamp("2024-01-01T05:00:00+01:00").to_pydatetime(),
        pd.Timestamp("2024-01-01T06:00:00+01:00").to_pydatetime(),
        ("b",),
    )


@pytest.mark.parametrize("chart", ["line", "bar"])
def test_one_bucket_is_shown_a_bucket_wide_not_a_millisecond(tiny, chart):
    """One event's chart: the x axis spans the bucket around its point; bars are a bucket wide."""
    r = result(tiny, start=at("2024-01-01T00:05Z"), end=at("2024-01-01T00:06Z"), bucket="1m")
    assert r.frame["bucket"].nunique() == 1
    fig = series_figure(r, chart)
    low, high = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert high - low == pd.Timedelta(minutes=2)
    if chart == "bar":
        assert {t.width for t in current(fig)} == {60_000 * 0.8}
    many = series_figure(result(tiny), chart)
    assert many.layout.xaxis.range is None  # Plotly's own range for two or more buckets
