"""The sender: one session of a run, paced, concurrent, retried safely, journalled as it goes.

Each event carries an event_id that is stable for the run, so the server drops a retry or a
resend as a repeat. Every outcome is journalled (`replay_outcomes`) in small batches; a resume
sends only the events without a final outcome (accepted, rejected, invalid).

asyncio on aiohttp, not threads: at 64 in flight on this 2-core machine it sent 3.3-3.8x the
events/s of httpx's sync client in 64 threads, and ~10x httpx's AsyncClient on its default
transport; posting through aiohttp's session without httpx's request and response objects took
it from 0.36x to 0.6x a bare aiohttp loop (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from eventlens import client
from eventlens.client import Outcome
from eventlens.replay.clock import REAL_CLOCK, Clock
from eventlens.replay.journal import append_outcomes, final_seqs, save_run
from eventlens.replay.planning import Planned, Shaper, read_plan
from eventlens.replay.report import Report, build_report
from eventlens.replay.specs import DEAD, FINAL, ReplayError, Run, RunState
from eventlens.store import Store
from eventlens.words import counted

log = logging.getLogger(__name__)

JOURNAL_EVERY_S = 0.2  # outcomes reach the journal at most this late (what a kill -9 can lose)


@dataclass
class Progress:
    """A snapshot of a session, safe to read from another thread."""

    run_id: str
    state: RunState
    planned: int
    done: int  # events with a final outcome, earlier sessions included
    accepted: int
    rejected: int
    invalid: int
    failed: int
    unknown: int
    retried: int
    requests: int
    rate: float  # events finished per second in this session, pauses left out
    eta_s: float | None
    elapsed_s: float  # sending time of this session (pauses left out)
    paused_for_s: float  # left of a server-requested pause (Retry-After)
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _run_in_own_thread(main: Any) -> None:
    """asyncio.run(main()) on a new thread: the caller's thread may already run an event loop
    (a notebook, Playwright's sync API in tests), where asyncio.run refuses to start."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            failure.append(exc)

    thread = threading.Thread(target=target, name="replay-loop", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class _Gate:
    """Run-wide controls every request waits on: stop, pause, a server's Retry-After.

    Set from any thread (the page's buttons, a signal); read by the engine's coroutines.
    """

    TICK = 0.05  # how often a waiting coroutine looks again

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stopping = False
        self.paused = False
        self.until = 0.0  # monotonic time before which nobody sends (a server's Retry-After)

    def hold(self, seconds: float) -> None:
        self.until = max(self.until, self.clock.monotonic() + seconds)

    def held_for(self) -> float:
        return max(0.0, self.until - self.clock.monotonic())

    async def wait(self) -> bool:
        """Wait while paused or held; False once the run is stopping."""
        while not self.stopping:
            delay = self.TICK if self.paused else self.held_for()
            if delay <= 0:
                return True
            await self.clock.sleep(min(delay, self.TICK))
        return False

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the run stops first; False once stopping."""
        end = self.clock.monotonic() + seconds
        while not self.stopping:
            left = end - self.clock.monotonic()
            if left <= 0:
                return True
            await self.clock.sleep(min(left, self.TICK))
        return False


class _RateLimit:
    """At most `rate` requests per second across the run, without bursts after idling."""

    def __init__(self, rate: float | None, clock: Clock):
        self.clock = clock
        self.interval = 1.0 / rate if rate else 0.0
        self.next = clock.monotonic()

    def slot(self) -> float:
        """Seconds to wait for this request's slot (one event loop: no lock needed)."""
        if not self.interval:
            return 0.0
        now = self.clock.monotonic()
        slot = max(self.next, now)
        self.next = slot + self.interval
        return slot - now


class _Traces:
    """Per-trace order and which trace goes next.

    One event of a trace is out at a time (ready or sending); the trace's next event waits
    behind it. Ready events go longest trace first: most events still to send among those read
    from the plan, then plan order. Served first come first, the traces with many events were
    left running alone at the end of a run; on an export with ~42 traces live in 512 events,
    64 in flight against a 50 ms endpoint kept 91% of the ideal rate, and 99% this way
    (docs/BENCHMARKS.md).
    """

    def __init__(self) -> None:
        self.ready: asyncio.PriorityQueue[tuple[int, int, Planned | None]] = asyncio.PriorityQueue()
        self._behind: dict[str, collections.deque[Planned]] = {}  # waiting for the one out
        self._left = collections.Counter[str]()  # read from the plan, not finished yet

    def expect(self, trace_id: str) -> None:
        """An event of this trace was read from the plan and will be handed out."""
        self._left[trace_id] += 1

    def hand_out(self, p: Planned) -> None:
        behind = self._behind.get(p.trace_id)
        if behind is not None:
            behind.append(p)  # its trace has an event out: sent after it
            return
        self._behind[p.trace_id] = collections.deque()
        self._put(p)

    def finished(self, p: Planned) -> None:
        """p is done with (sent or not): its trace's next event becomes ready."""
        left = self._left[p.trace_id] - 1
        if left > 0:
            self._left[p.trace_id] = left
        else:
            del self._left[p.trace_id]
        behind = self._behind[p.trace_id]
        if behind:
            self._put(behind.popleft())
        else:
            del self._behind[p.trace_id]
        self.ready.task_done()

    def stop_workers(self, workers: int) -> None:
        for n in range(workers):
            self.ready.put_nowait((0, -1 - n, None))

    def _put(self, p: Planned) -> None:
        self.ready.put_nowait((-self._left[p.trace_id], p.seq, p))


class Replay:
    """One session of a run: send what has no final outcome, journal it, report.

    The engine is one asyncio loop (in the thread that calls execute) with `concurrency` worker
    coroutines posting through client.AsyncSender (an aiohttp session; a given httpx transport
    in tests): measured fastest here (docs/BENCHMARKS.md). The journal is written by a thread,
    so DuckDB never blocks sending. Pacing, pauses and sending time follow `clock` (virtual in
    tests).
    """

    def __init__(
        self,
        store: Store,
        run: Run,
        key: str | None,
        *,
        key_source: str = "environment",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = REAL_CLOCK,
    ):
        self.store = store
        self.run = run
        self.target = run.endpoint.target(key, key_source)
        self._transport = transport
        self.clock = clock
        self.gate = _Gate(clock)
        self.limit = _RateLimit(run.pacing.rate, clock)
        self.counts = collections.Counter[str]()
        self.started = clock.monotonic()
        self._paused_total = 0.0  # seconds spent paused by pause(), over the session
        self._paused_since: float | None = None
        self.session = run.sessions + 1
        self.done_before = 0
        # Final outcomes of earlier sessions, read when the session starts (None until then),
        # so that the runs list can show run-wide counts while this session sends.
        self.accepted_before: int | None = None
        self.dead_lettered_before: int | None = None
        self.message: str | None = None
        self.state = RunState.RUNNING
        self._rows: list[dict[str, Any]] = []
        self._rows_lock = threading.Lock()
        self.finished = threading.Event()

    # controls (any thread)
    def pause(self) -> None:
        if self._paused_since is None:
            self._paused_since = self.clock.monotonic()
        self.gate.paused = True
        self.state = RunState.PAUSED

    def resume(self) -> None:
        if self._paused_since is not None:
            self._paused_total += self.clock.monotonic() - self._paused_since
            self._paused_since = None
        self.gate.paused = False
        self.state = RunState.RUNNING

    def sending_s(self) -> float:
        """Seconds this session has spent sending: since it started, less its pauses."""
        now = self.clock.monotonic()
        since = self._paused_since
        paused = self._paused_total + (now - since if since is not None else 0.0)
        return max(now - self.started - paused, 0.0)

    def stop(self, message: str | None = None) -> None:
        if message and not self.message:
            self.message = message
        self.gate.stopping = True

    def progress(self) -> Progress:
        """Counts so far (earlier sessions included in done)."""
        c = dict(self.counts)
        elapsed = self.sending_s()
        finished = sum(c.get(k, 0) for k in (*FINAL, Outcome.FAILED, Outcome.UNKNOWN))
        done = self.done_before + sum(c.get(k, 0) for k in FINAL)
        rate = finished / elapsed if elapsed > 0 else 0.0
        left = self.run.planned - done
        return Progress(
            run_id=self.run.run_id,
            state=self.state,
            planned=self.run.planned,
            done=done,
            accepted=c.get(Outcome.ACCEPTED, 0),
            rejected=c.get(Outcome.REJECTED, 0),
            invalid=c.get(Outcome.INVALID, 0),
            failed=c.get(Outcome.FAILED, 0),
            unknown=c.get(Outcome.UNKNOWN, 0),
            retried=c.get("retried", 0),
            requests=c.get("requests", 0),
            rate=round(rate, 1),
            eta_s=round(left / rate, 1) if rate > 0 and left > 0 else (0.0 if left <= 0 else None),
            elapsed_s=round(elapsed, 1),
            paused_for_s=round(self.gate.held_for(), 1),
            message=self.message,
        )

    # the session
    def execute(self) -> Report:
        """Send the run's remaining events; returns the run's report (also journalled)."""
        run = self.run
        if run.state == RunState.FINISHED:
            raise ReplayError(f"run {run.run_id} has finished; there is nothing left to send")
        # One scan of the final outcomes. Plain counts are exact for accepted and dead letters:
        # an event gets at most one final outcome (a resume skips it), and the file's invalid
        # records are journalled once, at seq <= 0.
        done, accepted, dead = self.store.rows(
            "SELECT count(DISTINCT seq) FILTER (WHERE seq > 0),"
            " count(*) FILTER (WHERE outcome = ?),"
            " count(*) FILTER (WHERE outcome <> ?)"
            " FROM replay_outcomes WHERE run_id = ? AND list_contains(?, outcome)",
            [Outcome.ACCEPTED, Outcome.ACCEPTED, run.run_id, list(FINAL)],
        )[0]
        self.done_before, self.accepted_before, self.dead_lettered_before = done, accepted, dead
        if problem := client.check_target(self.target):
            raise ReplayError(f"nothing sent: {problem}")  # not a reason to dead-letter events
        now_ms = time.time() * 1000
        if run.anchor_ms is None:
            run.anchor_ms = int(now_ms)
        self.shaper = Shaper(run, now_ms)
        run.state, run.sessions, run.message = RunState.RUNNING, self.session, None
        with self.store.write_lock:
            save_run(self.store, run)
        journal = threading.Thread(target=self._journal_loop, name="replay-journal", daemon=True)
        journal.start()
        crashed: BaseException | None = None
        try:
            _run_in_own_thread(self._main)
        except BaseException as exc:  # noqa: BLE001 - journal what we have, then re-raise
            crashed = exc
            self.stop(f"the replay failed: {type(exc).__name__}: {exc}")
        finally:
            self.finished.set()
            journal.join(timeout=10)
            self._flush()
            report = self._finish(crashed)
        if crashed is not None:
            raise crashed
        return report

    def _finish(self, crashed: BaseException | None) -> Report:
        run = self.run
        run.elapsed_s += self.sending_s()
        report = build_report(self.store, run)
        left = report.not_sent + report.failed + report.unknown
        if crashed is not None:
            run.state = RunState.FAILED
        elif self.gate.stopping:
            run.state = RunState.STOPPED
        else:
            run.state = RunState.FINISHED if left == 0 else RunState.STOPPED
        run.message = self.message or (
            None
            if run.state == RunState.FINISHED
            else f"{counted(left, 'event')} still to send; resume the run"
        )
        report = dataclasses.replace(report, state=run.state, message=run.message, closing=True)
        run.report = report
        self.state = run.state
        with self.store.write_lock:
            save_run(self.store, run)
        return report

    async def _main(self) -> None:
        pacing = self.run.pacing
        limits = httpx.Limits(
            max_connections=pacing.concurrency, max_keepalive_connections=pacing.concurrency
        )
        timeout = httpx.Timeout(pacing.timeout_s, connect=min(5.0, pacing.timeout_s))
        sender = client.AsyncSender(self.target, timeout, limits=limits, transport=self._transport)
        async with sender:
            traces = _Traces()
            # Events handed out but unfinished. Wide, so that an export whose traces come in
            # long runs (events queued behind their trace) still keeps every worker busy.
            window = asyncio.Semaphore(max(1024, pacing.concurrency * 64))
            workers = [
                asyncio.create_task(self._worker(traces, window, sender))
                for _ in range(pacing.concurrency)
            ]
            try:
                await self._dispatch(traces, window)
                await traces.ready.join()
            finally:
                traces.stop_workers(len(workers))
                await asyncio.gather(*workers, return_exceptions=True)

    async def _dispatch(self, traces: _Traces, window: asyncio.Semaphore) -> None:
        """Feed the workers in plan order: traces in parallel, one trace's events in order."""
        pacing = self.run.pacing
        timed = pacing.speed is not None
        clock_start, prev_ts, offset_ms = self.clock.monotonic(), None, 0.0
        first_due: float | None = None
        cap_ms = pacing.max_gap_s * 1000
        chunks = read_plan(self.run.plan_path)
        while True:
            # DuckDB reads the next chunk on a thread while the workers keep sending.
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            skip = await asyncio.to_thread(
                final_seqs, self.store, self.run.run_id, chunk[0].seq - 1, chunk[-1].seq
            )
            for p in chunk:
                if p.seq not in skip:
                    traces.expect(p.trace_id)
            for p in chunk:
                if timed and p.ts is not None:
                    if prev_ts is not None:
                        offset_ms += min(max(p.ts - prev_ts, 0), cap_ms) / (pacing.speed or 1)
                    prev_ts = p.ts
                if p.seq in skip:
                    continue
                if timed:
                    if first_due is None:  # the clock starts at the first event sent
                        first_due, clock_start = offset_ms, self.clock.monotonic()
                    due = clock_start + (offset_ms - first_due) / 1000
                    if not await self.gate.sleep(due - self.clock.monotonic()):
                        return
                if window.locked():  # the window is full: wait, looking at the stop flag
                    while not await self._acquire(window):
                        if self.gate.stopping:
                            return
                else:
                    await window.acquire()
                if self.gate.stopping:
                    window.release()
                    return
                traces.hand_out(p)

    async def _acquire(self, window: asyncio.Semaphore) -> bool:
        """Take a window slot, giving up every tick to look at the stop flag."""
        try:
            await asyncio.wait_for(window.acquire(), self.gate.TICK)
            return True
        except TimeoutError:
            return False

    async def _worker(
        self, traces: _Traces, window: asyncio.Semaphore, sender: client.AsyncSender
    ) -> None:
        while True:
            _, _, item = await traces.ready.get()
            if item is None:
                return
            try:
                if not self.gate.stopping:
                    await self._send(item, sender)
            except Exception as exc:  # noqa: BLE001 - a bug must not hang the run
                log.exception("replay: sending seq %s failed", item.seq)
                self._record(item, Outcome.FAILED, None, 0, None, type(exc).__name__)
            finally:
                window.release()
                traces.finished(item)

    async def _send(self, p: Planned, sender: client.AsyncSender) -> None:
        """Send one event until it has an outcome, or the run stops (then it stays unsent)."""
        pacing = self.run.pacing
        body = self.shaper.body(p)
        attempts = 0
        while True:
            if not await self.gate.wait():
                return
            if not await self.gate.sleep(self.limit.slot()):
                return
            if self.gate.paused or self.gate.held_for() > 0:
                continue  # paused (or held by a Retry-After) while waiting for the slot
            result = await sender.send(body)
            outcome = result.outcome
            if result.sent or outcome != Outcome.INVALID:
                attempts += 1
                self.counts["requests"] += 1
            if outcome in FINAL:  # accepted, or refused for good (rejected, invalid)
                said = None if outcome == Outcome.ACCEPTED else result.message
                self._record(p, outcome, result.status, attempts, result.latency_ms, said)
                return
            if outcome in (Outcome.UNAUTHORIZED, Outcome.FORBIDDEN):
                self.stop(
                    f"stopped: {result.message}. Check the key in ${self.run.endpoint.key_env}"
                    " (or the one typed), then resume the run."
                )
                return
            # Retryable (429, 5xx, connect errors, timeouts) or unknown (dropped mid-answer).
            if attempts > pacing.max_retries:
                # Unknown: it may have arrived (no answer came back); failed: the server said no.
                no_answer = result.status is None and result.sent
                final = (
                    Outcome.UNKNOWN if outcome == Outcome.UNKNOWN or no_answer else Outcome.FAILED
                )
                self._record(p, final, result.status, attempts, result.latency_ms, result.message)
                return
            self.counts["retried"] += 1
            if result.retry_after is not None and result.status in (429, 503):
                self.gate.hold(result.retry_after)  # the whole run waits, not just this worker
                continue
            delay = min(pacing.max_backoff_s, pacing.backoff_s * 2 ** (attempts - 1))
            if not await self.gate.sleep(delay / 2 + random.uniform(0, delay / 2)):
                return

    def _record(
        self,
        p: Planned,
        outcome: Outcome,
        status: int | None,
        attempts: int,
        latency_ms: float | None,
        message: str | None,
    ) -> None:
        record = json.dumps(p.original(), ensure_ascii=False) if outcome in DEAD else None
        row = {
            "run_id": self.run.run_id,
            "session": self.session,
            "seq": p.seq,
            "event_type": p.event_type,
            "outcome": outcome,
            "status": status,
            "attempts": attempts,
            "latency_ms": latency_ms,
            "message": message,
            "record": record,
            "line": p.line,
            "logged_at": dt.datetime.now(dt.UTC),
        }
        with self._rows_lock:
            self._rows.append(row)
        self.counts[outcome] += 1

    def _journal_loop(self) -> None:
        # Real time here: this paces writes to the journal, not sending.
        saved = time.monotonic()
        while not self.finished.wait(JOURNAL_EVERY_S):
            self._flush()
            if time.monotonic() - saved >= 5:  # so a crashed run still shows its sending time
                saved = time.monotonic()
                try:
                    self.store.execute(
                        "UPDATE replay_runs SET elapsed_s = ?, updated_at = now() WHERE run_id = ?",
                        [self.run.elapsed_s + self.sending_s(), self.run.run_id],
                    )
                except Exception:  # noqa: BLE001 - a missed progress note loses nothing
                    log.debug("replay progress note failed", exc_info=True)

    def _flush(self) -> None:
        with self._rows_lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            append_outcomes(self.store, rows)
        except Exception:  # noqa: BLE001 - keep the rows and stop: an unjournalled send is unsafe
            log.exception("replay journal write failed")
            with self._rows_lock:
                self._rows[:0] = rows
            self.stop("the journal could not be written; the run stopped so nothing is lost")
