"""The Explore view as URL parameters: round trips, every malformed parameter, store checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

import pytest
from ingest_helpers import store_holding

from eventlens import analytics, view
from eventlens.analytics import DetailFilter, SeriesQuery, Threshold
from eventlens.view import (
    ExploreView,
    check_against_store,
    from_params,
    keep_choice,
    resolve_preset,
    to_params,
)

UTC = dt.UTC
DEFAULT = ExploreView()
PARAMS = (
    "agg metric bucket tz by top ds test types range from to where thr prev cum roll chart board"
).split()


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def ms(text: str) -> int:
    return int(at(text).timestamp() * 1000)


def named(warnings: list[str], name: str) -> bool:
    """Whether a warning says that the link's parameter `name` was ignored."""
    return any(f"link's {name}=" in w for w in warnings)


# -- round trips -------------------------------------------------------------------------------

FULL_CUSTOM = ExploreView(
    query=SeriesQuery(
        agg="p95",
        metric="latency_ms",
        bucket="15m",
        tz="Europe/Amsterdam",
        split="detail:country",
        top=7,
        datasets=("web", "mobile"),
        include_test=True,
        event_types=("llm_call", "search"),
        start=dt.datetime(2024, 3, 1, 6, 30, tzinfo=UTC),
        end=dt.datetime(2024, 3, 8, tzinfo=ZoneInfo("Europe/Amsterdam")),
        details=(DetailFilter("country", "=", "NL"), DetailFilter("plan", "!=", "free")),
        thresholds=(Threshold("latency_ms", ">", 250.5), Threshold("cost_usd", "<=", 2.0)),
        previous=True,
        cumulative=False,
        rolling=4,
    ),
    preset="custom",
    chart="stacked",
    board="model",
)
FULL_PRESET = ExploreView(
    query=SeriesQuery(
        agg="sum",
        metric="cost_usd",
        bucket="1mo",
        tz="Asia/Kathmandu",
        split="none",
        top=1,
        datasets=("only",),
        include_test=True,
        event_types=("search",),
        details=(DetailFilter("we&ird = key", "=", 'va"lue <b>&amp; 😀 ?x=1#y'),),
        thresholds=(Threshold("n", "!=", -0.001),),
        previous=False,
        cumulative=True,
        rolling=100,
    ),
    preset="7d",
    chart="area",
    board="plan",
)


@pytest.mark.parametrize("v", [FULL_CUSTOM, FULL_PRESET], ids=["custom-range", "preset"])
def test_a_non_default_view_round_trips(v):
    params = to_params(v)
    assert all(isinstance(k, str) and isinstance(x, str) for k, x in params.items())
    back, warnings = from_params(params)
    assert warnings == []
    assert back == v
    # Every field differs from its default, so every field has its parameter.
    expected = set(PARAMS) - ({"cum"} if v is FULL_CUSTOM else {"from", "to", "prev"})
    assert set(params) == expected


@pytest.mark.parametrize("v", [FULL_CUSTOM, FULL_PRESET], ids=["custom-range", "preset"])
def test_a_view_round_trips_through_a_real_query_string(v):
    """urlencode, then parse_qs (which gives lists, as a repeated parameter would)."""
    parsed = parse_qs(urlencode(to_params(v)), keep_blank_values=True)
    assert all(isinstance(x, list) for x in parsed.values())
    assert from_params(parsed) == (v, [])


def test_every_field_of_the_round_trip_separately():
    """One field at a time, so a field that does not round trip is named by the failure."""
    full = FULL_CUSTOM.query
    for f in dataclasses.fields(SeriesQuery):
        if f.name in ("start", "end", "cumulative", "metric", "agg"):
            continue  # start/end need the custom preset; agg and metric go together; cum: below
        q = dataclasses.replace(SeriesQuery(), **{f.name: getattr(full, f.name)})
        v = ExploreView(query=q)
        assert from_params(to_params(v)) == (v, []), f.name
    for agg in analytics.METRIC_AGGREGATIONS:
        v = ExploreView(query=SeriesQuery(agg=agg, metric="m"))
        assert from_params(to_params(v)) == (v, []), agg
    v = ExploreView(query=SeriesQuery(agg="traces"))
    assert from_params(to_params(v)) == (v, [])
    v = ExploreView(query=SeriesQuery(agg="max", metric="m", cumulative=True))
    assert from_params(to_params(v)) == (v, [])
    v = ExploreView(
        query=SeriesQuery(start=at("2024-01-01T00:00:00+05:45"), end=at("2024-01-01T00:00:01Z")),
        preset="custom",
    )
    assert from_params(to_params(v)) == (v, [])
    for kw in ({"preset": "24h"}, {"preset": "30d"}, {"chart": "bar"}, {"board": "x"}):
        v = ExploreView(**kw)
        assert from_params(to_params(v)) == (v, []), kw


def test_defaults_give_empty_params():
    assert to_params(ExploreView()) == {}
    assert to_params(ExploreView(query=SeriesQuery())) == {}
    assert from_params({}) == (ExploreView(), [])


def test_explicit_default_values_are_accepted_without_warnings():
    params = {
        "agg": "count",
        "bucket": "auto",
        "tz": "UTC",
        "by": "event_type",
        "top": "5",
        "ds": "[]",
        "types": "[]",
        "range": "all",
        "where": "[]",
        "thr": "[]",
        "prev": "0",
        "cum": "false",
        "roll": "0",
        "chart": "line",
    }
    assert from_params(params) == (ExploreView(), [])


def test_preset_drops_from_and_to():
    v, warnings = from_params(
        {"range": "7d", "from": "2024-01-01T00:00:00+00:00", "to": "2024-01-02T00:00:00+00:00"}
    )
    assert warnings == []
    assert v.preset == "7d" and v.query.start is None and v.query.end is None


# -- malformed parameters ----------------------------------------------------------------------

CUSTOM_TO = "2024-01-02T00:00:00+00:00"
CUSTOM_FROM = "2024-01-01T00:00:00+00:00"

# (parameters, the parameter a warning must name, the view that results)
MALFORMED = [
    ({"agg": "bogus"}, "agg", DEFAULT),
    ({"agg": ""}, "agg", DEFAULT),
    ({"agg": "COUNT"}, "agg", DEFAULT),
    ({"agg": "p95"}, "agg", DEFAULT),  # a metric aggregation without a metric
    ({"agg": "avg", "metric": ""}, "agg", DEFAULT),
    ({"bucket": "2h"}, "bucket", DEFAULT),
    ({"bucket": ""}, "bucket", DEFAULT),
    ({"by": "bogus"}, "by", DEFAULT),
    ({"by": "detail:"}, "by", DEFAULT),
    ({"by": "Event_Type"}, "by", DEFAULT),
    ({"top": "0"}, "top", DEFAULT),
    ({"top": "51"}, "top", DEFAULT),
    ({"top": "-3"}, "top", DEFAULT),
    ({"top": "five"}, "top", DEFAULT),
    ({"top": "2.5"}, "top", DEFAULT),
    ({"top": ""}, "top", DEFAULT),
    ({"top": "9" * 5000}, "top", DEFAULT),
    ({"ds": "web"}, "ds", DEFAULT),
    ({"ds": '"web"'}, "ds", DEFAULT),
    ({"ds": '{"a": 1}'}, "ds", DEFAULT),
    ({"ds": "[1, 2]"}, "ds", DEFAULT),
    ({"ds": '["web"'}, "ds", DEFAULT),
    ({"ds": "null"}, "ds", DEFAULT),
    ({"types": "llm_call"}, "types", DEFAULT),
    ({"types": '[["llm_call"]]'}, "types", DEFAULT),
    ({"where": '["country", "=", "NL"]'}, "where", DEFAULT),
    ({"where": '[["country", "~", "NL"]]'}, "where", DEFAULT),
    ({"where": '[["country", "="]]'}, "where", DEFAULT),
    ({"where": '[["country", "=", "NL", "x"]]'}, "where", DEFAULT),
    ({"where": '[["country", "=", 3]]'}, "where", DEFAULT),
    ({"where": '[[1, "=", "x"]]'}, "where", DEFAULT),
    ({"where": '[{"key": "country"}]'}, "where", DEFAULT),
    ({"where": "country=NL"}, "where", DEFAULT),
    ({"where": '{"country": "NL"}'}, "where", DEFAULT),
    ({"thr": '[["latency_ms", ">", "5"]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", "=>", 5]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", ">", true]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", ">", NaN]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", ">", Infinity]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", ">", -Infinity]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", ">", 1e999]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", ">", null]]'}, "thr", DEFAULT),
    ({"thr": '[[1, ">", 5]]'}, "thr", DEFAULT),
    ({"thr": '[["latency_ms", ">"]]'}, "thr", DEFAULT),
    ({"thr": "{}"}, "thr", DEFAULT),
    ({"thr": "latency_ms>5"}, "thr", DEFAULT),
    ({"range": "1y"}, "range", DEFAULT),
    ({"range": "ALL"}, "range", DEFAULT),
    ({"range": ""}, "range", DEFAULT),
    # A bad bound leaves the custom range incomplete: it shows everything.
    ({"range": "custom", "from": "yesterday", "to": CUSTOM_TO}, "from", DEFAULT),
    ({"range": "custom", "from": "2024-01-01T00:00:00", "to": CUSTOM_TO}, "from", DEFAULT),
    ({"range": "custom", "from": "2024-01-01", "to": CUSTOM_TO}, "from", DEFAULT),
    ({"range": "custom", "from": CUSTOM_FROM, "to": "2024-13-01T00:00:00+00:00"}, "to", DEFAULT),
    ({"range": "custom", "from": CUSTOM_FROM, "to": "2024-01-02T00:00:00"}, "to", DEFAULT),
    ({"range": "custom", "from": CUSTOM_FROM, "to": "1700000000"}, "to", DEFAULT),
    ({"range": "custom", "from": CUSTOM_TO, "to": CUSTOM_FROM}, "from", DEFAULT),
    ({"range": "custom", "from": CUSTOM_FROM, "to": CUSTOM_FROM}, "from", DEFAULT),
    (
        {"range": "custom", "from": "2024-01-01T01:00:00+01:00", "to": CUSTOM_FROM},
        "from",
        DEFAULT,
    ),  # the same instant, written in another offset
    ({"prev": "2"}, "prev", DEFAULT),
    ({"prev": "yes"}, "prev", DEFAULT),
    ({"prev": ""}, "prev", DEFAULT),
    ({"prev": "True"}, "prev", DEFAULT),
    ({"cum": "2"}, "cum", DEFAULT),
    (
        {"agg": "p95", "metric": "latency_ms", "cum": "1"},
        "cum",
        ExploreView(query=SeriesQuery(agg="p95", metric="latency_ms")),
    ),
    (
        {"agg": "median", "metric": "latency_ms", "cum": "true"},
        "cum",
        ExploreView(query=SeriesQuery(agg="median", metric="latency_ms")),
    ),
    ({"roll": "-1"}, "roll", DEFAULT),
    ({"roll": "101"}, "roll", DEFAULT),
    ({"roll": "x"}, "roll", DEFAULT),
    ({"roll": "1.5"}, "roll", DEFAULT),
    ({"chart": "pie"}, "chart", DEFAULT),
    ({"chart": "Line"}, "chart", DEFAULT),
    ({"chart": ""}, "chart", DEFAULT),
]


@pytest.mark.parametrize(
    ("params", "name", "expected"),
    MALFORMED,
    ids=[f"{n}={next(iter(p.values()))[:30]!r}-{i}" for i, (p, n, _) in enumerate(MALFORMED)],
)
def test_a_malformed_parameter_falls_back_with_a_warning(params, name, expected):
    v, warnings = from_params(params)
    assert v == expected
    assert named(warnings, name), warnings
    # Only the broken parameter is reported (an incomplete custom range also says so).
    assert all(name in w for w in warnings), warnings


@pytest.mark.parametrize(
    "params",
    [
        {"range": "custom"},
        {"range": "custom", "from": CUSTOM_FROM},
        {"range": "custom", "to": CUSTOM_TO},
        {"range": "custom", "from": "", "to": ""},
    ],
)
def test_a_custom_range_without_both_bounds_shows_everything(params):
    v, warnings = from_params(params)
    assert v == DEFAULT
    assert len(warnings) == 1
    assert "custom" in warnings[0] and "from" in warnings[0] and "to" in warnings[0]


def test_a_bad_filter_item_is_dropped_and_the_good_ones_kept():
    v, warnings = from_params(
        {
            "where": '[["country", "=", "NL"], ["plan", "~", "x"], ["plan", "!=", "free"]]',
            "thr": '[["latency_ms", ">", 5], ["cost", "<", "1"], ["n", "<=", 2]]',
        }
    )
    assert v.query.details == (
        DetailFilter("country", "=", "NL"),
        DetailFilter("plan", "!=", "free"),
    )
    assert v.query.thresholds == (Threshold("latency_ms", ">", 5.0), Threshold("n", "<=", 2.0))
    assert len(warnings) == 2
    assert named(warnings, "where") and named(warnings, "thr")
    assert '"~"' in warnings[0] and '"1"' in warnings[1]


def test_several_malformed_parameters_each_get_a_warning():
    params = {
        "agg": "bogus",
        "bucket": "2h",
        "by": "x",
        "top": "0",
        "ds": "x",
        "types": "x",
        "where": "x",
        "thr": "x",
        "range": "x",
        "prev": "x",
        "cum": "x",
        "roll": "x",
        "chart": "x",
    }
    v, warnings = from_params(params)
    assert v == DEFAULT
    for name in params:
        assert named(warnings, name), name
    assert len(warnings) == len(params)


def test_a_long_bad_value_is_shortened_in_the_warning():
    _, warnings = from_params({"chart": "x" * 500})
    assert len(warnings) == 1
    assert "x" * 57 + "..." in warnings[0]
    assert len(warnings[0]) < 200


NASTY = ["", " ", "null", "[]", "{}", "[null]", "[[]]", "\x00", "%", "'", '"', "😀", "a" * 1000]
NASTY_RAW = [None, 3, 2.5, True, [], ["a", "b"], [None], {"a": 1}]


@pytest.mark.parametrize("name", [*PARAMS, "unknown"])
def test_from_params_never_raises(name):
    for value in [*NASTY, *NASTY_RAW]:
        v, warnings = from_params({name: value})
        assert isinstance(v, ExploreView)
        assert all(isinstance(w, str) for w in warnings)
    for value in NASTY:
        v, _ = from_params({k: value for k in PARAMS})
        assert isinstance(v, ExploreView)


def test_a_huge_integer_threshold_falls_back_with_a_warning():
    v, warnings = from_params({"thr": '[["latency_ms", ">", 1' + "0" * 400 + "]]"})
    assert v == DEFAULT
    assert named(warnings, "thr")


@pytest.mark.parametrize("name", ["ds", "types", "where", "thr"])
def test_a_deeply_nested_list_falls_back_with_a_warning(name):
    v, warnings = from_params({name: "[" * 1000 + "]" * 1000})
    assert v == DEFAULT
    assert named(warnings, name)


# -- repeated parameters -----------------------------------------------------------------------


def test_a_repeated_parameter_uses_the_last_value():
    v, warnings = from_params(
        {
            "agg": ["sum", "p95"],
            "metric": ["cost_usd", "latency_ms"],
            "bucket": ["bogus", "1h"],
            "top": ["x", "9"],
            "ds": ["nope", '["web"]'],
            "chart": ["line", "bar"],
        }
    )
    assert warnings == []
    assert v.query.agg == "p95" and v.query.metric == "latency_ms"
    assert v.query.bucket == "1h" and v.query.top == 9 and v.query.datasets == ("web",)
    assert v.chart == "bar"


def test_a_repeated_parameter_whose_last_value_is_bad_warns():
    v, warnings = from_params({"chart": ["bar", "pie"], "top": ["3", "0"]})
    assert v == DEFAULT
    assert named(warnings, "chart") and named(warnings, "top")
    assert "'pie'" in " ".join(warnings)


def test_an_empty_list_counts_as_absent():
    assert from_params({"agg": [], "chart": []}) == (DEFAULT, [])


# -- against a store ---------------------------------------------------------------------------


def body(i: int, event_type: str, when: str, metrics: dict, details: dict) -> dict:
    return {
        "trace_id": f"t{i // 2}",
        "event_id": f"e{i}",
        "event_type": event_type,
        "timestamp": ms(when),
        "metrics": metrics,
        "event_details": details,
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """web: llm_call and search (latency_ms; country, model); mobile: click (n; plan). Shared
    by the module's tests, which only read it."""
    web = [
        body(0, "llm_call", "2021-03-01T10:00:00Z", {"latency_ms": 100}, {"country": "NL"}),
        body(1, "llm_call", "2021-03-02T10:00:00Z", {"latency_ms": 300}, {"model": "m1"}),
        body(2, "search", "2021-03-03T10:00:00Z", {"latency_ms": 50}, {"country": "DE"}),
        body(3, "search", "2021-03-05T18:30:00Z", {"latency_ms": 70}, {"country": "NL"}),
    ]
    mobile = [
        body(10, "click", "2021-02-01T00:00:00Z", {"n": 1}, {"plan": "free"}),
        body(11, "click", "2021-02-20T12:00:00Z", {"n": 2}, {"plan": "pro"}),
    ]
    with store_holding(tmp_path_factory.mktemp("small"), {"web": web, "mobile": mobile}) as store:
        assert store.event_count() == 6
        yield store


def checked(store, **query):
    return check_against_store(store, ExploreView(query=SeriesQuery(**query), chart="bar"))


def test_a_view_the_store_knows_passes_unchanged(small):
    v = ExploreView(
        query=SeriesQuery(
            agg="p95",
            metric="latency_ms",
            tz="Europe/Amsterdam",
            split="detail:country",
            datasets=("web",),
            event_types=("search",),
        ),
        preset="7d",
        chart="area",
        board="country",
    )
    assert check_against_store(small, v) == (v, [])


def test_unknown_dataset_is_left_out(small):
    v, warnings = checked(small, datasets=("web", "nope"))
    assert v.query.datasets == ("web",)
    assert v.chart == "bar"
    assert len(warnings) == 1 and "'nope'" in warnings[0] and "dataset" in warnings[0]
    v, warnings = checked(small, datasets=("nope",))
    assert v.query.datasets == () and len(warnings) == 1


def test_unknown_event_type_is_left_out(small):
    v, warnings = checked(small, event_types=("llm_call", "nope"))
    assert v.query.event_types == ("llm_call",)
    assert len(warnings) == 1 and "'nope'" in warnings[0]


def test_event_type_of_another_dataset_is_left_out(small):
    v, warnings = checked(small, datasets=("mobile",), event_types=("llm_call", "click"))
    assert v.query.event_types == ("click",)
    assert len(warnings) == 1 and "'llm_call'" in warnings[0]


def test_unknown_metric_falls_back_to_the_count(small):
    v, warnings = checked(small, agg="p95", metric="nope")
    assert (v.query.agg, v.query.metric) == ("count", None)
    assert len(warnings) == 1 and "'nope'" in warnings[0]


def test_metric_the_chosen_event_types_lack_falls_back_to_the_count(small):
    v, warnings = checked(
        small, agg="sum", metric="latency_ms", cumulative=True, event_types=("click",)
    )
    assert (v.query.agg, v.query.metric, v.query.cumulative) == ("count", None, False)
    assert len(warnings) == 1 and "'latency_ms'" in warnings[0]


def test_unknown_detail_split_key_splits_by_event_type(small):
    v, warnings = checked(small, split="detail:nope")
    assert v.query.split == analytics.SPLIT_TYPE
    assert len(warnings) == 1 and "'nope'" in warnings[0]
    # A key of other event types than the chosen ones counts as unknown too.
    v, warnings = checked(small, split="detail:plan", event_types=("search",))
    assert v.query.split == analytics.SPLIT_TYPE and len(warnings) == 1
    assert checked(small, split="detail:plan") == (
        ExploreView(query=SeriesQuery(split="detail:plan"), chart="bar"),
        [],
    )


@pytest.mark.parametrize("tz", ["Mars/Base", "", "utc ", "Europe/amsterdam", "'; DROP TABLE x"])
def test_unknown_time_zone_falls_back_to_utc(small, tz):
    v, warnings = checked(small, tz=tz)
    assert v.query.tz == "UTC"
    assert len(warnings) == 1 and "time zone" in warnings[0] and repr(tz) in warnings[0]
    assert small.event_count() == 6


def test_every_unknown_name_at_once(small):
    v, warnings = checked(
        small,
        agg="avg",
        metric="nope",
        split="detail:nope",
        datasets=("nope",),
        event_types=("nope",),
        tz="Mars/Base",
    )
    assert v.query == SeriesQuery(agg="count")
    assert len(warnings) == 5


def test_check_against_an_empty_store_does_not_raise(store):
    v, warnings = check_against_store(store, FULL_CUSTOM)
    assert v.query.datasets == () and v.query.event_types == ()
    assert v.query.agg == "count" and v.query.split == analytics.SPLIT_TYPE
    assert len(warnings) == 4  # the time zone is known


# -- presets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "span"), sorted(view.PRESETS.items()))
def test_preset_is_relative_to_the_newest_event_not_the_clock(small, preset, span):
    q = resolve_preset(small, ExploreView(preset=preset))
    newest = at("2021-03-05T18:30:00Z")
    assert q.end == newest + dt.timedelta(milliseconds=1)
    assert q.start == q.end - span
    result = analytics.series(small, q)
    assert result.start == q.start and result.end == q.end
    assert result.frame["events"].sum() >= 1  # the newest event is inside the range


def test_preset_is_relative_to_the_newest_matching_event(small):
    q = resolve_preset(small, ExploreView(query=SeriesQuery(datasets=("mobile",)), preset="7d"))
    assert q.end == at("2021-02-20T12:00:00.001Z")
    assert q.start == at("2021-02-13T12:00:00.001Z")
    q = resolve_preset(
        small,
        ExploreView(query=SeriesQuery(details=(DetailFilter("model", "=", "m1"),)), preset="24h"),
    )
    assert q.end == at("2021-03-02T10:00:00.001Z")
    # Events without the chart's metric do not count as matching.
    q = resolve_preset(
        small,
        ExploreView(query=SeriesQuery(agg="max", metric="n"), preset="30d"),
    )
    assert q.end == at("2021-02-20T12:00:00.001Z")


def test_preset_ignores_a_stale_start_and_end(small):
    stale = SeriesQuery(start=at("2000-01-01T00:00:00Z"), end=at("2000-01-02T00:00:00Z"))
    q = resolve_preset(small, ExploreView(query=stale, preset="24h"))
    assert q.end == at("2021-03-05T18:30:00.001Z")


def test_all_and_custom_keep_the_query(small):
    q = SeriesQuery(start=at("2021-03-01T00:00:00Z"), end=at("2021-03-02T00:00:00Z"))
    assert resolve_preset(small, ExploreView(query=q, preset="custom")) is q
    assert resolve_preset(small, ExploreView(query=SeriesQuery(), preset="all")) == SeriesQuery()


def test_preset_without_matching_events_keeps_the_query(small):
    q = SeriesQuery(event_types=("nope",))
    assert resolve_preset(small, ExploreView(query=q, preset="7d")) == q


# -- what the page says about its choices and numbers ------------------------------------------


def test_a_choice_the_filters_cannot_show_is_set_aside_and_comes_back():
    keys = ["amount", "latency_ms"]
    assert keep_choice("latency_ms", "amount", keys, "amount") == ("latency_ms", None)
    # Filtered to events without latency_ms: another metric is shown, and said so.
    assert keep_choice("latency_ms", "latency_ms", ["amount"], "amount") == (
        "amount",
        "latency_ms",
    )
    # Nothing chosen yet: the fallback, nothing to say.
    assert keep_choice(None, None, keys, "amount") == ("amount", None)
    assert keep_choice("x", None, [], None) == (None, "x")


def test_headline_notes_say_why_all_holds_fewer_events(small):
    q = SeriesQuery(agg="max", metric="latency_ms")
    numbers = analytics.headline(small, q)
    assert view.headline_notes(numbers, q, "all") == [
        "The range runs from the first to the last event that carries latency_ms, so 2 events"
        " of the 6 the filters match lie outside it.",
        "The max is over the 4 events that carry latency_ms.",
    ]
    # A preset cuts the range anyway: only the measure's note.
    assert view.headline_notes(numbers, q, "7d") == [
        "The max is over the 4 events that carry latency_ms."
    ]
    assert view.headline_notes(analytics.headline(small, SeriesQuery()), SeriesQuery(), "all") == []


def test_comparison_help_says_when_there_is_nothing_like_to_compare(small):
    q = SeriesQuery(agg="max", metric="latency_ms")
    assert "No change is shown: the data starts at 2021-03-01 11:00 (Europe/Amsterdam)" in (
        view.comparison_help(analytics.headline(small, q), "Europe/Amsterdam")
    )
    week = resolve_preset(small, ExploreView(query=SeriesQuery(datasets=("web",)), preset="24h"))
    assert view.comparison_help(analytics.headline(small, week), "UTC") == (
        "Change against the equally long period just before the range."
    )
