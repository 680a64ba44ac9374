"""Traces: search over trace_summary, one trace's events, tables, export bodies, curl, compare,
the Traces view's URL parameters and the trace charts."""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import random
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from eventlens import charts, traces
from eventlens.ingest import load_files
from eventlens.store import Store
from eventlens.traces import SHORT_PAIR, SHORT_TEXT, SORTS, TraceSearch
from eventlens.view import TracesView, traces_from_params, traces_to_params

UTC = dt.UTC
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z in epoch ms
EVIL = "<img src=x onerror=alert(1)>"
SQL = "x'); DROP TABLE events; --"


def ev(trace_id, event_type, ts=None, eid=None, metrics=None, details=None):
    """A track_event body; the optional fields only when given."""
    out = {"trace_id": trace_id, "event_type": event_type, "metrics": metrics or {}}
    if ts is not None:
        out["timestamp"] = ts
    if eid is not None:
        out["event_id"] = eid
    if details is not None:
        out["event_details"] = details
    return out


def at_ms(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=ms)


def ts(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def load_into(store, write_bodies, bodies, dataset, name="events.jsonl"):
    result = load_files(store, [write_bodies(bodies, name)], dataset).files[0]
    assert result.error is None and result.rejected == 0, result
    return result


def summary_rows(store) -> list[tuple]:
    return sorted(
        store.rows(
            "SELECT dataset, trace_id, events, first_time, last_time, event_types"
            " FROM trace_summary"
        )
    )


def rebuilt_rows(store) -> list[tuple]:
    """What trace_summary should hold, grouped from the events themselves."""
    return sorted(
        store.rows(
            "SELECT dataset, trace_id, count(*), min(timestamp), max(timestamp),"
            " list_sort(list(DISTINCT event_type)) FROM events GROUP BY dataset, trace_id"
        )
    )


def assert_summary_matches_events(store):
    assert summary_rows(store) == rebuilt_rows(store)


def trace_frame(rows: list[dict]) -> pd.DataFrame:
    """A frame shaped like traces.events() output, from dicts with type/offset/metrics/details."""
    out = []
    for r in rows:
        offset = r.get("offset")
        out.append(
            {
                "timestamp": ts(T0 + offset) if offset is not None else pd.NaT,
                "offset_ms": float(offset) if offset is not None else math.nan,
                "event_type": r["type"],
                "metrics": r.get("metrics", {}),
                "event_details": r.get("details", {}),
                "event_id": r.get("eid"),
                "dataset": r.get("dataset", "d"),
            }
        )
    frame = pd.DataFrame(out)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


# -- a small corpus for search -----------------------------------------------------------------

# (dataset, trace_id, [(ms after T0 or None, event_type, details)])
CORPUS = [
    ("web", "alpha-1", [(0, "a", {"model": "gpt-4"}), (100, "b", None), (250, "a", None)]),
    ("web", "alpha-2", [(1000, "c", {"model": "gpt-3"}), (1500, "c", None)]),
    ("web", "beta", [(2000, "a", None), (2250, "b", None)]),
    ("mobile", "beta", [(3500, "d", None)]),
    ("mobile", "gamma", [(500, "b", None), (3000, "b", None), (3500, "b", {"model": "gpt-4"})]),
    ("mobile", "untimed", [(None, "e", None)]),
    ("web", "100%_done", [(4000, "a", None)]),
]


def corpus_facts() -> list[dict]:
    facts = []
    for dataset, trace_id, evs in CORPUS:
        times = [o for o, _, _ in evs if o is not None]
        facts.append(
            {
                "dataset": dataset,
                "trace_id": trace_id,
                "events": len(evs),
                "first": min(times) if times else None,
                "last": max(times) if times else None,
                "duration": max(times) - min(times) if times else None,
                "types": sorted({t for _, t, _ in evs}),
            }
        )
    return facts


FACT_KEY = {
    "last": "last",
    "first": "first",
    "events": "events",
    "duration": "duration",
    "trace_id": "trace_id",
}


def expected_order(sort: str, descending: bool) -> list[tuple[str, str]]:
    """The sort key (nulls last either way), then trace_id, then dataset."""
    facts = sorted(corpus_facts(), key=lambda f: (f["trace_id"], f["dataset"]))
    key = FACT_KEY[sort]
    valued = [f for f in facts if f[key] is not None]
    nulls = [f for f in facts if f[key] is None]
    ordered = sorted(valued, key=lambda f: f[key], reverse=descending) + nulls
    return [(f["dataset"], f["trace_id"]) for f in ordered]


def load_corpus(store: Store, folder: Path) -> Store:
    by_dataset: dict[str, list[dict]] = {}
    for dataset, trace_id, evs in CORPUS:
        for i, (offset, event_type, details) in enumerate(evs):
            by_dataset.setdefault(dataset, []).append(
                ev(
                    trace_id,
                    event_type,
                    None if offset is None else T0 + offset,
                    f"{dataset}/{trace_id}/{i}",
                    {"n": i},
                    details,
                )
            )
    for dataset, bodies in by_dataset.items():
        path = folder / f"{dataset}.jsonl"
        path.write_text("".join(json.dumps(b) + "\n" for b in bodies), encoding="utf-8")
        result = load_files(store, [path], dataset).files[0]
        assert result.loaded == len(bodies) and result.rejected == 0
    return store


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus, shared by the tests that only read it."""
    with Store(":memory:") as s:
        yield load_corpus(s, tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def own_corpus(store, tmp_path):
    """The corpus in the test's own store, for tests that change it."""
    return load_corpus(store, tmp_path)


def found(store, **kw) -> list[tuple[str, str]]:
    frame, total = traces.search(store, TraceSearch(**kw), limit=1000)
    pairs = list(zip(frame["dataset"], frame["trace_id"], strict=True))
    assert total == len(pairs)
    return pairs


def found_ids(store, **kw) -> set[str]:
    return {t for _, t in found(store, **kw)}


# -- search ------------------------------------------------------------------------------------


def test_summary_of_the_corpus(corpus):
    assert_summary_matches_events(corpus)
    frame, total = traces.search(corpus, TraceSearch(sort="trace_id", descending=False))
    assert total == len(CORPUS)
    row = frame[(frame["trace_id"] == "gamma")].iloc[0]
    assert row["dataset"] == "mobile"
    assert row["events"] == 3
    assert row["first_time"] == ts(T0 + 500)
    assert row["last_time"] == ts(T0 + 3500)
    assert row["duration_ms"] == 3000
    assert list(row["event_types"]) == ["b"]
    untimed = frame[frame["trace_id"] == "untimed"].iloc[0]
    assert pd.isna(untimed["first_time"]) and pd.isna(untimed["duration_ms"])
    assert list(frame[frame["trace_id"] == "alpha-1"].iloc[0]["event_types"]) == ["a", "b"]


def test_search_by_exact_id_and_by_prefix(corpus):
    assert found_ids(corpus, text="alpha") == {"alpha-1", "alpha-2"}
    assert found_ids(corpus, text="alpha", exact=True) == set()
    assert found(corpus, text="alpha-1", exact=True) == [("web", "alpha-1")]
    assert found_ids(corpus, text="  alpha-1  ", exact=True) == {"alpha-1"}  # stripped
    assert set(found(corpus, text="beta", exact=True)) == {("web", "beta"), ("mobile", "beta")}
    assert found_ids(corpus, text="ALPHA") == set()  # ids are case-sensitive
    assert found_ids(corpus, text="") == {t for _, t, _ in CORPUS}
    assert found_ids(corpus, text="   ") == {t for _, t, _ in CORPUS}


def test_prefix_is_literal_not_a_like_pattern(corpus):
    assert found_ids(corpus, text="100%") == {"100%_done"}
    assert found_ids(corpus, text="%") == set()
    assert found_ids(corpus, text="_") == set()
    assert found_ids(corpus, text="alpha_") == set()
    assert found_ids(corpus, text="a%") == set()


def test_exists(corpus):
    assert traces.copies(corpus, "alpha-1")
    assert traces.copies(corpus, "untimed")
    assert not traces.copies(corpus, "alpha")  # a prefix is not a trace
    assert not traces.copies(corpus, "nope")
    assert not traces.copies(corpus, SQL)


def test_search_by_dataset(corpus):
    assert found_ids(corpus, datasets=("mobile",)) == {"beta", "gamma", "untimed"}
    assert set(found(corpus, datasets=("web", "mobile"))) == {(d, t) for d, t, _ in CORPUS}
    assert found(corpus, datasets=("nope",)) == []
    assert found(corpus, text="beta", datasets=("web",)) == [("web", "beta")]


def test_search_by_event_type_has_any(corpus):
    assert set(found(corpus, event_types=("c", "d"))) == {("web", "alpha-2"), ("mobile", "beta")}
    assert found_ids(corpus, event_types=("b",)) == {"alpha-1", "beta", "gamma"}
    assert found(corpus, event_types=("b",), datasets=("web",)) == [
        ("web", "beta"),  # last event first (the default order)
        ("web", "alpha-1"),
    ]
    assert found(corpus, event_types=("zzz",)) == []


def test_search_by_detail_key_and_value(corpus):
    assert set(found(corpus, detail_key="model", detail_value="gpt-4")) == {
        ("web", "alpha-1"),
        ("mobile", "gamma"),
    }
    assert found(corpus, detail_key="model", detail_value="gpt-3") == [("web", "alpha-2")]
    assert found(corpus, detail_key="model", detail_value="GPT-4") == []
    assert found(corpus, detail_key="nokey", detail_value="gpt-4") == []
    assert found(corpus, detail_key="model", detail_value="gpt-4", datasets=("mobile",)) == [
        ("mobile", "gamma")
    ]


def test_search_by_time_range_overlaps(corpus):
    # [T0+1500, T0+2000): alpha-2 ends exactly at the start (kept), web beta starts exactly at
    # the end (left out), gamma spans it; the untimed trace has no time and never matches.
    window = {"start": at_ms(T0 + 1500), "end": at_ms(T0 + 2000)}
    assert set(found(corpus, **window)) == {("web", "alpha-2"), ("mobile", "gamma")}
    assert found_ids(corpus, start=at_ms(T0 + 3500)) == {"beta", "gamma", "100%_done"}
    assert set(found(corpus, start=at_ms(T0 + 3500))) == {
        ("mobile", "beta"),
        ("mobile", "gamma"),
        ("web", "100%_done"),
    }
    assert found_ids(corpus, end=at_ms(T0 + 500)) == {"alpha-1"}
    assert found_ids(corpus, end=at_ms(T0 + 501)) == {"alpha-1", "gamma"}
    assert found(corpus, start=at_ms(T0 + 4001)) == []
    # A zone-aware bound means the same instant.
    amsterdam = at_ms(T0 + 1500).astimezone(ZoneInfo("Europe/Amsterdam"))
    assert found_ids(corpus, start=amsterdam, end=at_ms(T0 + 2000)) == {"alpha-2", "gamma"}


@pytest.mark.parametrize("descending", [True, False], ids=["desc", "asc"])
@pytest.mark.parametrize("sort", list(SORTS))
def test_every_sort_with_deterministic_ties(corpus, sort, descending):
    got = found(corpus, sort=sort, descending=descending)
    assert got == expected_order(sort, descending)
    assert got == found(corpus, sort=sort, descending=descending)  # stable run to run


def test_sort_orders_have_ties_to_break():
    """The corpus does exercise the tie-breaking (the test above would be weak otherwise)."""
    facts = corpus_facts()
    for key in ("last", "events", "duration"):
        values = [f[key] for f in facts if f[key] is not None]
        assert len(values) > len(set(values)), key
    assert len({f["trace_id"] for f in facts}) < len(facts)


def test_paging(corpus):
    s = TraceSearch(sort="trace_id", descending=False)
    everything = expected_order("trace_id", False)
    pages = []
    for offset in range(0, 8, 3):
        frame, total = traces.search(corpus, s, limit=3, offset=offset)
        assert total == len(CORPUS)
        assert len(frame) <= 3
        pages += list(zip(frame["dataset"], frame["trace_id"], strict=True))
    assert pages == everything
    frame, total = traces.search(corpus, s, limit=3, offset=100)
    assert frame.empty and total == len(CORPUS)
    frame, total = traces.search(corpus, TraceSearch(text="alpha"), limit=1, offset=1)
    assert len(frame) == 1 and total == 2
    frame, total = traces.search(corpus, TraceSearch(text="nothing"), limit=5)
    assert frame.empty and total == 0
    assert list(frame.columns) == [
        "trace_id",
        "dataset",
        "events",
        "first_time",
        "last_time",
        "duration_ms",
        "event_types",
    ]


@pytest.mark.parametrize("sort", ["nope", "", "last_time", "trace_id; DROP TABLE events", "LAST"])
def test_bad_sort_raises_value_error(corpus, sort):
    with pytest.raises(ValueError, match="unknown sort"):
        traces.search(corpus, TraceSearch(sort=sort))
    assert corpus.event_count() == sum(len(e) for _, _, e in CORPUS)


def test_every_user_value_is_bound(store, write_bodies):
    evil_ds = "d'); DELETE FROM events; --"
    evil_type = "t' OR '1'='1"
    evil_key = "k'] = 'x' OR true --"
    evil_value = "v\"'; DROP TABLE trace_summary; --"
    bodies = [
        ev(SQL, evil_type, T0, "e1", {"m": 1}, {evil_key: evil_value}),
        ev(SQL, "plain", T0 + 5, "e2"),
        ev("other", "plain", T0 + 10, "e3", details={evil_key: "no"}),
    ]
    load_into(store, write_bodies, bodies, evil_ds)
    n = store.event_count()
    assert n == 3
    assert found(store, text=SQL, exact=True) == [(evil_ds, SQL)]
    assert found(store, text="x'") == [(evil_ds, SQL)]
    assert found(store, text="x' OR '1'='1") == []
    assert found(store, text="' OR 1=1 --", exact=True) == []
    assert found_ids(store, datasets=(evil_ds,)) == {SQL, "other"}
    assert found(store, datasets=("d' OR '1'='1",)) == []
    assert found(store, event_types=(evil_type,)) == [(evil_ds, SQL)]
    assert found(store, event_types=("t",)) == []
    assert found(store, detail_key=evil_key, detail_value=evil_value) == [(evil_ds, SQL)]
    assert found(store, detail_key=evil_key, detail_value="x' OR '1'='1") == []
    assert traces.copies(store, SQL)
    frame = traces.events(store, SQL)
    assert frame["event_type"].tolist() == [evil_type, "plain"]
    assert frame["event_details"].iloc[0] == {evil_key: evil_value}
    assert traces.events(store, SQL, dataset=evil_ds)["event_type"].tolist() == [
        evil_type,
        "plain",
    ]
    assert traces.events(store, SQL, dataset="x' OR '1'='1").empty
    # Nothing was dropped or deleted.
    assert store.event_count() == n
    assert_summary_matches_events(store)


# -- the summary stays right -------------------------------------------------------------------


def test_second_load_adds_events_to_an_existing_trace(store, write_bodies):
    load_into(
        store,
        write_bodies,
        [ev("t1", "a", T0 + 100, "e1"), ev("t1", "a", T0 + 200, "e2"), ev("t2", "x", T0, "f1")],
        "d",
        "first.jsonl",
    )
    before_t2 = [r for r in summary_rows(store) if r[1] == "t2"]
    load_into(
        store,
        write_bodies,
        [ev("t1", "z", T0, "e3"), ev("t1", "a", T0 + 500, "e4"), ev("t3", "q", None, "g1")],
        "d",
        "second.jsonl",
    )
    frame, _ = traces.search(store, TraceSearch(text="t1", exact=True))
    row = frame.iloc[0]
    assert (row["events"], row["duration_ms"]) == (4, 500)
    assert (row["first_time"], row["last_time"]) == (ts(T0), ts(T0 + 500))
    assert list(row["event_types"]) == ["a", "z"]
    assert [r for r in summary_rows(store) if r[1] == "t2"] == before_t2
    assert_summary_matches_events(store)
    assert traces.events(store, "t1")["event_type"].tolist() == ["z", "a", "a", "a"]


def test_reloading_the_same_file_does_not_double_count(store, write_bodies):
    path = write_bodies([ev("t1", "a", T0, "e1"), ev("t1", "b", T0 + 1, "e2")], "same.jsonl")
    load_files(store, [path], "d")
    first = summary_rows(store)
    again = load_files(store, [path], "d").files[0]
    assert again.loaded == 0 and again.duplicates == 2
    assert summary_rows(store) == first
    # Partly new: one old event, one new.
    mix = [ev("t1", "a", T0, "e1"), ev("t1", "c", T0 + 9, "e9")]
    load_into(store, write_bodies, mix, "d", "mix.jsonl")
    assert summary_rows(store)[0][2:] == (3, ts(T0), ts(T0 + 9), ["a", "b", "c"])
    assert_summary_matches_events(store)


def test_untimed_trace_gains_times_on_a_later_load(store, write_bodies):
    load_into(store, write_bodies, [ev("t", "a", None, "e1")], "d", "one.jsonl")
    assert summary_rows(store) == [("d", "t", 1, None, None, ["a"])]
    load_into(store, write_bodies, [ev("t", "b", T0 + 7, "e2")], "d", "two.jsonl")
    assert summary_rows(store) == [("d", "t", 2, ts(T0 + 7), ts(T0 + 7), ["a", "b"])]
    load_into(store, write_bodies, [ev("t", "a", None, "e3")], "d", "three.jsonl")
    assert summary_rows(store) == [("d", "t", 3, ts(T0 + 7), ts(T0 + 7), ["a", "b"])]
    assert_summary_matches_events(store)


def test_one_trace_in_two_datasets_and_delete_dataset(store, write_bodies):
    one = [ev("t", "a", T0, "e1"), ev("u", "a", T0, "u1")]
    load_into(store, write_bodies, one, "one", "1.jsonl")
    load_into(store, write_bodies, [ev("t", "b", T0 + 50, "e2")], "two", "2.jsonl")
    assert set(found(store, text="t", exact=True)) == {("one", "t"), ("two", "t")}
    assert_summary_matches_events(store)
    assert store.delete_dataset("one") == 2
    assert summary_rows(store) == [("two", "t", 1, ts(T0 + 50), ts(T0 + 50), ["b"])]
    assert not traces.copies(store, "u")
    assert traces.copies(store, "t")
    assert store.delete_dataset("two") == 1
    assert summary_rows(store) == []
    assert not traces.copies(store, "t")
    # Loading again after a delete starts the trace afresh.
    load_into(store, write_bodies, [ev("t", "c", T0 + 3, "e3")], "one", "3.jsonl")
    assert summary_rows(store) == [("one", "t", 1, ts(T0 + 3), ts(T0 + 3), ["c"])]


def test_full_refresh_equals_incremental_summary(own_corpus, write_bodies):
    s = own_corpus
    batch = s.last_batch()
    assert batch > 0
    load_into(s, write_bodies, [ev("gamma", "new", T0 - 5, "late-1")], "mobile", "late.jsonl")
    assert s.last_batch() > batch
    gamma = [r for r in summary_rows(s) if r[1] == "gamma"]
    assert gamma == [("mobile", "gamma", 4, ts(T0 - 5), ts(T0 + 3500), ["b", "new"])]
    incremental = summary_rows(s)
    s.refresh_traces()
    assert summary_rows(s) == incremental
    assert_summary_matches_events(s)


def test_reopened_store_with_empty_summary_rebuilds_it(db_path, write_bodies):
    with Store(db_path) as s:
        load_files(
            s,
            [write_bodies([ev("t", "a", T0, "e1"), ev("t", "b", T0 + 9, "e2"), ev("u", "c")])],
            "d",
        )
        expected = summary_rows(s)
        assert len(expected) == 2
        s.execute("DELETE FROM trace_summary")
        assert summary_rows(s) == []
    with Store(db_path) as s:
        assert summary_rows(s) == expected
        assert found_ids(s, text="t", exact=True) == {"t"}
    with Store(db_path, read_only=True) as s:  # read-only: left as it is
        assert summary_rows(s) == expected


# -- events of one trace -----------------------------------------------------------------------


def test_events_in_time_order_ties_and_untimed_keep_file_order(store, write_bodies):
    load_into(
        store,
        write_bodies,
        [
            ev("o", "late", T0 + 300, "b1"),
            ev("o", "nots1", None, "b2"),
            ev("o", "tie1", T0 + 100, "b3"),
            ev("o", "tie2", T0 + 100, "b4"),
            ev("o", "nots2", None, "b5"),
            ev("o", "first", T0, "b6"),
            ev("other", "x", T0 - 1000, "b7"),
        ],
        "d",
        "b.jsonl",
    )
    # A second file, loaded later but named earlier: file order is (source_file, source_line).
    load_into(
        store,
        write_bodies,
        [ev("o", "tie0", T0 + 100, "a1"), ev("o", "nots0", None, "a2")],
        "d",
        "a.jsonl",
    )
    frame = traces.events(store, "o")
    assert frame["event_type"].tolist() == [
        "first",
        "tie0",
        "tie1",
        "tie2",
        "late",
        "nots0",
        "nots1",
        "nots2",
    ]
    offsets = frame["offset_ms"].tolist()
    assert offsets[:5] == [0.0, 100.0, 100.0, 100.0, 300.0]
    assert all(math.isnan(v) for v in offsets[5:])
    assert frame["timestamp"].iloc[5:].isna().all()
    assert list(frame.columns[:2]) == ["timestamp", "offset_ms"]
    assert frame["event_id"].tolist() == ["b6", "a1", "b3", "b4", "b1", "a2", "b2", "b5"]
    assert all(isinstance(m, dict) for m in frame["metrics"])
    assert all(d == {} for d in frame["event_details"])  # none given: an empty dict
    info = traces.summarise(frame)
    assert info == {
        "events": 8,
        "first": ts(T0),
        "last": ts(T0 + 300),
        "span_ms": 300.0,
        "untimed": 3,
        "types": {t: 1 for t in frame["event_type"]},
        "datasets": ["d"],
    }


def test_offsets_are_whole_milliseconds(store, write_bodies):
    load_into(store, write_bodies, [ev("w", "a", T0, "1"), ev("w", "b", T0 + 1005, "2")], "d")
    assert traces.events(store, "w")["offset_ms"].tolist() == [0.0, 1005.0]


def test_events_of_an_unknown_trace_and_an_untimed_trace(store, write_bodies):
    load_into(store, write_bodies, [ev("u", "a", None, "1"), ev("u", "b", None, "2")], "d")
    empty = traces.events(store, "nope")
    assert empty.empty and "offset_ms" in empty.columns
    frame = traces.events(store, "u")
    assert frame["event_type"].tolist() == ["a", "b"]
    assert frame["offset_ms"].isna().all()
    info = traces.summarise(frame)
    assert (info["first"], info["last"], info["span_ms"], info["untimed"]) == (None, None, 0.0, 2)


def test_events_of_one_dataset(store, write_bodies):
    load_into(store, write_bodies, [ev("t", "a", T0 + 10, "1")], "one", "1.jsonl")
    load_into(store, write_bodies, [ev("t", "b", T0, "2")], "two", "2.jsonl")
    both = traces.events(store, "t")
    assert both["event_type"].tolist() == ["b", "a"]
    assert both["offset_ms"].tolist() == [0.0, 10.0]
    assert traces.summarise(both)["datasets"] == ["one", "two"]
    one = traces.events(store, "t", dataset="one")
    assert one["event_type"].tolist() == ["a"] and one["offset_ms"].tolist() == [0.0]


UNICODE_ID = "🚀 трасса-טרייס-追踪-١٢٣"
UNICODE_DETAILS = {"город": "東京 🌸", "rtl": "שלום עולם\u200f", "emoji": "👩‍👩‍👧", "null": None}


def test_unicode_ids_and_details_round_trip(store, write_bodies, tmp_path, event_rows):
    load_into(
        store,
        write_bodies,
        [
            ev(UNICODE_ID, "ראשון", T0, "é1", {"μ": 1.5}, UNICODE_DETAILS),
            ev(UNICODE_ID, "二", T0 + 1, "ß2", {}, {"k": "v"}),
        ],
        "数据",
    )
    assert found(store, text="🚀") == [("数据", UNICODE_ID)]
    assert found(store, text=UNICODE_ID, exact=True) == [("数据", UNICODE_ID)]
    assert found(store, event_types=("ראשון",), datasets=("数据",)) == [("数据", UNICODE_ID)]
    assert found(store, detail_key="город", detail_value="東京 🌸") == [("数据", UNICODE_ID)]
    assert traces.copies(store, UNICODE_ID)
    frame = traces.events(store, UNICODE_ID)
    assert frame["event_details"].iloc[0] == UNICODE_DETAILS
    b = traces.body(frame.iloc[0], UNICODE_ID)
    assert b["trace_id"] == UNICODE_ID and b["event_details"] == UNICODE_DETAILS
    assert b["event_id"] == "é1" and b["metrics"] == {"μ": 1.5}
    text = traces.jsonl(frame, UNICODE_ID).decode("utf-8")
    assert UNICODE_ID in text and "東京 🌸" in text  # not \u-escaped
    assert_jsonl_reloads(store, frame, UNICODE_ID, tmp_path, event_rows)


LONG = "".join(chr(ord("a") + i % 26) for i in range(19_991)) + " THE END."


def test_long_detail_is_stored_whole_but_cut_in_tables(store, write_bodies, tmp_path, event_rows):
    long_value = LONG
    assert len(long_value) == 20_000
    load_into(
        store,
        write_bodies,
        [
            ev("L", "big", T0, "1", {"n": 2}, {"long": long_value, "short": "ok"}),
            ev("L", "big", T0 + 1, "2", {"n": 3}, {"long": "tiny", "short": "fine"}),
        ],
        "d",
    )
    stored = store.scalar("SELECT event_details['long'] FROM events WHERE event_id = '1'")
    assert stored == long_value
    frame = traces.events(store, "L")
    assert frame["event_details"].iloc[0]["long"] == long_value

    cut = long_value[: SHORT_TEXT - 1] + "…"
    compact = traces.compact_table(frame)
    in_pairs = long_value[: SHORT_PAIR - 1] + "…"
    assert compact["details"].tolist() == [f"long={in_pairs}, short=ok", "long=tiny, short=fine"]
    wide = traces.wide_table(frame)
    assert wide["detail.long"].tolist() == [cut, "tiny"]
    assert wide["detail.short"].tolist() == ["ok", "fine"]

    assert traces.body(frame.iloc[0], "L")["event_details"]["long"] == long_value
    lines = traces.jsonl(frame, "L").decode("utf-8").splitlines()
    assert json.loads(lines[0])["event_details"]["long"] == long_value
    assert_jsonl_reloads(store, frame, "L", tmp_path, event_rows)


def test_short_cuts_only_long_text():
    assert traces.short("x" * SHORT_TEXT) == "x" * SHORT_TEXT
    assert traces.short("x" * (SHORT_TEXT + 1)) == "x" * (SHORT_TEXT - 1) + "…"
    assert traces.short(None) is None
    assert traces.short(12.5) == 12.5
    assert traces.short("abcdef", 4) == "abc…"


def test_a_thousand_event_trace(store, write_bodies):
    n, step = 1000, 3
    bodies = [
        ev("big", f"step{i % 5}", T0 + i * step, f"e{i:04d}", {"i": i}, {"n": str(i)})
        for i in range(n)
    ]
    random.Random(7).shuffle(bodies)
    load_into(store, write_bodies, bodies, "d")
    frame = traces.events(store, "big")
    assert len(frame) == n
    assert [m["i"] for m in frame["metrics"]] == list(range(n))
    assert frame["offset_ms"].tolist() == pytest.approx([float(i * step) for i in range(n)])
    assert frame["timestamp"].is_monotonic_increasing
    info = traces.summarise(frame)
    assert info["events"] == n and info["span_ms"] == (n - 1) * step
    assert info["types"] == {f"step{k}": n // 5 for k in range(5)}
    result, total = traces.search(store, TraceSearch(text="big", exact=True))
    assert total == 1
    row = result.iloc[0]
    assert row["events"] == n and row["duration_ms"] == (n - 1) * step
    assert (row["first_time"], row["last_time"]) == (ts(T0), ts(T0 + (n - 1) * step))
    assert list(row["event_types"]) == [f"step{k}" for k in range(5)]
    assert traces.shares_keys(frame)
    assert traces.wide_table(frame).shape == (n, 3 + 1 + 1)
    assert len(traces.jsonl(frame, "big").splitlines()) == n


# -- tables ------------------------------------------------------------------------------------


def test_shares_keys_true_and_false():
    same = trace_frame(
        [
            {"type": "a", "offset": 0, "metrics": {"x": 1.0, "y": 2.0}, "details": {"k": "1"}},
            {"type": "b", "offset": 5, "metrics": {"y": 3.0, "x": 4.0}, "details": {"k": "2"}},
        ]
    )
    assert traces.shares_keys(same)
    assert traces.shares_keys(trace_frame([{"type": "a", "offset": 0}]))
    assert traces.shares_keys(trace_frame([{"type": "a"}, {"type": "b"}]))  # all empty
    other_metric = trace_frame(
        [{"type": "a", "metrics": {"x": 1.0}}, {"type": "a", "metrics": {"z": 1.0}}]
    )
    assert not traces.shares_keys(other_metric)
    fewer_metrics = trace_frame(
        [{"type": "a", "metrics": {"x": 1.0, "y": 1.0}}, {"type": "a", "metrics": {"x": 1.0}}]
    )
    assert not traces.shares_keys(fewer_metrics)
    other_detail = trace_frame(
        [{"type": "a", "details": {"k": "1"}}, {"type": "a", "details": {"j": "1"}}]
    )
    assert not traces.shares_keys(other_detail)
    some_details = trace_frame([{"type": "a", "details": {"k": "1"}}, {"type": "a"}])
    assert not traces.shares_keys(some_details)


def test_wide_and_compact_table_shapes():
    frame = trace_frame(
        [
            {"type": "a", "offset": 0, "metrics": {"x": 1.0, "y": 2.5}, "details": {"k": "v"}},
            {"type": "b", "offset": 7, "metrics": {"x": 3.0}, "details": {"j": "w", "k": None}},
            {"type": "c"},  # no metrics, no details, no time
        ]
    )
    wide = traces.wide_table(frame)
    assert list(wide.columns) == [
        "timestamp",
        "offset_ms",
        "event_type",
        "metric.x",
        "metric.y",
        "detail.j",
        "detail.k",
    ]
    assert wide.shape == (3, 7)
    assert wide["metric.x"].tolist()[:2] == [1.0, 3.0]
    assert wide["metric.y"].iloc[0] == 2.5 and wide["metric.y"].iloc[1:].isna().all()
    assert wide["detail.k"].iloc[0] == "v" and wide["detail.k"].iloc[1:].isna().all()

    compact = traces.compact_table(frame)
    assert list(compact.columns) == [
        "timestamp",
        "offset_ms",
        "event_type",
        "metrics",
        "details",
    ]
    # One row per event, however many keys it has; an absent value is JSON's null.
    assert compact[["event_type", "metrics", "details"]].values.tolist() == [
        ["a", "x=1, y=2.5", "k=v"],
        ["b", "x=3", "j=w, k=null"],
        ["c", "", ""],
    ]


def test_compact_table_number_text():
    frame = trace_frame([{"type": "a", "metrics": {"p": 0.1 + 0.2, "big": 1e20, "i": 42.0}}])
    assert traces.compact_table(frame)["metrics"].tolist() == ["big=1e+20, i=42, p=0.3"]


def test_details_the_events_share_are_said_once():
    """A detail with one value on every event that has it, carried by at least half of them,
    leaves the rows: a mixed trace reads as what changes from event to event."""
    user = {"user_id": "u1", "session_id": "s1"}
    frame = trace_frame(
        [
            {"type": "search", "details": {**user, "query": "shoes"}},
            {"type": "page_view", "details": {**user, "page": "/p"}},
            {"type": "thumbs_up_down", "details": {"user_id": "u1", "feedback": "ok"}},
            {"type": "page_view", "details": {**user, "page": "/q"}},
        ]
    )
    assert traces.shared_details(frame) == {"session_id": "s1", "user_id": "u1"}
    assert traces.compact_table(frame)["details"].tolist() == [
        "query=shoes",
        "page=/p",
        "feedback=ok",
        "page=/q",
    ]
    # Two values, or carried by fewer than half the events (or one event), stay on their rows.
    assert traces.shared_details(trace_frame([{"type": "a", "details": {"k": "1"}}])) == {}
    mixed = trace_frame(
        [{"type": "a", "details": {"k": "1"}}, {"type": "a", "details": {"k": "2"}}]
    )
    assert traces.shared_details(mixed) == {}
    rare = trace_frame([{"type": "a", "details": {"k": "1"}}] + [{"type": "b"}] * 3)
    assert traces.shared_details(rare) == {}


# -- bodies, JSON lines, curl ------------------------------------------------------------------


def test_body_numbers_timestamp_and_event_id(store, write_bodies):
    load_into(
        store,
        write_bodies,
        [
            ev(
                "b",
                "x",
                1717200000999,
                "id-1",
                {"whole": 17, "float": 17.5, "zero": 0, "neg": -3.0, "big": 1e20, "tiny": 1e-9},
                {"k": "v", "none": None},
            ),
            ev("b", "y", 1717200000001, "id-2"),
            ev("b", "z", None, "id-3"),
        ],
        "d",
    )
    frame = traces.events(store, "b")
    bodies = [traces.body(row, "b") for _, row in frame.iterrows()]
    assert bodies[0] == {
        "trace_id": "b",
        "event_type": "y",
        "metrics": {},
        "event_details": {},
        "timestamp": 1717200000001,
        "event_id": "id-2",
    }
    first = bodies[1]
    assert first == {
        "trace_id": "b",
        "event_type": "x",
        "metrics": {"whole": 17, "float": 17.5, "zero": 0, "neg": -3, "big": 1e20, "tiny": 1e-9},
        "event_details": {"k": "v", "none": None},
        "timestamp": 1717200000999,
        "event_id": "id-1",
    }
    for key in ("whole", "zero", "neg"):
        assert type(first["metrics"][key]) is int
    assert type(first["metrics"]["float"]) is float and type(first["metrics"]["big"]) is float
    assert type(first["timestamp"]) is int
    assert bodies[2] == {  # no timestamp: none in the body
        "trace_id": "b",
        "event_type": "z",
        "metrics": {},
        "event_details": {},
        "event_id": "id-3",
    }
    assert json.loads(json.dumps(first, allow_nan=False)) == first


def test_body_omits_event_id_when_no_event_has_one(store, write_bodies):
    load_into(store, write_bodies, [ev("n", "a", T0), ev("n", "b", T0 + 1)], "d")
    frame = traces.events(store, "n")
    for _, row in frame.iterrows():
        b = traces.body(row, "n")
        assert "event_id" not in b
        json.dumps(b, allow_nan=False)


def test_body_omits_event_id_when_absent_in_a_mixed_trace(store, write_bodies):
    load_into(store, write_bodies, [ev("m", "a", T0), ev("m", "b", T0 + 1, "has-id")], "d")
    frame = traces.events(store, "m")
    no_id = traces.body(frame.iloc[0], "m")
    assert "event_id" not in no_id
    assert traces.body(frame.iloc[1], "m")["event_id"] == "has-id"
    for line in traces.jsonl(frame, "m").decode().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))


EXACT_MS = [1717200000999, 1717200000001, 1717200000000, 0, 999, -1, -999, 1, 4102444799999]
FAR_MS = [253_402_300_799_999, -62_135_596_800_000]


@pytest.fixture(scope="module")
def one_event_traces(tmp_path_factory) -> Iterator[Store]:
    """For each timestamp of EXACT_MS and FAR_MS, a trace named f"t{ms}" of one event at it;
    loaded once, the tests only read it."""
    bodies = [ev(f"t{ms}", "a", ms, "e") for ms in EXACT_MS + FAR_MS]
    path = tmp_path_factory.mktemp("timestamps") / "events.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in bodies), encoding="utf-8")
    with Store(":memory:") as s:
        result = load_files(s, [path], "d").files[0]
        assert result.error is None and result.rejected == 0 and result.loaded == len(bodies)
        yield s


@pytest.mark.parametrize("ms", EXACT_MS)
def test_body_timestamps_are_exact(one_event_traces, ms):
    row = traces.events(one_event_traces, f"t{ms}").iloc[0]
    assert traces.body(row, f"t{ms}")["timestamp"] == ms


@pytest.mark.parametrize("ms", FAR_MS, ids=["y9999", "y1"])
def test_body_timestamps_far_from_now(one_event_traces, ms):
    frame = traces.events(one_event_traces, f"t{ms}")
    assert traces.body(frame.iloc[0], f"t{ms}")["timestamp"] == ms
    assert json.loads(traces.jsonl(frame, f"t{ms}"))["timestamp"] == ms


def assert_jsonl_reloads(store, frame, trace_id, tmp_path: Path, event_rows):
    """Export the trace as JSON lines, load them into a fresh store: the same events."""
    data = traces.jsonl(frame, trace_id)
    path = tmp_path / "export.jsonl"
    path.write_bytes(data)
    original = {r for r in event_rows(store) if r[1] == trace_id}
    with Store(":memory:") as fresh:
        result = load_files(fresh, [path], "copy").files[0]
        assert result.error is None and result.rejected == 0
        assert result.loaded == len(frame)
        assert event_rows(fresh) == original
        again = traces.events(fresh, trace_id)
        assert again["event_type"].tolist() == frame["event_type"].tolist()
        assert again["offset_ms"].fillna(-1).tolist() == frame["offset_ms"].fillna(-1).tolist()


def test_jsonl_round_trips_through_ingest(store, write_bodies, tmp_path, event_rows):
    load_into(
        store,
        write_bodies,
        [
            ev("r", "start", T0 + 2, "s1", {"latency_ms": 120, "cost": 0.0031}, {"m": "x'y"}),
            ev("r", "mid", T0 + 2, "s2", {"n": 1}, {"q": '"quoted" \\ back'}),
            ev("r", "end", T0 + 1_000_000, "s3", {}, {"none": None}),
            ev("r", "loose", None, "s4", {"v": -0.5}),
            ev("r", "loose", None, "s5", {"v": 0.5}),
            ev("elsewhere", "start", T0, "s1"),
            ev("anon", "a", T0, None, {"v": 1}),
            ev("anon", "a", T0, None, {"v": 2}),
            ev("anon", "b", None, None, {}, {"k": "v"}),
        ],
        "d",
    )
    frame = traces.events(store, "r")
    data = traces.jsonl(frame, "r")
    assert data.endswith(b"\n") and data.count(b"\n") == 5
    lines = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert [b["event_type"] for b in lines] == ["start", "mid", "end", "loose", "loose"]
    assert all(b["trace_id"] == "r" for b in lines)
    assert_jsonl_reloads(store, frame, "r", tmp_path, event_rows)
    # A trace whose events have no event_id (stored under a content hash) reloads the same too.
    anon = traces.events(store, "anon")
    assert "event_id" not in traces.jsonl(anon, "anon").decode()
    assert_jsonl_reloads(store, anon, "anon", tmp_path, event_rows)


def test_jsonl_of_no_events_is_empty(store):
    assert traces.jsonl(traces.events(store, "nope"), "nope") == b""


def split_curl(command: str) -> list[str]:
    """The command's words as a POSIX shell reads them (backslash-newline joins lines)."""
    return shlex.split(command.replace("\\\n", " "))


def data_argument(command: str) -> str:
    words = split_curl(command)
    return words[words.index("-d") + 1]


DANGER = 'it\'s $(rm -rf /) `rm -rf /` ${HOME} "dq" \\ back\n new line; && | > <'


def test_curl_quotes_dangerous_content_inside_the_data_argument(monkeypatch):
    monkeypatch.setenv("LANGWATCH_API_KEY", "sk-REAL-SECRET-123")
    event_body = {
        "trace_id": "t'1 $(id)",
        "event_type": "x",
        "metrics": {"n": 1},
        "event_details": {"note": DANGER, "emoji": "🚀 שלום"},
        "timestamp": 1717200000999,
    }
    command = traces.curl(event_body)
    assert "sk-REAL-SECRET-123" not in command
    assert "X-Auth-Token: $LANGWATCH_API_KEY" in command
    words = split_curl(command)
    assert words[:4] == ["curl", "-X", "POST", "https://app.langwatch.ai/api/track_event"]
    assert "X-Auth-Token: $LANGWATCH_API_KEY" in words
    assert "Content-Type: application/json" in words
    assert json.loads(data_argument(command)) == event_body
    assert words[-2] == "-d" and len(words) == 10
    # Every $ or backquote outside single quotes is the key placeholder's, nothing else.
    assert unquoted_expansions(command) == ["$LANGWATCH_API_KEY"]


def unquoted_expansions(command: str) -> list[str]:
    """The `$NAME`, `$(` and backquote spots a POSIX shell would expand (not in '...')."""
    out, i, quote = [], 0, None
    while i < len(command):
        c = command[i]
        if quote == "'":
            quote = None if c == "'" else quote
        elif c == "\\":
            i += 1  # the next character is literal
        elif quote == '"' and c == '"':
            quote = None
        elif quote is None and c in "'\"":
            quote = c
        elif c == "`":
            out.append(c)
        elif c == "$":
            end = i + 1
            while end < len(command) and (command[end].isalnum() or command[end] == "_"):
                end += 1
            out.append(command[i : max(end, i + 2)])
        i += 1
    return out


def test_curl_runs_in_a_real_shell_without_expanding_the_body(tmp_path):
    """bash with curl replaced by a function that prints its arguments: nothing is run."""
    marker = tmp_path / "pwned"
    event_body = {
        "trace_id": "t",
        "event_type": "x",
        "metrics": {},
        "event_details": {"note": f"it's $(touch {marker}) `touch {marker}` $HOME 🚀"},
    }
    command = traces.curl(event_body, endpoint="https://example.test/base/")
    script = 'curl() { for a in "$@"; do printf \'%s\\0\' "$a"; done; }\n' + command
    env = {**os.environ, "LANGWATCH_API_KEY": "key-from-env"}
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, env=env, cwd=tmp_path, check=True, timeout=10
    )
    args = done.stdout.decode("utf-8").split("\0")[:-1]
    assert not marker.exists()
    assert args[:3] == ["-X", "POST", "https://example.test/base/api/track_event"]
    assert "X-Auth-Token: key-from-env" in args  # the shell supplies the key, not the command
    assert json.loads(args[args.index("-d") + 1]) == event_body
    assert "key-from-env" not in command


# -- compare -----------------------------------------------------------------------------------


def steps(*types_and_metrics):
    rows = []
    for i, item in enumerate(types_and_metrics):
        event_type, metrics = item if isinstance(item, tuple) else (item, {})
        rows.append({"type": event_type, "offset": i * 10, "metrics": metrics})
    return trace_frame(rows)


def test_compare_same_traces():
    a = steps(("x", {"m": 1.0}), ("y", {"m": 2.0}))
    result = traces.compare(a, a.copy())
    assert not result.differs
    assert (result.only_a, result.only_b, result.count_changes) == ([], [], {})
    assert result.same_order
    assert result.table["same_type"].tolist() == [True, True]
    assert result.table["metrics"].tolist() == ["", ""]
    assert result.table["step"].tolist() == [1, 2]
    assert result.table["a_offset_ms"].tolist() == [0.0, 10.0]


def test_compare_only_in_one_trace():
    result = traces.compare(steps("x", "y", "w"), steps("x", "z"))
    assert result.only_a == ["w", "y"] and result.only_b == ["z"]
    assert result.count_changes == {"w": (1, 0), "y": (1, 0), "z": (0, 1)}
    assert result.differs and not result.same_order
    table = result.table
    assert len(table) == 3
    assert table["same_type"].tolist() == [True, False, False]
    last = table.iloc[2]
    assert last["a_type"] == "w" and pd.isna(last["b_type"]) and pd.isna(last["b_offset_ms"])
    assert last["metrics"] == ""


def test_compare_count_changes():
    result = traces.compare(steps("x", "x", "y"), steps("x", "y"))
    assert (result.only_a, result.only_b) == ([], [])
    assert result.count_changes == {"x": (2, 1)}
    assert result.differs


def test_compare_order_changes():
    result = traces.compare(steps("x", "y"), steps("y", "x"))
    assert (result.only_a, result.only_b, result.count_changes) == ([], [], {})
    assert not result.same_order and result.differs
    assert result.table["same_type"].tolist() == [False, False]


def test_compare_metric_change_text():
    a = steps(("llm", {"latency_ms": 120.0, "tokens": 10.0, "z": 0.0, "same": 1.5, "gone": 1.0}))
    b = steps(("llm", {"latency_ms": 340.0, "tokens": 5.0, "z": 5.0, "same": 1.5, "new": 2.0}))
    text = traces.compare(a, b).table["metrics"].item()
    assert text == (
        "gone only in A; latency_ms 120 → 340 (+183%); new only in B; tokens 10 → 5 (-50%); z 0 → 5"
    )
    assert traces.compare(a, b).differs is False  # metric changes alone are not a difference


def test_compare_real_traces(store, write_bodies):
    load_into(
        store,
        write_bodies,
        [
            ev("A", "start", T0, "a1", {"latency_ms": 100}),
            ev("A", "call", T0 + 40, "a2", {"latency_ms": 120}),
            ev("B", "start", T0 + 9000, "b1", {"latency_ms": 100}),
            ev("B", "call", T0 + 9300, "b2", {"latency_ms": 240}),
            ev("B", "retry", None, "b3"),
        ],
        "d",
    )
    result = traces.compare(traces.events(store, "A"), traces.events(store, "B"))
    assert result.only_b == ["retry"] and result.only_a == []
    assert result.table["b_offset_ms"].tolist()[:2] == [0.0, 300.0]
    assert result.table["metrics"].tolist() == ["", "latency_ms 120 → 240 (+100%)", ""]


# -- the Traces view as URL parameters ---------------------------------------------------------

FULL = TracesView(
    search=TraceSearch(
        text="alpha 'x\"",
        exact=True,
        datasets=("web", "mó'bile"),
        include_test=True,
        event_types=("a", EVIL),
        detail_key="model",
        detail_value="gpt-4 'x' & y=z",
        start=dt.datetime(2024, 6, 1, 6, 30, tzinfo=UTC),
        end=dt.datetime(2024, 6, 8, tzinfo=ZoneInfo("Europe/Amsterdam")),
        sort="duration",
        descending=False,
    ),
    page=3,
    tz="Europe/Amsterdam",
    trace=UNICODE_ID,
    trace_dataset="mó'bile",
    compare=SQL,
    compare_dataset="web",
)


def test_traces_params_round_trip():
    params = traces_to_params(FULL)
    assert all(isinstance(v, str) for v in params.values())
    back, warnings = traces_from_params(params)
    assert warnings == []
    assert back == FULL
    # Through a real query string too (values arrive as lists).
    again, warnings = traces_from_params(parse_qs(urlencode(params)))
    assert warnings == [] and again == FULL


def test_default_traces_view_has_no_params():
    assert traces_to_params(TracesView()) == {}
    assert traces_from_params({}) == (TracesView(), [])


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("sort", list(SORTS))
def test_traces_params_every_sort(sort, descending):
    v = TracesView(search=TraceSearch(sort=sort, descending=descending))
    assert traces_from_params(traces_to_params(v)) == (v, [])


def test_traces_params_leave_out_detail_value_without_a_key():
    v = TracesView(search=TraceSearch(detail_value="orphan"))
    assert "dv" not in traces_to_params(v)
    back, warnings = traces_from_params({"dv": "orphan"})
    assert back.search.detail_value is None and warnings == []


def test_traces_params_trim_and_take_the_last_repeat():
    back, warnings = traces_from_params(
        {"trace": "  ", "compare": "  b  ", "q": "  pre  ", "page": ["2", "5"]}
    )
    assert warnings == []
    assert back.trace is None and back.compare == "b"
    assert back.search.text == "pre" and back.page == 5


def named(warnings: list[str], name: str) -> bool:
    return any(f"link's {name}=" in w for w in warnings)


BAD_PARAMS = [
    ({"page": "0"}, "page", lambda v: v.page == 1),
    ({"page": "-3"}, "page", lambda v: v.page == 1),
    ({"page": "abc"}, "page", lambda v: v.page == 1),
    ({"page": "1.5"}, "page", lambda v: v.page == 1),
    ({"page": "1000001"}, "page", lambda v: v.page == 1),
    ({"page": "9" * 400}, "page", lambda v: v.page == 1),
    ({"sort": "nope"}, "sort", lambda v: v.search.sort == "last"),
    ({"sort": "last_time; DROP TABLE events"}, "sort", lambda v: v.search.sort == "last"),
    (
        {"from": "2024-06-02T00:00:00+00:00", "to": "2024-06-01T00:00:00+00:00"},
        "from",
        lambda v: v.search.start is None and v.search.end == dt.datetime(2024, 6, 1, tzinfo=UTC),
    ),
    (
        {"from": "2024-06-01T00:00:00+00:00", "to": "2024-06-01T02:00:00+02:00"},
        "from",
        lambda v: v.search.start is None,
    ),
    ({"from": "yesterday"}, "from", lambda v: v.search.start is None),
    ({"to": "2024-06-01T00:00:00"}, "to", lambda v: v.search.end is None),
    ({"ds": "not json"}, "ds", lambda v: v.search.datasets == ()),
    ({"ds": '{"a": 1}'}, "ds", lambda v: v.search.datasets == ()),
    ({"ds": "[1, 2]"}, "ds", lambda v: v.search.datasets == ()),
    ({"ds": '"web"'}, "ds", lambda v: v.search.datasets == ()),
    ({"types": '[["a"]]'}, "types", lambda v: v.search.event_types == ()),
    ({"types": "[" * 100_000 + "]" * 100_000}, "types", lambda v: v.search.event_types == ()),
    ({"types": "[null]"}, "types", lambda v: v.search.event_types == ()),
    ({"exact": "yes"}, "exact", lambda v: v.search.exact is False),
    ({"asc": "2"}, "asc", lambda v: v.search.descending is True),
]


@pytest.mark.parametrize(("params", "name", "check"), BAD_PARAMS)
def test_bad_traces_params_warn_and_fall_back(params, name, check):
    back, warnings = traces_from_params(params)
    assert named(warnings, name), warnings
    assert len(warnings) == 1, warnings
    assert check(back)
    # The rest of the view is untouched.
    default = TracesView()
    assert back.tz == default.tz and back.trace is None


def test_bad_params_do_not_spoil_good_ones():
    back, warnings = traces_from_params(
        {"page": "x", "sort": "bad", "ds": "[", "q": "alpha", "tz": "Asia/Tokyo", "exact": "1"}
    )
    assert {n for n in ("page", "sort", "ds") if named(warnings, n)} == {"page", "sort", "ds"}
    assert back.search.text == "alpha" and back.search.exact and back.tz == "Asia/Tokyo"


def test_params_from_a_round_trip_search_the_same(corpus):
    v = TracesView(
        search=TraceSearch(
            text="alpha",
            datasets=("web",),
            event_types=("c",),
            detail_key="model",
            detail_value="gpt-3",
            start=at_ms(T0),
            end=at_ms(T0 + 5000),
            sort="events",
        )
    )
    back, _ = traces_from_params(traces_to_params(v))
    assert (
        found(corpus, **_fields(back.search))
        == found(corpus, **_fields(v.search))
        == [("web", "alpha-2")]
    )


def _fields(s: TraceSearch) -> dict:
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


# -- charts ------------------------------------------------------------------------------------


def assert_only_escaped(values, *evil: str):
    for value in values:
        text = "" if value is None else str(value)
        for raw in evil:
            assert raw not in text, text


def chart_strings(fig) -> list:
    """The texts Plotly renders with its HTML subset: names, hover text, y categories."""
    out = []
    for t in fig.data:
        out += [t.name, t.hovertemplate]
        out += list(t.text) if t.text is not None and not isinstance(t.text, str) else [t.text]
        out += [y for y in (t.y if t.y is not None else []) if isinstance(y, str)]
    out += [fig.layout.xaxis.title.text, fig.layout.yaxis.title.text]
    return out


def test_trace_timeline_escapes_types_and_skips_untimed(store, write_bodies):
    load_into(
        store,
        write_bodies,
        [
            ev("t", EVIL, T0, "1"),
            ev("t", "plain", T0 + 1500, "2"),
            ev("t", EVIL, T0 + 3000, "3"),
            ev("t", "no-time", None, "4"),
        ],
        "d",
    )
    frame = traces.events(store, "t")
    fig = charts.trace_timeline(frame, "Europe/Amsterdam")
    escaped = html.escape(EVIL)
    markers = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in markers] == [escaped, "plain"]  # sorted: '<' before 'p'
    assert sum(len(t.x) for t in markers) == 3  # the untimed event is left out
    assert all("no-time" not in str(s) for s in chart_strings(fig))
    assert list(markers[0].y) == [escaped, escaped]
    assert escaped in markers[0].text[0] and "+1,500 ms" in markers[1].text[0]
    assert_only_escaped(chart_strings(fig), EVIL, "<img")
    line = [t for t in fig.data if t.mode == "lines"]
    assert len(line) == 1 and list(line[0].y) == [escaped, "plain", escaped]
    # x is Amsterdam's wall clock (UTC+2 in June).
    assert pd.Timestamp(markers[0].x[0]) == pd.Timestamp("2024-06-01T02:00:00")
    assert "Europe/Amsterdam" in fig.layout.xaxis.title.text
    fig.to_json()


def test_trace_timeline_of_untimed_and_empty_traces(store, write_bodies):
    load_into(store, write_bodies, [ev("u", "a", None, "1")], "d")
    fig = charts.trace_timeline(traces.events(store, "u"), "UTC")
    assert len(fig.data) == 0
    fig = charts.trace_timeline(traces.events(store, "missing"), "UTC")
    assert len(fig.data) == 0


def test_compare_timeline_escapes_types_and_ids(store, write_bodies):
    evil_id = '<script>alert("id")</script>'
    load_into(
        store,
        write_bodies,
        [
            ev(evil_id, EVIL, T0, "1"),
            ev(evil_id, "ok", T0 + 20, "2"),
            ev(evil_id, "gone", None, "3"),
            ev("plain", EVIL, T0 + 500, "4"),
            ev("plain", EVIL, T0 + 800, "5"),
        ],
        "d",
    )
    a, b = traces.events(store, evil_id), traces.events(store, "plain")
    fig = charts.compare_timeline(a, b, evil_id, "plain")
    assert_only_escaped(chart_strings(fig), EVIL, evil_id, "<img", "<script")
    rows = {y for t in fig.data for y in t.y}
    assert rows == {f"A: {html.escape(evil_id)}", "B: plain"}
    assert all("gone" not in str(s) for s in chart_strings(fig))  # untimed: left out
    points = {(t.y[0], t.name): list(t.x) for t in fig.data}
    assert points == {
        (f"A: {html.escape(evil_id)}", html.escape(EVIL)): [0.0],
        (f"A: {html.escape(evil_id)}", "ok"): [20.0],
        ("B: plain", html.escape(EVIL)): [0.0, 300.0],
    }
    # One legend entry per event type.
    assert [t.name for t in fig.data if t.showlegend is not False] == [html.escape(EVIL), "ok"]
    fig.to_json()


# -- the detail index behind "has an event with detail K = V" ----------------------------------


def _ids(store: Store, **search) -> list[str]:
    frame, _ = traces.search(store, TraceSearch(sort="trace_id", descending=False, **search))
    return frame["trace_id"].tolist()


def test_the_detail_index_is_built_on_first_search_and_kept_current(tmp_path):
    db = tmp_path / "index.duckdb"
    first = tmp_path / "a.jsonl"
    later = tmp_path / "b.jsonl"

    def write(path, rows):
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "trace_id": t,
                        "event_type": "x",
                        "metrics": {},
                        "event_id": e,
                        "event_details": {"country": c},
                        "timestamp": 1_717_200_000_000 + n,
                    }
                )
                + "\n"
                for n, (t, e, c) in enumerate(rows)
            )
        )

    write(first, [("t1", "e1", "NL"), ("t2", "e2", "DE"), ("t3", "e3", "NL")])
    write(later, [("t4", "e4", "NL"), ("t2", "e5", "NL")])
    with Store(db) as store:
        load_files(store, [first], "d")
        assert store.scalar("SELECT count(*) FROM detail_index_keys") == 0
        assert _ids(store, detail_key="country", detail_value="NL") == ["t1", "t3"]
        assert store.scalar("SELECT count(*) FROM detail_index_keys") == 1
        load_files(store, [later], "d")  # new events join the index with the load
        assert _ids(store, detail_key="country", detail_value="NL") == ["t1", "t2", "t3", "t4"]
        assert _ids(store, detail_key="country", detail_value="DE") == ["t2"]
        store.refresh_traces()  # a full rebuild gives the same index
        assert _ids(store, detail_key="country", detail_value="NL") == ["t1", "t2", "t3", "t4"]
        store.delete_dataset("d")
        assert store.scalar("SELECT count(*) FROM detail_index") == 0
    with Store(db) as store:
        load_files(store, [first, later], "d")
        with_index = _ids(store, detail_key="country", detail_value="NL")
    with Store(db, read_only=True) as store:  # no index can be written: the events are read
        assert _ids(store, detail_key="country", detail_value="NL") == with_index
