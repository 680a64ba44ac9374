"""One store, many processes: with a real `eventlens ui` holding a store, the command line's
`load`, `pull`, `info`, `series`, `replay` and `delete` run inside it and answer as they answer
on an identical store nobody holds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from replay_helpers import write_jsonl
from sandbox_server import free_port

from eventlens import location
from eventlens.cli import main
from eventlens.handoff import find_live, jobs, server_file
from eventlens.handoff.published import HELLO, JOBS, Published, publish, read
from eventlens.store import Store

SEED = [
    {
        "trace_id": "t1",
        "event_type": "chat",
        "metrics": {"latency_ms": 120},
        "timestamp": 1_700_000_000_000,
    },
    {
        "trace_id": "t1",
        "event_type": "tool",
        "metrics": {"latency_ms": 30},
        "timestamp": 1_700_000_060_000,
    },
    {
        "trace_id": "t2",
        "event_type": "chat",
        "metrics": {"latency_ms": 80},
        "timestamp": 1_700_003_600_000,
    },
]
MORE = [
    {
        "trace_id": "t3",
        "event_type": "chat",
        "metrics": {"latency_ms": 95},
        "timestamp": 1_700_007_200_000,
    },
    "not json",
    {
        "trace_id": "t4",
        "event_type": "rate",
        "metrics": {"score": 4},
        "event_details": {"model": "m"},
    },
]


def start_ui(db: Path | str, cwd: Path) -> tuple[subprocess.Popen, Published, int]:
    """A real `eventlens ui` on `db` (a file, or a chdb:// URL), once its hand-off answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventlens.cli", "ui", "--db", str(db), "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while (published := find_live(str(location.handoff_key(str(db))))) is None:
        assert proc.poll() is None, "eventlens ui exited"
        assert time.monotonic() < deadline, "the hand-off never answered"
        time.sleep(0.1)
    return proc, published, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class Served:
    folder: Path
    published: Published
    port: int
    proc: subprocess.Popen

    def both(self, *args: str) -> tuple:
        """The command on the held store (handed off) and on its twin nobody holds."""
        runner = CliRunner()
        held = runner.invoke(main, [*args, "--db", "served.duckdb"], prog_name="eventlens")
        alone = runner.invoke(main, [*args, "--db", "alone.duckdb"], prog_name="eventlens")
        return held, alone


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """`eventlens ui` holding served.duckdb; alone.duckdb is the same store, held by nobody."""
    folder = tmp_path_factory.mktemp("handoff")
    seed = write_jsonl(folder / "seed.jsonl", SEED)
    with Store(str(folder / "served.duckdb")) as store:
        from eventlens.ingest import load_files

        load_files(store, [seed], "seed", ["seed.jsonl"])
    shutil.copyfile(folder / "served.duckdb", folder / "alone.duckdb")
    proc, published, port = start_ui(folder / "served.duckdb", folder)
    try:
        yield Served(folder, published, port, proc)
    finally:
        stop(proc)


@pytest.fixture
def in_folder(served, monkeypatch) -> Served:
    monkeypatch.chdir(served.folder)
    monkeypatch.delenv("EVENTLENS_DB", raising=False)
    return served


def same(held, alone, *, alone_name: str = "alone.duckdb") -> str:
    """Both commands' output and exit code agree (the store's own name aside); the output."""
    assert held.exit_code == alone.exit_code, (held.output, alone.output)
    assert held.output == alone.output.replace(alone_name, "served.duckdb")
    return held.output


def test_info_and_series_answer_as_without_the_server(in_folder):
    held, alone = in_folder.both("info")
    assert "store: served.duckdb (3 events)" in same(held, alone)
    held, alone = in_folder.both("info", "--json")
    assert json.loads(same(held, alone))["db"] == "served.duckdb"
    held, alone = in_folder.both(
        "series", "--metric", "latency_ms", "--agg", "p95", "--bucket", "1h"
    )
    assert same(held, alone).startswith("bucket,series,value\n")
    # A usage error is the same sentence and exit 2.
    held, alone = in_folder.both("series", "--agg", "p95")
    assert held.exit_code == 2 and "p95 needs --metric" in same(held, alone)


def without_seconds(output: str) -> dict:
    """A load's --json answer without the seconds each file took."""
    answer = json.loads(output)
    answer["files"] = [{k: v for k, v in f.items() if k != "seconds"} for f in answer["files"]]
    return answer


def test_load_through_the_server_answers_the_same(in_folder):
    more = write_jsonl(in_folder.folder / "more.jsonl", MORE)
    held, alone = in_folder.both("load", "more.jsonl", "--json")
    assert held.exit_code == 0
    assert without_seconds(held.output) == without_seconds(alone.output)
    got = json.loads(held.output)
    assert (got["loaded"], got["rejected"], got["files"][0]["path"]) == (2, 1, "more.jsonl")
    # Text output too, paths as typed (the server got /abs/.../more.jsonl).
    held, alone = in_folder.both("load", str(more.name))
    assert held.exit_code == 0
    timeless = [[line.split(" in ")[0] for line in r.output.splitlines()] for r in (held, alone)]
    assert timeless[0] == timeless[1]
    assert "more.jsonl (jsonl): 0 loaded, 1 rejected, 2 duplicates" in held.output
    held, _ = in_folder.both("info", "--json")
    assert json.loads(held.output)["events"] == 5  # the app's store has them
    # A missing file is named as typed, exit 2, in both.
    held, alone = in_folder.both("load", "missing.jsonl")
    assert "cannot read missing.jsonl" in same(held, alone) and held.exit_code == 2


def test_pull_from_the_apps_sandbox_answers_the_same(in_folder, monkeypatch):
    base = f"http://127.0.0.1:{in_folder.port}"
    event = {"trace_id": "p1", "event_type": "chat", "metrics": {"n": 1}, "event_id": "e1"}
    sent = httpx.post(
        f"{base}/api/track_event", json=event, headers={"X-Auth-Token": "sandbox-key"}
    )
    assert sent.status_code == 200
    monkeypatch.setenv("PULL_KEY", "sandbox-key")  # the job reads this process's environment
    held, alone = in_folder.both("pull", "--endpoint", base, "--api-key-env", "PULL_KEY", "--json")
    assert held.exit_code == alone.exit_code == 0, (held.output, alone.output)
    # The same pull, but for the time it took and where the next starts (both read "now").
    answers = [json.loads(r.output.splitlines()[-1]) for r in (held, alone)]
    for answer in answers:
        del answer["updated_through"]
    assert answers[0] == answers[1]
    assert (answers[0]["traces"], answers[0]["added"]) == (1, 1)


def test_replay_dry_run_start_and_resume_through_the_server(in_folder, monkeypatch):
    base = f"http://127.0.0.1:{in_folder.port}"
    monkeypatch.setenv("LANGWATCH_API_KEY", "sandbox-key")
    write_jsonl(in_folder.folder / "again.jsonl", SEED)
    held, alone = in_folder.both("replay", "again.jsonl", "--endpoint", base, "--dry-run")

    # The same dry run; the run ids differ (and the event ids made from them), and so do the
    # seconds the planning took.
    def cut(result) -> list[str]:
        return [
            re.sub(r"replay_[0-9a-f]{32}", "replay_ID", line)
            for line in result.output.splitlines()
            if not line.startswith(("run_id", "planned"))
        ]

    assert held.exit_code == alone.exit_code == 0 and cut(held) == cut(alone)
    assert "3 events in 2 traces would be sent" in held.stdout
    held, alone = in_folder.both("replay", "again.jsonl", "--endpoint", base, "--json")
    reports = [json.loads(r.output.splitlines()[-1]) for r in (held, alone)]
    assert held.exit_code == alone.exit_code == 0
    for report in reports:
        assert (report["planned"], report["accepted"], report["state"]) == (3, 3, "finished")
    # The same command with --resume last: nothing left, in both.
    held, alone = in_folder.both("replay", "again.jsonl", "--endpoint", base, "--resume", "last")
    assert held.exit_code == alone.exit_code == 2
    assert "there is no unfinished run to resume" in held.output


def test_delete_a_dataset_through_the_server(in_folder):
    write_jsonl(in_folder.folder / "gone.jsonl", [{**SEED[0], "trace_id": "gone"}])
    for db in ("served.duckdb", "alone.duckdb"):
        assert CliRunner().invoke(main, ["load", "gone.jsonl", "--db", db]).exit_code == 0
    held, alone = in_folder.both("delete", "gone")
    assert same(held, alone) == "deleted dataset gone: 1 event removed\n"
    held, alone = in_folder.both("delete", "gone")
    for result in (held, alone):  # (the held store also has what its sandbox took)
        assert result.exit_code == 2 and "no dataset named 'gone'" in result.output


def test_the_hand_off_refuses_a_request_without_the_secret(served):
    url = served.published.url
    assert url.startswith("http://127.0.0.1:")
    # One client (each new one loads the CA bundle), a connection per request as httpx.get makes.
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        assert http.get(url + HELLO, params={"nonce": "n"}).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 43}
        assert http.get(url + HELLO, params={"nonce": "n"}, headers=wrong).status_code == 401
        job = {"command": "info", "params": {"db": served.published.store, "as_json": True}}
        assert http.post(url + JOBS, json=job).status_code == 401
        assert http.post(url + JOBS, json=job, headers=wrong).status_code == 401
        # With the secret: only the store it holds, only the store's commands.
        right = served.published.headers()
        other = {**job, "params": {"db": str(served.folder / "alone.duckdb"), "as_json": True}}
        assert http.post(url + JOBS, json=other, headers=right).status_code == 400
        ui = {**job, "command": "ui"}
        assert http.post(url + JOBS, json=ui, headers=right).status_code == 400


def test_the_server_file_is_private_and_the_listener_on_loopback(served):
    from test_cli import listening_addresses

    path = server_file(served.published.store)
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.getuid()
    port = int(served.published.url.rsplit(":", 1)[1])
    assert listening_addresses(port) == {"127.0.0.1"}
    assert listening_addresses(served.port) == {"127.0.0.1"}


def test_ui_on_a_held_store_says_so_and_exits_2(in_folder, no_exec):
    result = CliRunner().invoke(main, ["ui", "--db", "served.duckdb"])
    assert result.exit_code == 2
    assert (
        f"already open in the eventlens app at http://127.0.0.1:{in_folder.port}" in result.output
    )


HOLD = """
import duckdb, sys, time
held = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""


@pytest.fixture
def no_exec(monkeypatch):
    """`ui` becomes the Streamlit server by exec: in a test that would replace pytest itself."""

    def refuse(*args):
        raise AssertionError("eventlens ui went on to start the server")

    monkeypatch.setattr(os, "execve", refuse)


def test_ui_on_a_store_another_process_writes_exits_2(tmp_path, no_exec):
    db = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline()
        result = CliRunner().invoke(main, ["ui", "--db", str(db)])
        assert result.exit_code == 2 and "is in use by another eventlens process" in result.output
    finally:
        holder.kill()
        holder.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_stale_file_from_a_killed_server_is_ignored(tmp_path, monkeypatch):
    db = tmp_path / "s.duckdb"
    Store(str(db)).close()
    publish(str(db), "http://127.0.0.1:9", None)
    path = server_file(str(db))
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "pid": dead_pid()}))
    assert read(str(db)) is not None and find_live(str(db)) is None
    assert not path.exists()  # withdrawn: it named a process that is gone
    # A live pid that does not answer (or not as the file says) is not followed either.
    publish(str(db), f"http://127.0.0.1:{free_port()}", None)
    assert find_live(str(db), timeout=1) is None
    assert CliRunner().invoke(main, ["info", "--db", str(db)]).exit_code == 0  # ran here
    # A file someone else could read is not trusted.
    path.chmod(0o644)
    assert read(str(db)) is None


def test_a_job_writes_to_its_own_sender_and_other_threads_do_not(tmp_path, monkeypatch, capsys):
    db = tmp_path / "j.duckdb"
    write_jsonl(tmp_path / "seed.jsonl", SEED)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # put back after the test
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    jobs.install_routers()
    got: list[tuple[str, str]] = []
    done: list[int] = []
    request = jobs.JobRequest.from_json(
        {
            "command": "load",
            "params": {
                "files": [str(tmp_path / "seed.jsonl")],
                "db": str(db),
                "dataset": None,
                "as_json": False,
            },
            "typed": {str(tmp_path / "seed.jsonl"): "seed.jsonl", str(db): "j.duckdb"},
            "environment": {},
        }
    )
    jobs.start(request, lambda stream, text: got.append((stream, text)), done.append).join(30)
    print("a line of the process's own")  # not the job's
    assert capsys.readouterr().out == "a line of the process's own\n"
    assert done == [0]
    text = "".join(t for s, t in got if s == "out")
    assert text.startswith("dataset: seed\nseed.jsonl (jsonl): 3 loaded")
    bad = jobs.JobRequest.from_json(
        {
            "command": "load",
            "params": {"files": ["/nope"], "db": str(db), "dataset": None, "as_json": False},
        }
    )
    got.clear()
    jobs.start(bad, lambda stream, text: got.append((stream, text)), done.append).join(30)
    assert done[-1] == 2 and "cannot read /nope" in "".join(t for _, t in got)


def test_kill_9_of_the_server_mid_load_leaves_the_store_and_exits_1(tmp_path):
    db = tmp_path / "k.duckdb"
    write_jsonl(tmp_path / "seed.jsonl", SEED)
    with Store(str(db)) as store:
        from eventlens.ingest import load_files

        load_files(store, [tmp_path / "seed.jsonl"], "seed")
    # Big enough that the load writes rows into the file seconds before it commits (about half
    # way through), so the kill below lands between the two.
    big = tmp_path / "big.jsonl"
    duckdb.sql(
        "COPY (SELECT 'k' || (i % 200000) AS trace_id, 'big' AS event_type,"
        " {'m': i} AS metrics, 1700000000000 + i AS timestamp FROM range(500000) t(i))"
        f" TO '{big}' (FORMAT json)"
    )
    proc, _, _ = start_ui(db, tmp_path)
    size = db.stat().st_size
    client = subprocess.Popen(
        [sys.executable, "-m", "eventlens.cli", "load", str(big), "--db", str(db)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The load writes its rows into the file before it commits: kill the server then.
        deadline = time.monotonic() + 60
        while db.stat().st_size == size and client.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        out, err = client.communicate(timeout=30)
    finally:
        stop(proc)
        client.kill()
    assert client.returncode == 1, (out, err)
    assert "stopped during the job. Nothing half-done was kept" in err
    assert "Traceback" not in err
    # The file it left names a dead process: the next command runs here, on the store as it was.
    result = CliRunner().invoke(main, ["info", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["events"] == 3
    assert not server_file(str(db)).exists()
