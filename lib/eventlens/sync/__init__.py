"""Sync from LangWatch: pull a project's events into a dataset, incrementally and exactly.

LangWatch has no route that lists events; they come back inside traces from
POST /api/traces/search (../shared/LANGWATCH_READ_API.md). A pull asks on the `updated` axis,
ascending, from where the last pull of that endpoint and dataset stopped (`updatedThrough`),
pages with `scrollId` keeping the request the same, and applies each page in one transaction
(apply.py): every trace replaces its stored events. A pull killed anywhere and run again
continues the saved scroll and ends with exactly the events the server holds.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventlens import settings
from eventlens.client import Target
from eventlens.store import Store
from eventlens.sync import journal
from eventlens.sync.api import PullError, ReadClient, Retry
from eventlens.sync.apply import Applied, CursorUpdate, apply_page
from eventlens.sync.journal import Cursor
from eventlens.sync.mapping import SELECT, PulledTrace, from_full, from_selected

if TYPE_CHECKING:
    import pandas as pd

    from eventlens.clickhouse.store import ClickHouseStore

__all__ = [
    "DEFAULT_DATASET",
    "MAX_PAGE_SIZE",
    "Cursor",
    "Progress",
    "PullError",
    "PullResult",
    "PullSpec",
    "ReadClient",
    "Retry",
    "cursor",
    "past_pulls",
    "pull",
]

DEFAULT_DATASET = "langwatch"
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class _Book:
    """Where a store keeps its pulls and how a page is applied: DuckDB's journal tables and one
    transaction per page, or ClickHouse's tables (clickhouse/pulls.py)."""

    cursor: Callable[..., Cursor]
    start: Callable[..., str]
    finish: Callable[..., None]
    counts: Callable[..., dict[str, int]]
    past_pulls: Callable[..., Any]
    apply_page: Callable[..., Applied]
    clear_scroll: Callable[..., None]


def _clear_scroll(store: Store, endpoint: str, dataset: str, through: int | None) -> None:
    with store.write_lock, store.cursor() as cur:
        journal.save_cursor(cur, endpoint, dataset, through, None)


_DUCKDB_BOOK = _Book(
    journal.cursor,
    journal.start,
    journal.finish,
    journal.counts,
    journal.past_pulls,
    apply_page,
    _clear_scroll,
)


def _book(store: Store | ClickHouseStore) -> _Book:
    if store.engine == "clickhouse":
        from eventlens.clickhouse import pulls

        return _Book(
            pulls.cursor,
            pulls.start,
            pulls.finish,
            pulls.counts,
            pulls.past_pulls,
            pulls.apply_page,
            pulls.clear_scroll,
        )
    return _DUCKDB_BOOK


def cursor(store: Store | ClickHouseStore, endpoint: str, dataset: str) -> Cursor:
    """Where the next pull of (endpoint, dataset) starts, on either engine."""
    return _book(store).cursor(store, endpoint, dataset)


def past_pulls(store: Store | ClickHouseStore, limit: int = 50) -> pd.DataFrame:
    """The newest pulls first (a pandas frame), on either engine."""
    return _book(store).past_pulls(store, limit)


@dataclass(frozen=True)
class PullSpec:
    """What to pull: from where, into which dataset, over which window of the updated axis."""

    endpoint: str = field(default_factory=lambda: str(settings.ENDPOINT.value()))
    dataset: str = DEFAULT_DATASET
    since_ms: int | None = None  # None: where the last pull stopped (or the beginning)
    until_ms: int | None = None  # None: now
    full: bool = False  # start again from the beginning (or since_ms)
    page_size: int = MAX_PAGE_SIZE
    api_key_env: str = settings.API_KEY.name

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise PullError(f"the page size must be 1 to {MAX_PAGE_SIZE}, got {self.page_size}")
        if not self.dataset.strip():
            raise PullError("the dataset needs a name")
        if (
            self.since_ms is not None
            and self.until_ms is not None
            and self.since_ms > self.until_ms
        ):
            raise PullError("--since is after --until: nothing could match")


@dataclass
class Progress:
    """Where a pull is, after each page (for a progress bar)."""

    traces: int = 0
    total_hits: int | None = None
    events: int = 0
    pages: int = 0
    started: float = 0.0
    now: float = 0.0
    note: str = ""  # the last retry, in words

    @property
    def events_per_s(self) -> float:
        elapsed = self.now - self.started
        return self.events / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class PullResult:
    """A finished pull: the JSON object `eventlens pull --json` prints."""

    pull_id: str
    dataset: str
    traces: int
    events: int
    added: int
    removed: int
    rejected: int
    pages: int
    updated_through_ms: int | None
    refetched: int  # traces read whole because their page held exactly 1000 events

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "traces": self.traces,
            "events": self.events,
            "added": self.added,
            "removed": self.removed,
            "rejected": self.rejected,
            "pages": self.pages,
            "updated_through": iso_ms(self.updated_through_ms),
        }


def iso_ms(ms: int | None) -> str | None:
    """Epoch ms as ISO-8601 in UTC, to the millisecond."""
    if ms is None:
        return None
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def target_for(spec: PullSpec) -> Target:
    """The endpoint and the key from the environment variable the spec names (never shown)."""
    key = settings.named(spec.api_key_env)
    if not key:
        raise PullError(
            f"no API key: set {spec.api_key_env} to the LangWatch project's key"
            + (
                ""
                if spec.api_key_env != settings.API_KEY.name
                else " (or name another variable with --api-key-env)"
            )
        )
    return Target(endpoint=spec.endpoint.rstrip("/"), key=key, key_source="environment")


def pull(
    store: Store | ClickHouseStore,
    spec: PullSpec,
    *,
    client: ReadClient | None = None,
    progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> PullResult:
    """Pull the spec's window into its dataset; raises PullError with a sentence on failure (the
    pages applied so far stay, and the next pull goes on from them)."""
    own = client is None
    client = client or ReadClient(target_for(spec))
    endpoint = spec.endpoint.rstrip("/")
    book = _book(store)
    saved = book.cursor(store, endpoint, spec.dataset)
    scroll = _resume_or_start(saved, spec, clock)
    request = scroll["request"]
    pull_id = book.start(store, endpoint, spec.dataset, request["startDate"], request["endDate"])
    state = Progress(started=clock(), now=clock())
    if progress:

        def retrying(note: str) -> None:
            state.note = note
            progress(state)

        client.on_retry = retrying
    puller = _Scroll(store, spec, endpoint, client, pull_id, scroll, saved.updated_through_ms)
    try:
        while True:
            applied, finished = puller.next_page()
            state.traces += applied.traces
            state.events += applied.events
            state.pages += 1
            state.total_hits = puller.total_hits
            state.now = clock()
            state.note = ""
            if progress:
                progress(state)
            if finished:
                break
    except BaseException as exc:
        message = str(exc) if isinstance(exc, PullError) else _interrupted(exc)
        book.finish(store, pull_id, "failed", saved.updated_through_ms, message)
        raise
    finally:
        puller.close()
        if own:
            client.close()
    book.finish(store, pull_id, "done", puller.through, None)
    counts = book.counts(store, pull_id)
    return PullResult(
        pull_id=pull_id,
        dataset=spec.dataset,
        traces=counts["traces"],
        events=counts["events"],
        added=counts["added"],
        removed=counts["removed"],
        rejected=counts["rejected"],
        pages=counts["pages"],
        updated_through_ms=puller.through,
        refetched=puller.refetched,
    )


def _interrupted(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted; the pages applied are kept and the next pull goes on from them"
    return f"stopped by an unexpected {type(exc).__name__}"


def _resume_or_start(saved: Cursor, spec: PullSpec, clock: Callable[[], float]) -> dict[str, Any]:
    """The scroll to run: the saved unfinished one (the same request, so the server's cursor
    stays valid), or a new one from since / the last updatedThrough / the beginning."""
    window_given = spec.full or spec.since_ms is not None or spec.until_ms is not None
    if saved.scroll and not window_given:
        return saved.scroll
    if spec.since_ms is not None:
        start = spec.since_ms
    elif spec.full:
        start = 0
    else:
        start = saved.updated_through_ms or 0
    end = spec.until_ms if spec.until_ms is not None else int(clock() * 1000)
    return {
        "request": {
            "startDate": start,
            "endDate": end,
            "dateField": "updated",
            "sortDirection": "asc",
            "pageSize": spec.page_size,
        },
        "scroll_id": None,
        "mode": "select",
        "first_trace": None,
        "through": None,
    }


class _Scroll:
    """One scroll, page by page: ask, check, read whole what may be cut, apply."""

    def __init__(
        self,
        store: Store | ClickHouseStore,
        spec: PullSpec,
        endpoint: str,
        client: ReadClient,
        pull_id: str,
        scroll: dict[str, Any],
        through_before: int | None,
    ):
        self.store, self.spec, self.endpoint, self.client = store, spec, endpoint, client
        self.book = _book(store)
        self.pull_id = pull_id
        self.scroll = dict(scroll)
        self.through_before = through_before
        self.seen: set[str] = set()
        self.total_hits: int | None = None
        self.refetched = 0
        self.max_updated: int | None = None
        self.through: int | None = through_before
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pull-ahead")
        self._ahead: Future[dict[str, Any]] | None = None

    def _body(self) -> dict[str, Any]:
        body = dict(self.scroll["request"], scrollId=self.scroll["scroll_id"])
        if self.scroll["mode"] == "select":
            body["select"] = list(SELECT)
        else:
            body["includeSpans"] = True
        return body

    def _ask(self) -> dict[str, Any]:
        """The page the scroll is at: the one asked ahead, if any, else asked now."""
        ahead, self._ahead = self._ahead, None
        return ahead.result() if ahead is not None else self.client.search(self._body())

    def _ask_ahead(self) -> None:
        """Ask the next page while this one is applied: the server builds it meanwhile (the
        wait for it was a third of a pull's time). Only asked, never applied, before its turn."""
        self._ahead = self._pool.submit(self.client.search, self._body())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def next_page(self) -> tuple[Applied, bool]:
        answer = self._ask()
        if self.scroll["mode"] == "select" and "schema" not in answer:
            # A server before 3.5.0 ignores `select` (and says so by leaving out `schema`): ask
            # the same page again with whole traces.
            self.scroll["mode"] = "spans"
            answer = self.client.search(self._body())
        raw = [t for t in answer["traces"] if isinstance(t, dict) and t.get("trace_id")]
        traces = [(from_selected if self.scroll["mode"] == "select" else from_full)(t) for t in raw]
        self._check_restart(traces)
        traces = [self._whole(t) for t in traces]
        found = answer.get("pagination")
        pagination: dict[str, Any] = found if isinstance(found, dict) else {}
        hits = pagination.get("totalHits")
        self.total_hits = int(hits) if isinstance(hits, int | float) else self.total_hits
        for t in traces:
            if t.updated_at is not None:
                self.max_updated = max(self.max_updated or t.updated_at, t.updated_at)
        through = pagination.get("updatedThrough")
        if isinstance(through, int | float):
            self.scroll["through"] = int(through)
        next_id = pagination.get("scrollId")
        finished = not traces or not next_id
        if finished:
            self.through = self._final_through()
            update = CursorUpdate(self.through, None)
        else:
            self.scroll["scroll_id"] = next_id
            update = CursorUpdate(self.through_before, dict(self.scroll))
            self._ask_ahead()
        applied = self.book.apply_page(
            self.store,
            dataset=self.spec.dataset,
            endpoint=self.endpoint,
            pull_id=self.pull_id,
            traces=traces,
            total_hits=self.total_hits,
            cursor=update,
        )
        return applied, finished

    def _final_through(self) -> int | None:
        """Where the next pull starts: the server's updatedThrough; a server before 3.13.0 has
        none, so the newest updated_at seen (windows are inclusive: at least once)."""
        if self.scroll.get("through") is not None:
            return int(self.scroll["through"])
        if self.max_updated is not None:
            return self.max_updated
        if self.through_before is not None:
            return self.through_before
        return int(self.scroll["request"]["startDate"])  # nothing yet: start there next time

    def _check_restart(self, traces: list[PulledTrace]) -> None:
        """A page that starts the scroll over (LangWatch silently does, on a cursor it cannot
        read or a changed request) would loop forever: stop instead, and forget the scroll."""
        ids = [t.trace_id for t in traces]
        if not ids:
            return
        first = self.scroll.get("first_trace")
        again = first is not None and ids[0] == first
        if again or (self.seen and all(i in self.seen for i in ids)):
            self.book.clear_scroll(
                self.store, self.endpoint, self.spec.dataset, self.through_before
            )
            raise PullError(
                "the server started the scroll again from its first page (a page repeated"
                " traces this pull had already read), as LangWatch does when it cannot use the"
                " cursor; the pull stopped instead of looping. The pages read are kept; run the"
                " pull again (if it happens again, the server is ignoring scrollId)"
            )
        if first is None:
            self.scroll["first_trace"] = ids[0]
        self.seen.update(ids)

    def _whole(self, trace: PulledTrace) -> PulledTrace:
        """A trace whose page held exactly 1000 events may have been cut: read it whole."""
        if self.scroll["mode"] != "select" or not trace.maybe_cut:
            return trace
        self.refetched += 1
        whole = from_full(self.client.trace(trace.trace_id))
        whole.trace_id = trace.trace_id
        whole.metadata = whole.metadata or trace.metadata
        whole.updated_at = whole.updated_at if whole.updated_at is not None else trace.updated_at
        return whole
