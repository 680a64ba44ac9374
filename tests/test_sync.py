"""The sync from LangWatch, against a LangWatch stand-in behind httpx.MockTransport: paging,
replacing traces, the cursor across pulls and kills, retries, refusals, old servers, the
1000-event cut, rejects and metadata. tests/test_sync_sandbox.py runs it over loopback HTTP
against the sandbox."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langwatch_fake import (
    ENDPOINT,
    KEY,
    FakeLangWatch,
    asgi_app,
    change_three_traces,
    event,
    seven_traces,
)
from sandbox_server import serve_in_thread

from eventlens.cli import main
from eventlens.client import Target
from eventlens.store import Store
from eventlens.sync import PullError, PullSpec, ReadClient, Retry, cursor, past_pulls, pull


@pytest.fixture
def server() -> FakeLangWatch:
    return seven_traces()


def client_for(server: FakeLangWatch, sleeps: list[float] | None = None) -> ReadClient:
    target = Target(endpoint=ENDPOINT, key=KEY, key_source="environment")
    return ReadClient(
        target,
        retry=Retry(attempts=4, base_s=0.5, cap_s=4),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        transport=httpx.MockTransport(server.handler),
    )


def run(store: Store, server: FakeLangWatch, sleeps: list[float] | None = None, **spec: Any):
    spec.setdefault("page_size", 3)
    return pull(store, PullSpec(endpoint=ENDPOINT, **spec), client=client_for(server, sleeps))


def held(store: Store, dataset: str = "langwatch") -> dict[str, list[tuple]]:
    """The dataset's events per trace, as comparable tuples."""
    out: dict[str, list[tuple]] = {}
    for tid, kind, ts, metrics in store.rows(
        "SELECT trace_id, event_type, epoch_ms(timestamp), metrics FROM events WHERE dataset = ?"
        " ORDER BY trace_id, timestamp, event_type",
        [dataset],
    ):
        out.setdefault(tid, []).append((kind, ts, dict(metrics)))
    return out


def expected(server: FakeLangWatch) -> dict[str, list[tuple]]:
    return {
        tid: sorted(
            ((e["event_type"], e["timestamp"], e["metrics"]) for e in t["events"]),
            key=lambda e: (e[1], e[0]),
        )
        for tid, t in server.traces.items()
        if t["events"]
    }


def test_a_first_pull_holds_what_the_server_holds(store, server):
    result = run(store, server)
    assert held(store) == expected(server)
    assert (result.traces, result.events, result.added, result.removed) == (7, 14, 14, 0)
    assert result.pages == 3  # 3 + 3 + 1
    assert result.as_dict()["updated_through"] == "1970-01-01T00:16:40.000Z"  # the server's now
    # Every request of the scroll asked the same thing on the updated axis, ascending.
    asks = [{k: v for k, v in r.items() if k != "scrollId"} for r in server.requests]
    assert all(a == asks[0] for a in asks)
    assert asks[0]["dateField"] == "updated" and asks[0]["sortDirection"] == "asc"
    assert "events.metrics" in asks[0]["select"] and "metadata.user_id" in asks[0]["select"]
    # The summary the Traces page reads follows.
    assert store.scalar("SELECT sum(events) FROM trace_summary WHERE dataset = 'langwatch'") == 14


def test_a_second_pull_goes_on_from_updated_through_and_replaces_changed_traces(store, server):
    run(store, server)
    change_three_traces(server)
    server.requests.clear()
    result = run(store, server)
    assert server.requests[0]["startDate"] == 1_000_000  # the first pull's updatedThrough
    assert held(store) == expected(server)
    assert (result.traces, result.added, result.removed) == (3, 2, 1)


def test_a_last_page_exactly_full_ends_on_an_empty_page(store, server):
    server.traces.pop("t6")  # six traces: two full pages of three
    result = run(store, server)
    assert held(store) == expected(server)
    assert result.pages == 3 and len(server.requests) == 3
    assert server.requests[-1]["scrollId"]  # the empty page was asked with the last cursor


def test_a_pull_killed_between_pages_continues_its_scroll_and_ends_exact(store, server):
    class Killed(BaseException):
        pass

    calls = {"n": 0}
    real = server.handler

    def dies_on_the_third(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed()
        return real(request)

    target = Target(endpoint=ENDPOINT, key=KEY, key_source="environment")
    dying = ReadClient(target, transport=httpx.MockTransport(dies_on_the_third))
    with pytest.raises(Killed):
        pull(store, PullSpec(endpoint=ENDPOINT, page_size=3), client=dying)
    saved = cursor(store, ENDPOINT, "langwatch")
    assert saved.scroll and saved.scroll["scroll_id"]  # two pages in, the third not
    assert len(held(store)) == 6
    server.requests.clear()
    result = run(store, server)
    assert server.requests[0]["scrollId"] == saved.scroll["scroll_id"]
    assert held(store) == expected(server)
    assert result.traces == 1
    assert cursor(store, ENDPOINT, "langwatch").scroll is None
    assert list(past_pulls(store)["outcome"]) == ["done", "failed"]


def test_a_first_pull_adds_and_a_trace_held_in_any_form_is_replaced(store, server, tmp_path):
    """A page of new traces is inserted without the replace's deletes and counts; a trace the
    dataset holds only as events the summary has not merged yet (as the sandbox leaves them
    between its merges) is still found and replaced, not doubled."""
    from eventlens.ingest import load_files

    path = tmp_path / "t0.jsonl"  # t0: on the first page, before any merge catches it up
    path.write_text(json.dumps({**event("old", ts=1), "trace_id": "t0"}) + "\n")
    assert load_files(store, [path], "langwatch", summarise=False).loaded == 1
    result = run(store, server)
    assert held(store) == expected(server)  # t0's loaded event replaced by the pulled ones
    assert (result.added, result.removed) == (14, 1)
    assert store.scalar("SELECT sum(events) FROM trace_summary WHERE dataset = 'langwatch'") == 14


def test_pulling_a_page_twice_changes_nothing(store, server):
    run(store, server)
    before = held(store)
    result = run(store, server, full=True)
    assert held(store) == before
    assert (result.added, result.removed) == (0, 0)
    assert store.scalar("SELECT events FROM datasets WHERE name = 'langwatch'") == 14


def test_a_cursor_that_restarts_is_detected(store, server):
    server.ignore_scroll = True
    with pytest.raises(PullError, match="started the scroll again"):
        run(store, server)
    assert len(server.requests) == 2
    assert cursor(store, ENDPOINT, "langwatch").scroll is None  # not resumed into a loop
    assert list(past_pulls(store)["outcome"]) == ["failed"]


def test_retries_honour_retry_after_and_back_off(store, server):
    server.faults = [
        lambda: httpx.Response(429, headers={"Retry-After": "7"}),
        lambda: httpx.Response(503),
        lambda: (_ for _ in ()).throw(httpx.ConnectError("connection dropped")),
    ]
    sleeps: list[float] = []
    run(store, server, sleeps)
    # Retry-After as given; then the backoff doubles (0.5 s base, jittered to half of it).
    assert len(sleeps) == 3 and sleeps[0] == 7.0
    assert 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0
    assert held(store) == expected(server)


def test_retries_run_out_with_a_sentence_and_keep_what_was_applied(store, server):
    server.faults = [lambda: None] + [lambda: httpx.Response(500)] * 10
    with pytest.raises(PullError, match="still failing after 4 attempts") as err:
        run(store, server)
    assert KEY not in str(err.value)
    assert len(held(store)) == 3  # the first page stays; the next pull goes on from it


def test_a_refused_key_stops_at_once_and_is_never_shown(store, server):
    target = Target(endpoint=ENDPOINT, key="wrong-" + KEY, key_source="environment")
    bad = ReadClient(target, transport=httpx.MockTransport(server.handler))
    with pytest.raises(PullError, match="refused the key") as err:
        pull(store, PullSpec(endpoint=ENDPOINT), client=bad)
    assert KEY not in str(err.value) and "wrong-" not in str(err.value)
    assert past_pulls(store)["message"].str.contains(KEY).sum() == 0


def test_a_422_shows_the_servers_message(store, server):
    target = Target(endpoint=ENDPOINT, key=KEY, key_source="environment")
    client = ReadClient(target, transport=httpx.MockTransport(server.handler))
    spec = PullSpec(endpoint=ENDPOINT)
    object.__setattr__(spec, "page_size", 1001)  # past the spec's own check, to reach the server
    with pytest.raises(PullError, match="422.*pageSize: Number must be <= 1000"):
        pull(store, spec, client=client)


def test_a_server_that_ignores_select_is_read_with_include_spans(store, server):
    server.honour_select = False
    run(store, server)
    assert held(store) == expected(server)
    assert "select" in server.requests[0] and server.requests[1].get("includeSpans") is True
    assert store.scalar("SELECT count(*) FROM events WHERE event_id LIKE 'span%'") == 14


def test_a_trace_of_exactly_1000_events_is_read_whole(store, server):
    server.put("big", [event(ts=1_700_000_000_000 + i) for i in range(1200)], 50)
    server.cap = 1000
    result = run(store, server)
    assert server.gets == ["big"]
    assert len(held(store)["big"]) == 1200
    assert result.refetched == 1


def test_bad_events_become_rejects_naming_the_trace_and_position(store, server):
    server.put(
        "odd",
        [event(), {"event_type": "x", "timestamp": 1_700_000_000_001, "metrics": {"m": "high"}}],
        60,
    )
    result = run(store, server)
    assert result.rejected == 1
    assert store.rows("SELECT location, trace_id FROM rejects") == [("trace odd, event 2", "odd")]
    # Fixed on the server: the next pull of the trace replaces its reject.
    server.traces["odd"]["events"][1]["metrics"] = {"m": 3.0}
    server.traces["odd"]["updated"] = server.now = 3_000_000
    run(store, server)
    assert store.scalar("SELECT count(*) FROM rejects") == 0
    assert store.scalar("SELECT rejects FROM datasets WHERE name = 'langwatch'") == 0


def test_metadata_is_kept_per_trace_and_replaced_with_it(store, server):
    server.traces["t1"]["meta"] = {"user_id": "u1", "thread_id": "th", "labels": ["a", "b"]}
    run(store, server)
    assert store.rows(
        "SELECT user_id, thread_id, customer_id, labels FROM trace_metadata WHERE trace_id = 't1'"
    ) == [("u1", "th", None, ["a", "b"])]
    server.traces["t1"]["meta"] = {"customer_id": "c9"}
    server.traces["t1"]["updated"] = server.now = 5_000_000
    run(store, server)
    assert store.rows("SELECT user_id, customer_id FROM trace_metadata WHERE trace_id = 't1'") == [
        (None, "c9")
    ]


def test_without_a_key_the_pull_says_which_variable(store, monkeypatch):
    monkeypatch.delenv("LANGWATCH_API_KEY", raising=False)
    with pytest.raises(PullError, match="set LANGWATCH_API_KEY"):
        pull(store, PullSpec(endpoint=ENDPOINT))


# -- the command, over loopback HTTP ----------------------------------------------------------


@pytest.fixture
def served(server):
    with serve_in_thread(asgi_app(server)) as url:
        yield url


def invoke(runner, db_path: str, url: str, *args: str, key: str | None = KEY):
    env = {"LANGWATCH_API_KEY": key or ""}
    return runner.invoke(main, ["pull", "--db", db_path, "--endpoint", url, *args], env=env)


def test_the_command_pulls_and_ends_with_one_json_object(runner, db_path, served, server):
    result = invoke(runner, db_path, served, "--page-size", "3", "--json")
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last == {
        "dataset": "langwatch",
        "traces": 7,
        "events": 14,
        "added": 14,
        "removed": 0,
        "rejected": 0,
        "pages": 3,
        "updated_through": "1970-01-01T00:16:40.000Z",
    }
    assert "Pulled 7 traces (14 events: 14 added" in result.output
    # A second pull continues: nothing new, one page, nothing changed.
    again = invoke(runner, db_path, served, "--json")
    assert json.loads(again.output.strip().splitlines()[-1])["added"] == 0
    with Store(db_path) as store:
        assert held(store) == expected(server)


def test_the_command_exits_1_on_a_refused_key_and_never_shows_it(runner, db_path, served):
    result = invoke(runner, db_path, served, key="wrong-" + KEY)
    assert result.exit_code == 1
    assert "refused the key" in result.output and "wrong-" not in result.output
    with Store(db_path) as store:
        assert KEY not in repr(store.rows("SELECT * FROM pulls"))
        assert KEY not in repr(store.rows("SELECT * FROM pull_cursors"))


def test_the_command_exits_1_without_a_key_and_2_on_usage(runner, db_path, served):
    assert invoke(runner, db_path, served, key=None).exit_code == 1
    assert invoke(runner, db_path, served, "--since", "last tuesday").exit_code == 2
    assert invoke(runner, db_path, served, "--page-size", "0").exit_code == 2


def test_a_pulled_traces_metadata_is_read_per_dataset_with_bound_values(store, server):
    from eventlens.traces import TraceMetadata, metadata

    server.traces["t1"]["meta"] = {"user_id": "u'1", "labels": ["a", "b"], "customer_id": "c"}
    run(store, server)
    found = metadata(store, "t1", "langwatch")
    assert found is not None and found.updated_at is not None
    assert found.fields() == {"user_id": "u'1", "customer_id": "c", "labels": "a, b"}
    assert metadata(store, "t2", "langwatch") == TraceMetadata(updated_at=found_at(store, "t2"))
    assert metadata(store, "t1", "other") is None  # another dataset's copy has none
    assert metadata(store, "t1' OR '1'='1", "langwatch") is None


def found_at(store: Store, trace_id: str):
    return store.scalar("SELECT updated_at FROM trace_metadata WHERE trace_id = ?", [trace_id])
