"""The `eventlens` command line: load, info and sample."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from eventlens.cli import main
from eventlens.store import DB_ENV, Store


@pytest.fixture
def bad_lines(formats_dir) -> str:
    return str(formats_dir / "bad_lines.jsonl")


def load_json(runner, *args: str) -> dict:
    result = runner.invoke(main, ["load", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- load -----------------------------------------------------------------------------------------


def test_load_json_output_shape(runner, bad_lines):
    out = load_json(runner, "--db", ":memory:", bad_lines)
    for obj in (out, *out["files"]):
        for key in ("loaded", "rejected", "duplicates"):
            assert type(obj[key]) is int, key
    assert (out["loaded"], out["rejected"], out["duplicates"]) == (20, 8, 1)
    assert len(out["files"]) == 1


def test_load_json_is_one_object_per_run(runner, formats_dir):
    result = runner.invoke(
        main,
        [
            "load",
            "--json",
            "--db",
            ":memory:",
            str(formats_dir / "events.ndjson"),
            str(formats_dir / "flat.csv"),
        ],
    )
    out = json.loads(result.stdout)  # raises if there is anything but one JSON document
    assert [f["loaded"] for f in out["files"]] == [120, 0]
    assert out["duplicates"] == 120


def test_load_exit_code_zero_with_rejects(runner, bad_lines):
    result = runner.invoke(main, ["load", "--db", ":memory:", bad_lines])
    assert result.exit_code == 0


def test_load_missing_file_exit_code_2(runner, db_path, tmp_path):
    result = runner.invoke(main, ["load", "--db", db_path, str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output
    assert "Traceback" not in result.output


def test_load_directory_exit_code_2(runner, db_path, tmp_path):
    result = runner.invoke(main, ["load", "--db", db_path, str(tmp_path)])
    assert result.exit_code == 2


def test_load_without_arguments_exit_code_2(runner, db_path):
    result = runner.invoke(main, ["load", "--db", db_path])
    assert result.exit_code == 2
    assert "FILES" in result.output


def test_load_empty_dataset_name_exit_code_2(runner, bad_lines):
    result = runner.invoke(main, ["load", "--db", ":memory:", "--dataset", " ", bad_lines])
    assert result.exit_code == 2


def test_load_unusable_file_reports_not_loaded(runner, tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("just some notes\n")
    result = runner.invoke(main, ["load", "--db", ":memory:", str(path)])
    assert result.exit_code == 0
    assert "NOT LOADED" in result.output
    assert "1 file not loaded" in result.output


def test_load_text_summary(runner, db_path, bad_lines):
    result = runner.invoke(main, ["load", "--db", db_path, bad_lines])
    text = result.output
    assert "20 loaded, 8 rejected, 1 duplicate" in text
    with Store(db_path) as s:
        first, last = s.rows("SELECT min(timestamp), max(timestamp) FROM events")[0]
        reasons = [r for (r,) in s.rows("SELECT reason FROM rejects")]
    assert len(reasons) == 8
    for reason in reasons:
        assert reason in text
    iso = "%Y-%m-%dT%H:%M:%S"
    assert f"time range: {first.strftime(iso)}" in text
    assert f".. {last.strftime(iso)}" in text
    assert "total: 20 loaded, 8 rejected, 1 duplicate" in text


def test_load_dataset_option(runner, db_path, bad_lines):
    out = load_json(runner, "--db", db_path, "--dataset", "mine", bad_lines)
    assert out["dataset"] == "mine"
    with Store(db_path) as s:
        assert list(s.datasets().dataset) == ["mine"]


def test_load_uses_default_db_in_working_folder(runner, tmp_path, bad_lines):
    load_json(runner, bad_lines)
    assert (tmp_path / "eventlens.duckdb").exists()


def test_load_honours_db_option(runner, tmp_path, bad_lines):
    load_json(runner, "--db", str(tmp_path / "opt.duckdb"), bad_lines)
    assert (tmp_path / "opt.duckdb").exists()
    assert not (tmp_path / "eventlens.duckdb").exists()


def test_load_honours_env(runner, tmp_path, bad_lines):
    result = runner.invoke(main, ["load", bad_lines], env={DB_ENV: str(tmp_path / "env.duckdb")})
    assert result.exit_code == 0
    assert (tmp_path / "env.duckdb").exists()
    assert not (tmp_path / "eventlens.duckdb").exists()


def test_db_option_beats_env(runner, tmp_path, bad_lines):
    result = runner.invoke(
        main,
        ["load", "--db", str(tmp_path / "opt.duckdb"), bad_lines],
        env={DB_ENV: str(tmp_path / "env.duckdb")},
    )
    assert result.exit_code == 0
    assert (tmp_path / "opt.duckdb").exists()
    assert not (tmp_path / "env.duckdb").exists()


def test_memory_db(runner, tmp_path, bad_lines):
    assert load_json(runner, "--db", ":memory:", bad_lines)["loaded"] == 20
    assert list(tmp_path.iterdir()) == []


# -- info -----------------------------------------------------------------------------------------


def test_info_lists_datasets(runner, db_path, formats_dir, bad_lines):
    load_json(runner, "--db", db_path, "--dataset", "clean", str(formats_dir / "events.ndjson"))
    load_json(runner, "--db", db_path, "--dataset", "bad", bad_lines)
    result = runner.invoke(main, ["info", "--db", db_path])
    assert result.exit_code == 0
    assert f"store: {db_path} (120 events)" in result.output
    assert "clean: 120 events" in result.output
    assert "bad: 0 events" in result.output and "8 rejected" in result.output


def test_info_json(runner, db_path, bad_lines):
    load_json(runner, "--db", db_path, bad_lines)
    result = runner.invoke(main, ["info", "--json", "--db", db_path])
    out = json.loads(result.stdout)
    assert out["events"] == 20
    (ds,) = out["datasets"]
    assert (ds["dataset"], ds["events"], ds["rejects"], ds["duplicates"]) == ("bad_lines", 20, 8, 1)
    assert ds["first_event"] <= ds["last_event"]
    assert ds["files"] == [bad_lines]


def test_info_empty_store(runner, db_path):
    result = runner.invoke(main, ["info", "--db", db_path])
    assert result.exit_code == 0
    assert "no datasets yet" in result.output


def test_info_honours_env(runner, tmp_path, bad_lines):
    env = {DB_ENV: str(tmp_path / "env.duckdb")}
    runner.invoke(main, ["load", bad_lines], env=env)
    result = runner.invoke(main, ["info"], env=env)
    assert "bad_lines: 20 events" in result.output


# -- sample ---------------------------------------------------------------------------------------


def test_sample_writes_files(runner, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(main, ["sample", "--out", str(out), "--events", "500"])
    assert result.exit_code == 0, result.output
    printed = result.output.split()
    assert str(out / "events.jsonl.gz") in printed
    assert all(os.path.exists(p) for p in printed)
    with gzip.open(out / "events.jsonl.gz", "rt") as fh:
        assert sum(1 for _ in fh) == 500
    names = {p.name for p in (out / "formats").iterdir()}
    assert {"events.ndjson", "flat.csv", "events_map.parquet", "bad_lines.jsonl"} <= names


def test_sample_rejects_zero_events(runner, tmp_path):
    result = runner.invoke(main, ["sample", "--out", str(tmp_path), "--events", "0"])
    assert result.exit_code == 2


# -- the real command -----------------------------------------------------------------------------


def test_real_subprocess_load_json(tmp_path, bad_lines):
    env = {k: v for k, v in os.environ.items() if k != DB_ENV}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventlens.cli",
            "load",
            "--json",
            "--db",
            str(tmp_path / "p.duckdb"),
            bad_lines,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["loaded"], out["rejected"], out["duplicates"]) == (20, 8, 1)
    assert "Traceback" not in proc.stderr


def test_ui_serves_the_app(tmp_path):
    """`eventlens ui`, the README's start command, serves the app (the browser tests drive it)."""
    import socket
    import time

    import httpx

    from eventlens.handoff import server_file

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "ui.duckdb"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventlens.cli",
            "ui",
            "--db",
            str(db),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert proc.poll() is None, "eventlens ui exited"
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.is_success and "<title>" in page.text
        # The sandbox answers on the app's own port, with its default key.
        event = {"trace_id": "t_ui", "event_type": "x", "metrics": {"n": 1}, "event_id": "e1"}
        url = f"http://127.0.0.1:{port}/api/track_event"
        ok = httpx.post(url, json=event, headers={"X-Auth-Token": "sandbox-key"}, timeout=10)
        assert (ok.status_code, ok.json()) == (200, {"message": "Event tracked"})
        refused = httpx.post(url, json=event, headers={"X-Auth-Token": "wrong"}, timeout=10)
        assert refused.status_code == 401
        # By default it listens on loopback only, not on every interface (Streamlit's default).
        assert listening_addresses(port) == {"127.0.0.1"}
        # It holds its store from the start and says where other commands can reach it.
        assert server_file(str(db)).is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert not server_file(str(db)).exists()  # withdrawn when it stops
    # The server itself stopped: `eventlens ui` became it rather than leaving it orphaned.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, size in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                if size == 8:
                    found.add(".".join(str(b) for b in raw[::-1]))
                else:
                    found.add("::" if not any(raw) else raw.hex())
    return found


@pytest.mark.parametrize("command", [["ui"], ["sandbox"]])
def test_opening_to_the_network_with_the_default_sandbox_key_is_refused(runner, command):
    result = runner.invoke(main, [*command, "--host", "0.0.0.0"], env={"EVENTLENS_SANDBOX_KEY": ""})
    assert result.exit_code == 2
    assert "well-known default 'sandbox-key'" in result.output
    assert "EVENTLENS_SANDBOX_KEY" in result.output


def test_the_sandbox_may_open_to_the_network_with_its_own_key():
    from eventlens.sandbox import network_problem

    assert network_problem("0.0.0.0", "a-key-of-my-own") is None
    assert network_problem("127.0.0.1", None) is None
    assert network_problem("0.0.0.0", None) is not None
