"""The track_event client against the sandbox over real loopback HTTP: every outcome class, both
paths and auth styles, dedupe, what lands in the store, and that the key never shows."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sandbox_server import Live, free_port, live_sandbox, serve_in_thread, stub_app

from eventlens import client, model
from eventlens.client import Target, classify, mask, resolve_target, send_event
from eventlens.sandbox import DATASET, PATHS, Faults

KEY = "sk-lw-test-7Qp2Xv9LmN4rT8wK3sJ6"  # the sandbox's key, a "secret" that must never show
WRONG_KEY = "sk-lw-wrong-Hd83Jq0ZpY5cVb1Nx"  # a refused key is still a secret


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory) -> Iterator[Live]:
    """One sandbox (on a Store in a tmp file) per module, served by uvicorn in a thread."""
    with live_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.duckdb", KEY) as live:
        yield live


@pytest.fixture
def live(module_sandbox: Live) -> Live:
    """The module's sandbox with its faults switched off (tests switch on the ones they need)."""
    module_sandbox.sandbox.faults = Faults()
    return module_sandbox


def new_body(**fields: Any) -> dict[str, Any]:
    """A valid body on a trace of its own (so tests sharing the sandbox do not meet)."""
    body: dict[str, Any] = {
        "trace_id": f"trace_{uuid.uuid4().hex[:12]}",
        "event_type": "add_to_cart",
        "metrics": {"amount": 17.5},
    }
    body.update(fields)
    return body


def assert_no_key(*texts: Any, keys: tuple[str, ...] = (KEY, WRONG_KEY)) -> None:
    for text in texts:
        shown = text if isinstance(text, str) else repr(text)
        for key in keys:
            assert key not in shown, f"the key shows in {shown!r}"


def assert_result_has_no_key(result: client.SendResult, *keys: str) -> None:
    keys = keys or (KEY, WRONG_KEY)
    assert_no_key(
        result.message,
        result.response,
        result.as_dict(),
        json.dumps(result.as_dict()),
        repr(result),
        keys=keys,
    )


# -- accepted -------------------------------------------------------------------------------------


def test_accepted(live):
    body = new_body(event_id="e1")
    result = send_event(body, live.target())
    assert result.outcome == client.Outcome.ACCEPTED
    assert (result.status, result.response) == (200, {"message": "Event tracked"})
    assert result.message == "Event tracked"
    assert result.ok and result.sent and not result.retryable
    assert result.latency_ms is not None and result.latency_ms > 0
    assert len(live.stored(body["trace_id"])) == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("auth", client.AUTH_STYLES)
def test_both_paths_and_auth_styles(live, path, auth):
    body = new_body()
    before = live.counter.paths.count(path)
    result = send_event(body, live.target(path=path, auth=auth))
    assert (result.outcome, result.status) == (client.Outcome.ACCEPTED, 200), result.message
    assert live.counter.paths.count(path) == before + 1
    assert len(live.stored(body["trace_id"])) == 1


@pytest.mark.parametrize("auth", client.AUTH_STYLES)
def test_wrong_key_in_either_auth_style_is_unauthorized(live, auth):
    body = new_body()
    result = send_event(body, live.target(key=WRONG_KEY, auth=auth))
    assert result.outcome == client.Outcome.UNAUTHORIZED
    assert result.status == 401
    assert result.response == {"error": "Unauthorized", "message": "Invalid or missing API key"}
    assert result.message == "the key was refused (401): Invalid or missing API key"
    assert result.sent and not result.ok and not result.retryable
    assert live.stored(body["trace_id"]) == []


def test_no_key_is_unauthorized(live):
    result = send_event(new_body(), Target(endpoint=live.url))
    assert (result.outcome, result.status) == (client.Outcome.UNAUTHORIZED, 401)


def test_target_headers_per_auth_style():
    assert Target(key=KEY).headers() == {"Content-Type": "application/json", "X-Auth-Token": KEY}
    assert Target(key=KEY, auth="bearer").headers() == {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {KEY}",
    }
    assert Target().headers() == {"Content-Type": "application/json"}
    assert Target(endpoint="http://h:1/", path=PATHS[1]).url == "http://h:1/api/events/track"


def test_accepted_event_is_stored_as_dataset_sandbox(live):
    body = new_body(
        event_type="checkout",
        metrics={"amount": 17.5, "items": 3},
        event_details={"product_id": "sku_123", "coupon": None},
        timestamp=1717200001234,
        event_id="evt-stored-1",
    )
    assert send_event(body, live.target()).ok
    assert live.stored(body["trace_id"]) == [
        (
            "evt-stored-1",
            "checkout",
            1717200001234,
            {"amount": 17.5, "items": 3.0},
            {"product_id": "sku_123", "coupon": None},
            DATASET,
            "sandbox",
        )
    ]
    assert DATASET in live.store.dataset_names()


def test_accepted_event_without_timestamp_gets_the_servers_time(live):
    body = new_body()
    before = int(time.time() * 1000)
    assert send_event(body, live.target()).ok
    after = int(time.time() * 1000)
    [(event_id, _type, ts_ms, *_rest)] = live.stored(body["trace_id"])
    assert event_id.startswith("event_")
    assert before - 5 <= ts_ms <= after + 5


def test_accepted_events_update_trace_summary(live):
    trace = f"trace_{uuid.uuid4().hex[:12]}"

    def summary() -> list[tuple]:
        return live.store.rows(
            "SELECT events, epoch_ms(first_time), epoch_ms(last_time), event_types"
            " FROM trace_summary WHERE dataset = ? AND trace_id = ?",
            [DATASET, trace],
        )

    assert summary() == []
    send = [
        new_body(trace_id=trace, event_type="view", timestamp=1717200000000),
        new_body(trace_id=trace, event_type="checkout", timestamp=1717200005000),
    ]
    for body in send:
        assert send_event(body, live.target()).ok
    assert summary() == [(2, 1717200000000, 1717200005000, ["checkout", "view"])]
    assert send_event(
        new_body(trace_id=trace, event_type="view", timestamp=1717199990000), live.target()
    ).ok
    assert summary() == [(3, 1717199990000, 1717200005000, ["checkout", "view"])]


# -- dedupe ---------------------------------------------------------------------------------------


def test_same_trace_and_event_id_twice_is_stored_once(live):
    body = new_body(event_id="evt-dup")
    dupes = live.sandbox.counts["duplicate"]
    first, second = send_event(body, live.target()), send_event(body, live.target())
    assert (first.status, second.status) == (200, 200)
    assert first.ok and second.ok
    assert len(live.stored(body["trace_id"])) == 1
    assert live.sandbox.counts["duplicate"] == dupes + 1
    summary = live.store.rows(
        "SELECT events FROM trace_summary WHERE trace_id = ?", [body["trace_id"]]
    )
    assert summary == [(1,)]  # the duplicate is not counted into the trace either


def test_same_event_id_on_another_trace_is_another_event(live):
    a, b = new_body(event_id="evt-shared"), new_body(event_id="evt-shared")
    assert send_event(a, live.target()).ok and send_event(b, live.target()).ok
    assert len(live.stored(a["trace_id"])) == 1
    assert len(live.stored(b["trace_id"])) == 1


def test_without_event_id_every_send_is_stored(live):
    body = new_body(timestamp=1717200001234)
    for _ in range(3):
        assert send_event(body, live.target()).ok
    rows = live.stored(body["trace_id"])
    assert len(rows) == 3
    assert len({r[0] for r in rows}) == 3  # each got its own generated event_id


# -- rejected (the sandbox's answers; the client never sends an invalid body) --------------------


def raw_post(live: Live, content: bytes | str, path: str = PATHS[0], key: str = KEY):
    return httpx.post(
        live.url + path,
        content=content,
        headers={"Content-Type": "application/json", "X-Auth-Token": key},
        timeout=5,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"trace_id": "t", "event_type": "x", "metrics": {"a": "zz"}},
        {"trace_id": "t", "event_type": "x"},
        {"trace_id": "t", "event_type": "x", "metrics": {}, "event_details": {"n": 3}},
        {"trace_id": "t", "event_type": "thumbs_up_down", "metrics": {"vote": 5}},
    ],
    ids=["metric-string", "no-metrics", "detail-number", "vote-5"],
)
@pytest.mark.parametrize("path", PATHS)
def test_sandbox_answers_400_with_the_validation_message(live, bad, path):
    bad = {**bad, "trace_id": f"trace_{uuid.uuid4().hex[:12]}"}
    rejected = live.sandbox.counts["rejected"]
    reply = raw_post(live, json.dumps(bad), path)
    assert reply.status_code == 400
    expected = "Validation error: " + model.reason(model.validate_body(bad))
    assert reply.json() == {"error": expected}
    assert live.sandbox.counts["rejected"] == rejected + 1
    assert live.stored(bad["trace_id"]) == []
    outcome, message = classify(400, reply.json())
    assert outcome == client.Outcome.REJECTED
    assert message == f"rejected (400): {expected}"


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00", "[1, 2"])
def test_body_that_is_not_json_is_400_bad_request(live, content):
    reply = raw_post(live, content)
    assert (reply.status_code, reply.json()) == (400, {"error": "Bad request"})
    assert classify(400, reply.json()) == (client.Outcome.REJECTED, "rejected (400): Bad request")


def test_sandbox_checks_the_key_before_the_body(live):
    reply = raw_post(live, b"{not json", key=WRONG_KEY)
    assert reply.status_code == 401


def test_client_reports_a_400_from_a_server_as_rejected():
    answer = {"error": 'Validation error: Expected number, received string at "metrics.a"'}
    with serve_in_thread(stub_app(400, answer)) as url:
        result = send_event(new_body(), Target(endpoint=url, key=KEY))
    assert result.outcome == client.Outcome.REJECTED
    assert (result.status, result.response, result.sent) == (400, answer, True)
    assert result.message == f"rejected (400): {answer['error']}"
    assert not result.retryable


# -- forbidden ------------------------------------------------------------------------------------


def test_classify_403_is_forbidden():
    answer = {"error": "FORBIDDEN", "message": "This key lacks traces:create"}
    assert classify(403, answer) == (
        client.Outcome.FORBIDDEN,
        "the key may not create traces (403): This key lacks traces:create",
    )
    assert classify(403, None) == (client.Outcome.FORBIDDEN, "the key may not create traces (403)")


def test_client_reports_a_403_from_a_server_as_forbidden():
    answer = {"error": "FORBIDDEN", "message": "This key lacks traces:create"}
    with serve_in_thread(stub_app(403, answer)) as url:
        result = send_event(new_body(), Target(endpoint=url, key=KEY, auth="bearer"))
    assert (result.outcome, result.status) == (client.Outcome.FORBIDDEN, 403)
    assert not result.ok and not result.retryable


@pytest.mark.parametrize(
    "status, outcome",
    [
        (200, client.Outcome.ACCEPTED),
        (202, client.Outcome.ACCEPTED),
        (400, client.Outcome.REJECTED),
        (401, client.Outcome.UNAUTHORIZED),
        (403, client.Outcome.FORBIDDEN),
        (404, client.Outcome.REJECTED),
        (413, client.Outcome.REJECTED),
        (429, client.Outcome.RETRYABLE),
        (500, client.Outcome.RETRYABLE),
        (502, client.Outcome.RETRYABLE),
        (503, client.Outcome.RETRYABLE),
    ],
)
def test_classify_status_codes(status, outcome):
    assert classify(status, {"message": "said"})[0] == outcome
    assert classify(status, "said as text")[0] == outcome


def test_classify_uses_the_servers_own_words():
    assert classify(401, {"error": "Unauthorized", "message": "bad key"})[1].endswith(": bad key")
    assert classify(500, {"error": "boom"})[1] == "the server asks to try again later (500): boom"
    assert classify(502, "<html>" + "x" * 1000)[1].endswith("x" * 294)  # text cut to 300 chars
    assert classify(204, None) == (client.Outcome.ACCEPTED, "accepted")


# -- retryable ------------------------------------------------------------------------------------


def test_server_error_is_retryable(live):
    live.sandbox.faults.fail_rate = 1.0
    body = new_body(event_id="evt-500")
    result = send_event(body, live.target())
    assert (result.outcome, result.status) == (client.Outcome.RETRYABLE, 500)
    assert result.response == {"error": "Internal server error (sandbox fault)"}
    assert result.message == (
        "the server asks to try again later (500): Internal server error (sandbox fault)"
    )
    assert result.retryable and result.sent and not result.ok
    assert live.stored(body["trace_id"]) == []


def test_throttle_is_retryable_and_the_sandbox_sends_retry_after(live):
    live.sandbox.faults.throttle_rate = 1.0
    live.sandbox.faults.retry_after_s = 3
    body = new_body()
    result = send_event(body, live.target())
    assert (result.outcome, result.status) == (client.Outcome.RETRYABLE, 429)
    assert result.response == {"error": "Too many requests (sandbox fault)"}
    assert result.retryable
    reply = raw_post(live, json.dumps(body))
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "3"
    assert live.stored(body["trace_id"]) == []


def test_connect_error_is_retryable_and_not_sent():
    url = f"http://127.0.0.1:{free_port()}"
    result = send_event(new_body(), Target(endpoint=url, key=KEY))
    assert result.outcome == client.Outcome.RETRYABLE
    assert result.message.startswith("could not connect (ConnectError: ")
    assert (result.status, result.response, result.sent) == (None, None, False)
    assert result.retryable
    assert_result_has_no_key(result)


def test_read_timeout_is_retryable(live):
    live.sandbox.faults.latency_ms = 1500
    started = time.perf_counter()
    result = send_event(new_body(), live.target(), timeout=httpx.Timeout(0.2, connect=2))
    elapsed = time.perf_counter() - started
    assert result.outcome == client.Outcome.RETRYABLE
    assert result.message.startswith("no answer in time (ReadTimeout")
    assert result.status is None and result.sent  # the body may have arrived
    assert elapsed < 1.0
    assert_result_has_no_key(result)


# -- unknown --------------------------------------------------------------------------------------


def test_dropped_answer_is_unknown_but_the_event_is_stored(live):
    live.sandbox.faults.drop_rate = 1.0
    body = new_body(event_id="evt-dropped")
    result = send_event(body, live.target())
    assert result.outcome == client.Outcome.UNKNOWN
    assert result.message.startswith("the connection was lost after sending (RemoteProtocolError")
    assert (result.status, result.response, result.sent) == (None, None, True)
    assert result.retryable and not result.ok
    assert len(live.stored(body["trace_id"])) == 1
    # The retry the outcome invites is safe thanks to the event_id.
    live.sandbox.faults.drop_rate = 0.0
    assert send_event(body, live.target()).ok
    assert len(live.stored(body["trace_id"])) == 1


# -- invalid --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        new_body(event_type="thumbs_up_down", metrics={"vote": 5}),
        new_body(event_type="waited_to_finish", metrics={}),
        new_body(metrics={"amount": "17.5"}),
        new_body(metrics={"amount": float("nan")}),
        new_body(event_details={"n": 3}),
        new_body(timestamp="yesterday"),
        {"event_type": "x", "metrics": {}},
        ["not", "an", "object"],
    ],
    ids=[
        "vote-5",
        "finished-missing",
        "metric-text",
        "metric-nan",
        "detail-number",
        "timestamp-text",
        "no-trace-id",
        "array",
    ],
)
def test_invalid_body_is_not_sent(live, bad):
    requests, counts = live.total_requests(), dict(live.sandbox.counts)
    result = send_event(bad, live.target())
    assert result.outcome == client.Outcome.INVALID
    assert result.message == "not sent: " + model.reason(model.validate_body(bad))
    assert (result.status, result.response, result.latency_ms, result.sent) == (
        None,
        None,
        None,
        False,
    )
    assert not result.ok and not result.retryable
    assert live.total_requests() == requests
    assert live.sandbox.counts == counts


def test_invalid_vote_message(live):
    result = send_event(new_body(event_type="thumbs_up_down", metrics={"vote": 5}), live.target())
    assert result.message == (
        "not sent: metrics.vote: must be a number from -1 to 1 for thumbs_up_down, got 5"
    )


def test_sandbox_counts_every_request_class(live):
    before = dict(live.sandbox.counts)
    body = new_body(event_id="evt-count")
    send_event(body, live.target())
    send_event(body, live.target())
    send_event(new_body(), live.target(key=WRONG_KEY))
    raw_post(live, b"nope")
    after = live.sandbox.counts
    assert {k: after[k] - before[k] for k in after} == {
        "accepted": 1,
        "duplicate": 1,
        "rejected": 1,
        "unauthorized": 1,
    }
    health = httpx.get(live.url + "/api/sandbox/health", timeout=5).json()
    assert health == {"ok": True, "counts": after}


# -- the key stays secret -------------------------------------------------------------------------


def every_outcome(live: Live) -> list[client.SendResult]:
    """One send of each outcome class the sandbox can produce (faults reset afterwards)."""
    faults = live.sandbox.faults
    results = [
        send_event(new_body(event_id="k1"), live.target()),
        send_event(new_body(), live.target(key=WRONG_KEY)),
        send_event(new_body(), live.target(key=WRONG_KEY, auth="bearer")),
        send_event(new_body(event_type="thumbs_up_down", metrics={"vote": 5}), live.target()),
        send_event(new_body(), Target(endpoint=f"http://127.0.0.1:{free_port()}", key=KEY)),
    ]
    faults.fail_rate = 1.0
    results.append(send_event(new_body(), live.target(auth="bearer")))
    faults.fail_rate, faults.throttle_rate = 0.0, 1.0
    results.append(send_event(new_body(), live.target()))
    faults.throttle_rate, faults.drop_rate = 0.0, 1.0
    results.append(send_event(new_body(event_id="k2"), live.target()))
    faults.drop_rate, faults.latency_ms = 0.0, 1000
    results.append(send_event(new_body(), live.target(), timeout=httpx.Timeout(0.1, connect=2)))
    faults.latency_ms = 0
    return results


def test_key_in_no_send_result(live):
    results = every_outcome(live)
    assert {r.outcome for r in results} == set(client.OUTCOMES) - {
        client.Outcome.REJECTED,
        client.Outcome.FORBIDDEN,
    }
    for result in results:
        assert_result_has_no_key(result)


def test_key_in_no_log_record(live, caplog):
    caplog.set_level(logging.DEBUG)  # the root logger: eventlens, httpx, httpcore, uvicorn
    every_outcome(live)
    assert any(r.name == "eventlens.client" for r in caplog.records)
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    for record in caplog.records:
        assert_no_key(record.getMessage(), record.args, record.exc_text or "")
    assert_no_key(caplog.text)


def test_key_echoed_by_the_server_is_masked():
    def echo(headers: dict[str, str]) -> dict[str, Any]:
        sent = headers.get("x-auth-token") or headers.get("authorization", "")
        return {"error": "Unauthorized", "message": f"unknown key {sent}", "echo": [sent]}

    with serve_in_thread(stub_app(401, echo)) as url:
        for auth in client.AUTH_STYLES:
            result = send_event(new_body(), Target(endpoint=url, key=KEY, auth=auth))
            assert result.outcome == client.Outcome.UNAUTHORIZED
            assert_result_has_no_key(result)
            assert mask(KEY) in result.message
            assert mask(KEY) in result.response["echo"][0]


def test_key_echoed_in_a_text_answer_is_masked():
    with serve_in_thread(stub_app(502, lambda h: f"proxy error for {h['x-auth-token']}")) as url:
        result = send_event(new_body(), Target(endpoint=url, key=KEY))
    assert (result.outcome, result.status) == (client.Outcome.RETRYABLE, 502)
    assert result.response == f"proxy error for {mask(KEY)}"
    assert_result_has_no_key(result)


def test_key_echoed_across_the_message_cut_is_not_shown():
    def echo(headers: dict[str, str]) -> str:
        return "x" * (300 - 16) + headers["x-auth-token"]

    with serve_in_thread(stub_app(502, echo)) as url:
        result = send_event(new_body(), Target(endpoint=url, key=KEY))
    assert result.outcome == client.Outcome.RETRYABLE
    assert KEY[:16] not in result.message


@pytest.mark.parametrize("auth", client.AUTH_STYLES)
def test_key_with_a_line_break_does_not_leak(live, caplog, auth):
    caplog.set_level(logging.DEBUG)
    result = send_event(new_body(), live.target(key=KEY + "\r", auth=auth))
    assert_result_has_no_key(result)
    assert_no_key(caplog.text)


def test_key_never_in_connect_error_or_timeout_text(live, caplog):
    caplog.set_level(logging.DEBUG)
    refused = send_event(
        new_body(), Target(endpoint=f"http://127.0.0.1:{free_port()}", key=KEY, auth="bearer")
    )
    live.sandbox.faults.latency_ms = 1000
    slow = send_event(new_body(), live.target(), timeout=httpx.Timeout(0.1, connect=2))
    assert refused.message.startswith("could not connect")
    assert slow.message.startswith("no answer in time")
    for result in (refused, slow):
        assert_result_has_no_key(result)
    assert_no_key(caplog.text)


def test_target_repr_hides_the_key():
    for auth in client.AUTH_STYLES:
        target = Target(endpoint="http://127.0.0.1:1", key=KEY, key_source="typed", auth=auth)
        assert_no_key(repr(target), str(target), f"{target}", f"{target!r}")
        assert "key_source='typed'" in repr(target)
        assert target.scrub(f"a {KEY} b {KEY}") == f"a {mask(KEY)} b {mask(KEY)}"
    assert Target().scrub("no key here") == "no key here"


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(client.KEY_ENV, raising=False)
    monkeypatch.delenv(client.ENDPOINT_ENV, raising=False)
    return monkeypatch


SECRETS = {client.KEY_ENV: "sk-from-secrets-4f8a2b9c", client.ENDPOINT_ENV: "http://secrets:1"}


def test_resolve_target_key_sources(clean_env):
    env_key = "sk-from-environment-1a2b3c"
    none = resolve_target()
    assert (none.key, none.key_source, none.endpoint) == (None, "none", client.DEFAULT_ENDPOINT)
    from_secrets = resolve_target(secrets=SECRETS)
    assert (from_secrets.key, from_secrets.key_source) == (SECRETS[client.KEY_ENV], "secrets")
    assert from_secrets.endpoint == "http://secrets:1"
    clean_env.setenv(client.KEY_ENV, env_key)
    clean_env.setenv(client.ENDPOINT_ENV, "http://env:2")
    from_env = resolve_target(secrets=SECRETS)
    assert (from_env.key, from_env.key_source, from_env.endpoint) == (
        env_key,
        "environment",
        "http://env:2",
    )
    typed = resolve_target("http://typed:3", KEY, secrets=SECRETS, auth="bearer", path=PATHS[1])
    assert (typed.key, typed.key_source, typed.endpoint) == (KEY, "typed", "http://typed:3")
    assert (typed.auth, typed.url) == ("bearer", "http://typed:3/api/events/track")
    for target, key in ((from_secrets, SECRETS[client.KEY_ENV]), (from_env, env_key), (typed, KEY)):
        assert_no_key(repr(target), keys=(key,))


def test_resolve_target_empty_values_fall_through(clean_env):
    clean_env.setenv(client.KEY_ENV, "")
    target = resolve_target(endpoint="", key="", secrets=SECRETS)
    assert (target.key_source, target.endpoint) == ("secrets", "http://secrets:1")


def test_resolve_target_secrets_value_is_a_string(clean_env):
    assert resolve_target(secrets={client.KEY_ENV: 12345678}).key == "12345678"


def test_key_from_the_environment_reaches_the_sandbox(live, clean_env):
    clean_env.setenv(client.KEY_ENV, KEY)
    target = resolve_target(live.url)
    assert target.key_source == "environment"
    assert send_event(new_body(), target).ok


@pytest.mark.parametrize(
    "key, shown",
    [
        (None, ""),
        ("", ""),
        ("abc", "********"),
        ("sk-12345678", "********"),  # 11 characters: nothing of it is shown
        ("sk-123456789", "sk-1********"),  # 12 characters: the first 4
        (KEY, "sk-l********"),
    ],
)
def test_mask(key, shown):
    assert mask(key) == shown
    if key:
        assert key not in mask(key)
        assert len(mask(key).rstrip("*")) <= 4


# -- bugs: failures before anything was sent are called "lost after sending" ---------------------


@pytest.mark.parametrize("case", ["endpoint-without-scheme", "key-with-trailing-space"])
def test_errors_before_sending_are_not_unknown(live, case):
    requests = live.total_requests()
    if case == "endpoint-without-scheme":
        target = Target(endpoint=live.url.removeprefix("http://"), key=KEY)
    else:
        target = live.target(key=KEY + " ")
    result = send_event(new_body(), target)
    assert live.total_requests() == requests  # indeed nothing arrived
    assert result.sent is False
    assert result.outcome != client.Outcome.UNKNOWN


@pytest.mark.parametrize("case", ["malformed-endpoint", "non-ascii-key"])
def test_send_event_never_raises(case):
    if case == "malformed-endpoint":
        target = Target(endpoint="http://[::1", key=KEY)
    else:
        target = Target(endpoint=f"http://127.0.0.1:{free_port()}", key=KEY + "\u00a0")
    result = send_event(new_body(), target)
    assert result.outcome in client.OUTCOMES and not result.ok
    assert_result_has_no_key(result)


# -- AsyncSender (replay): the aiohttp session answers as httpx-aiohttp's transport does ----------


def send_both_ways(
    target: Target, body: Any, timeout: httpx.Timeout = client.DEFAULT_TIMEOUT
) -> list[client.SendResult]:
    """One send through each AsyncSender path: straight through its aiohttp session (what replay
    uses), then through httpx-aiohttp's transport (what it used before)."""
    from httpx_aiohttp import AiohttpTransport

    async def both() -> list[client.SendResult]:
        results = []
        for transport in (None, AiohttpTransport()):
            async with client.AsyncSender(
                target, timeout, limits=httpx.Limits(), transport=transport
            ) as sender:
                results.append(await sender.send(body))
        return results

    return asyncio.run(both())


def assert_same_answer(results: list[client.SendResult]) -> client.SendResult:
    """Every field alike but the latency; returns the session path's result."""
    session, transport = (dict(r.as_dict(), latency_ms=None) for r in results)
    assert session == transport
    return results[0]


@pytest.mark.parametrize(
    "fault, outcome, status",
    [
        ({}, client.Outcome.ACCEPTED, 200),
        ({"fail_rate": 1.0}, client.Outcome.RETRYABLE, 500),
        ({"throttle_rate": 1.0, "retry_after_s": 3}, client.Outcome.RETRYABLE, 429),
        ({"drop_rate": 1.0}, client.Outcome.UNKNOWN, None),
        ({"latency_ms": 1000}, client.Outcome.RETRYABLE, None),
    ],
    ids=["accepted", "500", "429", "dropped", "timeout"],
)
def test_async_sender_session_answers_as_the_transport_did(live, fault, outcome, status):
    for name, value in fault.items():
        setattr(live.sandbox.faults, name, value)
    timeout = httpx.Timeout(0.3, connect=2) if "latency_ms" in fault else client.DEFAULT_TIMEOUT
    results = send_both_ways(live.target(), new_body(), timeout)
    result = assert_same_answer(results)
    assert (result.outcome, result.status) == (outcome, status)
    assert result.retry_after == (3.0 if status == 429 else None)
    assert_result_has_no_key(result)


def test_async_sender_refusals_alike(live):
    refused_port = Target(endpoint=f"http://127.0.0.1:{free_port()}", key=KEY)
    cases = [
        (live.target(key=WRONG_KEY), new_body(), client.Outcome.UNAUTHORIZED),
        (live.target(), new_body(metrics={"amount": "17.5"}), client.Outcome.INVALID),
        (refused_port, new_body(), client.Outcome.RETRYABLE),
    ]
    for target, body, outcome in cases:
        result = assert_same_answer(send_both_ways(target, body))
        assert result.outcome == outcome
        assert_result_has_no_key(result)


def test_async_sender_reads_text_and_json_answers_alike():
    with serve_in_thread(stub_app(502, lambda h: f"proxy error for {h['x-auth-token']}")) as url:
        text = assert_same_answer(send_both_ways(Target(endpoint=url, key=KEY), new_body()))
    assert text.response == f"proxy error for {mask(KEY)}"
    answer = {"error": 'Validation error: Expected number, received string at "metrics.a"'}
    with serve_in_thread(stub_app(400, answer)) as url:
        rejected = assert_same_answer(send_both_ways(Target(endpoint=url, key=KEY), new_body()))
    assert (rejected.outcome, rejected.response) == (client.Outcome.REJECTED, answer)


def test_async_sender_sends_the_same_bytes_both_ways():
    """Request line, head and body as a socket server reads them, alike on both paths."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def serve_and_send() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        body = new_body(event_details={"city": "Zürich"}, event_id="evt-1")
        for auth in client.AUTH_STYLES:
            target = Target(endpoint=url, key=KEY, auth=auth)
            await asyncio.to_thread(send_both_ways, target, body)
        server.close()

    asyncio.run(serve_and_send())
    assert len(received) == 4
    assert received[0] == received[1] and received[2] == received[3]
    assert b"x-auth-token: " + KEY.encode() in received[0]
    assert b"authorization: Bearer " + KEY.encode() in received[2]


def test_one_tls_context_serves_every_client_and_still_verifies():
    """Built once per process (loading the CA bundle costs ~30 ms a client), and as strict as
    httpx's own: the server's certificate and host name are checked."""
    context = client.tls_context()
    assert client.tls_context() is context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # a CA bundle is loaded
