"""The sandbox's read routes: POST /api/traces/search and GET /api/traces/{trace_id} as LangWatch
answers them (app/api/traces/[[...route]]/app.v1.ts, server/traces/clickhouse-trace.service.ts,
server/traces/projection/ and server/traces/mappers/trace-summary.mapper.ts at 6ce6cbb33f), over
the events the sandbox holds, so "send events, pull them back" is a round trip.

Traces are the rows of `sandbox_traces` (written with their events by Sandbox.insert); a page
is one SQL query over them and one over the page's events. The logic is framework-free
(`parse_search`, `search`, `get_trace`, `handle_search`, `handle_get`); `routes()` wraps it for
Starlette, with the sandbox's faults in front.

Where the sandbox differs from LangWatch: one version per trace (a trace changed mid-scroll on
the updated axis leaves the scroll instead of staying at its old version), `filters`, `query`
and `format` are accepted and ignored, totalHits is exact on both axes, trace ids are matched
whole (no prefix lookup), and the trace objects carry no input, output or evaluations.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlens import model

if TYPE_CHECKING:
    from eventlens.sandbox import Sandbox

SEARCH_PATH = "/api/traces/search"
TRACE_PATH = "/api/traces/{trace_id}"
MAX_PAGE_SIZE = 1000  # larger page sizes are cut to this, as LangWatch does (no 422)
MAX_SELECTED_EVENTS = 1000  # per trace with `select`; the rest dropped silently
MAX_SPANS = 10_000  # per trace with includeSpans and on GET
SPAN_NAME = "langwatch.track_event"
DATASET = "sandbox"

# LangWatch's bodies (legacy envelope of /api/traces: server/api-key/auth-middleware.ts,
# server/api/validation.ts, app/api/middleware/error-handler.ts).
MISSING_KEY = {
    "error": "Unauthorized",
    "message": "Authentication required. Use Authorization: Basic base64(projectId:token),"
    " Authorization: Bearer <token>, or X-Auth-Token header.",
}
INVALID_KEY = {"error": "Unauthorized", "message": "Invalid credentials"}
NOT_FOUND = {"error": "Trace not found.", "message": "Trace not found."}
MALFORMED = {
    "error": "malformed_request",
    "message": "The request body could not be parsed.",
    "target": "json",
    "detail": "Malformed JSON in request body",
    "tips": [
        "The body could not be parsed at all — check for truncated JSON, a trailing comma, or a"
        " Content-Type that does not match what was sent"
    ],
    "fault": "customer",
}
VALIDATION_TIPS = [
    "Read `reasons` — each entry names the offending field in meta.field and what was expected"
    " in meta.expected",
    "Fix those fields and send the request again; retrying it unchanged will fail identically",
]
PAGE_OFFSET_GONE = (
    "pageOffset is no longer supported — offset pagination was removed. Use the scrollId"
    " returned by the previous response to fetch the next page."
)
# Hono reads a body as JSON only under a JSON content type; anything else validates as {}.
JSON_TYPE = re.compile(r"^application/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9\-]+=([^;]+))*$")


class ReadError(Exception):
    """A request LangWatch refuses: the status and body it answers with."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(status, body)
        self.status = status
        self.body = body


def violation(field: str, kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """One reason of a 422, as validation.ts words it (zod's issue code as `type`)."""
    return {"field": field, "type": kind, "message": message, **extra}


def validation_error(violations: Sequence[dict[str, Any]]) -> ReadError:
    """The 422 LangWatch answers when a body parsed but does not fit (RequestValidationError)."""
    return ReadError(
        422,
        {
            "error": "validation_error",
            "message": "The request body didn't match the expected shape.",
            "target": "json",
            "fields": [v["field"] for v in violations],
            "tips": VALIDATION_TIPS,
            "fault": "customer",
            "reasons": [
                {"code": "schema_failure", "kind": "schema_failure", "fault": "customer", "meta": v}
                for v in violations
            ],
        },
    )


# -- select: the projection catalog (server/traces/projection/catalog.ts) ---------------------


@dataclass(frozen=True)
class Column:
    """A resolved select path: its advertised type, its collection (None for trace-level), where
    its value goes (in the row, or in each element) and where it is read from."""

    path: str
    type: str
    collection: str | None
    out: tuple[str, ...]
    source: tuple[str, ...]


TRACE_SCALARS = {
    "trace_id": ("string", ("trace_id",)),
    "project_id": ("string", ("project_id",)),
    "started_at": ("number", ("timestamps", "started_at")),
    "inserted_at": ("number", ("timestamps", "inserted_at")),
    "updated_at": ("number", ("timestamps", "updated_at")),
    "input": ("string", ("input",)),
    "output": ("string", ("output",)),
}
TRACE_METRICS = {
    **dict.fromkeys(
        "first_token_ms total_time_ms prompt_tokens completion_tokens reasoning_tokens"
        " cache_read_input_tokens cache_creation_input_tokens cache_creation_5m_input_tokens"
        " cache_creation_1h_input_tokens context_size_tokens total_cost".split(),
        "number",
    ),
    "tokens_estimated": "boolean",
}
EVALUATION_FIELDS = {
    "name": "string",
    "score": "number",
    "passed": "boolean",
    "label": "string",
    "details": "string",
    "status": "string",
    "evaluator_id": "string",
    "type": "string",
    "is_guardrail": "boolean",
}
ANNOTATION_FIELDS = {
    "is_thumbs_up": "boolean",
    "comment": "string",
    "expected_output": "string",
    "created_at": "number",
    "scores": "json",
}
EVENT_FIELDS = {
    "type": ("string", ("event_type",)),
    "timestamp": ("number", ("timestamps", "started_at")),
    "metrics": ("json", ("metrics",)),
    "details": ("json", ("event_details",)),
}
FORBIDDEN_SEGMENTS = {"__proto__", "constructor", "prototype"}


def resolve_path(path: str) -> Column | None:
    """The column a select path names, or None when LangWatch does not know it."""
    if any(segment in FORBIDDEN_SEGMENTS for segment in path.split(".")):
        return None
    if path in TRACE_SCALARS:
        kind, source = TRACE_SCALARS[path]
        return Column(path, kind, None, (path,), source)
    root, _, rest = path.partition(".")
    if root == "metrics" and rest in TRACE_METRICS:
        return Column(path, TRACE_METRICS[rest], None, ("metrics", rest), ("metrics", rest))
    if root == "metadata" and rest:
        return Column(path, "json", None, ("metadata", rest), ("metadata", rest))
    if root == "evaluations" and rest in EVALUATION_FIELDS:
        return Column(path, EVALUATION_FIELDS[rest], "evaluations", (rest,), (rest,))
    if root == "annotations":
        if rest in ANNOTATION_FIELDS:
            return Column(path, ANNOTATION_FIELDS[rest], "annotations", (rest,), (rest,))
        if rest.startswith("scores.") and rest[7:]:
            return Column(path, "json", "annotations", ("scores", rest[7:]), ("scores", rest[7:]))
        return None
    if root == "events":
        if rest in EVENT_FIELDS:
            kind, source = EVENT_FIELDS[rest]
            return Column(path, kind, "events", (rest,), source)
        name, _, key = rest.partition(".")
        if name == "metrics" and key:
            return Column(path, "number", "events", ("metrics", key), ("metrics", key))
        if name == "details" and key:
            return Column(path, "string", "events", ("details", key), ("event_details", key))
    return None


def compile_select(paths: Sequence[str]) -> list[Column]:
    """The columns of a select list (repeats dropped, order kept); every unknown path at once
    in one 422, as the route answers it."""
    columns: list[Column] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            continue
        seen.add(path)
        column = resolve_path(path)
        if column is None:
            unknown.append(path)
        else:
            columns.append(column)
    if unknown:
        raise validation_error(
            [
                violation(
                    "select",
                    "unknown_path",
                    f"Unknown or unsupported select path: {path}",
                    received=path,
                )
                for path in unknown
            ]
        )
    return columns


def select_schema(columns: Sequence[Column]) -> dict[str, Any]:
    """The answer's `schema`: each column's path, type and whether it is in a collection."""
    return {
        "from": "traces",
        "columns": [
            {"path": c.path, "type": c.type, "collection": c.collection is not None}
            for c in columns
        ],
    }


def _read(source: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = source
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return dict(value) if isinstance(value, dict) else value


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value


def project(trace: dict[str, Any], columns: Sequence[Column]) -> dict[str, Any]:
    """One trace shaped to the selection, as the projector shapes it: selected keys only,
    collections as arrays of selected keys (events from `trace["events"]`)."""
    row: dict[str, Any] = {}
    for column in columns:
        if column.collection is None:
            _put(row, column.out, _read(trace, column.source))
    for collection in ("events", "annotations", "evaluations"):
        chosen = [c for c in columns if c.collection == collection]
        if not chosen:
            continue
        elements = []
        for element in trace.get(collection) or []:
            projected: dict[str, Any] = {}
            for column in chosen:
                _put(projected, column.out, _read(element, column.source))
            elements.append(projected)
        row[collection] = elements
    return row


# -- the request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchRequest:
    """A valid search body, read. `page_size` is already capped; `sort_direction` is as sent
    (only "desc" sorts descending); `columns` is None without select."""

    start_ms: int
    end_ms: int
    date_field: str = "occurred"
    page_size: int = MAX_PAGE_SIZE
    sort_direction: str = "desc"
    scroll_id: str | None = None
    include_spans: bool = False
    trace_ids: tuple[str, ...] = ()
    columns: tuple[Column, ...] | None = None

    @property
    def descending(self) -> bool:
        return self.sort_direction == "desc"


def _kind(value: Any) -> str:
    """zod's name for a JSON value's type (the same words as model.py's messages)."""
    return model.json_type_name(value)


def _wrong_type(field: str, expected: str, value: Any) -> dict[str, Any]:
    received = "undefined" if value is _MISSING else _kind(value)
    message = "Required" if value is _MISSING else f"Expected {expected}, received {received}"
    return violation(field, "invalid_type", message, expected=expected, received=received)


_MISSING: Any = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_date(value: Any) -> int | None:
    """Epoch ms from epoch ms or an ISO date (no offset: UTC); None when it is neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def parse_search(body: Any, select_supported: bool = True) -> SearchRequest:
    """Read a search body as the route's schema does; ReadError(422) naming every problem.

    An older server's schema has no `select`: with select_supported False it is not read."""
    if not isinstance(body, dict):
        raise validation_error([_wrong_type("(root)", "object", body)])
    problems: list[dict[str, Any]] = []

    def get(name: str) -> Any:
        return body.get(name, _MISSING)

    trace_ids = get("traceIds")
    if trace_ids is not _MISSING:
        if not isinstance(trace_ids, list):
            problems.append(_wrong_type("traceIds", "array", trace_ids))
        else:
            problems += [
                _wrong_type(f"traceIds.{i}", "string", t)
                for i, t in enumerate(trace_ids)
                if not isinstance(t, str)
            ]
    offset = get("pageOffset")
    if offset is not _MISSING:
        if _kind(offset) != "number":
            problems.append(_wrong_type("pageOffset", "number", offset))
        elif offset != 0:
            problems.append(violation("pageOffset", "custom", PAGE_OFFSET_GONE))
    page_size = get("pageSize")
    if page_size is not _MISSING:
        if _kind(page_size) != "number":
            problems.append(_wrong_type("pageSize", "number", page_size))
        else:
            if page_size != int(page_size):
                problems.append(
                    violation(
                        "pageSize",
                        "invalid_type",
                        "Expected integer, received float",
                        expected="integer",
                        received="float",
                    )
                )
            if page_size <= 0:
                problems.append(violation("pageSize", "too_small", "Number must be greater than 0"))
    for name in ("sortDirection", "scrollId"):
        value = get(name)
        if value is not _MISSING and not isinstance(value, str):
            if not (name == "scrollId" and value is None):
                problems.append(_wrong_type(name, "string", value))
    dates = {}
    for name in ("startDate", "endDate"):
        value = get(name)
        dates[name] = parse_date(value)
        if dates[name] is None:
            if isinstance(value, str):
                problems.append(violation(name, "custom", "Invalid date format"))
            else:
                problems.append(violation(name, "invalid_union", "Invalid input"))
    include_spans = get("includeSpans")
    if include_spans is not _MISSING and not isinstance(include_spans, bool):
        problems.append(_wrong_type("includeSpans", "boolean", include_spans))
    date_field = get("dateField")
    if date_field is not _MISSING and date_field not in ("occurred", "updated"):
        if isinstance(date_field, str):
            problems.append(
                violation(
                    "dateField",
                    "invalid_enum_value",
                    f"Invalid enum value. Expected 'occurred' | 'updated', received '{date_field}'",
                    expected=["occurred", "updated"],
                    received=date_field,
                )
            )
        else:
            problems.append(_wrong_type("dateField", "'occurred' | 'updated'", date_field))
    select = get("select") if select_supported else _MISSING
    if select_supported:
        source = get("from")
        if source is not _MISSING and source != "traces":
            problems.append(
                violation(
                    "from",
                    "invalid_enum_value",
                    f"Invalid enum value. Expected 'traces', received '{source}'",
                    expected=["traces"],
                    received=source,
                )
                if isinstance(source, str)
                else _wrong_type("from", "'traces'", source)
            )
        if select is not _MISSING:
            problems += _select_problems(select)
    if problems:
        raise validation_error(problems)
    columns = None
    if select is not _MISSING:
        columns = tuple(compile_select(select))
    return SearchRequest(
        start_ms=int(dates["startDate"] or 0),
        end_ms=int(dates["endDate"] or 0),
        date_field="occurred" if date_field is _MISSING else date_field,
        page_size=min(MAX_PAGE_SIZE, int(page_size)) if page_size is not _MISSING else 1000,
        sort_direction="desc"
        if get("sortDirection") in (_MISSING, None)
        else body["sortDirection"],
        scroll_id=body.get("scrollId") or None,
        include_spans=include_spans is True,
        trace_ids=tuple(trace_ids) if trace_ids is not _MISSING else (),
        columns=columns,
    )


def _select_problems(select: Any) -> list[dict[str, Any]]:
    if not isinstance(select, list):
        return [_wrong_type("select", "array", select)]
    problems = []
    for i, path in enumerate(select):
        if not isinstance(path, str):
            problems.append(_wrong_type(f"select.{i}", "string", path))
        elif not path:
            problems.append(
                violation(f"select.{i}", "too_small", "String must contain at least 1 character(s)")
            )
        elif len(path) > 256:
            problems.append(
                violation(f"select.{i}", "too_big", "String must contain at most 256 character(s)")
            )
    if not select:
        problems.append(
            violation("select", "too_small", "Array must contain at least 1 element(s)")
        )
    if len(select) > 200:
        problems.append(violation("select", "too_big", "Array must contain at most 200 element(s)"))
    return problems


# -- the cursor -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a scroll stands: LangWatch's ClickHouseScrollCursor, base64 JSON."""

    last_timestamp: int
    last_trace_id: str
    page_size: int
    sort_direction: str
    date_field: str
    scroll_start: int | None = None

    def encode(self) -> str:
        data: dict[str, Any] = {
            "lastTimestamp": self.last_timestamp,
            "lastTraceId": self.last_trace_id,
            "pageSize": self.page_size,
            "sortDirection": self.sort_direction,
            "dateField": self.date_field,
        }
        if self.scroll_start is not None:
            data["scrollStart"] = self.scroll_start
        return base64.b64encode(json.dumps(data).encode()).decode()


def read_cursor(request: SearchRequest) -> Cursor | None:
    """The request's cursor, or None (start again at page 1, silently) when it is unreadable
    or was made for another page size, sort direction or date axis (dates are not compared,
    as LangWatch does not compare them)."""
    if not request.scroll_id:
        return None
    try:
        data = json.loads(base64.b64decode(request.scroll_id + "=" * (-len(request.scroll_id) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    start = data.get("scrollStart")
    if (
        data.get("sortDirection") != request.sort_direction
        or data.get("pageSize") != request.page_size
        or (start is not None and (type(start) is not int or not 0 < start < 2**53))
        or (data.get("dateField") or "occurred") != request.date_field
        or type(data.get("lastTimestamp")) is not int
        or not isinstance(data.get("lastTraceId"), str)
    ):
        return None
    return Cursor(
        data["lastTimestamp"],
        data["lastTraceId"],
        request.page_size,
        request.sort_direction,
        request.date_field,
        start,
    )


# -- the answers ------------------------------------------------------------------------------


def span_id(trace_id: str, event_id: str | None, event_key: int | str) -> str:
    """The span id LangWatch gives a tracked event: sha256("<trace_id>:<event_id>")[:16]. An
    event stored without an event_id (none the sandbox stores itself) uses "key_<event_key>"."""
    ident = event_id if event_id is not None else f"key_{event_key}"
    return hashlib.sha256(f"{trace_id}:{ident}".encode()).hexdigest()[:16]


SPAN_ID_SQL = (
    "substr(sha256(trace_id || ':' || coalesce(event_id, 'key_' || event_key::VARCHAR)), 1, 16)"
)


def _events(
    sandbox: Sandbox, trace_ids: Sequence[str], cap: int
) -> dict[str, list[dict[str, Any]]]:
    """The first `cap` events of each trace by time, as full event objects."""
    if not trace_ids:
        return {}
    rows = sandbox.store.rows(
        f"""
        SELECT trace_id, span_id, event_id, event_type, ts, metrics, event_details FROM (
            SELECT trace_id, {SPAN_ID_SQL} AS span_id, event_id, event_type,
                   epoch_ms(timestamp) AS ts, metrics, event_details
            FROM events
            WHERE dataset = ? AND trace_id IN (SELECT unnest(?::VARCHAR[]))
        )
        QUALIFY row_number() OVER (PARTITION BY trace_id ORDER BY ts, span_id) <= ?
        ORDER BY trace_id, ts, span_id
        """,
        [DATASET, list(trace_ids), cap],
    )
    project_id = sandbox.reads.project_id
    out: dict[str, list[dict[str, Any]]] = {}
    for trace_id, span, event_id, event_type, ts, metrics, details in rows:
        out.setdefault(trace_id, []).append(
            {
                "event_id": span,
                "event_type": event_type,
                "project_id": project_id,
                "metrics": metrics,
                "event_details": details or {},
                "trace_id": trace_id,
                "timestamps": {"started_at": ts, "inserted_at": ts, "updated_at": ts},
                "_client_event_id": event_id,
            }
        )
    return out


def _span(event: dict[str, Any]) -> dict[str, Any]:
    """The langwatch.track_event span an event is stored as (a reduced Span object)."""
    ts = event["timestamps"]["started_at"]
    return {
        "span_id": event["event_id"],
        "trace_id": event["trace_id"],
        "parent_id": None,
        "type": "span",
        "name": SPAN_NAME,
        "timestamps": {"started_at": ts, "finished_at": ts},
        "params": {
            "event": {
                "type": event["event_type"],
                "id": event.pop("_client_event_id"),
                "metrics": dict(event["metrics"]),
                "details": dict(event["event_details"]),
            }
        },
    }


TRACE_COLUMNS = "trace_id, inserted_at, updated_at, started_at, metadata::VARCHAR"


def _trace(
    sandbox: Sandbox,
    row: tuple[Any, ...],
    events: list[dict[str, Any]] | None,
    base_url: str,
) -> dict[str, Any]:
    """A trace object as mapTraceSummaryToTrace builds it; events and spans when given."""
    trace_id, inserted_at, updated_at, started_at, metadata = row
    trace: dict[str, Any] = {
        "trace_id": trace_id,
        "project_id": sandbox.reads.project_id,
        "metadata": json.loads(metadata),
        "timestamps": {
            "started_at": started_at,
            "inserted_at": inserted_at,
            "updated_at": updated_at,
        },
        "metrics": {
            **dict.fromkeys(
                ("first_token_ms", "total_time_ms", "prompt_tokens", "completion_tokens")
            ),
            "total_cost": None,
            "tokens_estimated": False,
        },
        "error": None,
    }
    spans = [_span(e) for e in events or []]
    if events:
        trace["events"] = events
    trace["spans"] = spans
    trace["evaluations"] = []
    trace["platformUrl"] = f"{base_url}/traces?trace={quote(trace_id)}"
    return trace


def search(sandbox: Sandbox, request: SearchRequest, base_url: str = "") -> dict[str, Any]:
    """One page of POST /api/traces/search: {traces, pagination, schema?}."""
    options = sandbox.reads
    columns = request.columns if options.select_supported else None
    cursor = None if options.ignore_scroll else read_cursor(request)
    key = "started_at" if request.date_field == "occurred" else "updated_at"
    snapshot: int | None = None
    if request.date_field == "updated":  # fixed by the first page, carried by the cursor
        snapshot = cursor.scroll_start if cursor else sandbox.now_ms()
    end = request.end_ms if snapshot is None else min(request.end_ms, snapshot)
    where = [f"{key} >= ?", f"{key} <= ?"]
    params: list[Any] = [request.start_ms, end]
    if request.trace_ids:
        where.append("trace_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(request.trace_ids))
    total = sandbox.store.scalar(
        f"SELECT count(*) FROM sandbox_traces WHERE {' AND '.join(where)}", params
    )
    order = "DESC" if request.descending else "ASC"
    if cursor:
        cmp = "<" if request.descending else ">"
        where.append(f"({key} {cmp} ? OR ({key} = ? AND trace_id {cmp} ?))")
        params += [cursor.last_timestamp, cursor.last_timestamp, cursor.last_trace_id]
    rows = sandbox.store.rows(
        f"SELECT {TRACE_COLUMNS} FROM sandbox_traces WHERE {' AND '.join(where)}"
        f" ORDER BY {key} {order}, trace_id {order} LIMIT ?",
        [*params, request.page_size],
    )
    ids = [r[0] for r in rows]
    if columns is not None:
        wanted = any(c.collection == "events" for c in columns)
        events = _events(sandbox, ids, MAX_SELECTED_EVENTS) if wanted else {}
        traces = []
        for row in rows:
            trace = _trace(sandbox, row, None, base_url)
            trace["events"] = events.get(row[0], [])
            traces.append(project(trace, columns))
    else:
        events = _events(sandbox, ids, MAX_SPANS) if request.include_spans else {}
        traces = [_trace(sandbox, row, events.get(row[0]), base_url) for row in rows]
    pagination: dict[str, Any] = {"totalHits": int(total)}
    if rows and len(rows) == request.page_size:
        last = rows[-1]
        pagination["scrollId"] = Cursor(
            last[2] if key == "updated_at" else last[3],
            last[0],
            request.page_size,
            request.sort_direction,
            request.date_field,
            snapshot,
        ).encode()
    if snapshot is not None:
        pagination["updatedThrough"] = end
    answer: dict[str, Any] = {"traces": traces, "pagination": pagination}
    if columns is not None:
        answer["schema"] = select_schema(columns)
    return answer


def get_trace(sandbox: Sandbox, trace_id: str, base_url: str = "") -> dict[str, Any] | None:
    """GET /api/traces/{trace_id}: the whole trace (up to 10,000 events), None when unknown."""
    rows = sandbox.store.rows(
        f"SELECT {TRACE_COLUMNS} FROM sandbox_traces WHERE trace_id = ?", [trace_id]
    )
    if not rows:
        return None
    trace = _trace(
        sandbox, rows[0], _events(sandbox, [trace_id], MAX_SPANS).get(trace_id), base_url
    )
    trace["ascii_tree"] = "".join(
        f"{'└──' if i == len(trace['spans']) - 1 else '├──'} {SPAN_NAME} ({s['span_id']})\n"
        for i, s in enumerate(trace["spans"])
    )
    platform_url = trace.pop("platformUrl")
    trace["platformUrl"] = platform_url
    return trace


def _refused(sandbox: Sandbox, headers: dict[str, str]) -> ReadError | None:
    from eventlens.sandbox import presented_key

    if presented_key(headers) is None:
        return ReadError(401, MISSING_KEY)
    if not sandbox.authorised(headers):
        return ReadError(401, INVALID_KEY)
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # JSON.parse refuses NaN and Infinity


def handle_search(
    sandbox: Sandbox, headers: dict[str, str], raw: bytes, base_url: str = ""
) -> tuple[int, dict[str, Any]]:
    """Status and body for a search request (headers lower-cased)."""
    try:
        refused = _refused(sandbox, headers)
        if refused:
            raise refused
        body: Any = {}
        if JSON_TYPE.match(headers.get("content-type", "")):
            try:
                body = json.loads(raw, parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError):
                raise ReadError(400, MALFORMED) from None
        request = parse_search(body, sandbox.reads.select_supported)
        return 200, search(sandbox, request, base_url)
    except ReadError as refusal:
        return refusal.status, refusal.body


def handle_get(
    sandbox: Sandbox, headers: dict[str, str], trace_id: str, base_url: str = ""
) -> tuple[int, dict[str, Any]]:
    """Status and body for GET /api/traces/{trace_id} (headers lower-cased)."""
    refused = _refused(sandbox, headers)
    if refused:
        return refused.status, refused.body
    trace = get_trace(sandbox, trace_id, base_url)
    return (200, trace) if trace is not None else (404, NOT_FOUND)


def routes(get_sandbox: Callable[[], Sandbox]) -> list[Route]:
    """The two read routes; `get_sandbox()` gives the Sandbox. Faults apply as on track_event
    (a dropped answer is computed, then the connection closes)."""
    from eventlens.sandbox import DroppedResponse, faulted

    async def answer(request: Request, work: Callable[..., tuple[int, dict[str, Any]]]) -> Response:
        sandbox = get_sandbox()
        raw = await request.body()
        early, drop = await faulted(sandbox)
        if early is not None:
            return early
        headers = {k.lower(): v for k, v in request.headers.items()}
        base_url = f"{request.url.scheme}://{request.url.netloc}"
        status, body = await run_in_threadpool(work, sandbox, headers, raw, request, base_url)
        if drop and status == 200:
            return DroppedResponse()
        return JSONResponse(body, status)

    def do_search(
        sandbox: Sandbox, headers: dict[str, str], raw: bytes, request: Request, base: str
    ) -> tuple[int, dict[str, Any]]:
        return handle_search(sandbox, headers, raw, base)

    def do_get(
        sandbox: Sandbox, headers: dict[str, str], raw: bytes, request: Request, base: str
    ) -> tuple[int, dict[str, Any]]:
        return handle_get(sandbox, headers, request.path_params["trace_id"], base)

    async def search_route(request: Request) -> Response:
        return await answer(request, do_search)

    async def trace_route(request: Request) -> Response:
        return await answer(request, do_get)

    return [
        Route(SEARCH_PATH, search_route, methods=["POST"]),
        Route(TRACE_PATH, trace_route, methods=["GET"]),
    ]
