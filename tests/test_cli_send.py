"""`eventlens send` against a sandbox on loopback, and `eventlens sandbox` as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox_server import Live, free_port, live_sandbox, serve_in_thread, stub_app

from eventlens.cli import main
from eventlens.client import ENDPOINT_ENV, KEY_ENV, mask
from eventlens.sandbox import DATASET, Faults
from eventlens.store import Store

KEY = "sk-lw-cli-Rb4Tz8Wq1Kc6Nm3Hy9Lp"
WRONG_KEY = "sk-lw-cli-wrong-Fv2Gs7Dj5Xa0Qe"


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory) -> Iterator[Live]:
    with live_sandbox(tmp_path_factory.mktemp("cli_sandbox") / "sandbox.duckdb", KEY) as live:
        yield live


@pytest.fixture
def live(module_sandbox: Live, monkeypatch) -> Live:
    """The module's sandbox, faults off; the key in $LANGWATCH_API_KEY, no endpoint variable."""
    module_sandbox.sandbox.faults = Faults()
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    return module_sandbox


def trace() -> str:
    return f"trace_{uuid.uuid4().hex[:12]}"


def send(runner, live: Live, *args: str, endpoint: str | None = None):
    return runner.invoke(main, ["send", "--endpoint", endpoint or live.url, *args])


def assert_no_key(text: str) -> None:
    assert KEY not in text
    assert WRONG_KEY not in text


# -- exit 0 ---------------------------------------------------------------------------------------


def test_send_accepted_text(runner, live):
    t = trace()
    result = send(runner, live, "--trace-id", t, "--type", "add_to_cart", "--metric", "amount=17.5")
    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert first.startswith("accepted: Event tracked in ")
    assert first.endswith(f" ms; {live.url}/api/track_event (key from environment)")
    assert json.loads(second) == {"message": "Event tracked"}
    assert_no_key(result.output)
    assert mask(KEY) not in result.output  # not even the masked key is needed
    assert len(live.stored(t)) == 1


def test_send_accepted_json(runner, live):
    t = trace()
    result = send(
        runner,
        live,
        "--json",
        "--trace-id",
        t,
        "--type",
        "checkout",
        "--metric",
        "amount=17.5",
        "--metric",
        "items=3",
        "--metric",
        "delta=-2",
        "--detail",
        "product_id=sku_123",
        "--detail",
        "note=a=b",
        "--timestamp",
        "1717200001234",
        "--event-id",
        "evt-cli-1",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # one JSON document and nothing else
    assert set(out) == {
        "outcome",
        "message",
        "status",
        "response",
        "latency_ms",
        "sent",
        "retry_after",
        "endpoint",
    }
    assert out["outcome"] == "accepted"
    assert out["message"] == "Event tracked"
    assert out["status"] == 200
    assert out["response"] == {"message": "Event tracked"}
    assert out["sent"] is True
    assert isinstance(out["latency_ms"], float) and out["latency_ms"] > 0
    assert out["endpoint"] == f"{live.url}/api/track_event"
    assert_no_key(result.output)
    assert live.stored(t) == [
        (
            "evt-cli-1",
            "checkout",
            1717200001234,
            {"amount": 17.5, "items": 3.0, "delta": -2.0},
            {"product_id": "sku_123", "note": "a=b"},
            DATASET,
            "sandbox",
        )
    ]


def test_send_bearer(runner, live):
    t = trace()
    result = send(runner, live, "--bearer", "--json", "--trace-id", t, "--type", "x")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcome"] == "accepted"
    assert len(live.stored(t)) == 1


def test_send_endpoint_from_the_environment(runner, live, monkeypatch):
    monkeypatch.setenv(ENDPOINT_ENV, live.url)
    t = trace()
    result = runner.invoke(main, ["send", "--json", "--trace-id", t, "--type", "x"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["endpoint"] == f"{live.url}/api/track_event"


def test_send_twice_with_an_event_id_stores_once(runner, live):
    t = trace()
    args = ("--trace-id", t, "--type", "x", "--event-id", "evt-cli-dup")
    assert send(runner, live, *args).exit_code == 0
    assert send(runner, live, *args).exit_code == 0
    assert len(live.stored(t)) == 1


# -- exit 1 ---------------------------------------------------------------------------------------


def test_send_invalid_is_not_sent(runner, live):
    requests = live.counter.track_requests
    t = trace()
    result = send(runner, live, "--trace-id", t, "--type", "thumbs_up_down", "--metric", "vote=5")
    assert result.exit_code == 1
    assert result.output.startswith(
        "invalid: not sent: metrics.vote: must be a number from -1 to 1 for thumbs_up_down, got 5;"
    )
    assert live.counter.track_requests == requests
    assert live.stored(t) == []


def test_send_invalid_json(runner, live):
    t = trace()
    result = send(runner, live, "--json", "--trace-id", t, "--type", "waited_to_finish")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert (out["outcome"], out["sent"], out["status"]) == ("invalid", False, None)
    assert "metrics.finished" in out["message"]


def test_send_wrong_key_is_unauthorized(runner, live, monkeypatch):
    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    t = trace()
    result = send(runner, live, "--trace-id", t, "--type", "x")
    assert result.exit_code == 1
    assert result.output.startswith("unauthorized: the key was refused (401)")
    assert "(key from environment)" in result.output
    assert_no_key(result.output)
    assert live.stored(t) == []


def test_send_without_a_key_is_unauthorized(runner, live, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    result = send(runner, live, "--json", "--trace-id", trace(), "--type", "x")
    assert result.exit_code == 1
    assert (json.loads(result.stdout)["outcome"], json.loads(result.stdout)["status"]) == (
        "unauthorized",
        401,
    )
    result = send(runner, live, "--trace-id", trace(), "--type", "x")
    assert "(key from none)" in result.output


def test_send_rejected(runner, live):
    answer = {"error": 'Validation error: Expected string, received number at "trace_id"'}
    with serve_in_thread(stub_app(400, answer)) as url:
        result = send(runner, live, "--trace-id", trace(), "--type", "x", endpoint=url)
    assert result.exit_code == 1
    assert result.output.startswith(f"rejected: rejected (400): {answer['error']} in ")
    assert_no_key(result.output)


def test_send_server_error(runner, live):
    live.sandbox.faults.fail_rate = 1.0
    result = send(runner, live, "--json", "--trace-id", trace(), "--type", "x")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert (out["outcome"], out["status"]) == ("retryable", 500)


def test_send_unreachable(runner, live):
    url = f"http://127.0.0.1:{free_port()}"
    result = send(runner, live, "--trace-id", trace(), "--type", "x", endpoint=url)
    assert result.exit_code == 1
    assert result.output.startswith("retryable: could not connect (ConnectError")
    assert f"; {url}/api/track_event (key from environment)" in result.output
    assert_no_key(result.output)


def test_send_dropped_answer(runner, live):
    live.sandbox.faults.drop_rate = 1.0
    t = trace()
    result = send(runner, live, "--json", "--trace-id", t, "--type", "x", "--event-id", "d1")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["outcome"] == "unknown"
    assert len(live.stored(t)) == 1


def test_send_key_with_a_carriage_return_is_not_printed(runner, live, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY + "\r")
    result = send(runner, live, "--trace-id", trace(), "--type", "x")
    assert result.exit_code == 1
    assert_no_key(result.output)


# -- exit 2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["--type", "x"], "Missing option '--trace-id'"),
        (["--trace-id", "t"], "Missing option '--type'"),
        (["--trace-id", "t", "--type", "x", "--metric", "a=zz"], "a: 'zz' is not a number"),
        (["--trace-id", "t", "--type", "x", "--metric", "a="], "a: '' is not a number"),
        (["--trace-id", "t", "--type", "x", "--metric", "a"], "'a' is not KEY=VALUE"),
        (["--trace-id", "t", "--type", "x", "--metric", "=1"], "'=1' is not KEY=VALUE"),
        (["--trace-id", "t", "--type", "x", "--detail", "country"], "'country' is not KEY=VALUE"),
        (["--trace-id", "t", "--type", "x", "--timestamp", "now"], "'now' is not a valid integer"),
        (["--trace-id", "t", "--type", "x", "--key", KEY], "No such option '--key'"),
    ],
    ids=[
        "no-trace-id",
        "no-type",
        "metric-zz",
        "metric-empty",
        "metric-no-eq",
        "metric-no-key",
        "detail-no-eq",
        "timestamp-text",
        "key-option",
    ],
)
def test_send_usage_errors(runner, live, args, says):
    requests = live.counter.track_requests
    result = send(runner, live, *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert live.counter.track_requests == requests
    assert_no_key(result.output)  # not even the value given to the missing --key option


def test_send_help_has_no_key_option(runner):
    result = runner.invoke(main, ["send", "--help"])
    assert result.exit_code == 0
    assert "--key" not in result.output
    assert "$LANGWATCH_API_KEY only" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args",
    [["--fail-rate", "0.6", "--throttle-rate", "0.6"], ["--fail-rate", "2"], ["--port", "x"]],
)
def test_sandbox_usage_errors(runner, args, tmp_path):
    result = runner.invoke(main, ["sandbox", "--db", str(tmp_path / "s.duckdb"), *args])
    assert result.exit_code == 2, result.output


# -- `eventlens sandbox` as a process -------------------------------------------------------------


def start_sandbox(tmp_path: Path, db: Path, *options: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventlens.cli",
            "sandbox",
            "--db",
            str(db),
            "--port",
            str(port),
            *options,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/api/sandbox/health", timeout=1).is_success:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    stop(proc)
    raise AssertionError(f"eventlens sandbox did not start: {proc.stderr.read()!r}")


def stop(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """Terminate, then wait; returns its output. Kills it only if it ignores the TERM."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def test_sandbox_command_with_fail_rate_1(tmp_path):
    db = tmp_path / "sandbox.duckdb"
    proc, url = start_sandbox(tmp_path, db, "--fail-rate", "1")
    try:
        body = {"trace_id": "t", "event_type": "x", "metrics": {}}
        for path in ("/api/track_event", "/api/events/track"):
            reply = httpx.post(url + path, json=body, headers={"X-Auth-Token": "sandbox-key"})
            assert reply.status_code == 500
            assert reply.json() == {"error": "Internal server error (sandbox fault)"}
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err  # a TERM is a clean stop
    assert out.decode().startswith(f"sandbox: {url}/api/track_event (store {db}, dataset sandbox)")
    assert b"Traceback" not in err
    with pytest.raises(httpx.TransportError):  # the server itself stopped
        httpx.get(f"{url}/api/sandbox/health", timeout=2)
    with Store(db) as store:  # the file is no longer locked, and nothing was stored
        assert store.event_count() == 0


def test_sandbox_command_own_key_and_events_survive_terminate(tmp_path):
    db = tmp_path / "sandbox.duckdb"
    proc, url = start_sandbox(tmp_path, db, "--key", KEY)
    try:
        body = {"trace_id": "t1", "event_type": "x", "metrics": {"m": 1}, "event_id": "e1"}
        default = httpx.post(
            url + "/api/track_event", json=body, headers={"X-Auth-Token": "sandbox-key"}
        )
        assert default.status_code == 401
        own = httpx.post(url + "/api/track_event", json=body, headers={"X-Auth-Token": KEY})
        assert (own.status_code, own.json()) == (200, {"message": "Event tracked"})
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err  # a TERM is a clean stop
    assert KEY.encode() not in out + err
    with Store(db) as store:
        assert store.rows("SELECT trace_id, event_id, dataset FROM events") == [
            ("t1", "e1", DATASET)
        ]
        assert store.rows("SELECT trace_id, events FROM trace_summary") == [("t1", 1)]
