"""The report and the dry run as dataclasses: their as_dict() is the JSON the CLI prints, the page
shows and the journal keeps, key for key (a known report made before they were dataclasses)."""

from __future__ import annotations

import dataclasses
import json

from replay_helpers import write_jsonl

from eventlens import replay
from eventlens.replay.journal import save_run
from eventlens.store import Store

# `eventlens replay --json` of a run with a rejected event and an invalid line, as printed
# before the report was a dataclass; the journal keeps it without the dead-letter file.
KNOWN_JOURNALLED = (
    '{"run_id": "20251207T013525Z-6a68d3", "state": "finished", "source": "e.jsonl",'
    ' "endpoint": "http://127.0.0.1:56839/api/track_event", "events": 7, "planned": 6,'
    ' "sent": 6, "requests": 6, "accepted": 5, "rejected": 1, "invalid": 1, "dead_lettered": 2,'
    ' "retried": 0, "failed": 0, "unknown": 0, "not_sent": 0, "duplicates_in_source": 0,'
    ' "elapsed_s": 0.19, "rate_per_s": 32.1,'
    ' "latency_ms": {"p50": 42.9, "p95": 45.4, "p99": 45.7, "estimated": false},'
    ' "by_type": {"llm_call": {"accepted": 2}, "refused": {"rejected": 1},'
    ' "search": {"accepted": 3}}, "sessions": 1, "message": null}'
)
KNOWN_PRINTED = KNOWN_JOURNALLED[:-1] + ', "dead_letter_file": "e.dead-letter.jsonl"}'
# `--dry-run --json` of the same file (first bodies cut to one).
KNOWN_DRY_RUN = (
    '{"run_id": "20251207T013523Z-4f882f", "source": "e.jsonl", "events": 6, "traces": 2,'
    ' "invalid": 1, "duplicates": 0, "by_type": {"search": 3, "llm_call": 2, "refused": 1},'
    ' "first_time": "2025-11-01T12:26:40.000+00:00",'
    ' "last_time": "2025-11-01T12:26:45.000+00:00", "estimated_s": 3.0,'
    ' "first_bodies": [{"trace_id": "trace_0", "event_id": "evt_0", "event_type": "llm_call",'
    ' "metrics": {"n": 0.0}, "event_details": {}, "timestamp": 1762000000000}],'
    ' "invalid_reasons": [{"line": 7, "reason": "line 7: not valid JSON: Expecting property'
    ' name enclosed in double quotes (column 54)"}]}'
)


def known() -> replay.Report:
    return replay.Report.from_dict(json.loads(KNOWN_JOURNALLED))


def test_a_journalled_report_reads_back_as_attributes_and_dumps_to_the_same_json():
    report = known()
    assert json.dumps(report.as_dict()) == KNOWN_JOURNALLED
    assert report.as_dict() == json.loads(KNOWN_JOURNALLED)
    assert report.state is replay.RunState.FINISHED
    assert (report.accepted, report.dead_lettered, report.latency_ms.p99) == (5, 2, 45.7)
    assert report.by_type["refused"] == {"rejected": 1}
    assert report.closing and report.message is None and not report.all_accepted


def test_the_printed_report_adds_the_dead_letter_file_last():
    printed = dataclasses.replace(known(), dead_letter_file="e.dead-letter.jsonl")
    assert json.dumps(printed.as_dict(), ensure_ascii=False) == KNOWN_PRINTED


def test_a_report_read_from_the_journal_has_no_message_key():
    """build_report (the page's report, a finished run's with no journalled one) carries no
    message: only the report a session closes a run with does, null or not."""
    built = dataclasses.replace(known(), closing=False)
    assert list(built.as_dict()) == [k for k in json.loads(KNOWN_JOURNALLED) if k != "message"]
    said = dataclasses.replace(known(), message="3 events still to send; resume the run")
    assert said.as_dict()["message"] == "3 events still to send; resume the run"


def test_a_report_journalled_before_latency_estimates_loads_as_exact():
    old = json.loads(KNOWN_JOURNALLED)
    del old["latency_ms"]["estimated"]
    assert replay.Report.from_dict(old).latency_ms == replay.Latency(42.9, 45.4, 45.7, False)


def test_a_report_still_reads_as_the_dict_it_was():
    report = known()
    assert report["rate_per_s"] == report.rate_per_s == 32.1
    assert report["latency_ms"]["p50"] == 42.9


def test_the_journal_keeps_the_report_json_as_it_was(tmp_path):
    source = write_jsonl(
        tmp_path / "e.jsonl", [{"trace_id": "t", "event_type": "x", "metrics": {}}]
    )
    with Store(tmp_path / "j.duckdb") as store:
        run = replay.plan(
            store, replay.Source(path=str(source)), endpoint=replay.Endpoint("http://127.0.0.1:9")
        )
        built = replay.build_report(store, run)
        assert list(built.as_dict()) == [k for k in json.loads(KNOWN_JOURNALLED) if k != "message"]
        run.report = known()
        with store.write_lock:
            save_run(store, run)
        kept = store.scalar("SELECT report FROM replay_runs WHERE run_id = ?", [run.run_id])
        assert kept == KNOWN_JOURNALLED
        assert replay.get_run(store, run.run_id).report == known()


def test_a_dry_run_as_dict_has_the_known_keys_in_order(tmp_path):
    events = [
        {
            "trace_id": f"trace_{i % 2}",
            "event_type": "x",
            "metrics": {"n": i},
            "timestamp": 1762000000000 + i,
        }
        for i in range(3)
    ]
    source = write_jsonl(tmp_path / "e.jsonl", events)
    with Store(tmp_path / "j.duckdb") as store:
        run = replay.plan(
            store, replay.Source(path=str(source)), endpoint=replay.Endpoint("http://127.0.0.1:9")
        )
        looked = replay.dry_run(store, run)
    assert list(looked.as_dict()) == list(json.loads(KNOWN_DRY_RUN))
    assert (looked.events, looked.traces, looked.invalid, looked.by_type) == (3, 2, 0, {"x": 3})
    known_dry = replay.DryRun(**json.loads(KNOWN_DRY_RUN))
    assert json.dumps(known_dry.as_dict()) == KNOWN_DRY_RUN
