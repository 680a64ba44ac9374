"""Opening the store a --db value names: a DuckDB file (Store) or a ClickHouse database
(ClickHouseStore); every command opens its store here. Replay and the sandbox keep state they
update in place: on ClickHouse, in local DuckDB files beside it (replay_store, sandbox_stores)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from eventlens import location
from eventlens.ingest import LoadResult, load_files
from eventlens.store import Store, StoreError, resolve_db_path

if TYPE_CHECKING:
    from eventlens.clickhouse.store import ClickHouseStore


def open_store(db: str | os.PathLike[str] | None = None) -> Store | ClickHouseStore:
    """The store `db` (else $EVENTLENS_DB, else ./eventlens.duckdb) names, opened."""
    path = resolve_db_path(db)
    if not location.is_url(path):
        return Store(path)
    from eventlens.clickhouse.store import ClickHouseStore

    try:
        return ClickHouseStore(location.parse(path))
    except location.LocationError as exc:
        raise StoreError(str(exc)) from None


def load(
    store: Store | ClickHouseStore,
    paths: Sequence[str | os.PathLike[str]],
    dataset: str | None = None,
    display_names: Sequence[str] | None = None,
) -> LoadResult:
    """Load files into either store: the same checks, rejects and counts (the CLI, the Data
    page and the app's first start call this)."""
    if isinstance(store, Store):
        return load_files(store, paths, dataset, display_names)
    return store.load([str(p) for p in paths], dataset, display_names=display_names)


def replay_store(store: Store | ClickHouseStore) -> Store:
    """Where replay journals its runs and reads "the store's events" from: a DuckDB store is
    both. A ClickHouse store's runs go in a local DuckDB file (location.replay_journal: runs
    update rows in place, in transactions), which reads its events from ClickHouse."""
    if isinstance(store, Store):
        return store
    journal = Store(location.replay_journal(store.location))
    journal.events_from = store
    return journal


@contextlib.contextmanager
def opened_replay_store(db: str | os.PathLike[str] | None = None) -> Iterator[Store]:
    """replay_store() of the store `db` names, both closed at the end (the CLI's replay)."""
    with open_store(db) as store:
        journal = replay_store(store)
        try:
            yield journal
        finally:
            if journal is not store:
                journal.close()


def sandbox_stores(store: Store | ClickHouseStore) -> tuple[Store, ClickHouseStore | None]:
    """The sandbox's own store, and the ClickHouse store it copies what it accepts to (None on
    DuckDB, where the store is both). On ClickHouse the sandbox keeps its bookkeeping (the keys
    it has seen, the traces its read routes answer from) in a local DuckDB file
    (location.sandbox_state); deleting its dataset in ClickHouse clears that too."""
    if isinstance(store, Store):
        return store, None
    local = Store(location.sandbox_state(store.location))

    def forget(name: str) -> None:
        if name in local.dataset_names():
            local.delete_dataset(name)

    store.on_delete.append(forget)
    return local, store


@contextlib.contextmanager
def opened_sandbox_stores(
    db: str | os.PathLike[str] | None = None,
) -> Iterator[tuple[Store, ClickHouseStore | None]]:
    """sandbox_stores() of the store `db` names, closed at the end (`eventlens sandbox`)."""
    with open_store(db) as store:
        local, mirror = sandbox_stores(store)
        try:
            yield local, mirror
        finally:
            if mirror is not None:
                local.close()
