"""Test helpers (not a test module): a LangWatch stand-in for the sync's read routes.

`FakeLangWatch` answers POST /api/traces/search and GET /api/traces/{id} as LangWatch does on the
updated axis; its `handler` serves an httpx.MockTransport, and `asgi_app()` wraps it for
sandbox_server.serve_in_thread, so a separate process (the app's server) can pull over loopback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

KEY = "lw-SYNC-secret-key-0123456789"
ENDPOINT = "http://langwatch.test"


@dataclass
class FakeLangWatch:
    """Traces held as LangWatch would answer them on the updated axis, ascending."""

    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    honour_select: bool = True
    ignore_scroll: bool = False
    cap: int = 1000
    requests: list[dict[str, Any]] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    faults: list[Callable[[], httpx.Response | None]] = field(default_factory=list)
    now: int = 1_000_000

    def put(self, trace_id: str, events: list[dict[str, Any]], updated: int, **meta: Any) -> None:
        self.traces[trace_id] = {"events": events, "updated": updated, "meta": meta}

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.faults:
            answer = self.faults.pop(0)()
            if answer is not None:
                return answer
        if request.headers.get("x-auth-token") != KEY:
            return httpx.Response(401, json={"error": "Unauthorized"})
        if request.method == "GET":
            trace_id = request.url.path.rsplit("/", 1)[1]
            self.gets.append(trace_id)
            return httpx.Response(200, json=self.full(trace_id, cap=None))
        body = json.loads(request.content)
        self.requests.append(body)
        if body.get("pageSize", 1000) > 1000:
            return httpx.Response(422, json={"message": "pageSize: Number must be <= 1000"})
        start, end = body["startDate"], body["endDate"]
        order = sorted(
            (t["updated"], tid)
            for tid, t in self.traces.items()
            if start <= t["updated"] <= min(end, self.now)
        )
        offset = 0
        if body.get("scrollId") and not self.ignore_scroll:
            offset = json.loads(base64.b64decode(body["scrollId"]))["offset"]
        size = body.get("pageSize", 1000)
        page = order[offset : offset + size]
        next_id = None
        if len(page) == size:
            next_id = base64.b64encode(json.dumps({"offset": offset + size}).encode()).decode()
        selected = "select" in body and self.honour_select
        traces = [
            self.selected(tid)
            if selected
            else self.full(tid, cap=None)
            if body.get("includeSpans")
            else {"trace_id": tid}
            for _, tid in page
        ]
        answer: dict[str, Any] = {
            "traces": traces,
            "pagination": {
                "totalHits": len(order),
                "scrollId": next_id,
                "updatedThrough": min(end, self.now),
            },
        }
        if selected:
            answer["schema"] = {}
        return httpx.Response(200, json=answer)

    def selected(self, tid: str) -> dict[str, Any]:
        t = self.traces[tid]
        events = sorted(t["events"], key=lambda e: e["timestamp"])[: self.cap]
        return {
            "trace_id": tid,
            "updated_at": t["updated"],
            "events": [
                {
                    "type": e["event_type"],
                    "timestamp": e["timestamp"],
                    "metrics": e.get("metrics", {}),
                    "details": e.get("event_details", {}),
                }
                for e in events
            ],
            "metadata": t["meta"],
        }

    def full(self, tid: str, cap: int | None) -> dict[str, Any]:
        t = self.traces[tid]
        return {
            "trace_id": tid,
            "metadata": t["meta"],
            "timestamps": {"updated_at": t["updated"]},
            "events": [
                {
                    "event_id": f"span{i:04d}",
                    "event_type": e["event_type"],
                    "trace_id": tid,
                    "metrics": e.get("metrics", {}),
                    "event_details": e.get("event_details", {}),
                    "timestamps": {"started_at": e["timestamp"]},
                }
                for i, e in enumerate(sorted(t["events"], key=lambda e: e["timestamp"]))
            ],
        }


def seven_traces() -> FakeLangWatch:
    """Seven traces of two events each, updated at 100..106."""
    fake = FakeLangWatch()
    for i in range(7):
        fake.put(
            f"t{i}",
            [event(ts=1_700_000_000_000 + i), event("thumbs", ts=1_700_000_000_500 + i)],
            100 + i,
        )
    return fake


def change_three_traces(fake: FakeLangWatch) -> None:
    """After a first pull of seven_traces: a late event, a lost event and a new trace."""
    fake.now = 2_000_000
    fake.traces["t2"]["events"].append(event("late", ts=1_700_000_009_000))
    fake.traces["t2"]["updated"] = 1_500_000
    fake.traces["t4"]["events"].pop()  # a trace can lose an event too
    fake.traces["t4"]["updated"] = 1_500_001
    fake.put("t9", [event("new")], 1_500_002)


def event(kind: str = "llm_call", ts: int = 1_700_000_000_000, **metrics: float) -> dict[str, Any]:
    return {"event_type": kind, "timestamp": ts, "metrics": metrics or {"latency_ms": 12.0}}


def asgi_app(fake: FakeLangWatch) -> Starlette:
    """The fake's handler behind Starlette: the read routes over real HTTP."""

    async def answer(request: Request) -> Response:
        forwarded = httpx.Request(
            request.method,
            str(request.url),
            headers=list(request.headers.items()),
            content=await request.body(),
        )
        reply = fake.handler(forwarded)
        return Response(reply.content, reply.status_code, headers=dict(reply.headers))

    return Starlette(
        routes=[
            Route("/api/traces/search", answer, methods=["POST"]),
            Route("/api/traces/{trace_id}", answer, methods=["GET"]),
        ]
    )
