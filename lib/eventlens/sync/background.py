"""Pulls in background threads: one pull now (`PullSession`) and "keep in sync every N minutes"
(`Schedule`), for a long-running process such as the app's server.

The key lives only in memory, in the `client.Target` a session or schedule holds: nothing here
writes it anywhere, so a schedule ends with its process (a restart stops it; the journal keeps
its pulls, and a pull cut short shows as interrupted). Two pulls of one endpoint and dataset
never run at once: both kinds take that pair's lane (`Lanes`) first, and a scheduled pull that
finds the lane taken is skipped, not queued.

Time is injectable: a schedule reads `clock()` and waits with `wait(seconds)` (which returns True
once it should stop; by default its stop event's wait), so tests run its ticks on a fake clock.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from eventlens.client import Target
from eventlens.store import Store
from eventlens.sync import Progress, PullError, PullResult, PullSpec, pull
from eventlens.sync.api import ReadClient

log = logging.getLogger(__name__)

ClientFactory = Callable[[Target], ReadClient]
Pair = tuple[str, str]  # (endpoint, dataset)


def endpoint_problem(endpoint: str) -> str | None:
    """Why an endpoint cannot be pulled from, in a sentence; None when it looks usable."""
    text = endpoint.strip()
    if not text:
        return "no endpoint was given: choose one, or type LangWatch's address (https://...)"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"{text!r} is not an address to pull from: it needs to start with http:// or"
            " https:// and name a host (for example https://app.langwatch.ai)"
        )
    if parts.query or parts.fragment:
        return f"{text!r} has a query or fragment: give the server's base address only"
    return None


def target_problem(target: Target) -> str | None:
    """The endpoint's problem, else a missing key, in a sentence (never the key itself)."""
    if problem := endpoint_problem(target.endpoint):
        return problem
    if not target.key:
        return (
            "no API key: type the LangWatch project's key, or set LANGWATCH_API_KEY (in the"
            " environment or Streamlit secrets) before starting the app"
        )
    return None


class Lanes:
    """One lane per (endpoint, dataset): a pull runs only in a lane it holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: set[Pair] = set()

    def take(self, pair: Pair) -> bool:
        with self._lock:
            if pair in self._taken:
                return False
            self._taken.add(pair)
            return True

    def release(self, pair: Pair) -> None:
        with self._lock:
            self._taken.discard(pair)

    def busy(self, pair: Pair) -> bool:
        with self._lock:
            return pair in self._taken


def busy_sentence(pair: Pair) -> str:
    endpoint, dataset = pair
    return f"a pull of {endpoint} into {dataset} is already running; it goes on by itself"


class PullSession:
    """One pull, run by `run()` (in the caller's thread) or `start()` (in a daemon thread).

    `progress()` is a copy of the pull's Progress after its last page or retry; when it ends,
    `result` holds the PullResult or `error` one sentence (never a traceback, never the key).
    """

    def __init__(
        self,
        store: Store,
        spec: PullSpec,
        target: Target,
        *,
        lanes: Lanes | None = None,
        make_client: ClientFactory = ReadClient,
        clock: Callable[[], float] = time.time,
    ):
        endpoint = target.endpoint.rstrip("/")
        self.id = uuid.uuid4().hex[:12]
        self.store = store
        self.spec = dataclasses.replace(spec, endpoint=endpoint)
        self.target = dataclasses.replace(target, endpoint=endpoint)
        self.lanes = lanes or Lanes()
        self.make_client = make_client
        self.clock = clock
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result: PullResult | None = None
        self.error: str | None = None
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._progress = Progress()
        self._ran = False

    @property
    def pair(self) -> Pair:
        return self.spec.endpoint, self.spec.dataset

    @property
    def alive(self) -> bool:
        """Running now (or started and not yet ended)."""
        if self.thread is not None:
            return self.thread.is_alive()
        return self._ran and self.finished_at is None

    @property
    def outcome(self) -> str:
        if self.result is not None:
            return "done"
        if self.error is not None:
            return "failed"
        return "running" if self._ran else "not started"

    def progress(self) -> Progress:
        with self._lock:
            return dataclasses.replace(self._progress)

    def _seen(self, progress: Progress) -> None:
        with self._lock:
            self._progress = dataclasses.replace(progress)

    def start(self) -> PullSession:
        """Take the lane and run the pull in a daemon thread; PullError when the lane is taken
        (nothing runs then)."""
        self._take()
        self.thread = threading.Thread(
            target=self._run_in_lane, name=f"pull-{self.id}", daemon=True
        )
        self.thread.start()
        return self

    def run(self) -> PullSession:
        """Take the lane and run the pull here, to its end; PullError when the lane is taken."""
        self._take()
        self._run_in_lane()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _take(self) -> None:
        if self._ran:
            raise PullError("this pull has already run; start a new one")
        if not self.lanes.take(self.pair):
            raise PullError(busy_sentence(self.pair))
        self._ran = True
        self.started_at = self.clock()

    def _run_in_lane(self) -> None:
        try:
            client = self.make_client(self.target)
            try:
                self.result = pull(
                    self.store, self.spec, client=client, progress=self._seen, clock=self.clock
                )
            finally:
                client.close()
        except PullError as exc:
            self.error = self.target.scrub(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown as a sentence, details in the log
            log.error(  # the message scrubbed of the key; no traceback (its locals may hold it)
                "pull %s stopped by %s: %s",
                self.id,
                type(exc).__name__,
                self.target.scrub(str(exc)),
            )
            self.error = (
                f"the pull stopped on an unexpected {type(exc).__name__}; the pages applied are"
                " kept, and the next pull goes on from them (the server log has the details)"
            )
        finally:
            self.finished_at = self.clock()
            self.lanes.release(self.pair)


@dataclass(frozen=True)
class ScheduleStatus:
    """A schedule as it stands: times are the clock's (epoch seconds with the real one)."""

    endpoint: str
    dataset: str
    every_s: float
    running: bool  # its thread is alive (it is waiting or pulling)
    pulling: bool  # a pull of its own is under way
    pulls: int  # pulls it has run (skipped ticks not counted)
    last_at: float | None
    next_at: float | None
    last_outcome: str | None  # done | failed | skipped
    last_error: str | None  # the last failure's sentence (kept after later successes)
    last_result: PullResult | None


class Schedule:
    """Pull (endpoint, dataset) now and then every `every_s` seconds until stopped.

    The first pull uses the spec as given (its `since`, if any); later ones go on from where
    the last one stopped. A tick whose pair is busy (a "Pull now", say) is skipped.
    """

    def __init__(
        self,
        store: Store,
        spec: PullSpec,
        target: Target,
        every_s: float,
        *,
        lanes: Lanes | None = None,
        make_client: ClientFactory = ReadClient,
        clock: Callable[[], float] = time.time,
        wait: Callable[[float], bool] | None = None,
    ):
        if every_s <= 0:
            raise PullError("the interval must be more than 0 minutes")
        endpoint = target.endpoint.rstrip("/")
        self.store = store
        self.spec = dataclasses.replace(spec, endpoint=endpoint)
        self.target = dataclasses.replace(target, endpoint=endpoint)
        self.every_s = float(every_s)
        self.lanes = lanes or Lanes()
        self.make_client = make_client
        self.clock = clock
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self.thread: threading.Thread | None = None
        self.current: PullSession | None = None
        self.pulls = 0
        self.last_at: float | None = None
        self.next_at: float | None = None
        self.last_outcome: str | None = None
        self.last_error: str | None = None
        self.last_result: PullResult | None = None
        self._lock = threading.Lock()

    @property
    def pair(self) -> Pair:
        return self.spec.endpoint, self.spec.dataset

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def status(self) -> ScheduleStatus:
        with self._lock:
            current = self.current
            return ScheduleStatus(
                endpoint=self.spec.endpoint,
                dataset=self.spec.dataset,
                every_s=self.every_s,
                running=self.running,
                pulling=current is not None and current.alive,
                pulls=self.pulls,
                last_at=self.last_at,
                next_at=None if self._stop.is_set() else self.next_at,
                last_outcome=self.last_outcome,
                last_error=self.last_error,
                last_result=self.last_result,
            )

    def start(self) -> Schedule:
        """Run the schedule in a daemon thread: a pull at once, then one every `every_s`."""
        if self.thread is not None:
            raise PullError("this schedule has already been started")
        self.next_at = self.clock()
        self.thread = threading.Thread(
            target=self._loop, name=f"pull-schedule-{self.spec.dataset}", daemon=True
        )
        self.thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """No more pulls: a wait ends at once; a pull under way finishes its page first (wait
        for it with `timeout`, or not)."""
        self._stop.set()
        if self.thread is not None and timeout is not None:
            self.thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.next_at is None or self.clock() >= self.next_at:
                    self.tick()
                assert self.next_at is not None
                if self._wait(max(0.0, self.next_at - self.clock())):
                    break
        except Exception:  # noqa: BLE001 - a schedule must never take the server down
            log.exception("the pull schedule of %s stopped", self.spec.dataset)
            with self._lock:
                self.last_outcome = "failed"
                self.last_error = "the schedule stopped on an unexpected error (see the log)"
        finally:
            self._stop.set()

    def tick(self) -> str:
        """Run one scheduled pull now (in this thread) unless its pair is busy; returns the
        outcome (done, failed or skipped) and sets the next pull's time."""
        started = self.clock()
        spec = self.spec if self.pulls == 0 else dataclasses.replace(self.spec, since_ms=None)
        session = PullSession(
            self.store,
            spec,
            self.target,
            lanes=self.lanes,
            make_client=self.make_client,
            clock=self.clock,
        )
        with self._lock:
            self.current = session
        try:
            session.run()
        except PullError as exc:  # the lane is taken: skip this tick
            with self._lock:
                self.current = None
                self.last_outcome = "skipped"
                self.last_at = started
                self.next_at = started + self.every_s
            log.info("scheduled pull skipped: %s", exc)
            return "skipped"
        with self._lock:
            self.pulls += 1
            self.last_at = started
            self.last_outcome = session.outcome
            if session.error is not None:
                self.last_error = session.error
            else:
                self.last_result = session.result
            # Every `every_s` from the start of each pull; a pull longer than that is followed
            # by the next one at once rather than a burst of catch-up pulls.
            self.next_at = max(started + self.every_s, self.clock())
        return session.outcome


class Pulls:
    """The pulls and schedules of one process, by (endpoint, dataset): what the app keeps."""

    def __init__(
        self,
        *,
        make_client: ClientFactory = ReadClient,
        clock: Callable[[], float] = time.time,
    ):
        self.lanes = Lanes()
        self.make_client = make_client
        self.clock = clock
        self._lock = threading.Lock()
        self.sessions: dict[str, PullSession] = {}
        self.schedules: dict[Pair, Schedule] = {}

    def pull_now(self, store: Store, spec: PullSpec, target: Target) -> PullSession:
        """Start a pull in the background; PullError with a sentence when the target is not
        usable or a pull of that endpoint and dataset is running (nothing starts then)."""
        if problem := target_problem(target):
            raise PullError(problem)
        session = PullSession(
            store, spec, target, lanes=self.lanes, make_client=self.make_client, clock=self.clock
        )
        session.start()
        with self._lock:
            self.sessions[session.id] = session
        return session

    def session(self, session_id: str) -> PullSession | None:
        with self._lock:
            return self.sessions.get(session_id)

    def live(self) -> list[PullSession]:
        """Pulls running now, the "Pull now" ones and the schedules' own, oldest first."""
        with self._lock:
            found = [s for s in self.sessions.values() if s.alive]
            found += [
                c
                for c in (sch.current for sch in self.schedules.values())
                if c is not None and c.alive
            ]
        return sorted(found, key=lambda s: s.started_at or 0.0)

    def keep_in_sync(
        self,
        store: Store,
        spec: PullSpec,
        target: Target,
        every_minutes: float,
        *,
        wait: Callable[[float], bool] | None = None,
    ) -> Schedule:
        """Start (or replace) the schedule of the spec's endpoint and dataset."""
        if problem := target_problem(target):
            raise PullError(problem)
        schedule = Schedule(
            store,
            spec,
            target,
            every_minutes * 60,
            lanes=self.lanes,
            make_client=self.make_client,
            clock=self.clock,
            wait=wait,
        )
        with self._lock:
            old = self.schedules.pop(schedule.pair, None)
            self.schedules[schedule.pair] = schedule
        if old is not None:
            old.stop()
        return schedule.start()

    def stop_schedule(self, pair: Pair) -> bool:
        """Stop and forget a schedule; False when there was none."""
        with self._lock:
            schedule = self.schedules.pop(pair, None)
        if schedule is None:
            return False
        schedule.stop()
        return True

    def schedule_list(self) -> list[Schedule]:
        with self._lock:
            return list(self.schedules.values())
