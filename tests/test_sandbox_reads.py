"""The sandbox's read routes over real loopback HTTP: POST /api/traces/search (select,
includeSpans, summaries; both date axes and sort directions; the cursor, the snapshot and
updatedThrough; the 1000-event cut; every refusal) and GET /api/traces/{id}, with the options
that emulate older or buggy servers and the faults. The sandbox's clock is set by the tests."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sandbox_server import Live, SetClock, live_sandbox

from eventlens import sandbox_reads
from eventlens.client import tls_context
from eventlens.sandbox import Faults, ReadOptions, Sandbox
from eventlens.store import Store

T0 = 1_700_000_000_000  # event times (ms) start here; the sandbox clock runs apart from them
EVERYTHING = {"startDate": 0, "endDate": 4_000_000_000_000}
# One client for the module's requests, a connection per request as httpx.post makes. Built
# at import, in every worker that collects this module: with the shared TLS context it does
# not load the CA bundle there (30-150 ms of CPU).
HTTP = httpx.Client(
    timeout=30, limits=httpx.Limits(max_keepalive_connections=0), verify=tls_context()
)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture
def clock() -> SetClock:
    return SetClock(1_800_000_000_000)


@pytest.fixture
def live(clock: SetClock) -> Iterator[Live]:
    with live_sandbox(clock=clock) as served:
        yield served


@pytest.fixture(scope="module")
def idle() -> Iterator[Live]:
    """One empty sandbox for the module's refusals, which store nothing (a server's start and
    stop take about 0.3 s)."""
    with live_sandbox(clock=SetClock(1_800_000_000_000)) as served:
        yield served


def event(trace: str, i: int, ts: int | None = None, **fields: Any) -> dict[str, Any]:
    body = {
        "trace_id": trace,
        "event_id": f"{trace}-e{i}",
        "event_type": "page_view" if i % 2 else "add_to_cart",
        "metrics": {"n": float(i)},
        "event_details": {"page": f"/p{i}"},
        "timestamp": T0 + i if ts is None else ts,
    }
    body.update(fields)
    return body


def add(live: Live, *bodies: dict[str, Any]) -> None:
    assert all(live.sandbox.insert(list(bodies)))


def search(live: Live, key: str | None = None, **body: Any) -> tuple[int, Any]:
    answer = HTTP.post(
        live.url + "/api/traces/search",
        json={**EVERYTHING, **body},
        headers=live.headers(key),
    )
    return answer.status_code, answer.json()


def ok(live: Live, **body: Any) -> dict[str, Any]:
    status, answer = search(live, **body)
    assert status == 200, answer
    return answer


def ids(answer: dict[str, Any]) -> list[str]:
    return [t["trace_id"] for t in answer["traces"]]


def pull(live: Live, **body: Any) -> tuple[list[list[str]], dict[str, Any]]:
    """Every page of one scroll (trace ids per page) and the last answer."""
    pages, scroll = [], None
    while True:
        answer = ok(live, scrollId=scroll, **body)
        pages.append(ids(answer))
        scroll = answer["pagination"].get("scrollId")
        if scroll is None:
            return pages, answer
        assert len(pages) < 50, "the scroll does not end"


def span(trace: str, event_id: str) -> str:
    return hashlib.sha256(f"{trace}:{event_id}".encode()).hexdigest()[:16]


# -- the three shapes -----------------------------------------------------------------------


def test_a_tracked_event_comes_back_in_the_three_shapes(live):
    sent = [event("t1", 2, ts=T0 + 20), event("t1", 1, ts=T0 + 10)]
    for body in sent:  # over HTTP, as a client sends them
        answer = HTTP.post(live.url + "/api/track_event", json=body, headers=live.headers())
        assert answer.status_code == 200
    add(live, event("t2", 1, ts=T0 + 5))

    selected = ok(live, select=["trace_id", "events.type", "events.timestamp", "events.metrics"])
    assert selected["traces"][0] == {
        "trace_id": "t1",
        "events": [  # by time, only the selected keys, no event id
            {"type": "page_view", "timestamp": T0 + 10, "metrics": {"n": 1.0}},
            {"type": "add_to_cart", "timestamp": T0 + 20, "metrics": {"n": 2.0}},
        ],
    }
    assert selected["schema"] == {
        "from": "traces",
        "columns": [
            {"path": "trace_id", "type": "string", "collection": False},
            {"path": "events.type", "type": "string", "collection": True},
            {"path": "events.timestamp", "type": "number", "collection": True},
            {"path": "events.metrics", "type": "json", "collection": True},
        ],
    }
    assert selected["pagination"] == {"totalHits": 2}  # occurred axis: no updatedThrough

    full = ok(live, includeSpans=True)
    assert "schema" not in full
    trace = full["traces"][0]
    assert trace["trace_id"] == "t1" and trace["project_id"] == "sandbox"
    assert trace["timestamps"]["started_at"] == T0 + 10
    assert trace["events"][0] == {
        "event_id": span("t1", "t1-e1"),  # the span id, not the id sent
        "event_type": "page_view",
        "project_id": "sandbox",
        "metrics": {"n": 1.0},
        "event_details": {"page": "/p1"},
        "trace_id": "t1",
        "timestamps": {"started_at": T0 + 10, "inserted_at": T0 + 10, "updated_at": T0 + 10},
    }
    assert [s["span_id"] for s in trace["spans"]] == [e["event_id"] for e in trace["events"]]
    assert trace["spans"][0]["name"] == "langwatch.track_event"
    assert trace["spans"][0]["params"]["event"]["id"] == "t1-e1"

    summaries = ok(live)
    assert "events" not in summaries["traces"][0] and summaries["traces"][0]["spans"] == []
    assert ids(summaries) == ["t1", "t2"]


def test_select_details_and_metric_keys_and_trace_fields(live, clock):
    add(live, event("t1", 1), event("t1", 2, metrics={"n": 2.0, "m": 5.0}))
    answer = ok(
        live,
        select=["events.details.page", "events.metrics.m", "started_at", "updated_at", "input"],
    )
    assert answer["traces"] == [
        {
            "started_at": T0 + 1,
            "updated_at": clock.ms,
            "input": None,
            "events": [
                {"details": {"page": "/p1"}, "metrics": {"m": None}},
                {"details": {"page": "/p2"}, "metrics": {"m": 5.0}},
            ],
        }
    ]


def test_metadata_is_set_on_a_trace_and_selected_by_key(live, clock):
    add(live, event("t1", 1), event("t2", 1))
    clock.advance()
    live.sandbox.set_trace_metadata("t1", user_id="u1", labels=["a"])
    live.sandbox.set_trace_metadata("t1", thread_id="th", labels=["b"])  # labels replaced whole
    answer = ok(live, select=["trace_id", "metadata.user_id", "metadata.labels"])
    assert answer["traces"] == [  # same start: by trace id, descending
        {"trace_id": "t2", "metadata": {"user_id": None, "labels": None}},
        {"trace_id": "t1", "metadata": {"user_id": "u1", "labels": ["b"]}},
    ]
    full = ok(live, traceIds=["t1"])["traces"][0]
    assert full["metadata"] == {"user_id": "u1", "thread_id": "th", "labels": ["b"]}
    assert full["timestamps"]["updated_at"] == clock.ms  # setting metadata moves it
    with pytest.raises(KeyError):
        live.sandbox.set_trace_metadata("nope", user_id="u")


# -- order, axes, paging --------------------------------------------------------------------


def test_both_axes_sort_both_ways_with_the_trace_id_breaking_ties(live, clock):
    # Started in the order c, a, b (a and b at the same time); updated in the order b, c, a.
    add(live, event("b", 1, ts=T0 + 50))
    clock.advance()
    add(live, event("c", 1, ts=T0 + 10))
    clock.advance()
    add(live, event("a", 1, ts=T0 + 50))
    assert ids(ok(live)) == ["b", "a", "c"]  # desc by default
    assert ids(ok(live, sortDirection="asc")) == ["c", "a", "b"]
    assert ids(ok(live, sortDirection="anything")) == ["c", "a", "b"]  # not "desc": ascending
    assert ids(ok(live, dateField="updated")) == ["a", "c", "b"]
    assert ids(ok(live, dateField="updated", sortDirection="asc")) == ["b", "c", "a"]
    # Both ends inclusive, on each axis; ISO dates as well as epoch ms.
    assert ids(ok(live, startDate=T0 + 10, endDate=T0 + 10)) == ["c"]
    iso = "2023-11-14T22:13:20.050Z"  # T0 + 50
    assert ids(ok(live, startDate=iso, endDate=iso)) == ["b", "a"]
    updated_c = clock.ms - 1000
    assert ids(ok(live, dateField="updated", startDate=updated_c, endDate=updated_c)) == ["c"]


def test_pages_of_three_down_to_an_exactly_full_last_page(live):
    add(live, *(event(f"t{i}", 1, ts=T0 + i) for i in range(6)))
    pages, last = pull(live, pageSize=3, sortDirection="asc")
    assert pages == [["t0", "t1", "t2"], ["t3", "t4", "t5"], []]  # then an empty page
    assert last["pagination"] == {"totalHits": 6}  # and no scrollId
    add(live, event("t6", 1, ts=T0 + 6))
    pages, _ = pull(live, pageSize=3)
    assert pages == [["t6", "t5", "t4"], ["t3", "t2", "t1"], ["t0"]]
    pages, _ = pull(live, pageSize=3, dateField="updated", sortDirection="asc")
    assert sum(pages, []) == ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]  # one insert: id order


def test_a_cursor_for_other_parameters_or_garbage_restarts_at_page_one(live):
    add(live, *(event(f"t{i}", 1, ts=T0 + i) for i in range(7)))
    first = ok(live, pageSize=3, sortDirection="asc")
    scroll = first["pagination"]["scrollId"]
    assert ids(ok(live, pageSize=3, sortDirection="asc", scrollId=scroll)) == ["t3", "t4", "t5"]
    for changed in ({"pageSize": 2}, {"sortDirection": "desc"}, {"dateField": "updated"}):
        body = {"pageSize": 3, "sortDirection": "asc", **changed}
        assert ids(ok(live, scrollId=scroll, **body)) == ids(ok(live, **body))
    for garbage in ("garbage", "!!!", base64.b64encode(b"[1, 2]").decode(), ""):
        assert ids(ok(live, pageSize=3, sortDirection="asc", scrollId=garbage)) == ids(first)
    # The dates are not compared (LangWatch does not): the cursor goes on in the new window.
    later = ok(live, pageSize=3, sortDirection="asc", scrollId=scroll, endDate=T0 + 4)
    assert ids(later) == ["t3", "t4"]


def test_the_updated_axis_reads_a_snapshot_and_says_where_the_next_pull_starts(live, clock):
    add(live, *(event(f"t{i}", 1) for i in range(4)))
    clock.advance()
    body = {"dateField": "updated", "sortDirection": "asc", "pageSize": 2}
    first = ok(live, **body)
    snapshot = clock.ms
    assert ids(first) == ["t0", "t1"]
    assert first["pagination"]["updatedThrough"] == snapshot
    clock.advance()
    add(live, event("t3", 2))  # t3 changes mid-scroll, t4 is new: both after the snapshot
    add(live, event("t4", 1))
    second = ok(live, scrollId=first["pagination"]["scrollId"], **body)
    assert ids(second) == ["t2"]  # t3 left this scroll; t4 is not in it
    assert second["pagination"]["updatedThrough"] == snapshot
    assert second["pagination"]["totalHits"] == 3
    pages, last = pull(live, **{**body, "startDate": snapshot})
    assert sum(pages, []) == ["t3", "t4"]  # the next pull from updatedThrough has both
    assert last["pagination"]["updatedThrough"] == clock.ms
    # An endDate before the snapshot caps updatedThrough.
    assert ok(live, **{**body, "endDate": snapshot - 5})["pagination"]["updatedThrough"] == (
        snapshot - 5
    )


def test_a_late_event_on_an_old_trace_moves_its_updated_at_not_its_start(live, clock):
    add(live, event("old", 1, ts=T0 + 100), event("other", 1, ts=T0 + 200))
    inserted = clock.ms
    clock.advance(60_000)
    add(live, event("old", 2, ts=T0 + 300))
    trace = ok(live, traceIds=["old"])["traces"][0]
    assert trace["timestamps"] == {
        "started_at": T0 + 100,
        "inserted_at": inserted,
        "updated_at": inserted + 60_000,
    }
    assert ids(ok(live, dateField="updated")) == ["old", "other"]
    clock.advance()
    add(live, event("old", 0, ts=T0 + 1))  # an earlier event moves the start back
    assert ok(live, traceIds=["old"])["traces"][0]["timestamps"]["started_at"] == T0 + 1


def test_trace_ids_narrow_the_search(live):
    add(live, *(event(f"t{i}", 1) for i in range(4)))
    answer = ok(live, traceIds=["t1", "t3", "missing"], sortDirection="asc")
    assert ids(answer) == ["t1", "t3"] and answer["pagination"]["totalHits"] == 2
    assert len(ok(live, traceIds=[])["traces"]) == 4  # an empty list narrows nothing


# -- the event caps -------------------------------------------------------------------------


def test_select_cuts_a_trace_at_1000_events_and_get_does_not(live):
    add(live, *(event("big", i, ts=T0 + i) for i in range(1005)))
    selected = ok(live, select=["events.timestamp"])["traces"][0]["events"]
    assert len(selected) == 1000 and selected[-1] == {"timestamp": T0 + 999}  # the first 1000
    whole = HTTP.get(live.url + "/api/traces/big", headers=live.headers()).json()
    assert len(whole["events"]) == len(whole["spans"]) == 1005
    assert whole["events"][-1]["event_id"] == span("big", "big-e1004")
    assert len(ok(live, includeSpans=True)["traces"][0]["events"]) == 1005


# -- GET /api/traces/{id} -------------------------------------------------------------------


def test_get_answers_the_whole_trace_or_langwatchs_404(live):
    add(live, event("t1", 2), event("t1", 1))
    answer = HTTP.get(live.url + "/api/traces/t1", headers={"Authorization": "Bearer sandbox-key"})
    assert answer.status_code == 200
    trace = answer.json()
    assert [e["event_id"] for e in trace["events"]] == [span("t1", "t1-e1"), span("t1", "t1-e2")]
    searched = ok(live, includeSpans=True)["traces"][0]
    assert {k: v for k, v in trace.items() if k != "ascii_tree"} == searched
    assert "langwatch.track_event" in trace["ascii_tree"]
    missing = HTTP.get(live.url + "/api/traces/nope", headers=live.headers())
    assert missing.status_code == 404
    assert missing.json() == {"error": "Trace not found.", "message": "Trace not found."}


# -- refusals -------------------------------------------------------------------------------


def reasons(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["meta"]["field"], r["meta"]["type"]) for r in answer["reasons"]]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"pageOffset": 1}, [("pageOffset", "custom")]),
        ({"pageSize": 0}, [("pageSize", "too_small")]),
        ({"pageSize": 2.5}, [("pageSize", "invalid_type")]),
        ({"startDate": None}, [("startDate", "invalid_union")]),
        ({"endDate": "yesterday"}, [("endDate", "custom")]),
        ({"dateField": "created"}, [("dateField", "invalid_enum_value")]),
        ({"select": []}, [("select", "too_small")]),
        ({"select": ["trace_id"] * 201}, [("select", "too_big")]),
        ({"select": ["events.id", "trace_id", "nope"]}, [("select", "unknown_path")] * 2),
        (
            {"includeSpans": "yes", "pageOffset": 2},
            [("pageOffset", "custom"), ("includeSpans", "invalid_type")],
        ),
    ],
)
def test_schema_failures_answer_422_naming_each_field(idle, body, expected):
    status, answer = search(idle, **body)
    assert status == 422
    assert answer["error"] == "validation_error" and answer["target"] == "json"
    assert reasons(answer) == expected
    assert answer["fields"] == [field for field, _ in expected]


def test_a_missing_start_date_and_an_unknown_path_word_as_langwatch_does(idle):
    answer = HTTP.post(
        idle.url + "/api/traces/search", json={"endDate": 1}, headers=idle.headers()
    ).json()
    assert answer["message"] == "The request body didn't match the expected shape."
    assert answer["reasons"] == [
        {
            "code": "schema_failure",
            "kind": "schema_failure",
            "fault": "customer",
            "meta": {"field": "startDate", "type": "invalid_union", "message": "Invalid input"},
        }
    ]
    _, unknown = search(idle, select=["events.id"])
    assert unknown["reasons"][0]["meta"] == {
        "field": "select",
        "type": "unknown_path",
        "message": "Unknown or unsupported select path: events.id",
        "received": "events.id",
    }


def test_a_page_size_over_1000_is_cut_to_1000_as_langwatch_does(live):
    add(live, event("t1", 1))
    status, answer = search(live, pageSize=1001)
    assert status == 200 and ids(answer) == ["t1"]


def test_malformed_json_is_a_400_and_a_non_json_body_validates_as_empty(idle):
    url = idle.url + "/api/traces/search"
    headers = {**idle.headers(), "Content-Type": "application/json"}
    for raw in (b"{", b"", b'{"startDate": NaN, "endDate": 1}'):
        answer = HTTP.post(url, content=raw, headers=headers)
        assert answer.status_code == 400
        assert answer.json()["error"] == "malformed_request"
    text = HTTP.post(url, content=json.dumps(EVERYTHING), headers=idle.headers())
    assert text.status_code == 422  # no JSON content type: Hono reads the body as {}


def test_a_bad_or_missing_key_is_a_401_on_both_routes(live):
    add(live, event("t1", 1))
    for headers, message in (
        ({}, sandbox_reads.MISSING_KEY),
        ({"X-Auth-Token": "wrong"}, sandbox_reads.INVALID_KEY),
        ({"Authorization": "Bearer wrong"}, sandbox_reads.INVALID_KEY),
    ):
        found = HTTP.post(live.url + "/api/traces/search", json=EVERYTHING, headers=headers)
        got = HTTP.get(live.url + "/api/traces/t1", headers=headers)
        assert (found.status_code, found.json()) == (got.status_code, got.json()) == (401, message)
    bad = HTTP.post(live.url + "/api/traces/search", content=b"{", headers={"X-Auth-Token": "x"})
    assert bad.status_code == 401  # the key is checked before the body


# -- options and faults ---------------------------------------------------------------------


def test_a_server_before_select_ignores_it(clock):
    with live_sandbox(clock=clock, reads=ReadOptions(select_supported=False)) as live:
        add(live, event("t1", 1))
        answer = ok(live, select=["trace_id", "events.type", "no.such.path"])
        assert "schema" not in answer and "events" not in answer["traces"][0]
        assert answer["traces"][0]["spans"] == []  # a summary, as if no select was sent
        spans = ok(live, select=["events.type"], includeSpans=True)["traces"][0]
        assert spans["events"][0]["event_id"] == span("t1", "t1-e1")


def test_a_server_that_ignores_the_scroll_answers_page_one_forever(clock):
    with live_sandbox(clock=clock, reads=ReadOptions(ignore_scroll=True)) as live:
        add(live, *(event(f"t{i}", 1, ts=T0 + i) for i in range(5)))
        first = ok(live, pageSize=2, sortDirection="asc")
        again = ok(live, pageSize=2, sortDirection="asc", scrollId=first["pagination"]["scrollId"])
        assert ids(first) == ids(again) == ["t0", "t1"]
        assert again["pagination"]["scrollId"] == first["pagination"]["scrollId"]


def test_faults_apply_to_the_read_routes(live):
    add(live, event("t1", 1))
    live.sandbox.faults = Faults(fail_rate=1)
    assert search(live)[0] == 500
    live.sandbox.faults = Faults(throttle_rate=1, retry_after_s=3)
    answer = HTTP.get(live.url + "/api/traces/t1", headers=live.headers())
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
    live.sandbox.faults = Faults(drop_rate=1)
    with pytest.raises(httpx.HTTPError):
        search(live)
    live.sandbox.faults = Faults()
    assert search(live)[0] == 200
    assert live.counter.statuses[500] == live.counter.statuses[429] == 1


# -- the table ------------------------------------------------------------------------------


def test_events_stored_before_the_table_get_traces_and_a_deleted_dataset_clears_them(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        Sandbox(store, "k").insert([event("t1", 1), event("t1", 2), event("t2", 1)])
        store.execute("DELETE FROM sandbox_traces")  # as a store made before it
    with Store(path) as store:
        box = Sandbox(store, "k", clock=lambda: 1_900_000_000.0)
        rows = store.rows("SELECT trace_id, started_at, updated_at FROM sandbox_traces ORDER BY 1")
        assert rows == [("t1", T0 + 1, 1_900_000_000_000), ("t2", T0 + 1, 1_900_000_000_000)]
        assert box.insert([event("t1", 1)]) == [False]  # a repeat does not move the trace
        assert store.scalar("SELECT updated_at FROM sandbox_traces WHERE trace_id = 't1'") == (
            1_900_000_000_000
        )
        store.delete_dataset("sandbox")
        assert store.scalar("SELECT count(*) FROM sandbox_traces") == 0
