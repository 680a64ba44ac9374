"""The track_event body rules: validate_body, and its SQL twin as ingest applies it.

Expected messages are built from model's MSG_* templates, so a rewording there does not break
these tests; what is pinned is which rule fires, for which field, and the type or value shown.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from eventlens import model
from eventlens.ingest import load_files
from eventlens.model import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, validate_body
from eventlens.store import Store

BASE = {"trace_id": "trace_1", "event_type": "custom", "metrics": {"score": 1}}


def body(**changes: Any) -> dict[str, Any]:
    """BASE with some fields replaced; a value of `...` removes the field."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def problems(b: Any) -> list[str]:
    return [str(p) for p in validate_body(b)]


def msg(field: str, template: str, **values: Any) -> str:
    """The text of one problem: 'field: message'."""
    return f"{field}: {template.format(**values) if values else template}"


def range_msg(metric: str, event_type: str, words: str, shown: str) -> str:
    return msg(
        f"metrics.{metric}", model.MSG_PREDEFINED_RANGE, range=words, type=event_type, value=shown
    )


def missing_msg(metric: str, event_type: str, words: str) -> str:
    return msg(f"metrics.{metric}", model.MSG_PREDEFINED_MISSING, type=event_type, range=words)


# -- accepted bodies ------------------------------------------------------------------------------


def test_minimal_body_is_valid():
    assert problems(BASE) == []


def test_full_body_is_valid():
    b = body(
        metrics={"amount": 17.5, "quantity": 2},
        event_details={"product_id": "sku_1", "note": None},
        timestamp=1_717_200_001_234,
        event_id="evt_1",
    )
    assert problems(b) == []


def test_empty_metrics_object_is_valid():
    assert problems(body(metrics={})) == []


def test_empty_trace_id_passes():
    """LangWatch's zod schema accepts the empty string."""
    assert problems(body(trace_id="")) == []


def test_unknown_top_level_keys_are_ignored():
    b = body(thread_id=5, user_id=None, project_id=["x"], customer={"a": 1})
    assert problems(b) == []


def test_event_details_may_be_null():
    assert problems(body(event_details=None)) == []


def test_event_details_value_may_be_null():
    assert problems(body(event_details={"feedback": None})) == []


def test_optional_fields_may_be_null():
    assert problems(body(timestamp=None, event_id=None)) == []


def test_float_timestamp_is_valid():
    assert problems(body(timestamp=1_717_200_001_234.6)) == []


@pytest.mark.parametrize("ts", [MIN_TIMESTAMP_MS, 0, -1, MAX_TIMESTAMP_MS])
def test_timestamp_range_boundaries_are_valid(ts):
    assert problems(body(timestamp=ts)) == []


# -- trace_id and event_type ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trace_id", "event_type"])
def test_missing_required_string(name):
    assert problems(body(**{name: ...})) == [msg(name, model.MSG_REQUIRED)]


@pytest.mark.parametrize("name", ["trace_id", "event_type"])
def test_null_required_string_counts_as_missing(name):
    assert problems(body(**{name: None})) == [msg(name, model.MSG_REQUIRED)]


@pytest.mark.parametrize(
    ("name", "value", "got"),
    [
        *(
            (name, value, got)
            for name in ("trace_id", "event_type")
            for value, got in ((123, "number"), (1.5, "number"), (True, "boolean"))
        ),
        ("trace_id", [], "array"),
        ("trace_id", {}, "object"),
        ("event_type", [], "array"),
        ("event_type", {}, "object"),
    ],
)
def test_non_string_required_field(name, value, got):
    assert problems(body(**{name: value})) == [msg(name, model.MSG_STRING, got=got)]


# -- metrics --------------------------------------------------------------------------------------


def test_missing_metrics():
    assert problems(body(metrics=...)) == [msg("metrics", model.MSG_METRICS_REQUIRED)]


def test_null_metrics_counts_as_missing():
    assert problems(body(metrics=None)) == [msg("metrics", model.MSG_METRICS_REQUIRED)]


@pytest.mark.parametrize(
    ("value", "got"), [([], "array"), ([1, 2], "array"), ("x", "string"), (5, "number")]
)
def test_metrics_not_an_object(value, got):
    assert problems(body(metrics=value)) == [msg("metrics", model.MSG_METRICS_OBJECT, got=got)]


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("17.5", "string"),
        (True, "boolean"),
        (False, "boolean"),
        (None, "null"),
        ([1], "array"),
        ({"v": 1}, "object"),
    ],
)
def test_metric_value_not_a_number(value, got):
    b = body(metrics={"amount": value, "quantity": 1})
    assert problems(b) == [msg("metrics.amount", model.MSG_METRIC_NUMBER, got=got)]


def test_every_bad_metric_is_reported():
    b = body(metrics={"a": "1", "b": 2, "c": True})
    assert problems(b) == [
        msg("metrics.a", model.MSG_METRIC_NUMBER, got="string"),
        msg("metrics.c", model.MSG_METRIC_NUMBER, got="boolean"),
    ]


@pytest.mark.parametrize("value", [0, -5, 1e300, 2**64, -(2**63)])
def test_metric_numbers_of_any_size_are_valid(value):
    assert problems(body(metrics={"m": value})) == []


# -- event_details --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "got"), [("x", "string"), ([], "array"), (["a"], "array"), (3, "number")]
)
def test_event_details_not_an_object(value, got):
    assert problems(body(event_details=value)) == [
        msg("event_details", model.MSG_DETAILS_OBJECT, got=got)
    ]


@pytest.mark.parametrize(
    ("value", "got"),
    [(123, "number"), (1.5, "number"), (True, "boolean"), ({"a": "b"}, "object"), ([], "array")],
)
def test_event_detail_value_not_a_string(value, got):
    b = body(event_details={"ok": "fine", "product_id": value})
    assert problems(b) == [msg("event_details.product_id", model.MSG_DETAIL_STRING, got=got)]


# -- timestamp and event_id -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "got"),
    [("1717200001234", "string"), (True, "boolean"), ([1], "array"), ({}, "object")],
)
def test_timestamp_not_a_number(value, got):
    assert problems(body(timestamp=value)) == [msg("timestamp", model.MSG_TIMESTAMP, got=got)]


@pytest.mark.parametrize(
    "value", [MAX_TIMESTAMP_MS + 1, MIN_TIMESTAMP_MS - 1, 1e20, -(2**63), 1_717_200_001_234_000]
)
def test_timestamp_out_of_range(value):
    assert problems(body(timestamp=value)) == [msg("timestamp", model.MSG_TIMESTAMP_RANGE)]


def test_timestamp_range_is_years_1_to_9999():
    assert "1" in model.MSG_TIMESTAMP_RANGE and "9999" in model.MSG_TIMESTAMP_RANGE


@pytest.mark.parametrize(("value", "got"), [(123, "number"), (False, "boolean"), ({}, "object")])
def test_event_id_not_a_string(value, got):
    assert problems(body(event_id=value)) == [msg("event_id", model.MSG_STRING, got=got)]


# -- predefined event types -----------------------------------------------------------------------


def predefined(event_type: str, **metrics: Any) -> dict[str, Any]:
    return body(event_type=event_type, metrics=metrics)


@pytest.mark.parametrize("vote", [-1, 0, 1, 0.5, -0.25, 1.0])
def test_vote_in_range(vote):
    assert problems(predefined("thumbs_up_down", vote=vote)) == []


@pytest.mark.parametrize(("vote", "shown"), [(1.5, "1.5"), (-2, "-2"), (5, "5"), (2.0, "2")])
def test_vote_out_of_range(vote, shown):
    assert problems(predefined("thumbs_up_down", vote=vote)) == [
        range_msg("vote", "thumbs_up_down", "a number from -1 to 1", shown)
    ]


def test_vote_feedback_detail_may_be_string_or_null():
    for feedback in ("helpful", None):
        b = predefined("thumbs_up_down", vote=1)
        b["event_details"] = {"feedback": feedback}
        assert problems(b) == []


@pytest.mark.parametrize("length", [0.5, 1, 10_000])
def test_text_length_in_range(length):
    assert problems(predefined("selected_text", text_length=length)) == []


@pytest.mark.parametrize(("length", "shown"), [(0, "0"), (-3, "-3"), (-0.5, "-0.5")])
def test_text_length_out_of_range(length, shown):
    assert problems(predefined("selected_text", text_length=length)) == [
        range_msg("text_length", "selected_text", "a number greater than 0", shown)
    ]


@pytest.mark.parametrize("finished", [0, 1, 0.5])
def test_finished_in_range(finished):
    assert problems(predefined("waited_to_finish", finished=finished)) == []


@pytest.mark.parametrize(("finished", "shown"), [(2, "2"), (-1, "-1"), (1.01, "1.01")])
def test_finished_out_of_range(finished, shown):
    assert problems(predefined("waited_to_finish", finished=finished)) == [
        range_msg("finished", "waited_to_finish", "a number from 0 to 1", shown)
    ]


@pytest.mark.parametrize(
    ("event_type", "metric", "words"),
    [
        ("thumbs_up_down", "vote", "a number from -1 to 1"),
        ("selected_text", "text_length", "a number greater than 0"),
        ("waited_to_finish", "finished", "a number from 0 to 1"),
    ],
)
def test_missing_required_metric(event_type, metric, words):
    assert problems(predefined(event_type, other=1)) == [missing_msg(metric, event_type, words)]


def test_predefined_metric_of_wrong_type_is_reported_once():
    """A string vote breaks the number rule; the range rule has nothing to add."""
    assert problems(predefined("thumbs_up_down", vote="1")) == [
        msg("metrics.vote", model.MSG_METRIC_NUMBER, got="string")
    ]


def test_predefined_metric_null_is_both_not_a_number_and_missing():
    assert problems(predefined("thumbs_up_down", vote=None)) == [
        msg("metrics.vote", model.MSG_METRIC_NUMBER, got="null"),
        missing_msg("vote", "thumbs_up_down", "a number from -1 to 1"),
    ]


@pytest.mark.parametrize("event_type", ["Thumbs_Up_Down", "thumbs_up_down ", "thumbs"])
def test_predefined_rule_needs_the_exact_type(event_type):
    assert problems(predefined(event_type, vote=5)) == []


def test_predefined_rule_skipped_when_metrics_not_an_object():
    assert problems(body(event_type="thumbs_up_down", metrics=[1])) == [
        msg("metrics", model.MSG_METRICS_OBJECT, got="array")
    ]


# -- messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (body(trace_id=...), "trace_id"),
        (body(event_type=7), "event_type"),
        (body(metrics="x"), "metrics"),
        (body(metrics={"m": "1"}), "metrics.m"),
        (body(event_details=1), "event_details"),
        (body(event_details={"d": 1}), "event_details.d"),
        (body(timestamp="now"), "timestamp"),
        (body(timestamp=1e20), "timestamp"),
        (body(event_id=1), "event_id"),
        (predefined("thumbs_up_down", vote=3), "metrics.vote"),
        (predefined("selected_text"), "metrics.text_length"),
    ],
)
def test_messages_name_the_field(bad, field):
    (problem,) = validate_body(bad)
    assert problem.field == field
    assert str(problem).startswith(field + ": ")
    assert problem.message


@pytest.mark.parametrize(("value", "got"), [([], "array"), ("x", "string"), (None, "null")])
def test_body_not_an_object(value, got):
    (problem,) = validate_body(value)
    assert problem.field == "body"
    assert problem.message.endswith(f"got {got}")


def test_problems_come_in_field_order_and_join_with_semicolons():
    b = {"event_type": 1, "metrics": {"a": "x"}, "event_details": {"d": 2}, "timestamp": "t"}
    assert model.reason(validate_body(b)) == "; ".join(
        [
            msg("trace_id", model.MSG_REQUIRED),
            msg("event_type", model.MSG_STRING, got="number"),
            msg("metrics.a", model.MSG_METRIC_NUMBER, got="string"),
            msg("event_details.d", model.MSG_DETAIL_STRING, got="number"),
            msg("timestamp", model.MSG_TIMESTAMP, got="string"),
        ]
    )


def test_reason_of_no_problems_is_empty():
    assert model.reason([]) == ""


# -- validate_body and the SQL rules agree --------------------------------------------------------

SEED = 20_251_127
PREDEFINED = {rule.event_type: rule.metric for rule in model.PREDEFINED_RULES.values()}
METRIC_KEYS = ["score", "amount", "vote", "text_length", "finished", "ключ", 'say "hi"', "a.b"]
DETAIL_KEYS = ["user_id", "feedback", "note", "é", "back\\slash"]
UNKNOWN_KEYS = ["thread_id", "user_id", "project_id", "customer"]
FIELDS = list(model.BODY_FIELDS)

# Values any field may take. Left out on purpose: non-finite numbers (not JSON) and the legacy
# [{key, value}] list form (ingest reads that by design; validate_body follows the API).
POOL: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    -2,
    0.5,
    1.5,
    -0.5,
    1e-07,
    -1e-07,
    17.5,
    1e20,
    -(2**63),
    2**63,
    2**64,
    "",
    "x",
    "17.5",
    "thumbs_up_down",
    [1, "a"],
    {},
    {"a": 1},
    {"k": "v"},
    {"n": None},
    MAX_TIMESTAMP_MS,
    MAX_TIMESTAMP_MS + 1,
    MIN_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS - 1,
    1_717_200_001_234,
    1_717_200_001_234.5,
]

FIXED_BODIES: list[dict[str, Any]] = [
    BASE,
    body(metrics={}),
    body(trace_id=""),
    body(event_details={"a": "b", "c": None}, timestamp=1_717_200_001_234, event_id="e1"),
    body(event_details=None, timestamp=None, event_id=None),
    body(thread_id="t", user_id=3),
    predefined("thumbs_up_down", vote=-1),
    predefined("thumbs_up_down", vote=0),
    predefined("thumbs_up_down", vote=1),
    predefined("thumbs_up_down", vote=1.5),
    predefined("thumbs_up_down", vote=-2),
    predefined("thumbs_up_down", vote="1"),
    predefined("thumbs_up_down", vote=True),
    predefined("thumbs_up_down"),
    predefined("selected_text", text_length=0),
    predefined("selected_text", text_length=0.5),
    predefined("selected_text", text_length=-0.0),
    predefined("selected_text", text_length=1e20),
    predefined("selected_text"),
    predefined("waited_to_finish", finished=0),
    predefined("waited_to_finish", finished=1),
    predefined("waited_to_finish", finished=2),
    predefined("waited_to_finish", finished=0.999),
    predefined("waited_to_finish"),
    body(trace_id=...),
    body(trace_id=None),
    body(trace_id=1),
    body(event_type=True),
    body(metrics=...),
    body(metrics=None),
    body(metrics=[1, 2]),
    body(metrics="17.5"),
    body(metrics={"amount": "17.5"}),
    body(metrics={"a": True, "c": [], "d": {}}),
    body(event_details="x"),
    body(event_details=5),
    body(event_details={"product_id": 123}),
    body(event_details={"a": True, "b": [], "c": {}}),
    body(timestamp="1717200001234"),
    body(timestamp=False),
    body(timestamp=MAX_TIMESTAMP_MS + 1),
    body(timestamp=MIN_TIMESTAMP_MS - 1),
    body(event_id=5),
    {"event_type": "e"},
    {"trace_id": None, "event_type": "e", "metrics": None, "event_details": None},
    {"event_type": 1, "metrics": {"a": "x"}, "event_details": {"d": 2}, "timestamp": "t"},
]


def _random_number(rng: random.Random) -> float | int:
    return rng.choice(
        [
            rng.uniform(-3, 3),
            round(rng.uniform(-3, 3), 2),
            rng.randint(-3, 3),
            rng.uniform(-1e-4, 1e-4),
            rng.uniform(0, 1),
        ]
    )


def _mutate(b: dict[str, Any], rng: random.Random) -> None:
    kind = rng.randrange(8)
    if kind == 0:
        name = rng.choice(FIELDS)
        b.pop(name, None)
    elif kind == 1:
        name = rng.choice(FIELDS)
        value = rng.choice(POOL)
        if name in ("metrics", "event_details") and value == []:
            value = [1, "a"]
        b[name] = copy.deepcopy(value)
    elif kind == 2:
        b["event_type"] = rng.choice(list(PREDEFINED))
    elif kind == 3:
        if not isinstance(b.get("metrics"), dict):
            b["metrics"] = {}
        value = copy.deepcopy(rng.choice(POOL))
        b["metrics"][rng.choice(METRIC_KEYS)] = "null" if value is None else value
    elif kind == 4:
        if not isinstance(b.get("event_details"), dict):
            b["event_details"] = {}
        b["event_details"][rng.choice(DETAIL_KEYS)] = copy.deepcopy(rng.choice(POOL))
    elif kind == 5:
        b[rng.choice(UNKNOWN_KEYS)] = copy.deepcopy(rng.choice(POOL))
    else:
        event_type = rng.choice(list(PREDEFINED))
        b["event_type"] = event_type
        if not isinstance(b.get("metrics"), dict):
            b["metrics"] = {}
        b["metrics"][PREDEFINED[event_type]] = _random_number(rng)


def _generate_bodies(n: int = 400) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    bodies = [copy.deepcopy(b) for b in FIXED_BODIES]
    starts = [b for b in FIXED_BODIES if not validate_body(b)]
    while len(bodies) < n:
        b = copy.deepcopy(rng.choice(starts))
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            _mutate(b, rng)
        bodies.append(b)
    return bodies


@pytest.fixture(scope="module")
def generated() -> list[dict[str, Any]]:
    """A few hundred good and bad bodies: a fixed list plus seeded random mutations."""
    return _generate_bodies()


@pytest.fixture(scope="module")
def generated_file(generated, tmp_path_factory) -> Path:
    """The generated bodies as one JSONL file."""
    path = tmp_path_factory.mktemp("model") / "bodies.jsonl"
    path.write_text("".join(json.dumps(b, ensure_ascii=False) + "\n" for b in generated))
    return path


@pytest.fixture(scope="module")
def generated_store(generated_file) -> Iterator[Store]:
    """generated_file loaded as a user would (the fast path on), for tests that only read it."""
    with Store(":memory:") as s:
        assert load_files(s, [generated_file]).files[0].error is None
        yield s


@pytest.fixture(scope="module")
def ingested(generated_store) -> dict[int, list[str]]:
    """The generated bodies loaded from one JSONL file: line -> its reject reasons."""
    out: dict[int, list[str]] = {}
    for line, reason in generated_store.rows("SELECT line, reason FROM rejects"):
        out.setdefault(int(line), []).append(reason)
    return out


def test_generated_set_is_broad(generated):
    bad = [b for b in generated if validate_body(b)]
    fields = {p.field.split(".")[0] for b in bad for p in validate_body(b)}
    assert len(generated) >= 300
    assert len(bad) >= 150
    assert len(generated) - len(bad) >= 50
    assert fields == set(model.BODY_FIELDS)


def test_sql_problems_gives_the_same_reason_as_validate_body(generated, ingested):
    """A file and a form reject the same event for the same reason, worded the same way."""
    mismatches = []
    for line, b in enumerate(generated, start=1):
        expected = [model.reason(validate_body(b))] if validate_body(b) else []
        if ingested.get(line, []) != expected:
            mismatches.append((line, b, expected, ingested.get(line)))
    assert mismatches == []


def test_sql_quick_valid_never_passes_a_rejected_body_via_ingest(generated, ingested):
    missed = [b for line, b in enumerate(generated, 1) if validate_body(b) and line not in ingested]
    assert missed == []


def test_sql_quick_valid_never_passes_a_rejected_body_directly(generated):
    """sql_quick_valid evaluated on its own over the normalised columns."""
    spec = json.dumps({name: "JSON" for name in model.BODY_FIELDS})
    con = duckdb.connect()
    con.execute("CREATE TABLE b (i INTEGER, raw VARCHAR)")
    con.executemany("INSERT INTO b VALUES (?, ?)", list(enumerate(map(json.dumps, generated))))
    rows = con.execute(
        f"""
        SELECT i, {model.sql_quick_valid()} AS quick FROM (
            SELECT i, f.trace_id AS j_trace_id, f.event_type AS j_event_type,
                   f.metrics AS j_metrics, f.event_details AS j_details,
                   f.timestamp AS j_timestamp, f.event_id AS j_event_id
            FROM (SELECT i, json_transform(raw, '{spec}') AS f FROM b)
        )
        """  # noqa: S608 (trusted constant SQL from model.py)
    ).fetchall()
    con.close()
    wrongly_quick = [generated[i] for i, quick in rows if quick and validate_body(generated[i])]
    assert len(rows) == len(generated)
    assert wrongly_quick == []
    assert sum(1 for _, quick in rows if quick) >= 20  # the fast path is actually taken


# -- edge cases where the two rule sets part ways (bugs) ------------------------------------------


def _load_lines(tmp_path: Path, lines: list[str]):
    path = tmp_path / "edge.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    with Store(":memory:") as s:
        result = load_files(s, [path]).files[0]
        reasons = [r for (r,) in s.rows("SELECT reason FROM rejects ORDER BY line")]
        loaded = s.event_count()
    return result, reasons, loaded


def test_huge_predefined_metric_is_a_row_reject(tmp_path):
    good = json.dumps(BASE)
    bad = '{"trace_id":"t","event_type":"thumbs_up_down","metrics":{"vote":1e39}}'
    result, reasons, loaded = _load_lines(tmp_path, [good, bad])
    assert result.error is None
    assert loaded == 1
    assert len(reasons) == 1
    assert reasons[0].startswith("metrics.vote: must be a number from -1 to 1 for thumbs_up_down")


def test_overflowing_metric_number_is_treated_alike(tmp_path):
    line = '{"trace_id":"t","event_type":"x","metrics":{"a":1e400}}'
    expected = model.reason(validate_body(json.loads(line)))
    result, reasons, loaded = _load_lines(tmp_path, [line])
    assert expected  # validate_body rejects it
    assert reasons == [expected]
    assert loaded == 0


def test_overflowing_timestamp_gets_the_same_reason(tmp_path):
    line = '{"trace_id":"t","event_type":"x","metrics":{},"timestamp":1e400}'
    expected = model.reason(validate_body(json.loads(line)))
    _, reasons, _ = _load_lines(tmp_path, [line])
    assert reasons == [expected]


def test_large_integer_in_range_message_is_printed_alike(tmp_path):
    b = predefined("thumbs_up_down", vote=2**53 + 1)
    _, reasons, _ = _load_lines(tmp_path, [json.dumps(b)])
    assert reasons == [model.reason(validate_body(b))]


@pytest.mark.parametrize(
    "bad", [body(event_type=...), body(event_type=None), {}, {"trace_id": "t", "metrics": {}}]
)
def test_missing_event_type_is_rejected_by_ingest(tmp_path, bad):
    _, reasons, loaded = _load_lines(tmp_path, [json.dumps(BASE), json.dumps(bad)])
    assert loaded == 1
    assert reasons == [model.reason(validate_body(bad))]


@pytest.mark.parametrize(
    "bad",
    [
        body(metrics={"score": 1, "m": None}),
        predefined("thumbs_up_down", vote=None),
        body(metrics={"a": True, "b": None}),
    ],
)
def test_null_metric_value_is_rejected_by_ingest(tmp_path, bad):
    _, reasons, loaded = _load_lines(tmp_path, [json.dumps(BASE), json.dumps(bad)])
    assert loaded == 1
    assert reasons == [model.reason(validate_body(bad))]


def test_fast_and_full_paths_store_the_same_events(generated_file, generated_store):
    """The clean events the quick check lets through are stored as the full check stores them."""
    events = (
        "SELECT source_line, event_key, event_id, trace_id, event_type, timestamp,"
        " metrics, event_details FROM events ORDER BY source_line"
    )
    stored = {True: generated_store.rows(events)}  # loaded with the fast path on
    with Store(":memory:") as s:
        load_files(s, [generated_file], fast_path=False)
        stored[False] = s.rows(events)
    assert stored[True] == stored[False]
    assert len(stored[True]) >= 50


# -- the typed rendering (Parquet's typed path) and the JSON one agree -----------------------------

NAN, INF = math.nan, math.inf
# (trace_id, event_type, metrics, timestamp) as a typed file holds them: a None metric entry is
# absent, metrics None is no metrics, a None timestamp is none.
TYPED_CASES: list[tuple[Any, Any, Any, Any]] = [
    ("t", "x", {"a": 1.0}, None),
    ("", "x", {}, 0.0),  # the empty trace_id is a string
    (None, "x", {}, None),
    ("t", None, {}, None),
    ("t", "x", None, None),
    (None, None, None, None),
    ("t", "x", {"a": NAN}, None),
    ("t", "x", {"a": INF}, None),
    ("t", "x", {"a": 1.0, "b": -INF}, None),
    ("t", "x", {"a": None}, None),  # absent, so valid
    ("t", "x", {"a": None, "b": NAN}, None),
    ("t", "x", {"a": 1e308, "b": 1e308}, None),  # finite, though their sum is not
    ("t", "x", {"a": -0.0, "b": 5e-324, "c": 2.0**64}, None),
    *[
        ("t", "x", {}, ts)
        for ts in (
            MIN_TIMESTAMP_MS,
            MAX_TIMESTAMP_MS,
            MIN_TIMESTAMP_MS - 1,
            MAX_TIMESTAMP_MS + 1,
            MAX_TIMESTAMP_MS + 0.5,
            -1.0,
            1.5,
            -1e300,
            1e300,
            NAN,
            INF,
            -INF,
        )
    ],
    *[
        ("t", rule.event_type, metrics, None)
        for rule in model.PREDEFINED_RULES.values()
        for metrics in (
            {rule.metric: rule.example},
            {rule.metric: float(rule.low)},
            {rule.metric: float(rule.high) if rule.high is not None else 1e300},
            {rule.metric: float(rule.low) - 0.5},
            {rule.metric: (rule.high or 0) + 0.5},
            {rule.metric: None},
            {rule.metric: NAN},
            {"other": 1.0},
            {},
        )
    ],
]


def _typed_body(case: tuple[Any, Any, Any, Any]) -> dict[str, Any]:
    """A typed case as the body LangWatch would get: absent fields and entries left out."""
    trace_id, event_type, metrics, ts = case
    out = {"trace_id": trace_id, "event_type": event_type, "timestamp": ts}
    if metrics is not None:
        out["metrics"] = {k: v for k, v in metrics.items() if v is not None}
    return {k: v for k, v in out.items() if v is not None}


def test_the_typed_check_agrees_with_validate_body_and_the_json_check(tmp_path):
    """model.sql_typed_valid over typed values passes exactly the events validate_body passes,
    and the JSON path (the same file with the fast path off) rejects exactly the others."""
    import pyarrow as pa
    from ingest_helpers import write_parquet

    from eventlens.ingest.sql import present_entries

    trace, etype, metrics, ts = (list(col) for col in zip(*TYPED_CASES, strict=True))
    path = write_parquet(
        tmp_path / "typed.parquet",
        {
            "trace_id": (pa.string(), trace),
            "event_type": (pa.string(), etype),
            "metrics": (pa.map_(pa.string(), pa.float64()), metrics),
            "timestamp": (pa.float64(), ts),
        },
    )
    check = model.sql_typed_valid(
        trace_id="trace_id", event_type="event_type", metrics="m", timestamp="timestamp"
    )
    with Store(":memory:") as s:
        typed = s.rows(
            f"SELECT coalesce({check}, false) FROM (SELECT *, {present_entries('metrics')} AS m"  # noqa: S608
            " FROM read_parquet(?, file_row_number=true) ORDER BY file_row_number)",
            [str(path)],
        )
        load_files(s, [path], fast_path=False)
        rejected = {int(line) for (line,) in s.rows("SELECT line FROM rejects")}
    by_model = [not validate_body(_typed_body(case)) for case in TYPED_CASES]
    by_json = [row not in rejected for row in range(1, len(TYPED_CASES) + 1)]
    assert [ok for (ok,) in typed] == by_model == by_json
    assert 10 < sum(by_model) < len(TYPED_CASES) - 10
