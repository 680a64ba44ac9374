"""Tests for the deterministic sample-data generator."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import statistics
from collections import Counter, defaultdict

import pyarrow.parquet as pq
import pytest

from eventlens.sample import (
    DAY_MS,
    DEFAULT_END_MS,
    HOUR_MS,
    PREDEFINED_TYPES,
    generate_events,
    timeline,
    write_samples,
)

N = 5000
FORMAT_FILES = (
    "events.json",
    "events.ndjson",
    "stored_events.jsonl",
    "trace_document.json",
    "search_response.json",
    "legacy_keyvalue.jsonl",
    "flat.csv",
    "json_columns.csv",
    "events_map.parquet",
    "events_struct.parquet",
    "bad_lines.jsonl",
)


@pytest.fixture(scope="module")
def events() -> list[dict]:
    """5000 events with the default seed and window."""
    return generate_events(n=N)


def test_deterministic_per_seed(events: list[dict]) -> None:
    assert generate_events(n=N) == events
    other = generate_events(n=N, seed=8)
    assert other != events
    assert {e["event_id"] for e in other}.isdisjoint({e["event_id"] for e in events})


def test_count_window_and_shape(events: list[dict]) -> None:
    assert len(events) == N
    start = DEFAULT_END_MS - 30 * DAY_MS
    assert all(start <= e["timestamp"] < DEFAULT_END_MS for e in events)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert len({e["event_id"] for e in events}) == N
    for e in events:
        assert set(e) == {
            "trace_id",
            "event_type",
            "metrics",
            "event_details",
            "timestamp",
            "event_id",
        }
        assert e["trace_id"].startswith("trace_") and len(e["trace_id"]) == 22
        assert e["event_id"].startswith("evt_") and len(e["event_id"]) == 20
        assert isinstance(e["timestamp"], int)
        assert all(isinstance(k, str) for k in e["metrics"])
        assert all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in e["metrics"].values()
        )
        assert all(isinstance(v, str) for v in e["event_details"].values())


def test_other_window() -> None:
    end = DEFAULT_END_MS + 5 * DAY_MS
    evs = generate_events(n=300, days=7, end_ms=end)
    assert len(evs) == 300
    assert all(end - 7 * DAY_MS <= e["timestamp"] < end for e in evs)
    assert generate_events(n=0) == []


def test_event_types(events: list[dict]) -> None:
    types = {e["event_type"] for e in events}
    assert 8 <= len(types) <= 12
    assert set(PREDEFINED_TYPES) <= types


def test_predefined_rules_hold(events: list[dict]) -> None:
    votes, feedback = Counter(), 0
    for e in events:
        m, d = e["metrics"], e["event_details"]
        if e["event_type"] == "thumbs_up_down":
            assert m["vote"] in (-1, 0, 1)
            votes[m["vote"]] += 1
            feedback += "feedback" in d
        elif e["event_type"] == "selected_text":
            assert isinstance(m["text_length"], int) and m["text_length"] > 0
            if "selected_text" in d:
                assert len(d["selected_text"]) == m["text_length"]
        elif e["event_type"] == "waited_to_finish":
            assert m["finished"] in (0, 1)
    assert votes[1] > votes[-1] > votes[0] > 0
    assert 0 < feedback < sum(votes.values())


def test_traces(events: list[dict]) -> None:
    traces: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        traces[e["trace_id"]].append(e)
    sizes = [len(t) for t in traces.values()]
    assert min(sizes) >= 1 and max(sizes) <= 40
    assert 4 <= statistics.mean(sizes) <= 15
    starts = Counter(t[0]["event_type"] for t in traces.values())
    assert sum(starts[k] for k in ("page_view", "search", "llm_call")) >= 0.9 * len(traces)
    for t in traces.values():
        gaps = [b["timestamp"] - a["timestamp"] for a, b in zip(t, t[1:], strict=False)]
        assert all(0 <= g <= 10 * 60_000 for g in gaps)
        assert len({e["event_details"]["user_id"] for e in t}) == 1


def test_daily_rhythm_and_weekend_dip(events: list[dict]) -> None:
    hours = Counter((e["timestamp"] % DAY_MS) // HOUR_MS for e in events)
    day = sum(hours[h] for h in range(11, 19))
    night = sum(hours[h] for h in range(0, 8))
    assert day > 2 * night
    start = timeline()["start_ms"]
    weekend: list[int] = []
    weekday: list[int] = []
    per_day = Counter((e["timestamp"] - start) // DAY_MS for e in events)
    for d in range(30):
        dow = ((start // DAY_MS) + d + 3) % 7  # Monday = 0
        (weekend if dow >= 5 else weekday).append(per_day[d])
    assert statistics.mean(weekend) < 0.8 * statistics.mean(weekday)


def test_incident_spike(events: list[dict]) -> None:
    t = timeline()
    hourly = Counter(
        (e["timestamp"] - t["start_ms"]) // HOUR_MS for e in events if e["event_type"] == "error"
    )
    median = statistics.median(hourly.get(h, 0) for h in range(30 * 24))
    first = (t["incident_start_ms"] - t["start_ms"]) // HOUR_MS
    for h in (first, first + 1):
        assert hourly[h] >= 10 * max(median, 1)
    assert hourly.most_common(1)[0][0] in (first, first + 1)

    def latency(inside: bool) -> float:
        return statistics.median(
            e["metrics"]["latency_ms"]
            for e in events
            if e["event_type"] == "llm_call"
            and e["timestamp"] < t["release_ms"]
            and (t["incident_start_ms"] <= e["timestamp"] < t["incident_end_ms"]) == inside
        )

    assert latency(True) > 2.5 * latency(False)


def test_release_step(events: list[dict]) -> None:
    t = timeline()
    assert 21 * DAY_MS <= t["release_ms"] - t["start_ms"] <= 23 * DAY_MS
    for e in events:
        assert e["event_details"]["release"] == (
            "v2" if e["timestamp"] >= t["release_ms"] else "v1"
        )
    llm = [
        e
        for e in events
        if e["event_type"] == "llm_call"
        and not t["incident_start_ms"] <= e["timestamp"] < t["incident_end_ms"]
    ]
    before = [e["metrics"] for e in llm if e["timestamp"] < t["release_ms"]]
    after = [e["metrics"] for e in llm if e["timestamp"] >= t["release_ms"]]
    tokens_b = statistics.mean(m["prompt_tokens"] for m in before)
    tokens_a = statistics.mean(m["prompt_tokens"] for m in after)
    assert tokens_a > 1.15 * tokens_b
    # latency per model, so the step is not hidden by a different model mix
    mini = [e for e in llm if e["event_details"]["model"] == "gpt-4o-mini"]
    lat_b = statistics.median(
        e["metrics"]["latency_ms"] for e in mini if e["timestamp"] < t["release_ms"]
    )
    lat_a = statistics.median(
        e["metrics"]["latency_ms"] for e in mini if e["timestamp"] >= t["release_ms"]
    )
    assert lat_a < 0.92 * lat_b


def test_cardinality(events: list[dict]) -> None:
    def distinct(key: str) -> int:
        return len({e["event_details"][key] for e in events if key in e["event_details"]})

    assert distinct("user_id") > 300
    assert distinct("product_id") > 200
    assert distinct("country") == 8
    assert distinct("plan") == 3
    assert distinct("model") == 3


def _digests(root) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_write_samples(tmp_path) -> None:
    n = 2000
    paths = write_samples(tmp_path / "a", n=n, seed=3)
    root = tmp_path / "a"
    expected = {"events.jsonl.gz", *(f"formats/{f}" for f in FORMAT_FILES)}
    assert {p.relative_to(root).as_posix() for p in paths} == expected
    assert set(_digests(root)) == expected
    assert all(p.stat().st_size > 0 for p in paths)

    raw = (root / "events.jsonl.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime is 0
    lines = gzip.decompress(raw).decode().splitlines()
    assert [json.loads(x) for x in lines] == generate_events(n=n, seed=3)

    write_samples(tmp_path / "b", n=n, seed=3)
    assert _digests(root) == _digests(tmp_path / "b")

    fmt = root / "formats"
    bodies = json.loads((fmt / "events.json").read_text())
    assert 20 <= len(bodies) <= 200
    ndjson = [json.loads(x) for x in (fmt / "events.ndjson").read_text().splitlines()]
    assert ndjson == bodies

    stored = [json.loads(x) for x in (fmt / "stored_events.jsonl").read_text().splitlines()]
    assert [s["event_id"] for s in stored] == [b["event_id"] for b in bodies]
    assert all(
        s["timestamps"]["started_at"] == b["timestamp"] for s, b in zip(stored, bodies, strict=True)
    )
    assert {"project_id", "timestamps"} <= set(stored[0])

    doc = json.loads((fmt / "trace_document.json").read_text())
    assert {"trace_id", "project_id", "metadata", "timestamps", "events"} <= set(doc)
    assert doc["events"] and all(ev["trace_id"] == doc["trace_id"] for ev in doc["events"])

    search = json.loads((fmt / "search_response.json").read_text())
    assert search["pagination"] == {"scrollId": "abc"}
    assert sum(len(r["events"]) for r in search["traces"]) == len(bodies)
    assert set(search["traces"][0]["events"][0]) == {"type", "timestamp", "metrics", "details"}

    legacy = json.loads((fmt / "legacy_keyvalue.jsonl").read_text().splitlines()[0])
    assert legacy["metrics"] and all(set(kv) == {"key", "value"} for kv in legacy["metrics"])

    with (fmt / "flat.csv").open(newline="") as f:
        flat = list(csv.DictReader(f))
    assert len(flat) == len(bodies)
    assert list(flat[0])[:4] == ["trace_id", "event_type", "timestamp", "event_id"]
    assert any(c.startswith("metrics.") for c in flat[0])
    assert any(c.startswith("event_details.") for c in flat[0])
    with (fmt / "json_columns.csv").open(newline="") as f:
        cols = list(csv.DictReader(f))
    assert json.loads(cols[0]["metrics"]) == bodies[0]["metrics"]

    table = pq.read_table(fmt / "events_map.parquet")
    assert str(table.schema.field("metrics").type).startswith("map<string, double")
    assert str(table.schema.field("event_details").type).startswith("map<string, string")
    assert str(table.schema.field("timestamp").type) == "int64"
    table = pq.read_table(fmt / "events_struct.parquet")
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert table.schema.field("metrics").type.num_fields > 1
    assert table.num_rows == len(bodies)


def test_bad_lines(tmp_path) -> None:
    write_samples(tmp_path, n=200)
    lines = (tmp_path / "formats" / "bad_lines.jsonl").read_text().splitlines()
    assert len(lines) == 29
    assert len(lines) - len(set(lines)) == 1  # one exact duplicate
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            parsed.append(None)
    assert parsed.count(None) == 1
    assert sum(isinstance(p, list) for p in parsed) == 1
    objs = [p for p in parsed if isinstance(p, dict)]
    assert sum("trace_id" not in p for p in objs) == 1
    assert any(isinstance(v, str) for p in objs for v in p["metrics"].values())
    assert any(isinstance(v, int) for p in objs for v in p.get("event_details", {}).values())
    assert any(p["event_type"] == "thumbs_up_down" and p["metrics"].get("vote") == 5 for p in objs)
    assert any(
        p["event_type"] == "selected_text" and p["metrics"].get("text_length") == 0 for p in objs
    )
    assert any(
        p["event_type"] == "waited_to_finish" and "finished" not in p["metrics"] for p in objs
    )
