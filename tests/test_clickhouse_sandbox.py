"""The sandbox with a ClickHouse store (chDB in this process): every event it accepts is stored
in ClickHouse as test data, as on DuckDB; its bookkeeping (the keys it has seen, the traces its
read routes answer from) stays in a local DuckDB file; a ClickHouse failure is a 500 that the
sender retries, never an event answered 200 and lost; the command and the app serve it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pandas as pd
import pytest

from eventlens import stores, traces
from eventlens.cli import main
from eventlens.location import parse
from eventlens.sandbox import DATASET, Sandbox
from eventlens.store import Store, StoreError

pytest.importorskip("clickhouse_connect", reason="ClickHouse support is not installed")
pytest.importorskip("chdb", reason="chDB (ClickHouse in process) is not installed")

from eventlens.clickhouse.store import ClickHouseStore  # noqa: E402

KEY = "sbx-ch-key-7Qw2"
HEADERS = {"x-auth-token": KEY}
_numbers = itertools.count()


@pytest.fixture
def house(chdb_url, tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTLENS_STATE_DIR", str(tmp_path / "state"))
    with ClickHouseStore(parse(chdb_url(f"sandbox{next(_numbers)}"))) as s:
        yield s


def body(i: int, trace: str | None = None, **extra: Any) -> bytes:
    event = {
        "trace_id": trace or f"qa-{i % 3}",
        "event_id": f"e{i}",
        "event_type": ("thumbs_up_down", "llm_call")[i % 2],
        "metrics": {"vote": 1.0} if i % 2 == 0 else {"latency_ms": 10.0 * i},
        "event_details": {"model": "m-1"},
        "timestamp": 1_762_000_000_000 + i,
        **extra,
    }
    return json.dumps(event).encode()


def events_of(store: Any) -> pd.DataFrame:
    """The sandbox dataset's events, trace by trace, as the Traces page reads them."""
    ids = sorted(r[0] for r in store.rows("SELECT DISTINCT trace_id FROM events"))
    frames = [traces.events(store, t, DATASET) for t in ids]
    keep = ["event_type", "event_id", "timestamp_ms", "metrics", "event_details"]
    return pd.concat(frames)[keep].reset_index(drop=True)


def test_accepted_events_land_in_clickhouse_as_on_duckdb(house):
    local, mirror = stores.sandbox_stores(house)
    assert mirror is house and local.path.endswith("sandbox.duckdb")
    with Store(":memory:") as duck:
        answers = []
        for store, copy_to in ((duck, None), (local, mirror)):
            box = Sandbox(store, KEY, mirror=copy_to)
            got = [box.handle(HEADERS, body(i)) for i in (*range(6), 2, 3)]  # two repeats
            box.flush()
            answers.append(got)
        assert answers[0] == answers[1]
        assert all(status == 200 for status, _ in answers[1])
        pd.testing.assert_frame_equal(events_of(house), events_of(duck), check_dtype=False)
        assert house.scalar("SELECT count() FROM events") == 6  # each event once
        # Stored as DuckDB stores them: the same keys, so a load of the same events dedupes.
        assert sorted(house.rows("SELECT toString(event_key) FROM events")) == sorted(
            duck.rows("SELECT event_key::VARCHAR FROM events")
        )
        duck_records = duck.dataset_records()
    # Test data (left out of analysis beside other data), with its count, as on DuckDB.
    assert house.test_datasets() == [DATASET]
    listed = [(r["dataset"], r["events"], list(r["files"])) for r in house.dataset_records()]
    assert listed == [(r["dataset"], r["events"], list(r["files"])) for r in duck_records]
    local.close()


def test_a_clickhouse_failure_is_a_500_and_the_retry_stores_the_event_once(house):
    local, mirror = stores.sandbox_stores(house)

    class Away:
        """ClickHouse down for the first `down` copies, then back."""

        def __init__(self, down: int) -> None:
            self.down = down
            self.row_down = 0  # the catalogue row's writes to fail

        def add_events(self, dataset: str, rows: list[dict[str, Any]]) -> None:
            if self.down:
                self.down -= 1
                raise StoreError("The ClickHouse store chdb://x failed: connection refused")
            house.add_events(dataset, rows)

        def write_dataset_row(self, *args: Any, **kwargs: Any) -> None:
            if self.row_down:
                self.row_down -= 1
                raise StoreError("The ClickHouse store chdb://x failed: connection refused")
            house.write_dataset_row(*args, **kwargs)

    box = Sandbox(local, KEY, mirror=Away(down=2))  # the batch, then the event alone
    status, answer = box.handle(HEADERS, body(1))
    assert status == 500 and "could not store" in answer["error"]
    assert house.scalar("SELECT count() FROM events") == 0
    assert local.scalar("SELECT count(*) FROM sandbox_keys") == 0  # not seen: not a duplicate
    assert box.handle(HEADERS, body(1)) == (200, {"message": "Event tracked"})
    assert house.scalar("SELECT count() FROM events") == 1
    # Down while the catalogue row is written: the event is stored, the row comes later.
    house.delete_dataset(DATASET)
    box.mirror.row_down = 2
    assert box.handle(HEADERS, body(2)) == (200, {"message": "Event tracked"})
    box.flush()  # as the idle writer does: a failure here must not end its thread
    assert box.mirror.row_down == 0 and house.test_datasets() == []
    box.flush()
    assert house.test_datasets() == [DATASET]
    assert house.scalar("SELECT count() FROM events") == 1
    local.close()


def test_a_batch_copied_twice_is_stored_once(house):
    rows = [
        {
            "key": 10**30 + i,
            "event_id": f"e{i}",
            "trace_id": "t",
            "event_type": "x",
            "ts": 1_762_000_000_000.4 + i,
            "metrics": {"m": float(i)},
            "details": {"k": None},
        }
        for i in range(3)
    ]
    house.add_events(DATASET, rows)
    house.add_events(DATASET, rows[1:] + [{**rows[0], "key": 7, "event_id": "new"}])
    assert house.scalar("SELECT count() FROM events") == 4


def test_deleting_the_dataset_in_clickhouse_clears_the_sandboxs_bookkeeping(house):
    local, mirror = stores.sandbox_stores(house)
    box = Sandbox(local, KEY, mirror=mirror)
    assert box.handle(HEADERS, body(1))[0] == 200
    box.flush()
    assert house.delete_dataset(DATASET) == 1
    assert local.scalar("SELECT count(*) FROM sandbox_keys") == 0
    assert local.scalar("SELECT count(*) FROM sandbox_traces") == 0
    assert box.handle(HEADERS, body(1))[0] == 200  # new again, stored again
    assert house.scalar("SELECT count() FROM events") == 1
    local.close()


def test_the_command_serves_the_sandbox_on_a_clickhouse_store(runner, chdb_url, monkeypatch):
    """`eventlens sandbox --db chdb://...` serves a sandbox whose copies go to that store (the
    server itself is stubbed: its routes are the tested ones)."""
    served: dict[str, Any] = {}

    def serve(store, host, port, key, faults, reads, mirror):
        served.update(store=store.path, mirror=mirror.path, port=port)

    monkeypatch.setattr("eventlens.sandbox.serve", serve)
    monkeypatch.setenv("EVENTLENS_STATE_DIR", str(runner_state := "state"))
    url = chdb_url("sandbox_command")
    result = runner.invoke(main, ["sandbox", "--db", url, "--port", "8799"])
    assert result.exit_code == 0, result.output
    assert served["mirror"] == url and served["store"].endswith(f"{runner_state}/sandbox.duckdb")
    assert f"(store {url}, kept in " in result.output
