"""The DuckDB store: where it lives, its catalogue, the file lock, and use from many threads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from eventlens import settings
from eventlens import store as store_module
from eventlens.ingest import load_files
from eventlens.store import DB_ENV, DEFAULT_DB, Store, StoreError, resolve_db_path

# -- where the database lives ---------------------------------------------------------------------


def test_explicit_path_wins_over_env(monkeypatch):
    monkeypatch.setenv(DB_ENV, "from_env.duckdb")
    assert resolve_db_path("explicit.duckdb") == "explicit.duckdb"


def test_env_used_without_explicit_path(monkeypatch):
    monkeypatch.setenv(DB_ENV, "from_env.duckdb")
    assert resolve_db_path(None) == "from_env.duckdb"
    assert resolve_db_path("") == "from_env.duckdb"


def test_default_path(monkeypatch):
    monkeypatch.delenv(DB_ENV, raising=False)
    assert resolve_db_path() == DEFAULT_DB == "eventlens.duckdb"


def test_empty_env_falls_back_to_default(monkeypatch):
    monkeypatch.setenv(DB_ENV, "")
    assert resolve_db_path() == DEFAULT_DB


def test_an_empty_file_is_a_new_store_and_another_file_is_refused(tmp_path):
    empty = tmp_path / "made-by-touch.duckdb"
    empty.touch()
    with Store(empty) as store:
        assert store.event_count() == 0
    assert empty.stat().st_size > 0
    other = tmp_path / "notes.duckdb"
    other.write_text("not a database")
    with pytest.raises(StoreError, match="not a valid DuckDB database file"):
        Store(other)
    assert other.read_text() == "not a database"


def test_path_objects_are_accepted(tmp_path):
    assert resolve_db_path(tmp_path / "a.duckdb") == str(tmp_path / "a.duckdb")


def test_store_opens_env_path(tmp_path, monkeypatch):
    monkeypatch.setenv(DB_ENV, str(tmp_path / "env.duckdb"))
    with Store() as s:
        assert s.path == str(tmp_path / "env.duckdb")
    assert (tmp_path / "env.duckdb").exists()


def test_store_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "events.duckdb"
    with Store(path):
        pass
    assert path.exists()


def test_memory_store_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DB_ENV, raising=False)
    with Store(":memory:") as s:
        assert s.path == ":memory:"
        assert s.is_empty()
    assert list(tmp_path.iterdir()) == []


def test_store_persists_to_file(formats_dir, db_path):
    with Store(db_path) as s:
        load_files(s, [formats_dir / "events.ndjson"], "d")
    with Store(db_path) as s:
        assert s.event_count() == 120
        assert list(s.datasets().dataset) == ["d"]


def test_a_store_from_before_batch_ids_is_upgraded(formats_dir, db_path):
    """A store written before events had batch_id gains the column and keeps loading."""
    con = duckdb.connect(db_path)
    con.execute(
        "CREATE TABLE events (event_key UHUGEINT NOT NULL, event_id VARCHAR, trace_id VARCHAR"
        " NOT NULL, event_type VARCHAR NOT NULL, timestamp TIMESTAMPTZ, metrics MAP(VARCHAR,"
        " DOUBLE) NOT NULL, event_details MAP(VARCHAR, VARCHAR), dataset VARCHAR NOT NULL,"
        " source_file VARCHAR, source_line BIGINT)"
    )
    con.close()
    with Store(db_path) as s:
        assert load_files(s, [formats_dir / "events.ndjson"]).loaded == 120
        assert s.scalar("SELECT count(*) FROM events WHERE batch_id IS NOT NULL") == 120


def test_opening_skips_the_schema_only_where_it_would_change_nothing(db_path):
    """A store at the current schema is opened without running it; one missing a column, a
    table or a default, or holding rows an UPDATE of the schema fixes, is brought up to date."""
    assert store_module._SCHEMA_CHECKS is not None  # every SCHEMA statement is understood
    with Store(db_path) as s:
        full = s.rows(store_module.CATALOGUE_SQL)[0]
    damage = [
        "ALTER TABLE rejects DROP COLUMN trace_id",
        "DROP TABLE pull_cursors",
        "ALTER TABLE datasets ALTER COLUMN test DROP DEFAULT",
        "INSERT INTO datasets (name, files, content_hash, loaded_at, events, rejects,"
        " duplicates, test) VALUES ('sandbox', [], 'h', now(), 0, 0, 0, NULL)",
    ]
    for statement in damage:
        con = duckdb.connect(db_path)
        con.execute(statement)
        con.close()
        with Store(db_path) as s:
            assert s.rows(store_module.CATALOGUE_SQL)[0] == full, statement
            assert s.scalar("SELECT count(*) FROM datasets WHERE test IS NULL") == 0


def test_read_only_store(formats_dir, db_path):
    with Store(db_path) as s:
        load_files(s, [formats_dir / "events.ndjson"])
    with Store(db_path, read_only=True) as s:
        assert s.event_count() == 120


def test_store_uses_utc(store):
    assert store.scalar("SELECT current_setting('TimeZone')") == "UTC"


# -- catalogue ------------------------------------------------------------------------------------


def load_three_datasets(store: Store, formats_dir: Path) -> Store:
    load_files(store, [formats_dir / "events.ndjson"], "clean")
    load_files(store, [formats_dir / "search_response.json"], "search")
    load_files(store, [formats_dir / "bad_lines.jsonl"], "bad")
    return store


@pytest.fixture
def two_datasets(store, formats_dir) -> Store:
    """The datasets, in the test's own store, for a test that changes them."""
    return load_three_datasets(store, formats_dir)


@pytest.fixture(scope="module")
def shared_datasets(formats_dir) -> Iterator[Store]:
    """The datasets of two_datasets, loaded once for the tests that only read them."""
    with Store(":memory:") as s:
        yield load_three_datasets(s, formats_dir)


def test_empty_store(store):
    assert store.is_empty()
    assert store.event_count() == 0
    assert store.datasets().empty
    assert store.rejects().empty


def test_datasets_lists_each_dataset(shared_datasets):
    frame = shared_datasets.datasets().set_index("dataset")
    assert sorted(frame.index) == ["bad", "clean", "search"]
    assert frame.loc["clean", "events"] == 120
    assert frame.loc["search", "events"] == 120  # no event_id: not duplicates of "clean"
    assert frame.loc["bad", "events"] == 0  # all its good lines are already in "clean"
    assert frame.loc["bad", "rejects"] == 8
    assert frame.loc["clean", "traces"] == shared_datasets.scalar(
        "SELECT count(DISTINCT trace_id) FROM events WHERE dataset = 'clean'"
    )
    assert frame.loc["clean", "first_event"] <= frame.loc["clean", "last_event"]


def test_rejects_filtered_by_dataset(shared_datasets):
    assert len(shared_datasets.rejects("bad")) == 8
    assert shared_datasets.rejects("clean").empty
    assert len(shared_datasets.rejects()) == 8


def test_delete_dataset_removes_its_rows_only(two_datasets):
    s = two_datasets
    assert s.delete_dataset("bad") == 0
    assert s.delete_dataset("clean") == 120
    for table, column in (
        ("events", "dataset"),
        ("rejects", "dataset"),
        ("files", "dataset"),
        ("datasets", "name"),
    ):
        names = {n for (n,) in s.rows(f"SELECT DISTINCT {column} FROM {table}")}  # noqa: S608
        assert names <= {"search"}, table
    assert s.event_count() == 120
    assert list(s.datasets().dataset) == ["search"]


def test_delete_unknown_dataset(store):
    assert store.delete_dataset("nope") == 0


def test_reload_after_delete(formats_dir, store):
    load_files(store, [formats_dir / "bad_lines.jsonl"], "d")
    store.delete_dataset("d")
    again = load_files(store, [formats_dir / "bad_lines.jsonl"], "d")
    assert (again.loaded, again.rejected) == (20, 8)


# -- the file lock --------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
    print("ready", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    con.close()
    """
)


@pytest.fixture
def locked_db(db_path):
    """A database file held open read-write by another process."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield db_path
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_locked_file_gives_plain_store_error(locked_db):
    with pytest.raises(StoreError) as info:
        Store(locked_db)
    message = str(info.value)
    assert locked_db in message
    assert "in use" in message
    assert "--db" in message and DB_ENV in message
    assert "IOException" not in message and "\n" not in message


def test_locked_file_read_only_also_gives_store_error(locked_db):
    with pytest.raises(StoreError):
        Store(locked_db, read_only=True)


def test_unopenable_path_gives_store_error(tmp_path):
    path = tmp_path / "not_a_db.duckdb"
    path.write_text("this is not a duckdb file\n" * 100)
    with pytest.raises(StoreError) as info:
        Store(path)
    assert str(path) in str(info.value)


# -- threads --------------------------------------------------------------------------------------


def _run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            barrier.wait()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted on
                errors.append(exc)

        return threading.Thread(target=run)

    threads = [wrap(fn) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_queries_from_many_threads_while_loading(formats_dir, db_path):
    with Store(db_path) as s:
        load_files(s, [formats_dir / "stored_events.jsonl"], "first")
        seen: list[int] = []

        def query():
            for _ in range(5):
                seen.append(s.event_count())
                s.datasets()
                s.rejects()
                s.df("SELECT event_type, count(*) FROM events GROUP BY ALL")
                s.scalar("SELECT max(timestamp) FROM events")

        def loader():
            for name in ("search_response.json", "bad_lines.jsonl", "flat.csv"):
                result = load_files(s, [formats_dir / name], name)
                assert result.files[0].error is None

        errors = _run_threads([query] * 8 + [loader])
        assert errors == []
        assert all(n in (120, 240) for n in seen)
        assert s.event_count() == 240
        assert sorted(s.datasets().dataset) == sorted(
            ["first", "search_response.json", "bad_lines.jsonl", "flat.csv"]
        )


def test_concurrent_loads_are_serialised(formats_dir, store):
    names = ["events.ndjson", "flat.csv", "events.json", "json_columns.csv"]
    results = {}

    def loader(name):
        return lambda: results.__setitem__(name, load_files(store, [formats_dir / name], name))

    errors = _run_threads([loader(n) for n in names])
    assert errors == []
    assert all(r.files[0].error is None for r in results.values())
    assert sum(r.loaded for r in results.values()) == 120
    assert sum(r.duplicates for r in results.values()) == 360
    assert store.event_count() == 120


def test_store_path_attribute(db_path):
    with Store(db_path) as s:
        assert Path(s.path) == Path(db_path)


def test_memory_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("EVENTLENS_MEMORY_LIMIT", "1GB")
    with Store(":memory:") as s:
        assert s.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"


def test_a_bad_memory_limit_is_a_plain_error(monkeypatch):
    monkeypatch.setenv("EVENTLENS_MEMORY_LIMIT", "lots")
    with pytest.raises(StoreError, match="EVENTLENS_MEMORY_LIMIT"):
        Store(":memory:")


def test_threads_are_duckdbs_own_unless_the_environment_sets_them(monkeypatch, db_path):
    """The suite runs with EVENTLENS_THREADS=1 (tests/conftest.py); unset, a store keeps
    DuckDB's default, a thread per core, as users get it."""
    monkeypatch.delenv("EVENTLENS_THREADS")
    with duckdb.connect() as bare, Store(":memory:") as s:
        default = bare.execute("SELECT current_setting('threads')").fetchone()[0]
        assert s.scalar("SELECT current_setting('threads')") == default == os.cpu_count()
    monkeypatch.setenv("EVENTLENS_THREADS", "1")
    with Store(db_path) as s:
        assert s.scalar("SELECT current_setting('threads')") == 1
    monkeypatch.setenv("EVENTLENS_THREADS", " 3 ")
    with Store(db_path) as s:
        assert s.scalar("SELECT current_setting('threads')") == 3


def test_a_handed_off_command_keeps_the_apps_duckdb_settings(monkeypatch, db_path):
    """A command the running app took over opens its own Store on the app's file, in the app's
    process: DuckDB gives it the app's database, so its environment's budget and threads would
    have been the app's until a restart. The first Store's settings stay; once every Store on
    the file is closed, the next one sets its own again."""
    app = Store(db_path, memory_limit="1GB")  # the app's own store, its budget set
    job = {"EVENTLENS_MEMORY_LIMIT": "3GB", "EVENTLENS_THREADS": "2"}  # the command's env
    token = settings.ENVIRONMENT.set(job)
    try:
        with Store(db_path) as command:
            assert command.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"
            assert command.scalar("SELECT current_setting('threads')") == 1
    finally:
        settings.ENVIRONMENT.reset(token)
    assert app.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"
    assert app.scalar("SELECT current_setting('threads')") == 1  # the suite's (conftest)
    app.close()
    app.close()  # twice is harmless, and counts once
    monkeypatch.setenv("EVENTLENS_THREADS", "2")
    with Store(db_path, memory_limit="2GB") as alone:
        assert alone.scalar("SELECT current_setting('memory_limit')") == "1.8 GiB"
        assert alone.scalar("SELECT current_setting('threads')") == 2


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_thread_count_is_a_plain_error_before_the_store_opens(monkeypatch, db_path, value):
    monkeypatch.setenv("EVENTLENS_THREADS", value)
    with pytest.raises(StoreError, match=f"EVENTLENS_THREADS='{re.escape(value)}' is not a"):
        Store(db_path)
    assert not os.path.exists(db_path)  # nothing was opened, so nothing was made


def test_the_apps_store_has_a_budget_the_environment_overrides(monkeypatch):
    """The app opens its store with a quarter of the machine's memory (at least 1 GB), not
    DuckDB's 80%; EVENTLENS_MEMORY_LIMIT still wins; commands keep DuckDB's default."""
    from eventlens.store import app_memory_limit

    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    budget = app_memory_limit()
    assert budget == f"{max(1024, total_mb // 4)}MB"
    monkeypatch.delenv("EVENTLENS_MEMORY_LIMIT", raising=False)
    with Store(":memory:", memory_limit="1GB") as s:
        assert s.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"
    with Store(":memory:") as s:  # a command's store: DuckDB's default, well above a quarter
        default = s.scalar("SELECT current_setting('memory_limit')")
    assert default != "953.6 MiB"
    monkeypatch.setenv("EVENTLENS_MEMORY_LIMIT", "2GB")
    with Store(":memory:", memory_limit="1GB") as s:
        assert s.scalar("SELECT current_setting('memory_limit')") == "1.8 GiB"


def test_the_app_opens_its_store_with_the_budget(monkeypatch, tmp_path):
    from eventlens.ui import state

    monkeypatch.delenv("EVENTLENS_MEMORY_LIMIT", raising=False)
    monkeypatch.setattr(state, "app_memory_limit", lambda: "1GB")
    monkeypatch.setattr(state, "load_sample", lambda store: None)
    store = state.open_store.__wrapped__(str(tmp_path / "app.duckdb"))
    try:
        assert store.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"
    finally:
        store.close()
