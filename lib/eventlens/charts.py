"""Plotly figures from the analytics DataFrames, and chart selections back into time ranges."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from eventlens.analytics import AGGREGATION_LABELS, SeriesResult

PALETTE = (
    "#4C78A8",
    "#F58518",
    "#54A24B",
    "#E45756",
    "#72B7B2",
    "#B279A2",
    "#EECA3B",
    "#9D755D",
    "#FF9DA6",
    "#BAB0AC",
)
INCOMPLETE_NOTE = "dotted / hatched: a bucket the range only partly covers"


def measure_label(agg: str, metric: str | None) -> str:
    """What the y axis shows, e.g. 'p95 of latency_ms' or 'events'."""
    if metric and agg not in ("count", "traces"):
        return f"{AGGREGATION_LABELS[agg]} of {metric}"
    return AGGREGATION_LABELS[agg]


def _local(times: pd.Series) -> np.ndarray:
    """Bucket starts as the wall-clock times of their zone (Plotly ignores UTC offsets)."""
    return times.dt.tz_localize(None).to_numpy(dtype="datetime64[ms]")


def _point_data(rows: pd.DataFrame) -> np.ndarray:
    """Per point, what a selection needs back: bucket start, bucket end (ISO) and series."""
    return np.column_stack(
        [
            rows["bucket"].map(pd.Timestamp.isoformat).to_numpy(dtype=str),
            rows["bucket_end"].map(pd.Timestamp.isoformat).to_numpy(dtype=str),
            rows["series"].astype(str).to_numpy(dtype=str),
        ]
    )


def _hover_text(rows: pd.DataFrame, name: str) -> np.ndarray:
    """Per point: the series (escaped: names are user data), its bucket span, completeness."""
    span = (
        rows["bucket"].dt.strftime("%Y-%m-%d %H:%M")
        + " to "
        + rows["bucket_end"].dt.strftime("%Y-%m-%d %H:%M")
    ).to_numpy(dtype=object)
    flag = np.where(rows["incomplete"].to_numpy(dtype=bool), " <i>(incomplete bucket)</i>", "")
    return f"<b>{html.escape(name)}</b><br>" + span + flag


def series_figure(
    result: SeriesResult, chart: str = "line", agg: str = "count", metric: str | None = None
) -> go.Figure:
    """The chart of a series result: one trace per series, the previous period dashed.

    Point data goes in as numpy arrays: Plotly validates Python lists element by element, which
    costs seconds for a few thousand points.
    """
    fig = go.Figure()
    frame = result.frame
    label = measure_label(agg, metric)
    names = list(dict.fromkeys(frame["series"]))
    for index, name in enumerate(names):
        rows = frame[frame["series"] == name]
        color = PALETTE[index % len(PALETTE)]
        x, y = _local(rows["bucket"]), rows["value"].to_numpy(dtype=float)
        incomplete = rows["incomplete"].to_numpy(dtype=bool)
        common: dict[str, Any] = {
            # Plotly reads a little HTML in names and axis labels: escape what users wrote.
            "name": html.escape(str(name)),
            "legendgroup": str(name),
            "customdata": _point_data(rows),
            "text": _hover_text(rows, str(name)),
            "hovertemplate": "%{text}<br>" + html.escape(label) + ": %{y:,.6g}<extra></extra>",
        }
        if chart in ("bar", "stacked"):
            fig.add_bar(
                x=x,
                y=y,
                textposition="none",  # `text` is for the hover; bars would print it inside
                marker={
                    "color": color,
                    "opacity": np.where(incomplete, 0.45, 1.0),
                    "pattern": {"shape": np.where(incomplete, "/", "")},
                },
                **common,
            )
            continue
        # Complete buckets solid; each incomplete one joined to its neighbour by a dotted line.
        near = incomplete.copy()
        near[1:] |= incomplete[:-1]
        near[:-1] |= incomplete[1:]
        # Areas overlap (not stacked) so an incomplete bucket can be drawn like a line's.
        area = {"fill": "tozeroy", "opacity": 0.85} if chart == "area" else {}
        fig.add_scatter(
            x=x,
            y=np.where(incomplete, np.nan, y),
            mode="lines+markers",  # markers: Plotly's box select picks markers, not lines
            line={"color": color, "width": 2 if len(x) <= 200 else 1.5},
            marker={"size": 5 if len(x) <= 200 else 3, "color": color},
            **area,
            **common,
        )
        if incomplete.any():
            fig.add_scatter(
                x=x,
                y=np.where(near, y, np.nan),
                mode="lines+markers",
                line={"color": color, "width": 2, "dash": "dot"},
                marker={"size": 7, "color": "white", "line": {"color": color, "width": 2}},
                showlegend=False,
                **common,
            )
    if result.previous is not None and not result.previous.empty:
        for index, name in enumerate(names):
            rows = result.previous[result.previous["series"] == name]
            if rows.empty:
                continue
            hover = f"<b>{html.escape(str(name))}</b> previous period<br>" + rows[
                "previous_bucket"
            ].dt.strftime("%Y-%m-%d %H:%M").to_numpy(dtype=object)
            fig.add_scatter(
                x=_local(rows["bucket"]),
                y=rows["value"].to_numpy(dtype=float),
                mode="lines",
                name=f"{html.escape(str(name))} (previous period)",
                legendgroup=str(name),
                line={"color": PALETTE[index % len(PALETTE)], "width": 1.5, "dash": "dash"},
                opacity=0.6,
                text=hover,
                hovertemplate="%{text}<br>" + html.escape(label) + ": %{y:,.6g}<extra></extra>",
            )
    fig.update_layout(
        barmode="stack" if chart == "stacked" else "group",
        xaxis_title=f"Time ({result.tz})",
        yaxis_title=label,
        legend_title_text="",
        hovermode="closest",
        # Zoom, not box select, on a drag: Streamlit turns a click into a selection only
        # outside the select and lasso drag modes (it sets clickmode "event" in those), and a
        # click on a point is how most people drill down. Box Select stays in the toolbar.
        dragmode="zoom",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        height=440,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    if frame["bucket"].nunique() == 1:
        # One bucket: Plotly would zoom into a millisecond around its point (drawn at the
        # bucket's start); show a bucket's width on either side instead.
        start, end = frame["bucket"].iloc[0], frame["bucket_end"].iloc[0]
        fig.update_xaxes(range=[_wall(start - (end - start)), _wall(end)])
        if chart in ("bar", "stacked"):
            fig.update_traces(
                width=(end - start).total_seconds() * 1000 * 0.8, selector={"type": "bar"}
            )
    return fig


def _wall(when: pd.Timestamp) -> str:
    """A time as the wall clock of its zone, as the x axis shows it (see _local)."""
    return when.tz_localize(None).isoformat()


@dataclass(frozen=True)
class ChartSelection:
    """What a click or box on the chart picked: a time range and the series in it."""

    start: dt.datetime
    end: dt.datetime
    series: tuple[str, ...]


def selection_from_points(points: Iterable[Mapping[str, Any]]) -> ChartSelection | None:
    """The time range and series of selected chart points (from their customdata)."""
    starts, ends, names = [], [], []
    for point in points:
        data = point.get("customdata")
        if not isinstance(data, (list, tuple)) or len(data) != 3:
            continue  # a previous-period point: not a bucket of the current range
        start, end, name = data
        try:
            starts.append(dt.datetime.fromisoformat(start))
            ends.append(dt.datetime.fromisoformat(end))
        except (ValueError, TypeError):
            continue
        names.append(str(name))
    if not starts:
        return None
    return ChartSelection(min(starts), max(ends), tuple(dict.fromkeys(names)))


def _type_colors(types: Iterable[str]) -> dict[str, str]:
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(sorted(set(types)))}


def trace_timeline(events: pd.DataFrame, tz: str) -> go.Figure:
    """One trace's events on a time axis, a row and a colour per event type; gaps show as space.

    Hover text escapes the event type (user data); events without a timestamp are left out.
    """
    timed = events.dropna(subset=["timestamp"])
    fig = go.Figure()
    colors = _type_colors(timed["event_type"])
    for name, rows in timed.groupby("event_type", sort=True):
        local = rows["timestamp"].dt.tz_convert(tz)
        text = (
            f"<b>{html.escape(str(name))}</b><br>"
            + local.dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3].to_numpy(dtype=object)
            + "<br>+"
            + rows["offset_ms"].map(lambda v: f"{v:,.0f}").to_numpy(dtype=object)
            + " ms"
        )
        fig.add_scatter(
            x=local.dt.tz_localize(None).to_numpy(dtype="datetime64[ms]"),
            y=np.full(len(rows), html.escape(str(name)), dtype=object),
            mode="markers",
            name=html.escape(str(name)),
            marker={"size": 11, "color": colors[str(name)], "symbol": "diamond"},
            text=text,
            hovertemplate="%{text}<extra></extra>",
        )
    if len(timed) > 1:  # a faint line through the events in order, so gaps read as long strokes
        ordered = timed.sort_values("timestamp")
        fig.add_scatter(
            x=ordered["timestamp"]
            .dt.tz_convert(tz)
            .dt.tz_localize(None)
            .to_numpy(dtype="datetime64[ms]"),
            y=ordered["event_type"].astype(str).map(html.escape).to_numpy(dtype=object),
            mode="lines",
            line={"color": "rgba(120,120,120,0.35)", "width": 1},
            hoverinfo="skip",
            showlegend=False,
        )
    fig.update_layout(
        xaxis_title=f"Time ({tz})",
        yaxis_title="",
        height=max(220, 60 + 34 * timed["event_type"].nunique()),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,
    )
    return fig


def compare_timeline(a: pd.DataFrame, b: pd.DataFrame, a_name: str, b_name: str) -> go.Figure:
    """Two traces on one '+ms from the trace's start' axis: A above, B below, colour by type."""
    fig = go.Figure()
    colors = _type_colors([*a["event_type"], *b["event_type"]])
    shown: set[str] = set()
    for label, frame in ((f"A: {html.escape(a_name)}", a), (f"B: {html.escape(b_name)}", b)):
        timed = frame.dropna(subset=["offset_ms"])
        for name, rows in timed.groupby("event_type", sort=True):
            fig.add_scatter(
                x=rows["offset_ms"].to_numpy(dtype=float),
                y=np.full(len(rows), label, dtype=object),
                mode="markers",
                name=html.escape(str(name)),
                legendgroup=str(name),
                showlegend=name not in shown,
                marker={"size": 11, "color": colors[str(name)], "symbol": "diamond"},
                text=np.full(len(rows), f"<b>{html.escape(str(name))}</b>", dtype=object),
                hovertemplate="%{text}<br>+%{x:,.0f} ms<extra></extra>",
            )
            shown.add(str(name))
    fig.update_layout(
        xaxis_title="+ms from the trace's first event",
        xaxis_tickformat=",.0f",
        height=240,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig
