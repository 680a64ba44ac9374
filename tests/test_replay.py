"""Replay (lib/eventlens/replay.py) against real loopback HTTP: the sandbox, or recording stubs.

Every server here runs in a thread of the test process (tests/sandbox_server.py); the journal is a
DuckDB file in tmp_path, so plans are written beside it and vanish with the test.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from replay_helpers import report_with, session_of, write_jsonl
from sandbox_server import live_sandbox, serve_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from virtual_clock import VirtualClock

from eventlens import ingest
from eventlens import replay as rp
from eventlens.ingest import load_files
from eventlens.replay import engine as rp_engine
from eventlens.replay import planning as rp_planning
from eventlens.replay import report as rp_report
from eventlens.sandbox import DATASET, PATHS, Faults
from eventlens.store import Store

KEY = "sk-lw-replay-Qz8Xc4Vb7Nm2Lk5Jh"
WRONG_KEY = "sk-lw-replay-wrong-Tt6Yu1Io9Pp3"
BASE_MS = 1_762_000_000_000
TYPES = ("llm_call", "search", "page_view")

# Source lines that are not valid events, with the reason ingest gives (and the journal keeps).
INVALID_LINES = [
    ('{"trace_id": "t_bad", "event_type": "x", "metrics": {', "not valid JSON"),
    (json.dumps({"event_type": "x", "metrics": {}}), "trace_id: is required"),
    (
        json.dumps({"trace_id": "t_bad", "event_type": "x", "metrics": {"n": "1"}}),
        "metrics.n: must be a number, got string",
    ),
    (
        json.dumps({"trace_id": "t_bad", "event_type": "thumbs_up_down", "metrics": {"vote": 5}}),
        "metrics.vote: must be a number from -1 to 1 for thumbs_up_down, got 5",
    ),
    (
        json.dumps({"trace_id": "t_bad", "event_type": "x", "metrics": {}, "event_id": 7}),
        "event_id: must be a string, got number",
    ),
    (
        json.dumps({"trace_id": "t_bad", "event_type": "x", "metrics": {}, "timestamp": "soon"}),
        "timestamp: must be a number (epoch milliseconds), got string",
    ),
    (json.dumps([1, 2]), "expected a JSON object (one event), got an array"),
]


# -- helpers ------------------------------------------------------------------------------------


def make_events(n: int, traces: int, *, id_every: int = 2, seed: int = 1) -> list[dict[str, Any]]:
    """n valid events over `traces` traces, timestamps rising with i; every id_every-th has an
    event_id, the others none (their identity is then their content)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body: dict[str, Any] = {
            "trace_id": f"trace_{i % traces:04d}",
            "event_type": TYPES[i % len(TYPES)],
            "metrics": {"n": i, "latency_ms": round(rng.uniform(10, 900), 1)},
            "event_details": {"user_id": f"user_{i % 17}", "country": rng.choice(["NL", "IN"])},
            "timestamp": BASE_MS + i * 250 + rng.randint(0, 200),
        }
        if i % id_every == 0:
            body["event_id"] = f"evt_{i:06d}"
        out.append(body)
    return out


def content(body: dict[str, Any]) -> tuple:
    """What an event says, ids aside: comparable between the source, the plan and a store."""
    return (
        body["event_type"],
        body.get("timestamp"),
        tuple(sorted((k, float(v)) for k, v in body["metrics"].items())),
        tuple(sorted((body.get("event_details") or {}).items())),
    )


def plan_rows(run: rp.Run) -> list[rp.Planned]:
    return [p for chunk in rp.read_plan(run.plan_path) for p in chunk]


def sent_keys(run: rp.Run) -> set[tuple[str, str]]:
    """(trace_id, event_id) of every planned event, as it is sent."""
    return {(p.send_trace_id, p.send_event_id) for p in plan_rows(run)}


def sandbox_keys(store: Store) -> tuple[int, int, set[tuple[str, str]]]:
    """count(*), count(distinct (trace_id, event_id)) and the keys stored by a sandbox."""
    total, distinct = store.rows(
        "SELECT count(*), count(DISTINCT (trace_id, event_id)) FROM events WHERE dataset = ?",
        [DATASET],
    )[0]
    keys = set(store.rows("SELECT trace_id, event_id FROM events WHERE dataset = ?", [DATASET]))
    return total, distinct, keys


def journal_text(store: Store) -> str:
    """Every value of the run journal's rows as text (to look for a key in it)."""
    rows = store.rows("SELECT * FROM replay_runs") + store.rows("SELECT * FROM replay_outcomes")
    return "\n".join(repr(r) for r in rows)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


@dataclass
class Hit:
    """One request a Recorder received: when (its clock's monotonic), what, what it answered."""

    t: float
    body: dict[str, Any]
    status: int


Answer = Callable[[dict[str, Any], int], tuple[int, Any, dict[str, str] | None]]


class Recorder:
    """A fake track_event endpoint: records every POST's arrival time and body; answers 200
    unless `answer(body, index)` says otherwise; `delay(body)` seconds are added before answering.
    Arrival times are read from `now` (the session's virtual clock, in the pacing tests).
    Served with no_delay: otherwise each answer's body waits ~40 ms for a delayed ACK, paid by
    every trace's events one after another; only the real-clock rate test keeps that, as a real
    endpoint's.
    """

    def __init__(
        self,
        answer: Answer | None = None,
        delay: Callable[[dict], float] | None = None,
        now: Callable[[], float] = time.monotonic,
    ):
        self.answer = answer
        self.delay = delay
        self.now = now
        self.hits: list[Hit] = []
        self.app = Starlette(routes=[Route(p, self._handle, methods=["POST"]) for p in PATHS])

    async def _handle(self, request: Request) -> Response:
        t = self.now()  # the headers are in (the body can lag a delayed ACK behind)
        body = json.loads(await request.body())
        status, payload, headers = (
            self.answer(body, len(self.hits))
            if self.answer
            else (200, {"message": "Event tracked"}, None)
        )
        self.hits.append(Hit(t, body, status))
        if self.delay:
            await asyncio.sleep(self.delay(body))
        return JSONResponse(payload, status, headers=headers)

    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if h.status == 200]


@pytest.fixture
def journal() -> Iterator[Store]:
    """The store that holds the replay journal (in memory: its plans go to a temporary folder,
    removed afterwards). The CLI tests use a journal file."""
    with Store(":memory:") as store:
        yield store
        rp.cleanup_plan_dir(store)


def plan_file(
    journal: Store,
    path: Path,
    url: str,
    *,
    transforms: rp.Transforms | None = None,
    run_id: str | None = None,
    **pacing: Any,
) -> rp.Run:
    return rp.plan(
        journal,
        rp.Source(path=str(path)),
        transforms or rp.Transforms(),
        rp.Pacing(**pacing),
        rp.Endpoint(url=url),
        run_id=run_id,
    )


def on_virtual_time(journal: Store, run: rp.Run, clock: VirtualClock) -> rp.Replay:
    """A session paced by a virtual clock, sending over real loopback HTTP: pacing is what the
    engine does with the clock, and the requests arrive at the virtual time they were sent."""
    return rp.Replay(journal, run, KEY, clock=clock, transport=clock.transport())


# -- 1. faults: exactly once, every event accounted for -----------------------------------------


def test_faults_every_valid_event_stored_exactly_once(journal, tmp_path):
    """10% 500s, 5% 429 + Retry-After: 1, 2% answers dropped after storing: every valid event is
    stored exactly once by (trace_id, event_id), the invalid ones are dead letters with reasons,
    and the report accounts for every event. 300 events make ~340 requests: the sandbox's
    seeded draws for those hold 30-odd 500s, a dozen 429s and a few drops."""
    valid = make_events(300, traces=120, id_every=2)
    bad = [INVALID_LINES[k % len(INVALID_LINES)] for k in range(10)]
    lines: list[Any] = [*valid, *(raw for raw, _ in bad)]
    lines.append(valid[10])  # a repeat with an event_id
    lines.append(valid[11])  # a repeat without one (same content)
    random.Random(3).shuffle(lines)  # the plan orders by timestamp, not by line
    reasons = dict(INVALID_LINES)
    invalid_at = {n: reasons[x] for n, x in enumerate(lines, 1) if isinstance(x, str)}
    assert len(invalid_at) == 10
    source = write_jsonl(tmp_path / "mixed.jsonl", lines)

    faults = Faults(fail_rate=0.10, throttle_rate=0.05, drop_rate=0.02, retry_after_s=1, seed=11)
    with live_sandbox(key=KEY, faults=faults) as box:
        run = plan_file(
            journal,
            source,
            box.url,
            # Each 429 holds the whole run for 1 s, so a wide window keeps the holds few.
            concurrency=256,
            backoff_s=0.02,
            max_backoff_s=0.2,
            max_retries=12,
        )
        assert (run.planned, run.invalid, run.duplicates) == (len(valid), 10, 2)
        # On virtual time: each 429's Retry-After holds the run for a virtual second.
        report = on_virtual_time(journal, run, VirtualClock()).execute()

        # The faults happened: 500s, 429s, and dropped answers whose resends were repeats.
        assert box.counter.statuses[500] > 0
        assert box.counter.statuses[429] > 0
        assert box.sandbox.counts["duplicate"] > 0
        assert box.sandbox.counts["rejected"] == 0

        total, distinct, keys = sandbox_keys(box.store)
        assert total == distinct == len(valid)
        assert keys == sent_keys(run)
        # Kept event_ids are the source's; the stored content is the source's.
        plan = plan_rows(run)
        kept = {(b["trace_id"], b["event_id"]) for b in valid if "event_id" in b}
        assert kept <= keys
        assert sum(p.event_id is None for p in plan) == len(valid) // 2
        stored = collections.Counter(
            content(
                {
                    "event_type": t,
                    "timestamp": ts,
                    "metrics": m,
                    "event_details": d,
                }
            )
            for t, ts, m, d in box.store.rows(
                "SELECT event_type, epoch_ms(timestamp), metrics, event_details FROM events"
            )
        )
        assert stored == collections.Counter(content(b) for b in valid)

    assert report.state == "finished"
    assert report.events == len(valid) + 10
    assert report.accepted == report.planned == len(valid)
    assert report.invalid == report.dead_lettered == 10
    assert report.rejected == 0
    assert report.accepted + report.dead_lettered == report.events
    assert report.retried > 0
    assert report.requests == report.accepted + report.retried
    assert (report.failed, report.unknown, report.not_sent) == (0, 0, 0)
    assert report.duplicates_in_source == 2

    out = tmp_path / "dead.jsonl"
    assert rp.write_dead_letters(journal, run.run_id, out) == 10
    letters = [json.loads(line) for line in out.read_text().splitlines()]
    assert {letter["dead_letter"]["line"] for letter in letters} == set(invalid_at)
    for letter in letters:
        meta = letter["dead_letter"]
        assert meta["outcome"] == "invalid"
        assert meta["run_id"] == run.run_id
        assert meta["reason"].startswith(f"line {meta['line']}: ")
        assert invalid_at[meta["line"]] in meta["reason"]
        raw = lines[meta["line"] - 1]
        try:
            original = json.loads(raw)
        except ValueError:
            original = None
        if isinstance(original, dict):  # the record as the source had it
            assert {k: v for k, v in letter.items() if k != "dead_letter"} == original
        else:  # not an object: the raw line is kept as it was
            assert letter["raw"] == raw


# -- 2. order and pacing ------------------------------------------------------------------------


def test_each_trace_is_sent_in_timestamp_order_under_concurrency(journal, tmp_path):
    """16 in flight over 12 traces, answers delayed at random and some first attempts failing:
    every trace's events still arrive one after another in timestamp order."""
    events = make_events(180, traces=12, id_every=1)
    shuffled = events[:]
    random.Random(8).shuffle(shuffled)  # file order is not timestamp order
    source = write_jsonl(tmp_path / "order.jsonl", shuffled)
    failed_once: set[str] = set()

    def answer(body: dict, _: int) -> tuple[int, Any, None]:
        if body["metrics"]["n"] % 7 == 0 and body["event_id"] not in failed_once:
            failed_once.add(body["event_id"])
            return 500, {"error": "try again"}, None
        return 200, {"message": "Event tracked"}, None

    jitter = random.Random(2)
    recorder = Recorder(answer, delay=lambda body: jitter.uniform(0, 0.006))
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, concurrency=16, backoff_s=0.005)
        report = rp.Replay(journal, run, KEY).execute()
    assert report.accepted == 180
    assert report.retried == len(failed_once) > 0

    expected: dict[str, list[str]] = collections.defaultdict(list)
    for body in sorted(events, key=lambda b: b["timestamp"]):
        expected[body["trace_id"]].append(body["event_id"])
    arrived: dict[str, list[str]] = collections.defaultdict(list)
    for hit in recorder.accepted():
        arrived[hit.body["trace_id"]].append(hit.body["event_id"])
    assert arrived == expected
    # Traces really were in flight together (or the order above proves little).
    first_trace = [h.body["trace_id"] for h in recorder.hits[:40]]
    assert len(set(first_trace)) >= 8


@pytest.mark.parametrize("virtual", [True, False], ids=["virtual-clock", "real-clock"])
def test_rate_200_per_second_within_5_percent(journal, tmp_path, virtual):
    """Also on the real clock, end to end: it is what a run is paced by outside the tests."""
    source = write_jsonl(tmp_path / "rate.jsonl", make_events(300, traces=50))
    clock = VirtualClock() if virtual else None
    recorder = Recorder(now=clock.monotonic if clock else time.monotonic)
    with serve_in_thread(recorder.app, no_delay=virtual) as url:
        run = plan_file(journal, source, url, rate=200, concurrency=32)
        assert rp.dry_run(journal, run).estimated_s == 1.5
        session = on_virtual_time(journal, run, clock) if clock else rp.Replay(journal, run, KEY)
        report = session.execute()
    assert report.accepted == 300
    times = sorted(h.t for h in recorder.hits)
    # The rate over every run of 50 consecutive requests: its median is the pacing itself, and
    # is not moved by a stall of this loaded 2-core machine (which only ever slows a window).
    windows = [49 / (b - a) for a, b in zip(times, times[49:], strict=False)]
    assert 190 <= statistics.median(windows) <= 210, statistics.median(windows)
    # First to last arrival: never above the cap; below it only by what stalls cost.
    overall = (len(times) - 1) / (times[-1] - times[0])
    assert 140 <= overall <= 210, overall


def timed_events(stamps: list[int], traces: str = "ab") -> list[dict[str, Any]]:
    return [
        {
            "trace_id": f"trace_{traces[i % len(traces)]}",
            "event_type": "tick",
            "metrics": {"i": i},
            "timestamp": BASE_MS + ms,
            "event_id": f"e{i}",
        }
        for i, ms in enumerate(stamps)
    ]


def due_offsets(events: list[dict], speed: float, cap_ms: float) -> dict[str, float]:
    """Seconds from the first event at which each should be sent: gaps capped, then scaled."""
    due, offset = {}, 0.0
    for prev, event in itertools.pairwise([events[0], *events]):
        offset += min(event["timestamp"] - prev["timestamp"], cap_ms) / speed / 1000
        due[event["event_id"]] = offset
    return due


def assert_offsets(hits: list[Hit], events: list[dict], ref: int, speed: float, cap_ms: float):
    """From event `ref` on, every arrival is where the scaled (and capped) original timing puts
    it, within 40 ms, measured against the median offset of them all; one arrival may be off by
    up to 150 ms (a stall of this loaded machine). Events due before `ref` arrive before it."""
    due = due_offsets(events, speed, cap_ms)
    at = {h.body["event_id"]: h.t for h in hits}
    ref_id = events[ref]["event_id"]
    timed = [e["event_id"] for e in events if due[e["event_id"]] >= due[ref_id]]
    centre = statistics.median(at[eid] - due[eid] for eid in timed)
    off = {eid: round((at[eid] - due[eid] - centre) * 1000) for eid in timed}
    assert all(abs(ms) <= 150 for ms in off.values()), off
    assert sum(abs(ms) > 40 for ms in off.values()) <= 1, off
    for event in events:
        if due[event["event_id"]] < due[ref_id]:
            assert at[event["event_id"]] <= at[ref_id]


def test_speed_10_keeps_order_and_scaled_gaps(journal, tmp_path):
    """Original gaps of 0, 300 ms, 1 s, 2 s ... across two traces arrive 10x closer, in order.
    (A 2 s lead-in: the first gap is measured by the next, xfail, test.)"""
    gaps = [0, 2000, 0, 300, 1000, 2000, 500, 150, 1200]
    events = timed_events(list(itertools.accumulate(gaps)))
    source = write_jsonl(tmp_path / "timed.jsonl", events[::-1])
    clock = VirtualClock()
    recorder = Recorder(now=clock.monotonic)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, speed=10, concurrency=4)
        assert rp.dry_run(journal, run).estimated_s == 0.7  # 7.15 s of gaps / 10
        on_virtual_time(journal, run, clock).execute()
    hits = sorted(recorder.hits, key=lambda h: h.t)
    assert sorted(h.body["event_id"] for h in hits) == sorted(e["event_id"] for e in events)
    stamps = [h.body["timestamp"] for h in hits]
    assert stamps == sorted(stamps)  # in timestamp order (e1 and e2 share one)
    for trace in ("trace_a", "trace_b"):
        mine = [h.body["timestamp"] for h in hits if h.body["trace_id"] == trace]
        assert mine == sorted(mine) and len(mine) >= 4
    assert_offsets(hits, events, ref=1, speed=10, cap_ms=60_000)


def test_max_gap_caps_long_gaps(journal, tmp_path):
    """A 100 s gap with max_gap_s=2 at 10x takes 0.2 s, not 10 s; shorter gaps stay scaled."""
    events = timed_events([0, 2000, 2500, 102_500, 103_000], traces="g")
    source = write_jsonl(tmp_path / "gap.jsonl", events)
    clock = VirtualClock()
    recorder = Recorder(now=clock.monotonic)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, speed=10, max_gap_s=2)
        assert rp.dry_run(journal, run).estimated_s == 0.5
        started = clock.monotonic()
        on_virtual_time(journal, run, clock).execute()
        assert clock.monotonic() - started < 3
    assert [h.body["event_id"] for h in recorder.hits] == [e["event_id"] for e in events]
    assert_offsets(recorder.hits, events, ref=1, speed=10, cap_ms=2000)


def test_speed_first_gap_is_not_eaten_by_start_up(journal, tmp_path, monkeypatch):
    """A resume of a 16,384-event run with 3 events left: the first chunk is read in full before
    anything is sent, and the first gap (2 s at 10x: 200 ms) comes out ~100 ms short."""
    clock = VirtualClock()
    real_read_plan = rp_engine.read_plan

    def slow_read_plan(path: str) -> Iterator[list[rp.Planned]]:
        for chunk in real_read_plan(path):
            clock.spend(0.1)  # what reading a 16,384-row chunk took on this machine
            yield chunk

    monkeypatch.setattr(rp_engine, "read_plan", slow_read_plan)
    head = timed_events([0, 2000, 2500], traces="a")
    rest = [
        {
            "trace_id": "trace_rest",
            "event_type": "tick",
            "metrics": {},
            "event_id": f"x{i}",
            "timestamp": BASE_MS + 10_000,
        }
        for i in range(rp.CHUNK - 3)
    ]
    source = write_jsonl(tmp_path / "big.jsonl", head + rest)
    recorder = Recorder(now=clock.monotonic)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, speed=10)
        # An earlier session accepted everything but the first three events.
        journal.execute(
            "INSERT INTO replay_outcomes SELECT ?, 1, seq, 'tick', 'accepted', 200, 1, 1.0, NULL,"
            " NULL, NULL, now() FROM range(4, ?) t(seq)",
            [run.run_id, rp.CHUNK + 1],
        )
        on_virtual_time(journal, run, clock).execute()
    assert [h.body["event_id"] for h in recorder.hits] == ["e0", "e1", "e2"]
    first_gap = recorder.hits[1].t - recorder.hits[0].t
    assert abs(first_gap - 0.2) <= 0.04, f"the first 2 s gap took {first_gap:.3f} s at 10x"


# -- 3. stopping: 401, pause/resume/stop, failed then resumed ------------------------------------


def test_unauthorized_stops_the_run_and_the_key_is_never_kept(journal, tmp_path):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(60, traces=40))
    with live_sandbox(key=KEY) as box:
        run = plan_file(journal, source, box.url, concurrency=16)
        report = rp.Replay(journal, run, WRONG_KEY).execute()
        assert report.state == "stopped"
        assert "401" in report.message and "$LANGWATCH_API_KEY" in report.message
        assert 1 <= box.counter.track_requests <= 16  # only what was in flight
        assert box.sandbox.counts["accepted"] == 0
        assert box.sandbox.counts["unauthorized"] == box.counter.track_requests
        assert report.accepted == 0 and report.not_sent == 60
        assert rp.get_run(journal, "last").state == "stopped"
        text = journal_text(journal)
        assert WRONG_KEY not in text and KEY not in text

        # With the right key the same run finishes.
        again = rp.Replay(journal, rp.get_run(journal, run.run_id), KEY).execute()
        assert (again.state, again.accepted, again.sessions) == ("finished", 60, 2)
        assert sandbox_keys(box.store)[:2] == (60, 60)
        assert KEY not in journal_text(journal)


def test_pause_resume_stop_from_another_thread(journal, tmp_path):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(200, traces=60, id_every=3))
    clock = VirtualClock(auto=False)  # time passes as the test says
    recorder = Recorder()
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, concurrency=8)
        session = rp.start_background(on_virtual_time(journal, run, clock))
        wait_for(lambda: len(recorder.hits) >= 20, what="20 requests")

        session.replay.pause()
        clock.advance(0.3)  # what was in flight lands
        paused_at = len(recorder.hits)
        clock.advance(0.5)
        assert len(recorder.hits) == paused_at, "requests were sent while paused"
        progress = session.replay.progress()
        assert progress.state == "paused" and session.alive
        assert 0 < progress.done < 200

        session.replay.resume()
        wall = clock.monotonic() - session.replay.started
        assert session.replay.progress().elapsed_s <= round(wall - 0.75, 1), "pause counted"
        clock.advance(1.0)  # the workers that waited while paused look again
        wait_for(lambda: len(recorder.hits) >= paused_at + 20, what="sending after resume")
        session.replay.stop()
        session.thread.join(15)
        assert not session.alive and session.error is None
        report = session.report
        assert report is not None and report.state == "stopped"
        assert report.not_sent > 0
        assert report.accepted + report.not_sent == 200
        assert "still to send" in report.message
        assert rp.get_run(journal, run.run_id).state == "stopped"

        final = rp.Replay(journal, rp.get_run(journal, "last"), KEY).execute()
    assert (final.state, final.accepted, final.sessions) == ("finished", 200, 2)
    # Nothing sent twice, nothing left out, over both sessions.
    sent = collections.Counter(
        (h.body["trace_id"], h.body["event_id"]) for h in recorder.accepted()
    )
    assert set(sent.values()) == {1}
    assert set(sent) == sent_keys(run)


def test_server_errors_exhaust_retries_then_a_resume_finishes(journal, tmp_path):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(16, traces=6, id_every=2))
    state = {"failing": True}

    def answer(body: dict, _: int) -> tuple[int, Any, None]:
        if state["failing"]:
            return 503, {"error": "down for maintenance"}, None
        return 200, {"message": "Event tracked"}, None

    recorder = Recorder(answer)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, concurrency=8, max_retries=2, backoff_s=0.005)
        report = rp.Replay(journal, run, KEY).execute()
        # Not final either way (see the xfail below for which of the two it should be).
        assert report.failed + report.unknown == 16 and report.accepted == 0
        assert report.requests == 48 and report.retried == 32  # 1 + 2 retries each
        assert report.dead_lettered == 0  # a failure is not a dead letter
        assert report.state == "stopped"
        assert report.message == "16 events still to send; resume the run"
        assert rp.get_run(journal, "last").run_id == run.run_id
        first_session = {h.body["event_id"]: h.body for h in recorder.hits}

        state["failing"] = False
        final = rp.Replay(journal, rp.get_run(journal, "last"), KEY).execute()
    assert (final.state, final.accepted, final.failed, final.unknown) == (
        "finished",
        16,
        0,
        0,
    )
    assert final.sessions == 2
    second_session = {h.body["event_id"]: h.body for h in recorder.accepted()}
    # The resend is the same request: same event_id, trace_id, timestamp and content.
    assert second_session == first_session
    with pytest.raises(rp.ReplayError, match="no unfinished run"):
        rp.get_run(journal, "last")


def test_server_errors_exhausting_retries_are_reported_failed(journal, tmp_path):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(4, traces=4))
    recorder = Recorder(lambda body, _: (500, {"error": "Internal server error"}, None))
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, max_retries=1, backoff_s=0.005)
        report = rp.Replay(journal, run, KEY).execute()
    assert len(recorder.hits) == 8
    assert (report.failed, report.unknown) == (4, 0)


def test_report_latency_is_exact_up_to_a_million_events_then_estimated(
    journal, tmp_path, monkeypatch
):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(40, traces=8))
    recorder = Recorder(delay=lambda body: body["metrics"]["n"] / 2000)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url)
        report = rp.Replay(journal, run, KEY).execute()
    latencies = sorted(r[0] for r in journal.rows("SELECT latency_ms FROM replay_outcomes"))
    exact = statistics.quantiles(latencies, n=100, method="inclusive")
    lat = report.latency_ms
    assert lat.estimated is False
    # Exact, to the 0.1 ms the report rounds to: DuckDB's quantile_cont and Python's
    # interpolation can land on either side of a .x5 (57.15 was 57.2 in one run, 57.1 in Python).
    assert (lat.p50, lat.p95, lat.p99) == pytest.approx(
        (exact[49], exact[94], exact[98]), abs=0.05 + 1e-9
    )
    # The estimate against the exact figures, on known latencies: measured ones carry the
    # machine's noise, and one slow request of the 40 once moved the p99 estimate by a third
    # (68.3 against 49.6 ms, on a busy CI run).
    journal.execute(
        "UPDATE replay_outcomes SET latency_ms = seq * 1.25 WHERE run_id = ?", [run.run_id]
    )
    known = rp.build_report(journal, rp.get_run(journal, run.run_id)).latency_ms
    assert known.estimated is False
    monkeypatch.setattr(rp_report, "EXACT_QUANTILES", 39)  # 40 accepted: one past it
    estimate = rp.build_report(journal, rp.get_run(journal, run.run_id)).latency_ms
    assert estimate.estimated is True
    assert estimate.p50 == pytest.approx(known.p50, rel=0.1)
    assert estimate.p99 == pytest.approx(known.p99, rel=0.1)


def test_hold_memory_caps_a_replaying_process_unless_the_user_chose(monkeypatch):
    def settings(store: Store) -> tuple:
        return store.rows("SELECT current_setting('memory_limit'), current_setting('threads')")[0]

    monkeypatch.delenv("EVENTLENS_MEMORY_LIMIT", raising=False)
    monkeypatch.delenv("EVENTLENS_THREADS", raising=False)  # conftest.py sets it for the suite
    with Store(":memory:") as store:
        rp.hold_memory(store)
        assert settings(store) == ("91.5 MiB", rp.PLAN_THREADS)  # 96 MB in DuckDB's units
    monkeypatch.setenv("EVENTLENS_THREADS", "2")
    with Store(":memory:") as store:
        rp.hold_memory(store)
        assert settings(store) == ("91.5 MiB", 2)
    monkeypatch.setenv("EVENTLENS_MEMORY_LIMIT", "1GB")
    with Store(":memory:") as store:
        rp.hold_memory(store)
        assert settings(store)[0] == "953.6 MiB"


def test_rejected_events_are_dead_letters_not_retried_and_replayable(journal, tmp_path):
    good = make_events(20, traces=4, id_every=2)
    bad = [
        {
            "trace_id": "trace_bad",
            "event_type": "refused",
            "metrics": {"n": i},
            "event_details": {"why": "server says no"},
            "timestamp": BASE_MS + 1000 * i,
            **({"event_id": f"bad_{i}"} if i % 2 else {}),
        }
        for i in range(3)
    ]
    broken = '{"trace_id": "t_bad", "event_type": "x", "metrics": {'
    missing = {"event_type": "x", "metrics": {"n": 1}}
    source = write_jsonl(tmp_path / "e.jsonl", [*good, *bad, broken, missing])
    error = "Validation error: refused is not allowed"

    def answer(body: dict, _: int) -> tuple[int, Any, None]:
        if body["event_type"] == "refused":
            return 400, {"error": error}, None
        return 200, {"message": "Event tracked"}, None

    recorder = Recorder(answer)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, concurrency=4, backoff_s=0.005)
        report = rp.Replay(journal, run, KEY).execute()
    refused_requests = collections.Counter(
        json.dumps(h.body["metrics"]) for h in recorder.hits if h.body["event_type"] == "refused"
    )
    assert len(refused_requests) == 3 and set(refused_requests.values()) == {1}  # no retries
    assert report.retried == 0
    assert (report.accepted, report.rejected, report.invalid) == (20, 3, 2)
    assert report.dead_lettered == 5
    assert report.state == "finished"  # nothing left to send: a refusal is final

    out = tmp_path / "dead.jsonl"
    assert rp.write_dead_letters(journal, run.run_id, out) == 5
    letters = [json.loads(line) for line in out.read_text().splitlines()]
    rejected = [x for x in letters if x["dead_letter"]["outcome"] == "rejected"]
    assert (
        sorted(
            ({k: v for k, v in x.items() if k != "dead_letter"} for x in rejected),
            key=lambda b: b["metrics"]["n"],
        )
        == bad
    )  # the original events, as the source had them
    for letter in rejected:
        assert letter["dead_letter"]["status"] == 400
        assert letter["dead_letter"]["reason"] == f"rejected (400): {error}"
        assert isinstance(letter["dead_letter"]["seq"], int)
    invalid = [x for x in letters if x["dead_letter"]["outcome"] == "invalid"]
    assert [x["dead_letter"]["line"] for x in invalid] == [24, 25]
    assert invalid[0]["raw"] == broken
    assert {k: v for k, v in invalid[1].items() if k != "dead_letter"} == missing

    # The dead-letter file is itself a source: its events load, the extra key is ignored.
    again = plan_file(journal, out, "http://127.0.0.1:9")
    assert (again.planned, again.invalid) == (3, 2)
    assert sorted((p.original() for p in plan_rows(again)), key=lambda b: b["metrics"]["n"]) == [
        {k: v for k, v in b.items()} for b in bad
    ]


# -- 4. Retry-After -----------------------------------------------------------------------------


def _throttle_first(body: dict, index: int) -> tuple[int, Any, dict[str, str] | None]:
    if index == 0:
        return 429, {"error": "slow down"}, {"Retry-After": "1"}
    return 200, {"message": "Event tracked"}, None


def test_retry_after_pauses_the_whole_run(journal, tmp_path):
    """A 429 with Retry-After: 1 on the first request: besides the requests already on their
    way (at most the other 3 of 4 in flight), nothing is sent for a second; without a run-wide
    pause the other workers would have sent all 40 events in that second."""
    source = write_jsonl(tmp_path / "e.jsonl", make_events(40, traces=40, id_every=1))
    clock = VirtualClock()
    recorder = Recorder(_throttle_first, now=clock.monotonic)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, concurrency=4)
        started = clock.monotonic()
        report = on_virtual_time(journal, run, clock).execute()
        took = clock.monotonic() - started
    assert (report.accepted, report.retried) == (40, 1)
    assert took >= 1.0
    t429 = recorder.hits[0].t
    racing = [h for h in recorder.hits[1:] if h.t <= t429 + 0.25]
    assert len(racing) <= 3  # sent before the 429 was read
    during = [round(h.t - t429, 3) for h in recorder.hits[1:] if t429 + 0.25 < h.t < t429 + 0.95]
    assert during == [], "requests were sent while the server asked to wait"
    throttled = recorder.hits[0].body["event_id"]
    retry = [h for h in recorder.hits[1:] if h.body["event_id"] == throttled]
    assert len(retry) == 1 and retry[0].t - t429 >= 0.95


def test_retry_after_also_holds_requests_waiting_for_a_rate_slot(journal, tmp_path):
    """At 10/s with 8 in flight, 7 requests hold slots 0.1 .. 0.7 s ahead when the 429 comes."""
    source = write_jsonl(tmp_path / "e.jsonl", make_events(10, traces=10, id_every=1))
    clock = VirtualClock()
    recorder = Recorder(_throttle_first, now=clock.monotonic)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, rate=10, concurrency=8)
        report = on_virtual_time(journal, run, clock).execute()
    assert report.accepted == 10
    t429 = recorder.hits[0].t
    during = [round(h.t - t429, 3) for h in recorder.hits[1:] if t429 + 0.25 < h.t < t429 + 0.95]
    assert during == [], f"sent during the Retry-After pause at +{during} s"


# -- 5. transforms and ids ----------------------------------------------------------------------


def test_event_ids_kept_or_generated_deterministically(journal, tmp_path):
    events = make_events(40, traces=5, id_every=2)
    source = write_jsonl(tmp_path / "e.jsonl", events)
    url = "http://127.0.0.1:9"

    def ids(run: rp.Run) -> dict[tuple, str]:
        return {(p.trace_id, content(p.original())): p.send_event_id for p in plan_rows(run)}

    first = ids(plan_file(journal, source, url, run_id="run-fixed"))
    by_content = {(b["trace_id"], content(b)): b.get("event_id") for b in events}
    assert set(first) == set(by_content)
    for key, sent in first.items():
        if by_content[key] is not None:
            assert sent == by_content[key]  # kept as the source had it
        else:
            assert sent.startswith("replay_")
    generated = [v for k, v in first.items() if by_content[k] is None]
    assert len(generated) == 20 == len(set(generated))

    rp.delete_run(journal, "run-fixed")
    assert ids(plan_file(journal, source, url, run_id="run-fixed")) == first  # deterministic
    other = ids(plan_file(journal, source, url, run_id="run-other"))
    for key, sent in other.items():
        assert (sent == first[key]) == (by_content[key] is not None)  # stable for one run only


def test_prefix_redact_and_now(journal, tmp_path):
    events = make_events(12, traces=3, id_every=2)
    events[0]["event_details"]["email"] = "someone@example.com"
    events[1]["event_details"] = None
    source = write_jsonl(tmp_path / "e.jsonl", events)
    recorder = Recorder()
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(
            journal,
            source,
            url,
            transforms=rp.Transforms(
                timestamps="now", trace_ids="prefix:replay-", redact=("user_id", "email")
            ),
        )
        before = time.time() * 1000
        assert rp.Replay(journal, run, KEY).execute().accepted == 12
        after = time.time() * 1000
    got = {h.body["metrics"]["n"]: h.body for h in recorder.hits}
    for event in events:
        body = got[event["metrics"]["n"]]
        assert body["trace_id"] == "replay-" + event["trace_id"]
        assert before - 1 <= body["timestamp"] <= after + 1  # "now": the time it was sent
        if event.get("event_id"):
            assert body["event_id"] == event["event_id"]
        details = event["event_details"] or {}
        hidden = ("user_id", "email")
        expected = {k: ("[redacted]" if k in hidden else v) for k, v in details.items()}
        assert (body.get("event_details") or {}) == expected
    assert got[0]["event_details"]["email"] == "[redacted]"
    assert "email" not in got[2]["event_details"]  # redact does not add keys


def test_fresh_trace_ids_and_shift_are_stable_across_a_resume(journal, tmp_path):
    events = make_events(24, traces=4, id_every=2)
    source = write_jsonl(tmp_path / "e.jsonl", events)
    state = {"fail_odd": True}

    def answer(body: dict, _: int) -> tuple[int, Any, None]:
        if state["fail_odd"] and body["metrics"]["n"] % 2:
            return 500, {"error": "boom"}, None
        return 200, {"message": "Event tracked"}, None

    recorder = Recorder(answer)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(
            journal,
            source,
            url,
            transforms=rp.Transforms(timestamps="shift", trace_ids="fresh"),
            max_retries=0,
        )
        before_ms = time.time() * 1000
        first = rp.Replay(journal, run, KEY).execute()
        after_ms = time.time() * 1000
        assert (first.accepted, first.failed + first.unknown) == (12, 12)
        session_one = len(recorder.hits)
        time.sleep(0.3)  # a resume later must not move the timestamps
        state["fail_odd"] = False
        final = rp.Replay(journal, rp.get_run(journal, run.run_id), KEY).execute()
    assert (final.state, final.accepted) == ("finished", 24)

    by_n = collections.defaultdict(list)
    for hit in recorder.hits:
        by_n[hit.body["metrics"]["n"]].append(hit.body)
    for n in range(1, 24, 2):  # sent in both sessions: the very same body
        assert len(by_n[n]) == 2 and by_n[n][0] == by_n[n][1]
    assert len(recorder.hits) == session_one + 12

    fresh: dict[str, set[str]] = collections.defaultdict(set)
    offsets = set()
    for event in events:
        for body in by_n[event["metrics"]["n"]]:
            fresh[event["trace_id"]].add(body["trace_id"])
            offsets.add(body["timestamp"] - event["timestamp"])
    assert all(len(ids) == 1 for ids in fresh.values())  # one fresh id per trace
    mapped = {next(iter(ids)) for ids in fresh.values()}
    assert len(mapped) == 4 and not mapped & set(fresh)
    assert all(t.startswith("trace_") for t in mapped)
    assert len(offsets) == 1  # every gap kept, in both sessions
    first_ts = min(e["timestamp"] for e in events) + offsets.pop()
    assert before_ms - 1 <= first_ts <= after_ms  # the first event is "now" at the first start


@pytest.mark.parametrize(
    "transforms, pacing, says",
    [
        (rp.Transforms(timestamps="later"), {}, "timestamps must be one of"),
        (rp.Transforms(trace_ids="prefix:"), {}, "trace ids must be"),
        (rp.Transforms(trace_ids="new"), {}, "trace ids must be"),
        (rp.Transforms(), {"rate": 0}, "rate must be above 0"),
        (rp.Transforms(), {"speed": -1}, "speed factor"),
        (rp.Transforms(), {"concurrency": 0}, "concurrency must be"),
        (rp.Transforms(), {"max_retries": -1}, "max retries"),
    ],
)
def test_plan_refuses_bad_options(journal, tmp_path, transforms, pacing, says):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(2, traces=1))
    with pytest.raises(rp.ReplayError, match=says):
        plan_file(journal, source, "http://127.0.0.1:9", transforms=transforms, **pacing)
    with pytest.raises(rp.ReplayError, match="http:// or https://"):
        plan_file(journal, source, "ftp://example.com")
    with pytest.raises(rp.ReplayError, match="no such file"):
        plan_file(journal, tmp_path / "nope.jsonl", "http://127.0.0.1:9")
    assert rp.list_runs(journal) == []


# -- 6. dry run and the store as a source --------------------------------------------------------


def test_dry_run_sends_nothing_and_reports(journal, tmp_path):
    events = make_events(30, traces=4, id_every=2)
    source = write_jsonl(
        tmp_path / "e.jsonl", [*events, INVALID_LINES[1][0], events[3], INVALID_LINES[3][0]]
    )
    recorder = Recorder()
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(
            journal, source, url, rate=10, transforms=rp.Transforms(trace_ids="prefix:dry-")
        )
        info = rp.dry_run(journal, run)
    assert recorder.hits == []
    assert (info.events, info.traces, info.invalid, info.duplicates) == (30, 4, 2, 1)
    assert info.by_type == dict(collections.Counter(e["event_type"] for e in events))
    assert info.estimated_s == 3.0  # 30 events at 10/s
    first, last = min(e["timestamp"] for e in events), max(e["timestamp"] for e in events)
    iso = rp_planning._iso_ms
    assert info.first_time == iso(first) and info.last_time == iso(last)
    assert info.invalid_reasons == [
        {"line": 31, "reason": "line 31: trace_id: is required"},
        {
            "line": 33,
            "reason": "line 33: metrics.vote: must be a number from -1 to 1 for thumbs_up_down,"
            " got 5",
        },
    ]
    ordered = sorted(events, key=lambda e: e["timestamp"])[:5]
    bodies = info.first_bodies
    assert [b["trace_id"] for b in bodies] == [f"dry-{e['trace_id']}" for e in ordered]
    assert [b["metrics"] for b in info.first_bodies] == [e["metrics"] for e in ordered]
    assert all(b["event_id"] for b in info.first_bodies)
    # Only planning wrote to the journal: the invalid source records.
    assert journal.rows(
        "SELECT count(*) FROM replay_outcomes WHERE seq > 0 OR outcome <> 'invalid'"
    ) == [(0,)]


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (Path(__file__).parent.parent / "sample_data" / "formats").iterdir()),
)
def test_every_format_ingest_reads_plans_within_the_budget(journal, formats_dir, name, monkeypatch):
    """Planned under PLAN_MEMORY (no fallback), with the counts a load of the file gives."""
    monkeypatch.delenv("EVENTLENS_MEMORY_LIMIT", raising=False)
    with Store(":memory:") as s:
        loaded = load_files(s, [formats_dir / name], "d").files[0]
    staged: list[bool] = []
    real_stage = rp_planning._stage

    def stage(run: rp.Run, staging: Path, *, budget: bool) -> bool:
        staged.append(budget)
        return real_stage(run, staging, budget=budget)

    monkeypatch.setattr(rp_planning, "_stage", stage)
    run = plan_file(journal, formats_dir / name, "http://127.0.0.1:9")
    assert staged == [True], "needed more than the planning budget"
    assert (run.planned, run.invalid, run.duplicates) == (
        loaded.loaded,
        loaded.rejected,
        loaded.duplicates,
    )


def test_a_line_too_long_for_the_planning_buffer_is_planned_under_the_wide_limit(
    journal, tmp_path, monkeypatch
):
    """Planning reads lines up to PLAN_LINE_BYTES to stay small; a longer one is read again
    under ingest's own limit instead of failing the file."""
    monkeypatch.setattr(rp_planning, "PLAN_LINE_BYTES", 65_536)
    monkeypatch.delenv("EVENTLENS_MEMORY_LIMIT", raising=False)
    events = make_events(6, traces=2)
    events[3]["event_details"]["note"] = "n" * 90_000
    source = write_jsonl(tmp_path / "e.jsonl", [*events, INVALID_LINES[1][0]])
    run = plan_file(journal, source, "http://127.0.0.1:9")
    rows = plan_rows(run)
    assert (run.planned, run.invalid) == (6, 1)
    assert [p.seq for p in rows] == [1, 2, 3, 4, 5, 6]
    assert [p.ts for p in rows] == sorted(e["timestamp"] for e in events)
    assert "n" * 90_000 in {json.loads(p.event_details).get("note") for p in rows}
    assert rp.invalid_reasons(journal, run.run_id) == [
        {"line": 7, "reason": "line 7: trace_id: is required"}
    ]
    # Nothing but the plan is left beside it (staging store, sorted file, partial plan).
    assert sorted(p.name for p in Path(run.plan_path).parent.iterdir()) == [
        Path(run.plan_path).name
    ]

    # The line is longer than both limits: refused.
    monkeypatch.setattr(ingest.pipeline, "MAX_LINE_BYTES", 65_536)
    with pytest.raises(rp.ReplayError, match=r"e\.jsonl: line 4 is longer than 64 KB"):
        plan_file(journal, source, "http://127.0.0.1:9")


def test_store_source_with_filters(journal, tmp_path, formats_dir):
    load_files(journal, [formats_dir / "bad_lines.jsonl"], "bad")
    extra = make_events(40, traces=5, id_every=2)
    load_files(journal, [write_jsonl(tmp_path / "other.jsonl", extra)], "other")
    count = journal.scalar(
        "SELECT count(*) FROM events WHERE dataset = 'bad' AND event_type = 'llm_call'"
    )
    assert count > 0

    with live_sandbox(key=KEY) as box:
        endpoint = rp.Endpoint(url=box.url)
        run = rp.plan(
            journal,
            rp.Source(datasets=("bad",), event_types=("llm_call",)),
            endpoint=endpoint,
        )
        assert (run.planned, run.invalid, run.source.label) == (count, 0, "store")
        assert {(p.trace_id, p.event_id) for p in plan_rows(run)} == set(
            journal.rows(
                "SELECT trace_id, event_id FROM events WHERE dataset = 'bad'"
                " AND event_type = 'llm_call'"
            )
        )
        report = rp.Replay(journal, run, KEY).execute()
        assert report.accepted == count
        assert sandbox_keys(box.store)[2] == sent_keys(run)

        # Trace and time filters (the end is exclusive).
        trace = "trace_0001"
        stamps = sorted(e["timestamp"] for e in extra if e["trace_id"] == trace)
        lo, hi = (dt.datetime.fromtimestamp(ms / 1000, dt.UTC) for ms in stamps[2:4])
        window = rp.plan(
            journal, rp.Source(trace_ids=(trace,), start=lo, end=hi), endpoint=endpoint
        )
        assert [p.ts for p in plan_rows(window)] == [stamps[2]]
        with pytest.raises(rp.ReplayError, match="no events match"):
            rp.plan(journal, rp.Source(datasets=("nope",)), endpoint=endpoint)
    # The journal round-trips the filters.
    again = rp.get_run(journal, window.run_id)
    assert again.source == window.source


def build_report_of(journal, run_id: str) -> dict:
    return rp.build_report(journal, rp.get_run(journal, run_id))


# -- 6b. the runs list: a run's state and counts as the Replay page lists them


def listed_run(state: str = "planned", **fields: Any) -> rp.Run:
    """A journal row's Run (nothing planned on disk: the runs list reads only the row)."""
    return rp.Run(
        run_id="20251101T000000Z-abcdef",
        source=rp.Source(datasets=("sample",)),
        transforms=rp.Transforms(),
        pacing=rp.Pacing(),
        endpoint=rp.Endpoint(url="http://127.0.0.1:1"),
        plan_path="unused.parquet",
        planned=2620,
        invalid=3,
        state=state,
        **fields,
    )


def test_the_runs_list_shows_a_live_sessions_state_over_the_journals(journal):
    # Just after Start the journal still says planned; it never records a pause.
    run = listed_run("planned")
    with session_of(journal, run) as session:
        assert rp.shown_state(run, session) == "running"
        session.replay.pause()
        assert rp.shown_state(run, session) == "paused"
    # Running in the journal with no live session here: its process ended mid-run.
    for left in ("running", "paused"):
        assert rp.shown_state(listed_run(left), None) == "interrupted"
        with session_of(journal, listed_run(left), alive=False) as ended:
            assert rp.shown_state(listed_run(left), ended) == "interrupted"
    for state in ("planned", "stopped", "finished", "failed"):
        assert rp.shown_state(listed_run(state), None) == state


def test_the_runs_list_counts_are_missing_until_they_exist(journal):
    planned = rp.listing(listed_run("planned"), None)
    assert planned == rp.Listing("planned", 2623, None, None, None)
    report = report_with(accepted=2600, dead_lettered=23, rate_per_s=1234.5)
    done = rp.listing(listed_run("finished", sessions=1, report=report), None)
    assert done == rp.Listing("finished", 2623, 2600, 23, 1234.5)
    # A session that died before its first report: only the source's invalid records are known.
    assert rp.listing(listed_run("running", sessions=1), None) == rp.Listing(
        "interrupted", 2623, None, 3, None
    )


def test_the_runs_list_counts_a_live_session_run_wide(journal):
    run = listed_run("running", sessions=1, report=report_with(accepted=1, dead_lettered=1))
    with session_of(journal, run) as session:
        # Not yet read from the journal what earlier sessions did: nothing to show yet.
        assert rp.listing(run, session) == rp.Listing("running", 2623, None, None, None)
        live = session.replay
        live.accepted_before, live.dead_lettered_before = 40, 5
        live.counts.update(accepted=7, rejected=2, invalid=1, failed=4, requests=20)
        listed = rp.listing(run, session)
        assert (listed.state, listed.accepted, listed.dead_lettered) == ("running", 47, 8)
        live.pause()  # the rate holds still while paused
        listed = rp.listing(run, session)
    assert (listed.state, listed.accepted, listed.dead_lettered) == ("paused", 47, 8)
    assert listed.rate_per_s == live.progress().rate > 0


def test_a_resumed_session_counts_on_from_the_earlier_ones(journal, tmp_path):
    """What a session reads at its start plus what it counts equals the run's report."""
    events = make_events(30, traces=7)
    source = write_jsonl(tmp_path / "e.jsonl", [*events, *(line for line, _ in INVALID_LINES)])
    phase = {"first": True}

    def answer(body: dict, _: int) -> tuple[int, Any, None]:
        n = body["metrics"]["n"]
        if n % 5 == 0:
            return 400, {"error": "no"}, None  # rejected: a dead letter
        if n % 5 == 1 and phase["first"]:
            return 500, {"error": "down"}, None  # failed: sent again by the resume
        return 200, {"message": "Event tracked"}, None

    recorder = Recorder(answer)
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url, max_retries=0)
        first = rp.Replay(journal, run, KEY)
        before = first.execute()
        assert (first.accepted_before, first.dead_lettered_before) == (0, len(INVALID_LINES))
        assert (before.accepted, before.dead_lettered, before.failed) == (18, 13, 6)
        phase["first"] = False
        second = rp.Replay(journal, rp.get_run(journal, run.run_id), KEY)
        after = second.execute()
    assert (second.accepted_before, second.dead_lettered_before) == (18, 13)
    assert second.done_before == 18 + 6
    p = second.progress()
    assert second.accepted_before + p.accepted == after.accepted == 24
    assert second.dead_lettered_before + p.rejected + p.invalid == after.dead_lettered == 13


# -- 7. bugs found while writing these tests, fixed


def test_malformed_key_stops_the_run_instead_of_dead_lettering_every_event(journal, tmp_path):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(5, traces=5))
    with live_sandbox(key=KEY) as box:
        run = plan_file(journal, source, box.url)
        with pytest.raises(rp.ReplayError, match="line break") as refused:
            rp.Replay(journal, run, KEY + "\r").execute()
        assert KEY not in str(refused.value)
        assert box.counter.track_requests == 0
        assert build_report_of(journal, run.run_id).dead_lettered == 0, "events blamed"
        final = rp.Replay(journal, rp.get_run(journal, "last"), KEY).execute()
        assert final.accepted == 5


def test_two_invalid_events_on_one_line_are_both_dead_letters(journal, tmp_path):
    document = {
        "traces": [
            {
                "trace_id": "trace_doc",
                "events": [
                    {"event_type": "thumbs_up_down", "metrics": {"vote": 5}},
                    {"event_type": "thumbs_up_down", "metrics": {"vote": 7}},
                    {"event_type": "ok", "metrics": {}},
                ],
            }
        ]
    }
    ok = {"trace_id": "trace_line", "event_type": "ok", "metrics": {}}
    source = write_jsonl(tmp_path / "doc.jsonl", [document, ok])
    recorder = Recorder()
    with serve_in_thread(recorder.app, no_delay=True) as url:
        run = plan_file(journal, source, url)
        assert (run.planned, run.invalid) == (2, 2)
        report = rp.Replay(journal, run, KEY).execute()
    assert report.accepted + report.dead_lettered == report.events
    assert len(list(rp.dead_letters(journal, run.run_id))) == 2


def test_ready_traces_go_longest_first_one_event_of_a_trace_out_at_a_time():
    """The engine's scheduler alone, with one worker: the trace with the most events still to
    send goes first (plan order breaks ties), and a trace's events go in plan order."""

    def planned(seq: int, trace: str) -> rp.Planned:
        return rp.Planned(seq, trace, None, trace, f"e{seq}", "x", None, "{}", None, seq)

    plan = [planned(1, "a"), planned(2, "b"), planned(3, "b"), planned(4, "b"), planned(5, "a")]

    async def one_worker() -> list[int]:
        traces = rp_engine._Traces()
        for p in plan:
            traces.expect(p.trace_id)
        for p in plan:
            traces.hand_out(p)
        sent = []
        for _ in plan:
            assert traces.ready.qsize() <= 2  # one event per trace out, the rest behind it
            _, _, p = await traces.ready.get()
            assert p is not None
            sent.append(p.seq)
            traces.finished(p)
        await traces.ready.join()
        return sent

    assert asyncio.run(one_worker()) == [2, 1, 3, 4, 5]
