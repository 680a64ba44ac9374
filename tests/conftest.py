"""Shared fixtures: throwaway stores, the sample format files, and small file writers."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eventlens.ingest import FileResult, load_files
from eventlens.settings import THREADS
from eventlens.store import DB_ENV, Store

ROOT = Path(__file__).resolve().parent.parent
FORMATS_DIR = ROOT / "sample_data" / "formats"

EVENT_COLUMNS = "trace_id, event_id, event_type, timestamp, metrics, event_details"

# One DuckDB thread per store, in the test processes and every command and app they start. The
# suite's two workers (and Chromium) share two cores, and fixture data is far smaller than a
# row group, so DuckDB's second thread had nothing to scan and only cost CPU scheduling it:
# three heavy test files took 53 core-seconds against 55-58 with two (tests/test_store.py
# checks the default as well). EVENTLENS_THREADS=2 runs the suite with two.
os.environ.setdefault(THREADS.name, "1")


# The test files that take longest, longest first (per-file totals of `--durations=0`). The
# suite runs a file per xdist worker at a time, handing out files in collection order
# (`--no-loadscope-reorder`): the long ones go out first, so that no worker is left alone at the
# end with one. xdist's own order (by number of tests) sent the browser files, few tests but the
# longest, last. The rest follow in file order.
LONGEST_FIRST = (
    "browser",
    "test_series.py",
    "test_app_data.py",
    "test_replay.py",
    "test_app_replay.py",
    "test_ingest.py",
    "test_handoff.py",
    "test_ingest_typed.py",
    "test_app_explore.py",
    "test_app_data_pull.py",
)


def work_unit(nodeid: str) -> str:
    """What runs on one worker: a test file, or all the browser tests (one app server and one
    Chromium, started once, rather than one per worker)."""
    path = nodeid.split("::", 1)[0]
    return "tests/browser" if path.startswith("tests/browser/") else path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest work units first, each one's tests in their own order."""
    rank = {"tests/" + name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))  # a stable sort


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, but with the browser tests as one unit (see work_unit)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


@pytest.fixture(scope="session")
def formats_dir() -> Path:
    """sample_data/formats: one small file per supported export shape."""
    return FORMATS_DIR


@pytest.fixture
def store() -> Iterator[Store]:
    """A fresh in-memory store."""
    with Store(":memory:") as s:
        yield s


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """A database file path inside tmp_path (not created yet)."""
    return str(tmp_path / "test.duckdb")


@pytest.fixture
def write_text(tmp_path: Path) -> Callable[..., Path]:
    """Write text to tmp_path/name and return the path."""

    def write(text: str, name: str = "events.jsonl") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_lines(write_text: Callable[..., Path]) -> Callable[..., Path]:
    """Write raw lines (strings) to a file, one per line."""

    def write(lines: list[str], name: str = "events.jsonl") -> Path:
        return write_text("".join(line + "\n" for line in lines), name)

    return write


@pytest.fixture
def write_bodies(write_lines: Callable[..., Path]) -> Callable[..., Path]:
    """Write Python objects as JSON lines."""

    def write(bodies: list[Any], name: str = "events.jsonl") -> Path:
        return write_lines([json.dumps(b, ensure_ascii=False) for b in bodies], name)

    return write


@pytest.fixture
def load(store: Store) -> Callable[..., FileResult]:
    """Load one file into the `store` fixture and return its FileResult."""

    def do_load(path: str | Path, dataset: str | None = None) -> FileResult:
        return load_files(store, [path], dataset).files[0]

    return do_load


@pytest.fixture
def rejects() -> Callable[[Store], list[tuple[int, str]]]:
    """(line, reason) of every reject in a store, ordered by line."""

    def get(s: Store) -> list[tuple[int, str]]:
        return [
            (int(line), reason)
            for line, reason in s.rows("SELECT line, reason FROM rejects ORDER BY line, reason")
        ]

    return get


def stored_events(s: Store, *, with_event_id: bool = True) -> set[tuple]:
    """The stored events as a set of hashable tuples, optionally without event_id."""
    out = set()
    for trace_id, event_id, event_type, ts, metrics, details in s.rows(
        f"SELECT {EVENT_COLUMNS} FROM events"  # noqa: S608 (constant text)
    ):
        key = (
            trace_id,
            event_type,
            ts,
            tuple(sorted(metrics.items())),
            tuple(sorted((details or {}).items())),
        )
        out.add((event_id, *key) if with_event_id else key)
    return out


@pytest.fixture(scope="session")
def event_rows() -> Callable[..., set[tuple]]:
    """stored_events, as a fixture."""
    return stored_events


@pytest.fixture
def runner(monkeypatch, tmp_path) -> CliRunner:
    """A CliRunner in an empty working folder, with no EVENTLENS_DB set."""
    monkeypatch.delenv(DB_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture(scope="session")
def sample_store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store file holding the 50,000-event sample, as a new app makes it; built once per run,
    the first xdist worker to ask building it while the others wait. Copy it (sample_copy)
    rather than write to it."""
    from eventlens.ui.state import load_sample  # the app's own first-start load

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders share this run's folder
    path = root / "sample.duckdb"
    with open(root / "sample.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            part = root / "sample.duckdb.part"
            part.unlink(missing_ok=True)
            with Store(part) as s:
                load_sample(s)
            part.rename(path)
    return path


@pytest.fixture(scope="module")
def sample_copy(sample_store_file, tmp_path_factory) -> Path:
    """A module's own copy of the sample store."""
    path = tmp_path_factory.mktemp("copy") / "app.duckdb"
    shutil.copyfile(sample_store_file, path)
    return path


@pytest.fixture(scope="module")
def app_error_details():
    """AppTest exceptions with their type and message (the app's config hides them from users)."""
    from streamlit import config

    before = config.get_option("client.showErrorDetails")
    config.set_option("client.showErrorDetails", "full")
    yield
    config.set_option("client.showErrorDetails", before)


@pytest.fixture(scope="session", autouse=True)
def _scan_streamlit_components_once() -> Iterator[None]:
    """Each new AppTest has Streamlit scan every installed package's metadata for custom
    components (about 0.2 s, over 200 AppTests a run). The installed packages do not change
    during a test run, so the first scan's answer serves them all."""
    from streamlit.components.v2 import manifest_scanner

    found = manifest_scanner.scan_component_manifests()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            manifest_scanner, "scan_component_manifests", lambda max_workers=None: list(found)
        )
        yield


@pytest.fixture(scope="session", autouse=True)
def _compile_each_page_once() -> Iterator[None]:
    """Each new AppTest has a script cache of its own, so every run of a page parsed it, added
    Streamlit's magic and compiled it again (about 30 ms, over 200 AppTests a run). A page's
    code is kept for the session, keyed by its path, size and modification time (and whether
    magic is on)."""
    from streamlit import config
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    compile_page = ScriptCache.get_bytecode
    compiled: dict[tuple[str, int, int, bool], Any] = {}

    def get_bytecode(self: ScriptCache, script_path: str) -> Any:
        stat = os.stat(script_path)
        magic = bool(config.get_option("runner.magicEnabled"))
        key = (os.path.abspath(script_path), stat.st_size, stat.st_mtime_ns, magic)
        if key not in compiled:
            compiled[key] = compile_page(self, script_path)
        return compiled[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ScriptCache, "get_bytecode", get_bytecode)
        yield


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory) -> Iterator[Callable[[str], str]]:
    """chdb:// URLs of fresh databases. chDB opens one folder per process, so every ClickHouse
    test of a worker shares the session's folder, with a database (a name of its own) per store.

    A store stays open on the folder meanwhile: chDB stops its engine when the last connection
    closes and starts it again at the next open, 0.2 s of CPU a client against 25 ms beside an
    open one."""
    from eventlens.clickhouse.store import ClickHouseStore
    from eventlens.location import parse

    folder = tmp_path_factory.mktemp("chdb")

    def url(database: str) -> str:
        return f"chdb://{folder}?database={database}"

    with ClickHouseStore(parse(url("kept_open"))):
        yield url
