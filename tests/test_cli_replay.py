"""`eventlens replay`: exit codes, the --json report, usage errors, and a kill -9 then a resume.

The servers (the sandbox, or a stub) run in threads of the test process; the journal is a DuckDB
file that only the command opens while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from replay_helpers import write_jsonl
from sandbox_server import Live, live_sandbox, serve_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlens import replay as rp
from eventlens.cli import main
from eventlens.client import ENDPOINT_ENV, KEY_ENV
from eventlens.ingest import load_files
from eventlens.sandbox import DATASET, PATHS, Faults
from eventlens.store import DB_ENV, Store

KEY = "sk-lw-clireplay-Hq3Zx8Rt5Yw1Mn7Pd"
WRONG_KEY = "sk-lw-clireplay-wrong-Vb2Nc6Xs4Gj"
BASE_MS = 1_762_000_000_000
INVALID = [
    '{"trace_id": "t_bad", "event_type": "x", "metrics": {',
    json.dumps({"event_type": "x", "metrics": {}}),
    json.dumps({"trace_id": "t_bad", "event_type": "thumbs_up_down", "metrics": {"vote": 5}}),
]
REPORT_INTS = ("accepted", "rejected", "dead_lettered", "retried", "planned", "events", "invalid")


# -- helpers ------------------------------------------------------------------------------------


def make_events(n: int, traces: int, *, id_every: int = 2) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body: dict[str, Any] = {
            "trace_id": f"trace_{i % traces:04d}",
            "event_type": ("llm_call", "search")[i % 2],
            "metrics": {"n": i},
            "event_details": {"user_id": f"user_{i % 7}"},
            "timestamp": BASE_MS + i * 100,
        }
        if i % id_every == 0:
            body["event_id"] = f"evt_{i:06d}"
        out.append(body)
    return out


@contextmanager
def stub_server(answer: Callable[[dict], tuple[int, Any]]) -> Iterator[tuple[str, list[dict]]]:
    """A track_event stub answering `answer(body)`; yields its URL and the bodies it got."""
    bodies: list[dict] = []

    async def handle(request: Request) -> Response:
        body = json.loads(await request.body())
        bodies.append(body)
        status, payload = answer(body)
        return JSONResponse(payload, status)

    stub = Starlette(routes=[Route(p, handle, methods=["POST"]) for p in PATHS])
    with serve_in_thread(stub, no_delay=True) as url:  # no delayed-ACK wait on each answer
        yield url, bodies


def plan_keys(db: Path, run_id: str) -> set[tuple[str, str]]:
    """(trace_id, event_id) of every planned event, as sent (the plan file, not the store)."""
    plan = db.with_name(db.name + ".replays") / f"{run_id}.parquet"
    return {(p.send_trace_id, p.send_event_id) for c in rp.read_plan(str(plan)) for p in c}


def journal_text(db: Path) -> str:
    with Store(db) as store:
        rows = store.rows("SELECT * FROM replay_runs") + store.rows("SELECT * FROM replay_outcomes")
    return "\n".join(repr(r) for r in rows)


def first_run_id(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("run_id: "), stdout
    return first.split()[1]


def last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert WRONG_KEY not in text


@pytest.fixture
def env(runner, monkeypatch):
    """The CliRunner, with the key in $LANGWATCH_API_KEY and no endpoint variable."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    return runner


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.duckdb"


@pytest.fixture(scope="module")
def idle_box() -> Iterator[Live]:
    """One sandbox for the tests that must send nothing to it."""
    with live_sandbox(key=KEY) as box:
        yield box


def replay(runner, *args: Any):
    return runner.invoke(main, ["replay", *map(str, args)])


# -- kill -9 and resume -------------------------------------------------------------------------


def test_kill_9_half_way_then_resume_last(env, tmp_path, db):
    """The command, killed with SIGKILL half way, then `--resume last`: the sandbox ends with
    every valid event exactly once; none lost, none doubled (outcomes not yet journalled when it
    died are sent again and dropped by the server as repeats). Only the killed command needs a
    process of its own: the resume runs in this one, as the other tests' commands do."""
    events = make_events(600, traces=150)
    source = write_jsonl(tmp_path / "big.jsonl", [*events[:300], *INVALID, *events[300:]])
    child_env = {k: v for k, v in os.environ.items() if k not in (DB_ENV, ENDPOINT_ENV)}
    child_env.update({KEY_ENV: KEY, "PYTHONUNBUFFERED": "1"})
    command = [sys.executable, "-m", "eventlens.cli", "replay"]

    with live_sandbox(key=KEY, faults=Faults(latency_ms=20)) as box:
        proc = subprocess.Popen(
            [*command, source, "--db", db, "--endpoint", box.url, "--rate", "150"]
            + ["--concurrency", "16", "--json"],
            cwd=tmp_path,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while box.sandbox.counts["accepted"] < 150:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the replay did not get going"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        at_kill = box.sandbox.counts["accepted"]
        assert 150 <= at_kill < 600, "the run was not cut short"
        run_id = first_run_id(out)

        done = replay(
            env, "--resume", "last", "--db", db, "--rate", 5000, "--concurrency", 64, "--json"
        )
        assert done.exit_code == 0, done.output
        assert first_run_id(done.stdout) == run_id
        report = last_json(done.stdout)
        assert report["run_id"] == run_id
        assert report["accepted"] == report["planned"] == 600
        assert (report["state"], report["sessions"], report["invalid"]) == ("finished", 2, 3)

        total, distinct, keys = box.keys(DATASET)
        assert total == distinct == 600
        assert keys == plan_keys(db, run_id)
        assert box.sandbox.counts["accepted"] == 600
    assert_no_key(out, err, done.stdout, done.stderr)
    with Store(db) as store:
        before, after = store.rows(
            "SELECT count(*) FILTER (session = 1), count(*) FILTER (session = 2)"
            " FROM replay_outcomes WHERE outcome = 'accepted'"
        )[0]
        assert 0 < before < 600  # the first session's journal survived the kill
        assert before + after >= 600
        assert rp.get_run(store, run_id).state == "finished"
    assert KEY not in journal_text(db)


# -- exit 0 and 1, --json -----------------------------------------------------------------------


def test_json_report_exit_0_and_dead_letter_file(env, tmp_path, db):
    events = make_events(40, traces=8)
    source = write_jsonl(tmp_path / "e.jsonl", [*events, *INVALID])
    with live_sandbox(key=KEY) as box:
        result = replay(env, source, "--db", db, "--endpoint", box.url, "--json")
        result_keys = box.keys(DATASET)
    assert result.exit_code == 0, result.output
    run_id = first_run_id(result.stdout)
    report = last_json(result.stdout)
    assert isinstance(report["run_id"], str) and report["run_id"] == run_id
    for key in REPORT_INTS:
        assert type(report[key]) is int, key
    assert (report["accepted"], report["planned"], report["events"]) == (40, 40, 43)
    assert (report["invalid"], report["dead_lettered"], report["rejected"]) == (3, 3, 0)
    assert report["state"] == "finished"
    assert f"run {run_id}: finished" in result.stdout
    assert result_keys[:2] == (40, 40)
    assert_no_key(result.output)
    # The invalid lines went to the default dead-letter file, as the report says.
    default = Path(report["dead_letter_file"])
    assert default.parent == db.with_name(db.name + ".replays")
    letters = [json.loads(line) for line in default.read_text().splitlines()]
    assert [x["dead_letter"]["line"] for x in letters] == [41, 42, 43]
    assert all(x["dead_letter"]["outcome"] == "invalid" for x in letters)


def test_exit_1_when_events_are_rejected_and_the_dead_letters_replay(env, tmp_path, db):
    events = make_events(10, traces=3, id_every=1)
    for event in events[:2]:
        event["event_type"] = "refused"
    source = write_jsonl(tmp_path / "e.jsonl", events)
    letters = tmp_path / "dead.jsonl"

    def answer(body: dict) -> tuple[int, Any]:
        if body["event_type"] == "refused":
            return 400, {"error": "Validation error: refused"}
        return 200, {"message": "Event tracked"}

    with stub_server(answer) as (url, bodies):
        result = replay(env, source, "--db", db, "--endpoint", url, "--json")
    assert result.exit_code == 1, result.output
    report = last_json(result.stdout)
    assert (report["accepted"], report["rejected"], report["dead_lettered"]) == (8, 2, 2)
    assert report["retried"] == 0 and len(bodies) == 10  # a 400 is not retried
    assert report["state"] == "finished"

    # Those two, replayed from the dead-letter file to a server that takes them: exit 0.
    with live_sandbox(key=KEY) as box:
        again = replay(
            env,
            report["dead_letter_file"],
            "--db",
            db,
            "--endpoint",
            box.url,
            "--json",
            "--dead-letter",
            letters,
        )
        assert again.exit_code == 0, again.output
        assert box.keys(DATASET)[2] == {(e["trace_id"], e["event_id"]) for e in events[:2]}
    assert last_json(again.stdout)["accepted"] == 2
    assert letters.read_text() == ""  # written, and empty: nothing was refused this time


def test_unauthorized_exit_1_and_the_key_is_never_shown(env, tmp_path, db, monkeypatch):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(50, traces=50))
    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    with live_sandbox(key=KEY) as box:
        result = replay(
            env, source, "--db", db, "--endpoint", box.url, "--concurrency", 4, "--json"
        )
        assert result.exit_code == 1, result.output
        assert 1 <= box.counter.track_requests <= 4
        assert box.sandbox.counts["accepted"] == 0
        report = last_json(result.stdout)
        assert (report["state"], report["accepted"], report["not_sent"]) == ("stopped", 0, 50)
        assert "401" in report["message"] and "$LANGWATCH_API_KEY" in report["message"]
        assert_no_key(result.stdout, result.stderr)
        assert_no_key(journal_text(db))

        monkeypatch.setenv(KEY_ENV, KEY)
        resumed = replay(env, "--resume", "last", "--db", db, "--json")
        assert resumed.exit_code == 0, resumed.output
        assert last_json(resumed.stdout)["accepted"] == 50
        assert box.keys(DATASET)[:2] == (50, 50)
    assert_no_key(resumed.stdout, resumed.stderr, journal_text(db))


def test_missing_key_exit_2_keeps_the_run_for_a_resume(env, tmp_path, db, monkeypatch):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(12, traces=4))
    monkeypatch.delenv(KEY_ENV)
    with live_sandbox(key=KEY) as box:
        result = replay(env, source, "--db", db, "--endpoint", box.url)
        assert result.exit_code == 2, result.output
        run_id = first_run_id(result.stdout)
        assert "set $LANGWATCH_API_KEY" in result.stderr
        assert f"--resume {run_id}" in result.stderr
        assert box.counter.track_requests == 0

        elsewhere = replay(env, "--resume", run_id, "--db", db, "--endpoint", "http://127.0.0.1:9")
        assert elsewhere.exit_code == 2 and "same place" in elsewhere.stderr

        monkeypatch.setenv("MY_REPLAY_KEY", KEY)
        resumed = replay(env, "--resume", run_id, "--db", db, "--api-key-env", "MY_REPLAY_KEY")
        assert resumed.exit_code == 0, resumed.output
        assert box.keys(DATASET)[:2] == (12, 12)
    assert_no_key(resumed.output)


def test_resume_with_the_original_command_and_a_difference_named(env, tmp_path, db, monkeypatch):
    """`eventlens replay SOURCE ... --resume last`: the command that started a run resumes it
    (an option left out keeps the run's); a SOURCE, filter or transform the plan does not have is
    refused, naming the difference."""
    source = write_jsonl(tmp_path / "e.jsonl", make_events(12, traces=4))
    other = write_jsonl(tmp_path / "other.jsonl", make_events(3, traces=1))
    monkeypatch.delenv(KEY_ENV)
    with live_sandbox(key=KEY) as box:
        command = [source, "--db", db, "--endpoint", box.url, "--trace-ids", "prefix:r-"]
        first = replay(env, *command)
        assert first.exit_code == 2, first.output  # no key yet: the run is kept
        refused = {
            "SOURCE is": replay(env, other, "--db", db, "--resume", "last"),
            "--trace-ids fresh": replay(env, *command, "--trace-ids", "fresh", "--resume", "last"),
            "--timestamps now": replay(env, *command, "--timestamps", "now", "--resume", "last"),
        }
        for says, result in refused.items():
            assert result.exit_code == 2, result.output
            assert says in result.stderr and "leave out --resume" in result.stderr
        assert box.counter.track_requests == 0
        monkeypatch.setenv(KEY_ENV, KEY)
        resumed = replay(env, *command, "--resume", "last", "--json")
        assert resumed.exit_code == 0, resumed.output
        assert last_json(resumed.stdout)["accepted"] == 12
        assert all(trace.startswith("r-") for trace, _ in box.keys(DATASET)[2])


# -- exit 2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        ([], "give a SOURCE file (or `store`), or --resume RUN_ID"),
        (["SRC", "--resume", "last"], "there is no unfinished run to resume"),
        (["--resume", "last", "--trace-ids", "fresh"], "there is no unfinished run to resume"),
        (["--resume", "last", "--dataset", "x"], "filter SOURCE store"),
        (["--resume", "last", "--timestamps", "now"], "there is no unfinished run to resume"),
        (["--resume", "last"], "there is no unfinished run to resume"),
        (["--resume", "nope"], "no run 'nope' in this store"),
        (["SRC", "--dataset", "x"], "filter SOURCE store"),
        (["SRC", "--since", "2025-01-01"], "filter SOURCE store"),
        (["nope.jsonl"], "nope.jsonl: no such file"),
        (["SRC", "--trace-ids", "prefix:"], "trace ids must be keep, fresh or prefix:"),
        (["SRC", "--timestamps", "later"], "'later' is not one of"),
        (["SRC", "--endpoint", "ftp://example.com"], "must start with http:// or https://"),
        (["SRC", "--rate", "0"], "--rate"),
        (["SRC", "--concurrency", "0"], "--concurrency"),
        (["store", "--dataset", "missing"], "no events match the filters"),
        (["store", "--since", "yesterday"], "is not an ISO date"),
        (["SRC", "--key", KEY], "No such option '--key'"),
    ],
    ids=[
        "no-source",
        "resume-and-source",
        "resume-and-transform",
        "resume-and-filter",
        "resume-and-timestamps",
        "resume-nothing",
        "resume-unknown",
        "filter-on-file",
        "since-on-file",
        "missing-file",
        "empty-prefix",
        "bad-timestamps",
        "bad-endpoint",
        "zero-rate",
        "zero-concurrency",
        "store-no-match",
        "store-bad-since",
        "key-option",
    ],
)
def test_usage_errors_exit_2(env, tmp_path, db, idle_box, args, says):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(3, traces=1))
    before = idle_box.counter.track_requests
    args = [str(source) if a == "SRC" else a for a in args]
    result = replay(env, "--db", db, "--endpoint", idle_box.url, *args)  # a later one wins
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert idle_box.counter.track_requests == before
    assert_no_key(result.output)


# -- dry run, the store as a source -------------------------------------------------------------


def test_dry_run_json_sends_nothing(env, tmp_path, db):
    events = make_events(30, traces=5)
    source = write_jsonl(tmp_path / "e.jsonl", [*events, INVALID[1]])
    with live_sandbox(key=KEY) as box:
        result = replay(
            env,
            source,
            "--db",
            db,
            "--endpoint",
            box.url,
            "--rate",
            20,
            "--dry-run",
            "--json",
            "--trace-ids",
            "prefix:p-",
        )
        assert result.exit_code == 0, result.output
        assert box.counter.track_requests == 0
    assert result.stdout.splitlines()[0].endswith("(dry run: nothing is sent)")
    # Planning says what it is doing on stderr (a 10M-event file takes minutes), then the counts.
    assert result.stderr.splitlines()[0].startswith("planning ")
    assert "planned 30 events (1 invalid, 0 repeated) in " in result.stderr
    info = last_json(result.stdout)
    assert (info["events"], info["traces"], info["invalid"]) == (30, 5, 1)
    assert info["estimated_s"] == 1.5
    assert [b["trace_id"] for b in info["first_bodies"]] == [
        "p-" + e["trace_id"] for e in events[:5]
    ]
    assert "estimated duration: 2s" in result.stdout
    with Store(db) as store:
        assert rp.list_runs(store) == []  # a dry run leaves no run behind


def test_store_source_with_filters(env, tmp_path, db, formats_dir):
    with Store(db) as store:
        load_files(store, [formats_dir / "bad_lines.jsonl"], "bad")
        load_files(store, [write_jsonl(tmp_path / "o.jsonl", make_events(20, traces=4))], "other")
        wanted = set(
            store.rows(
                "SELECT trace_id, event_id FROM events WHERE dataset = 'bad'"
                " AND event_type = 'llm_call'"
            )
        )
    assert wanted
    with live_sandbox(key=KEY) as box:
        result = replay(
            env,
            "store",
            "--db",
            db,
            "--dataset",
            "bad",
            "--type",
            "llm_call",
            "--endpoint",
            box.url,
            "--json",
        )
        assert result.exit_code == 0, result.output
        assert box.keys(DATASET)[2] == wanted
    report = last_json(result.stdout)
    assert report["accepted"] == report["planned"] == len(wanted)
    assert report["source"] == "store"


# -- bugs ---------------------------------------------------------------------------------------


def test_dry_run_of_a_resume_keeps_the_run(env, tmp_path, db, monkeypatch):
    source = write_jsonl(tmp_path / "e.jsonl", make_events(5, traces=5))
    monkeypatch.delenv(KEY_ENV)
    with live_sandbox(key=KEY) as box:
        run_id = first_run_id(replay(env, source, "--db", db, "--endpoint", box.url).stdout)
        dry = replay(env, "--resume", run_id, "--db", db, "--dry-run")
        assert dry.exit_code == 0, dry.output
        monkeypatch.setenv(KEY_ENV, KEY)
        resumed = replay(env, "--resume", run_id, "--db", db)
        assert resumed.exit_code == 0, resumed.output
        assert box.keys(DATASET)[:2] == (5, 5)
