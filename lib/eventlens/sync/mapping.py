"""From LangWatch's trace objects to eventlens's events: what to ask for, and how to read each of
the three shapes the events come back in (a `select` projection, an `includeSpans` trace, a
GET /api/traces/{id} trace). Each event becomes a track_event body, so that model.py's rules
judge it as they judge every other source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Only events.* paths, the trace's times and the metadata it keeps per trace: a page of 1000
# traces stays small, and the answer's `schema` says the server honoured it.
METADATA_KEYS = ("user_id", "thread_id", "customer_id", "labels")
SELECT = (
    "trace_id",
    "started_at",
    "updated_at",
    "events.type",
    "events.timestamp",
    "events.metrics",
    "events.details",
    *(f"metadata.{k}" for k in METADATA_KEYS),
)
# With `select`, LangWatch drops a trace's events past this many (a server-side warning only).
SELECT_EVENT_CAP = 1000


@dataclass
class PulledTrace:
    """One trace as a page holds it: its events as track_event bodies, in the server's order."""

    trace_id: str
    updated_at: int | None
    metadata: dict[str, Any] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    event_ids: list[str | None] = field(default_factory=list)  # the span ids, when given

    @property
    def maybe_cut(self) -> bool:
        """Exactly the cap: the server may have dropped more (read it whole to be sure)."""
        return len(self.bodies) == SELECT_EVENT_CAP


def _ms(value: Any) -> int | None:
    """Epoch ms from a number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


def _metadata(trace: dict[str, Any]) -> dict[str, Any]:
    meta = trace.get("metadata")
    if not isinstance(meta, dict):
        return {}
    out: dict[str, Any] = {}
    for key in METADATA_KEYS:
        value = meta.get(key)
        if key == "labels":
            if isinstance(value, list):
                out[key] = [str(v) for v in value if v is not None]
        elif value is not None:
            out[key] = str(value)
    return out


def _updated_at(trace: dict[str, Any]) -> int | None:
    stamps = trace.get("timestamps")
    if isinstance(stamps, dict) and stamps.get("updated_at") is not None:
        return _ms(stamps["updated_at"])
    return _ms(trace.get("updated_at"))


def from_selected(trace: dict[str, Any]) -> PulledTrace:
    """A trace of a `select` answer: events hold type, timestamp, metrics and details."""
    trace_id = str(trace.get("trace_id"))
    out = PulledTrace(trace_id, _updated_at(trace), _metadata(trace))
    for event in trace.get("events") or []:
        event = event if isinstance(event, dict) else {}
        out.bodies.append(
            _body(trace_id, event.get("type"), event.get("timestamp"), event, "details")
        )
        out.event_ids.append(None)
    return out


def from_full(trace: dict[str, Any]) -> PulledTrace:
    """A trace with whole events (`includeSpans`, or GET /api/traces/{id}): event_type,
    event_details, timestamps.started_at, and event_id (the span id, not the sender's id)."""
    trace_id = str(trace.get("trace_id"))
    out = PulledTrace(trace_id, _updated_at(trace), _metadata(trace))
    for event in trace.get("events") or []:
        event = event if isinstance(event, dict) else {}
        stamps = event.get("timestamps") if isinstance(event.get("timestamps"), dict) else {}
        when = stamps.get("started_at") if stamps else event.get("timestamp")
        out.bodies.append(_body(trace_id, event.get("event_type"), when, event, "event_details"))
        span_id = event.get("event_id")
        out.event_ids.append(str(span_id) if span_id is not None else None)
    return out


def _body(
    trace_id: str, event_type: Any, timestamp: Any, event: dict[str, Any], details_key: str
) -> dict[str, Any]:
    """A track_event body, with the fields exactly as the server gave them (model.py judges)."""
    body: dict[str, Any] = {"trace_id": trace_id, "event_type": event_type}
    body["metrics"] = event.get("metrics", {}) if event.get("metrics") is not None else {}
    details = event.get(details_key)
    if details is not None:
        body["event_details"] = details
    if timestamp is not None:
        body["timestamp"] = timestamp
    return body
