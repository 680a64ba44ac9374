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
            "name": str(name),
            "legendgroup": str(name),
            "customdata": _point_data(rows),
            "text": _hover_text(rows, str(name)),
            "hovertemplate": "%{text}<br>" + html.escape(label) + ": %{y:,.6g}<extra></extra>",
        }
        if chart in ("bar", "stacked"):
            fig.add_bar(
                x=x,
                y=y,
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
                name=f"{name} (previous period)",
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
        dragmode="select",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        height=440,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


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
