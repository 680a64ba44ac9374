"""Opening the store a --db value names: a DuckDB file (Store) or a ClickHouse database
(ClickHouseStore). The commands that run on both (load, series, info, delete, pull, ui) open
their store here; the others open a Store, which refuses a ClickHouse URL in one sentence."""

from __future__ import annotations

import os
from collections.abc import Sequence
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
