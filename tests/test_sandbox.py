"""The sandbox's group-commit writer: batches store every new event once, whatever the batch."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid

from eventlens import sandbox
from eventlens.store import Store


def bodies(n: int, trace: str | None = None) -> list[dict]:
    return [
        {
            "trace_id": trace or f"trace_{uuid.uuid4().hex[:12]}",
            "event_id": uuid.uuid4().hex,
            "event_type": "page_view",
            "metrics": {"load_ms": float(i)},
            "event_details": {"page": f"/p{i}"},
            "timestamp": 1_700_000_000_000 + i,
        }
        for i in range(n)
    ]


def stored_keys(store: Store) -> list[tuple[str, str]]:
    return store.rows("SELECT trace_id, event_id FROM events WHERE dataset = 'sandbox'")


def test_a_batch_stores_every_new_event_once():
    store = Store(":memory:")
    box = sandbox.Sandbox(store, "k")
    first = bodies(300)
    assert box.insert(first) == [True] * 300
    repeat = first[:40] + bodies(25)
    # A repeat within the batch too: the first copy wins, the second is a duplicate.
    repeat.append(dict(repeat[-1]))
    assert box.insert(repeat) == [False] * 40 + [True] * 25 + [False]
    keys = stored_keys(store)
    assert len(keys) == len(set(keys)) == 325
    assert box.counts["accepted"] == 325 and box.counts["duplicate"] == 41
    assert store.scalar("SELECT events FROM datasets WHERE name = 'sandbox'") == 325


def test_concurrent_requests_are_committed_together_and_answered(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    box = sandbox.Sandbox(store, "k")
    sent = bodies(200, trace="trace_shared")

    async def all_at_once() -> list[bool]:
        return list(await asyncio.gather(*(box.store_async(b) for b in sent + sent[:20])))

    # On its own thread: after the browser tests, Playwright's loop runs in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, all_at_once()).result()
    assert sum(answers) == 200  # the 20 repeats are answered as duplicates
    assert sorted(stored_keys(store)) == sorted((b["trace_id"], b["event_id"]) for b in sent)
    box.flush()
    summary = store.rows("SELECT events FROM trace_summary WHERE trace_id = 'trace_shared'")
    assert summary == [(200,)]


def test_a_restarted_sandbox_still_drops_repeats_and_forgets_a_deleted_dataset(tmp_path):
    path = tmp_path / "s.duckdb"
    sent = bodies(50)
    with Store(path) as store:
        assert all(sandbox.Sandbox(store, "k").insert(sent))
    with Store(path) as store:
        again = sandbox.Sandbox(store, "k")
        assert again.insert(sent[:10]) == [False] * 10
        store.delete_dataset("sandbox")
        assert again.insert(sent[:10]) == [True] * 10


def test_the_event_key_is_the_one_ingest_computes_in_sql(tmp_path) -> None:
    identities = [("t1", "e1"), ("trace é 😀", "id\x00with nul"), ("", ""), ("a" * 300, "b")]
    with Store(tmp_path / "k.duckdb") as store:
        for trace_id, event_id in identities:
            in_sql = store.scalar(
                "SELECT md5_number('id' || chr(0) || ? || chr(0) || ?)", [trace_id, event_id]
            )
            assert sandbox.event_key(trace_id, event_id) == in_sql


def test_metrics_and_details_are_stored_as_sent(tmp_path) -> None:
    metrics = {"a": 0.1, "b": 1e-300, "c": 2**70, "d": -0.0, "e": 1.7976931348623157e308, "f": 3}
    details = {"x": 'héllo 😀 "q" \\ \n', "y": None, "z": ""}
    body = {"trace_id": "t", "event_type": "k", "metrics": metrics, "event_details": details}
    with Store(tmp_path / "m.duckdb") as store:
        assert sandbox.Sandbox(store, "k").insert([body]) == [True]
        got_metrics, got_details = store.rows("SELECT metrics, event_details FROM events")[0]
    assert got_metrics == {k: float(v) for k, v in metrics.items()}
    assert got_details == details


def test_faults_set_on_a_running_sandbox_follow_their_seed():
    """A seeded Faults gives the same sequence whether the sandbox started with it or was given
    it later (tests/test_sync_sandbox.py sets its faults on a live sandbox)."""
    seeded = sandbox.Faults(fail_rate=0.2, throttle_rate=0.2, drop_rate=0.1, seed=3)
    with Store(":memory:") as first, Store(":memory:") as second:
        from_the_start = sandbox.Sandbox(first, faults=seeded)
        given_later = sandbox.Sandbox(second)
        given_later.fault()  # its first, unseeded sequence has begun
        given_later.faults = seeded
        expected = [from_the_start.fault() for _ in range(40)]
        assert [given_later.fault() for _ in range(40)] == expected
        assert {"fail", "throttle", "drop", None} == set(expected)
