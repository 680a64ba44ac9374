"""The LangWatch custom event and its validation rules, in one place.

The rules mirror LangWatch's `trackEventRESTParamsValidatorSchema` and its predefined-event schema
(see shared/LANGWATCH_API.md). They exist twice in executable form, generated from the same data:
`validate_body` checks one Python dict (form, client, sandbox, replay) and `sql_problems` builds
the equivalent DuckDB expression for ingest, so a file and a form reject the same event for the
same reason, worded the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REQUIRED_FIELDS = ("trace_id", "event_type", "metrics")
OPTIONAL_FIELDS = ("event_details", "timestamp", "event_id")
BODY_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

# Largest epoch-ms value DuckDB's TIMESTAMPTZ holds comfortably (year 9999).
MAX_TIMESTAMP_MS = 253_402_300_799_999
MIN_TIMESTAMP_MS = -62_135_596_800_000  # year 1


@dataclass(frozen=True)
class MetricRule:
    """A predefined event type's required metric and its allowed range."""

    event_type: str
    metric: str
    low: float
    high: float | None
    low_inclusive: bool
    detail: str | None
    meaning: str
    # Values that pass the rule, offered by the Submit form for a QA person to send as they are.
    example: float
    detail_example: str | None = None

    @property
    def range_text(self) -> str:
        """The allowed range in words, e.g. 'a number from -1 to 1'."""
        if self.high is None:
            op = "at least" if self.low_inclusive else "greater than"
            return f"a number {op} {_num(self.low)}"
        return f"a number from {_num(self.low)} to {_num(self.high)}"

    def accepts(self, value: float) -> bool:
        """Whether a metric value is inside the allowed range."""
        above = value >= self.low if self.low_inclusive else value > self.low
        return above and (self.high is None or value <= self.high)


PREDEFINED_RULES: dict[str, MetricRule] = {
    r.event_type: r
    for r in (
        MetricRule(
            "thumbs_up_down",
            "vote",
            -1,
            1,
            True,
            "feedback",
            "a user's vote: 1 up, -1 down (0 undoes a vote)",
            example=1,
            detail_example="great answer",
        ),
        MetricRule(
            "selected_text",
            "text_length",
            0,
            None,
            False,
            "selected_text",
            "the user selected some output text",
            example=27,
            detail_example="the words the user selected",
        ),
        MetricRule(
            "waited_to_finish",
            "finished",
            0,
            1,
            True,
            None,
            "0 when output starts streaming, 1 when the user waited for it to finish",
            example=1,
        ),
    )
}


@dataclass(frozen=True)
class Problem:
    """One failed rule: the field it concerns and what is wrong, in words."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _num(value: float) -> str:
    """A number as DuckDB prints a DOUBLE, without a pointless '.0' below 1e15."""
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def json_type_name(value: Any) -> str:
    """The JSON type name of a Python value, as messages print it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number" if math.isfinite(value) else "infinity"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The messages below are shared word for word with sql_problems.
MSG_REQUIRED = "is required"
MSG_METRICS_REQUIRED = "is required (an object of numbers; {} when there are none)"
MSG_STRING = "must be a string, got {got}"
MSG_METRICS_OBJECT = "must be an object of numbers, got {got}"
MSG_METRIC_NUMBER = "must be a number, got {got}"
MSG_DETAILS_OBJECT = "must be an object of strings, got {got}"
MSG_DETAIL_STRING = "must be a string or null, got {got}"
MSG_TIMESTAMP = "must be a number (epoch milliseconds), got {got}"
MSG_TIMESTAMP_RANGE = "is outside the years 1 to 9999 (expected epoch milliseconds)"
MSG_PREDEFINED_MISSING = "is required for {type} ({range})"
MSG_PREDEFINED_RANGE = "must be {range} for {type}, got {value}"


def validate_body(body: Any) -> list[Problem]:
    """Every rule a track_event request body breaks; an empty list means LangWatch accepts it."""
    if not isinstance(body, dict):
        return [Problem("body", f"must be a JSON object, got {json_type_name(body)}")]
    problems: list[Problem] = []
    for name in ("trace_id", "event_type"):
        if name not in body or body[name] is None:
            problems.append(Problem(name, MSG_REQUIRED))
        elif not isinstance(body[name], str):
            problems.append(Problem(name, MSG_STRING.format(got=json_type_name(body[name]))))
    metrics = body.get("metrics")
    if metrics is None:
        problems.append(Problem("metrics", MSG_METRICS_REQUIRED))
    elif not isinstance(metrics, dict):
        problems.append(Problem("metrics", MSG_METRICS_OBJECT.format(got=json_type_name(metrics))))
    else:
        for key, value in metrics.items():
            if not _is_number(value):
                got = json_type_name(value)
                problems.append(Problem(f"metrics.{key}", MSG_METRIC_NUMBER.format(got=got)))
    details = body.get("event_details")
    if details is not None and not isinstance(details, dict):
        got = json_type_name(details)
        problems.append(Problem("event_details", MSG_DETAILS_OBJECT.format(got=got)))
    elif isinstance(details, dict):
        for key, value in details.items():
            if value is not None and not isinstance(value, str):
                got = json_type_name(value)
                problems.append(Problem(f"event_details.{key}", MSG_DETAIL_STRING.format(got=got)))
    timestamp = body.get("timestamp")
    if timestamp is not None:
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            got = json_type_name(timestamp)
            problems.append(Problem("timestamp", MSG_TIMESTAMP.format(got=got)))
        elif not MIN_TIMESTAMP_MS <= timestamp <= MAX_TIMESTAMP_MS:  # infinity too
            problems.append(Problem("timestamp", MSG_TIMESTAMP_RANGE))
    event_id = body.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        problems.append(Problem("event_id", MSG_STRING.format(got=json_type_name(event_id))))
    problems.extend(_predefined_problems(body))
    return problems


def _predefined_problems(body: dict[str, Any]) -> list[Problem]:
    event_type = body.get("event_type")
    rule = PREDEFINED_RULES.get(event_type) if isinstance(event_type, str) else None
    metrics = body.get("metrics")
    if rule is None or not isinstance(metrics, dict):
        return []
    field = f"metrics.{rule.metric}"
    value = metrics.get(rule.metric)
    if value is None:
        msg = MSG_PREDEFINED_MISSING.format(type=rule.event_type, range=rule.range_text)
        return [Problem(field, msg)]
    if _is_number(value) and not rule.accepts(value):
        msg = MSG_PREDEFINED_RANGE.format(
            range=rule.range_text, type=rule.event_type, value=_num(value)
        )
        return [Problem(field, msg)]
    return []


def reason(problems: list[Problem]) -> str:
    """All problems as one sentence for a rejects row or an error message."""
    return "; ".join(str(p) for p in problems)


# ---------------------------------------------------------------------------------------------
# The same rules as DuckDB SQL, over a normalised record (ingest/sql.py, events_sql):
#   j_trace_id, j_event_type, j_metrics, j_details, j_timestamp, j_event_id: JSON text or NULL
#   event_type: VARCHAR (NULL unless j_event_type is a string)
#   metric_entries: STRUCT(key VARCHAR, value JSON)[]; detail_entries: likewise
#   sql_rule_values' columns: each predefined type's metric value
# ---------------------------------------------------------------------------------------------

# A JSON null inside a MAP(VARCHAR, JSON) arrives as SQL NULL, hence the coalesce.
_SQL_TYPE_NAME = (
    "CASE coalesce(json_type({x}), 'NULL') WHEN 'VARCHAR' THEN 'string' "
    "WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' WHEN 'BOOLEAN' THEN 'boolean' "
    "WHEN 'NULL' THEN 'null' WHEN 'DOUBLE' THEN "
    "CASE WHEN isfinite(({x})::DOUBLE) THEN 'number' ELSE 'infinity' END ELSE 'number' END"
)
# The json_type() names of a JSON number.
SQL_JSON_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"


def _sql_str(text: str) -> str:
    """A SQL string literal of trusted, constant text (rule messages, never user data)."""
    return "'" + text.replace("'", "''") + "'"


def _sql_msg(field_sql: str, template: str, got_sql: str | None = None) -> str:
    """SQL that renders `field: message`, filling {got} from a SQL expression."""
    if got_sql is None:
        return f"{field_sql} || {_sql_str(': ' + template)}"
    before, after = template.split("{got}")
    return f"{field_sql} || {_sql_str(': ' + before)} || {got_sql} || {_sql_str(after)}"


def _json_is_null(x: str) -> str:
    return f"({x} IS NULL OR json_type({x}) = 'NULL')"


def sql_problems() -> str:
    """A DuckDB expression giving the same reasons as validate_body, or NULL when valid.

    It reads, beside the record's columns, the predefined types' metric values as the columns
    sql_rule_values names (ingest computes them in a layer below).
    """
    tn = _SQL_TYPE_NAME.format
    parts: list[str] = []
    for name, col in (("trace_id", "j_trace_id"), ("event_type", "j_event_type")):
        parts.append(
            f"CASE WHEN {_json_is_null(col)} THEN {_sql_str(name + ': ' + MSG_REQUIRED)} "
            f"WHEN json_type({col}) <> 'VARCHAR' THEN "
            f"{_sql_msg(_sql_str(name), MSG_STRING, tn(x=col))} END"
        )
    parts.append(
        f"CASE WHEN {_json_is_null('j_metrics')} THEN "
        f"{_sql_str('metrics: ' + MSG_METRICS_REQUIRED)} "
        f"WHEN json_type(j_metrics) NOT IN ('OBJECT', 'ARRAY') OR metric_entries IS NULL THEN "
        f"{_sql_msg(_sql_str('metrics'), MSG_METRICS_OBJECT, tn(x='j_metrics'))} END"
    )
    parts.append(
        _sql_each_entry(
            "metric_entries",
            f"CASE WHEN coalesce(json_type(e.value), 'NULL') NOT IN {SQL_JSON_NUMBER_TYPES} "
            "THEN true ELSE NOT isfinite(e.value::DOUBLE) END",
            "'metrics.' || e.key",
            MSG_METRIC_NUMBER,
        )
    )
    parts.append(
        f"CASE WHEN NOT {_json_is_null('j_details')} AND "
        "(json_type(j_details) NOT IN ('OBJECT', 'ARRAY') OR detail_entries IS NULL) THEN "
        f"{_sql_msg(_sql_str('event_details'), MSG_DETAILS_OBJECT, tn(x='j_details'))} END"
    )
    parts.append(
        _sql_each_entry(
            "detail_entries",
            "coalesce(json_type(e.value), 'NULL') NOT IN ('VARCHAR', 'NULL')",
            "'event_details.' || e.key",
            MSG_DETAIL_STRING,
        )
    )
    parts.append(
        f"CASE WHEN NOT {_json_is_null('j_timestamp')} AND "
        f"json_type(j_timestamp) NOT IN {SQL_JSON_NUMBER_TYPES} THEN "
        f"{_sql_msg(_sql_str('timestamp'), MSG_TIMESTAMP, tn(x='j_timestamp'))} "
        f"WHEN json_type(j_timestamp) IN {SQL_JSON_NUMBER_TYPES} AND "
        f"NOT (j_timestamp::DOUBLE BETWEEN {MIN_TIMESTAMP_MS} AND {MAX_TIMESTAMP_MS}) THEN "
        f"{_sql_str('timestamp: ' + MSG_TIMESTAMP_RANGE)} END"
    )
    parts.append(
        f"CASE WHEN NOT {_json_is_null('j_event_id')} AND json_type(j_event_id) <> 'VARCHAR' "
        f"THEN {_sql_msg(_sql_str('event_id'), MSG_STRING, tn(x='j_event_id'))} END"
    )
    parts.extend(
        _sql_predefined(rule, _sql_rule_value_column(rule)) for rule in PREDEFINED_RULES.values()
    )
    # The reasons joined, NULL for none: string_agg skips NULLs, as concat_ws does, and needs
    # no NULLIF(..., ''), a macro repeating its argument that made DuckDB bind every rule
    # twice (~10 ms of planning a statement that checks events).
    return "list_aggr([" + ", ".join(parts) + "], 'string_agg', '; ')"


def sql_rule_values() -> dict[str, str]:
    """The columns sql_problems reads beside the record's, by name: each predefined type's
    metric value (JSON, NULL when absent). A rule reads its column only for events of its
    type, so the value is found for those alone, and once rather than in each of its ~9 uses
    (~7 ms less for DuckDB to bind)."""
    return {
        _sql_rule_value_column(rule): (
            f"CASE WHEN event_type = {_sql_str(rule.event_type)} THEN {_sql_metric_value(rule)} END"
        )
        for rule in PREDEFINED_RULES.values()
    }


def _sql_each_entry(entries: str, bad: str, field_sql: str, template: str) -> str:
    """SQL naming every entry of a key/value list that breaks a rule, or NULL when none does."""
    message = _sql_msg(field_sql, template, _SQL_TYPE_NAME.format(x="e.value"))
    # string_agg skips the NULLs of the entries that pass and gives NULL for none. Not
    # NULLIF(array_to_string(...), ''): both are macros repeating their argument, so DuckDB
    # bound the lambdas four times (~5 ms of planning for the two rules using this).
    return (
        f"list_aggr(list_transform({entries}, "
        f"lambda e: CASE WHEN {bad} THEN {message} END), 'string_agg', '; ')"
    )


def _sql_rule_value_column(rule: MetricRule) -> str:
    return f"_rule_value_{rule.event_type}"


def _sql_metric_value(rule: MetricRule) -> str:
    """A predefined type's metric value among metric_entries (JSON, NULL when absent)."""
    return (
        "list_extract(list_transform(list_filter(metric_entries, "
        f"lambda e: e.key = {_sql_str(rule.metric)}), lambda e: e.value), 1)"
    )


def _sql_predefined(rule: MetricRule, v: str) -> str:
    """SQL for one predefined type's metric rule, worded as _predefined_problems words it;
    `v` is the column holding the metric's value (sql_rule_values)."""
    in_range = _sql_in_range(rule, f"{v}::DOUBLE")
    field = f"metrics.{rule.metric}"
    missing = MSG_PREDEFINED_MISSING.format(type=rule.event_type, range=rule.range_text)
    before, after = MSG_PREDEFINED_RANGE.format(
        range=rule.range_text, type=rule.event_type, value="\x00"
    ).split("\x00")
    # Print the offending number as _num does: integers without '.0'.
    num_text = (
        f"CASE WHEN {v}::DOUBLE = trunc({v}::DOUBLE) AND abs({v}::DOUBLE) < 1e15 "
        f"THEN ({v}::DOUBLE)::BIGINT::VARCHAR ELSE {v}::DOUBLE::VARCHAR END"
    )
    return (
        f"CASE WHEN event_type = {_sql_str(rule.event_type)} AND metric_entries IS NOT NULL THEN "
        f"CASE WHEN {v} IS NULL OR json_type({v}) = 'NULL' "
        f"THEN {_sql_str(field + ': ' + missing)} "
        f"WHEN json_type({v}) IN {SQL_JSON_NUMBER_TYPES} AND NOT ({in_range}) THEN "
        f"{_sql_str(field + ': ' + before)} || {num_text} || {_sql_str(after)} END END"
    )


# Whole-value patterns for the quick check, over the JSON text json_transform hands back.
# RE2 runs them in linear time. A number here has at most 200 integer digits and a two-digit
# exponent, so it is always a finite double; anything longer takes the full check.
_RE_STRING = r'"(?:[^"\\]|\\.)*"'
_RE_NUMBER = r"-?(?:0|[1-9][0-9]{0,199})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?"


def _re_object_of(value: str) -> str:
    """A pattern for a JSON object whose every value matches `value`."""
    entry = rf"{_RE_STRING}\s*:\s*(?:{value})\s*"
    return rf"\{{\s*(?:{entry}(?:,\s*{entry})*)?\}}"


RE_METRICS_QUICK = _re_object_of(_RE_NUMBER)
RE_DETAILS_QUICK = _re_object_of(rf"{_RE_STRING}|null")


def sql_quick_valid() -> str:
    """A cheap DuckDB predicate: true only for events that sql_problems would pass.

    It reads JSON types from the first character of each field's JSON text and matches metrics
    and details against whole-object patterns, so the common, clean event skips the full check.
    Anything unusual (a predefined type out of range, the list form, an odd type) is left to
    sql_problems. A key given twice passes here; ingest builds that map last-key-wins.
    """
    number_start = "('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9')"

    def first(col: str) -> str:
        return f"left({col}::VARCHAR, 1)"

    def absent(col: str) -> str:
        return f"{col} IS NULL OR {col}::VARCHAR = 'null'"

    ts_range = f"TRY_CAST(j_timestamp AS DOUBLE) BETWEEN {MIN_TIMESTAMP_MS} AND {MAX_TIMESTAMP_MS}"
    return (
        f"({first('j_trace_id')} = '\"' AND {first('j_event_type')} = '\"' "
        f"AND {_sql_quick_predefined()} "
        f"AND regexp_full_match(j_metrics::VARCHAR, {_sql_str(RE_METRICS_QUICK)}) "
        f"AND ({absent('j_details')} "
        f"OR regexp_full_match(j_details::VARCHAR, {_sql_str(RE_DETAILS_QUICK)})) "
        f"AND ({absent('j_timestamp')} OR ({first('j_timestamp')} IN {number_start} "
        f"AND {ts_range})) "
        f"AND ({absent('j_event_id')} OR {first('j_event_id')} = '\"'))"
    )


def _sql_quick_predefined() -> str:
    """True when the event is not a predefined type, or its required metric is in range."""
    return _sql_predefined_in_range(
        "j_event_type::VARCHAR",
        lambda rule: _sql_str(_json_quote(rule.event_type)),
        lambda rule: (
            f"TRY_CAST(json_extract_string(j_metrics, {_sql_str('$.' + rule.metric)}) AS DOUBLE)"
        ),
    )


def _sql_predefined_in_range(
    event_type: str,
    type_sql: Callable[[MetricRule], str],
    value_sql: Callable[[MetricRule], str],
) -> str:
    """SQL true unless `event_type` is a predefined type whose metric (value_sql, a DOUBLE or
    NULL when absent) is absent or out of its range; type_sql is how a type's name compares."""
    whens = []
    for rule in PREDEFINED_RULES.values():
        check = _sql_in_range(rule, value_sql(rule))
        whens.append(f"WHEN {type_sql(rule)} THEN coalesce({check}, false)")
    return f"(CASE {event_type} {' '.join(whens)} ELSE true END)"


def _sql_in_range(rule: MetricRule, value: str) -> str:
    """SQL for MetricRule.accepts of a DOUBLE (NULL when it is NULL). BETWEEN when it can:
    DuckDB binds `value` once there, not twice."""
    if rule.high is not None and rule.low_inclusive:
        return f"{value} BETWEEN {rule.low} AND {rule.high}"
    check = f"{value} {'>=' if rule.low_inclusive else '>'} {rule.low}"
    return check if rule.high is None else f"{check} AND {value} <= {rule.high}"


def _json_quote(text: str) -> str:
    """A plain string as the JSON text json_transform hands back for it."""
    return json.dumps(text)


# ---------------------------------------------------------------------------------------------
# The same rules over typed values (ingest/typed.py: a Parquet file's own column types), where a
# type already settles what the JSON rendering checks value by value:
#   trace_id, event_type (and event_id): VARCHAR, NULL when absent; event_details: a map of
#   strings, which breaks no rule; metrics: MAP(VARCHAR, DOUBLE) holding only the entries
#   present (a null entry is absent), NULL when absent; timestamp: epoch ms as DOUBLE or NULL.
# ---------------------------------------------------------------------------------------------


def sql_typed_valid(*, trace_id: str, event_type: str, metrics: str, timestamp: str) -> str:
    """A DuckDB predicate over typed values: true exactly when validate_body passes the event
    they hold (NULL counts as false). The arguments are column names or expressions."""
    # REQUIRED_FIELDS: a typed field is either present with the right type or NULL.
    required = dict(zip(REQUIRED_FIELDS, (trace_id, event_type, metrics), strict=True))
    parts = [f"{col} IS NOT NULL" for col in required.values()]
    # A metric must be a finite number: a typed DOUBLE only fails when it is NaN or infinite.
    parts.append(f"len(list_filter(map_values({metrics}), lambda v: NOT isfinite(v))) = 0")
    parts.append(
        f"({timestamp} IS NULL OR {timestamp} BETWEEN {MIN_TIMESTAMP_MS} AND {MAX_TIMESTAMP_MS})"
    )
    parts.append(
        _sql_predefined_in_range(
            event_type,
            lambda rule: _sql_str(rule.event_type),
            lambda rule: f"{metrics}[{_sql_str(rule.metric)}]",
        )
    )
    return "(" + " AND ".join(parts) + ")"
