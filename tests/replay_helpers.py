"""Input files and journal rows shared by the replay tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from eventlens import replay


def write_jsonl(path: Path, items: list[Any]) -> Path:
    """Items as lines: a str is written as is (a raw, maybe broken line), anything else as JSON."""
    lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def report_with(**fields: Any) -> replay.Report:
    """A run's closing report with these fields, zero or empty elsewhere (for a journal row whose
    counts are all a test reads)."""
    blank = replay.Report(
        run_id="",
        state=replay.RunState.FINISHED,
        source="store",
        endpoint="",
        events=0,
        planned=0,
        sent=0,
        requests=0,
        accepted=0,
        rejected=0,
        invalid=0,
        dead_lettered=0,
        retried=0,
        failed=0,
        unknown=0,
        not_sent=0,
        duplicates_in_source=0,
        elapsed_s=0.0,
        rate_per_s=None,
        latency_ms=replay.Latency(None, None, None),
        by_type={},
        sessions=1,
        closing=True,
    )
    return dataclasses.replace(blank, **fields)
