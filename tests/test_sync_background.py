"""Pulls in background threads (eventlens.sync.background): a session's progress, result and
error; a schedule's ticks on a fake clock, no two pulls of one endpoint and dataset at once, stop.
No test waits in real time: threads are joined or held on events."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from langwatch_fake import ENDPOINT, KEY, FakeLangWatch, event

from eventlens.client import Target
from eventlens.store import Store
from eventlens.sync import PullError, PullSpec, ReadClient, Retry, past_pulls
from eventlens.sync.background import (
    Lanes,
    Pulls,
    PullSession,
    Schedule,
    endpoint_problem,
    target_problem,
)

TARGET = Target(endpoint=ENDPOINT, key=KEY, key_source="typed")
SPEC = PullSpec(endpoint=ENDPOINT, page_size=3)


@pytest.fixture
def server() -> FakeLangWatch:
    fake = FakeLangWatch()
    for i in range(7):
        fake.put(f"t{i}", [event(ts=1_700_000_000_000 + i), event("thumbs")], 100 + i)
    return fake


def factory(server: FakeLangWatch, gate: threading.Event | None = None, **retry: Any):
    """ReadClients on the fake; with `gate`, each request waits until the gate opens."""

    def handler(request: httpx.Request) -> httpx.Response:
        if gate is not None:
            assert gate.wait(30), "the test never opened the gate"
        return server.handler(request)

    def make(target: Target) -> ReadClient:
        return ReadClient(
            target,
            retry=Retry(**retry) if retry else Retry(attempts=3),
            sleep=lambda s: None,
            transport=httpx.MockTransport(handler),
        )

    return make


class FakeTime:
    """A clock that moves only when the schedule waits; stops it after `waits` waits."""

    def __init__(self, waits: int) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []
        self.limit = waits

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return len(self.waits) >= self.limit


def langwatch_events(store: Store) -> int:
    return int(store.scalar("SELECT count(*) FROM events WHERE dataset = 'langwatch'"))


def test_a_session_runs_in_a_thread_with_progress_and_a_result(store, server):
    seen: list[int] = []
    session = PullSession(store, SPEC, TARGET, make_client=factory(server))
    original = session._seen

    def spy(progress):
        original(progress)
        seen.append(session.progress().traces)

    session._seen = spy  # type: ignore[method-assign]
    session.start()
    session.join(30)
    assert not session.alive and session.outcome == "done" and session.error is None
    assert seen == [3, 6, 7]  # after each page
    progress = session.progress()
    assert (progress.traces, progress.total_hits, progress.events, progress.pages) == (7, 7, 14, 3)
    assert session.result is not None and session.result.events == 14
    assert langwatch_events(store) == 14
    assert session.finished_at is not None and session.started_at is not None


def test_a_session_keeps_the_last_retry_note(store, server):
    server.faults = [lambda: httpx.Response(503)]
    notes: list[str] = []
    session = PullSession(store, SPEC, TARGET, make_client=factory(server))
    original = session._seen
    session._seen = lambda p: (original(p), notes.append(p.note))  # type: ignore[method-assign]
    session.run()
    assert notes[0].startswith("HTTP 503; retrying in ")
    assert session.outcome == "done"


def test_a_failing_session_ends_with_a_sentence_without_the_key(store, server):
    wrong = Target(endpoint=ENDPOINT, key="wrong-" + KEY, key_source="typed")
    session = PullSession(store, SPEC, wrong, make_client=factory(server)).start()
    session.join(30)
    assert session.outcome == "failed" and session.result is None
    assert session.error and "refused the key (401)" in session.error
    assert KEY not in session.error and "Traceback" not in session.error
    assert list(past_pulls(store)["outcome"]) == ["failed"]


def test_an_unexpected_error_is_a_sentence_and_frees_the_lane(store, server):
    def broken(target: Target) -> ReadClient:
        raise RuntimeError(f"boom {target.key}")

    lanes = Lanes()
    session = PullSession(store, SPEC, TARGET, lanes=lanes, make_client=broken).run()
    assert session.error and session.error.startswith("the pull stopped on an unexpected")
    assert KEY not in session.error
    assert not lanes.busy(session.pair)


def test_two_pulls_of_one_endpoint_and_dataset_never_run_at_once(store, server):
    gate = threading.Event()
    pulls = Pulls(make_client=factory(server, gate))
    first = pulls.pull_now(store, SPEC, TARGET)
    with pytest.raises(PullError, match="already running"):
        pulls.pull_now(store, SPEC, TARGET)
    # Another dataset is another lane.
    other = pulls.pull_now(store, PullSpec(endpoint=ENDPOINT, dataset="lw2", page_size=3), TARGET)
    assert {s.id for s in pulls.live()} == {first.id, other.id}
    gate.set()
    first.join(30)
    other.join(30)
    assert first.outcome == other.outcome == "done"
    assert pulls.live() == []
    again = pulls.pull_now(store, SPEC, TARGET)  # the lane is free again
    again.join(30)
    assert again.outcome == "done" and again.result and again.result.traces == 0


def test_nothing_starts_without_a_usable_endpoint_or_key(store, server):
    pulls = Pulls(make_client=factory(server))
    for target, words in [
        (Target(endpoint="langwatch.example.com", key=KEY), "http:// or https://"),
        (Target(endpoint="ftp://x", key=KEY), "http:// or https://"),
        (Target(endpoint="", key=KEY), "no endpoint"),
        (Target(endpoint=ENDPOINT, key=None), "no API key"),
    ]:
        with pytest.raises(PullError, match=words):
            pulls.pull_now(store, SPEC, target)
        with pytest.raises(PullError, match=words):
            pulls.keep_in_sync(store, SPEC, target, 5)
    assert server.requests == [] and pulls.sessions == {} and pulls.schedules == {}
    assert past_pulls(store).empty
    assert endpoint_problem("https://app.langwatch.ai") is None
    assert target_problem(TARGET) is None


def test_a_schedule_pulls_at_once_then_every_interval_on_its_clock(store, server):
    time = FakeTime(waits=3)
    schedule = Schedule(
        store, SPEC, TARGET, 600, make_client=factory(server), clock=time.clock, wait=time.wait
    )
    schedule.start()
    schedule.thread.join(30)  # type: ignore[union-attr]
    status = schedule.status()
    # A pull at 1000, then after each 600 s wait: 1600, 2200; the third wait stops it.
    assert time.waits == [600.0, 600.0, 600.0]
    assert status.pulls == 3 and status.last_at == 2200.0
    assert status.last_outcome == "done" and status.last_error is None
    assert not status.running and status.next_at is None  # stopped: no next pull
    assert list(past_pulls(store)["outcome"]) == ["done"] * 3
    assert langwatch_events(store) == 14


def test_a_schedule_uses_since_only_for_its_first_pull(store, server):
    time = FakeTime(waits=2)
    spec = PullSpec(endpoint=ENDPOINT, page_size=3, since_ms=100)
    schedule = Schedule(
        store, spec, TARGET, 60, make_client=factory(server), clock=time.clock, wait=time.wait
    )
    schedule.start().thread.join(30)  # type: ignore[union-attr]
    starts = [r["startDate"] for r in server.requests if not r.get("scrollId")]
    assert starts == [100, server.now]  # then from where the first stopped


def test_a_schedule_records_its_last_error_and_goes_on(store, server):
    time = FakeTime(waits=2)
    server.faults = [lambda: httpx.Response(500)] * 3  # the first pull's three attempts
    schedule = Schedule(
        store, SPEC, TARGET, 60, make_client=factory(server), clock=time.clock, wait=time.wait
    )
    assert schedule.tick() == "failed"
    status = schedule.status()
    assert status.last_error and "still failing after 3 attempts" in status.last_error
    assert status.next_at == status.last_at + 60  # type: ignore[operator]
    assert schedule.tick() == "done"
    status = schedule.status()
    assert status.last_outcome == "done" and status.last_error  # the last error stays shown
    assert langwatch_events(store) == 14


def test_a_scheduled_tick_is_skipped_while_a_pull_of_its_pair_runs(store, server):
    gate = threading.Event()
    lanes = Lanes()
    busy = PullSession(store, SPEC, TARGET, lanes=lanes, make_client=factory(server, gate))
    busy.start()
    time = FakeTime(waits=1)
    schedule = Schedule(
        store, SPEC, TARGET, 300, lanes=lanes, make_client=factory(server), clock=time.clock
    )
    assert schedule.tick() == "skipped"
    status = schedule.status()
    assert status.pulls == 0 and status.next_at == time.now + 300
    gate.set()
    busy.join(30)
    assert schedule.tick() == "done"
    assert list(past_pulls(store)["outcome"]) == ["done", "done"]


def test_a_pull_longer_than_the_interval_is_followed_at_once_not_in_a_burst(store, server):
    time = FakeTime(waits=0)

    def slow(target: Target) -> ReadClient:
        time.now += 1_000  # each pull "takes" 1000 s of a 60 s interval
        return factory(server)(target)

    schedule = Schedule(store, SPEC, TARGET, 60, make_client=slow, clock=time.clock)
    schedule.tick()
    assert schedule.status().next_at == time.now


def test_stop_ends_the_wait_at_once_and_forgets_the_next_pull(store, server):
    schedule = Schedule(store, SPEC, TARGET, 3600, make_client=factory(server))
    waiting = threading.Event()
    real_wait = schedule._wait  # the stop event's wait: an hour, unless stopped

    def wait(seconds: float) -> bool:
        waiting.set()
        return real_wait(seconds)

    schedule._wait = wait
    schedule.start()
    assert waiting.wait(30)  # the first pull is done and the hour's wait has begun
    assert schedule.status().pulls == 1 and schedule.status().next_at is not None
    schedule.stop(timeout=10)
    assert not schedule.running and schedule.status().next_at is None
    assert schedule.status().last_outcome == "done"


def test_a_new_schedule_of_a_pair_replaces_the_old_one(store, server):
    pulls = Pulls(make_client=factory(server))
    old = pulls.keep_in_sync(store, SPEC, TARGET, 60)
    new = pulls.keep_in_sync(store, SPEC, TARGET, 30, wait=lambda s: True)
    old.thread.join(10)  # type: ignore[union-attr]
    new.thread.join(10)  # type: ignore[union-attr]
    assert old.stopped and pulls.schedule_list() == [new]
    assert new.every_s == 1800.0 and new.status().last_outcome in ("done", "skipped")
    assert KEY not in repr(new.target) and KEY not in repr(new.status())
    assert pulls.stop_schedule(new.pair) and pulls.schedule_list() == []
    assert not pulls.stop_schedule(new.pair)
