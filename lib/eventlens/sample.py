"""Deterministic sample LangWatch custom events, and the sample files in every supported shape."""

from __future__ import annotations

import csv
import gzip
import json
import math
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
DEFAULT_END_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z

PREDEFINED_TYPES = ("thumbs_up_down", "selected_text", "waited_to_finish")
EVENT_TYPES = (
    "page_view",
    "search",
    "llm_call",
    "tool_call",
    "add_to_cart",
    "checkout",
    "error",
    *PREDEFINED_TYPES,
)
PROJECT_ID = "project_eventlens_sample"

INCIDENT_DAY, INCIDENT_HOUR, INCIDENT_HOURS = 18, 14, 2
RELEASE_DAY, RELEASE_HOUR = 22, 10
INCIDENT_SHARE = 0.012  # of all events: the error burst on top of normal traffic
FORMATS_N = 120

_COUNTRIES = (
    ("US", 34),
    ("DE", 12),
    ("GB", 11),
    ("IN", 10),
    ("BR", 9),
    ("FR", 9),
    ("JP", 8),
    ("NL", 7),
)
_PLANS = (("free", 70), ("pro", 25), ("enterprise", 5))
_CATEGORIES = ("apparel", "books", "electronics", "garden", "grocery", "home", "sports", "toys")
_PAGES = (
    ("/", 30),
    ("/chat", 22),
    ("/product", 18),
    ("/docs", 9),
    ("/pricing", 7),
    ("/cart", 7),
    ("/checkout", 4),
    ("/settings", 3),
)
_MODELS = (
    ("gpt-4o-mini", 50, 700.0, 0.15, 0.60),
    ("gpt-4o", 30, 1400.0, 2.50, 10.0),
    ("claude-sonnet", 20, 1800.0, 3.00, 15.0),
)  # name, weight, median ms, $/M in, $/M out
_TOOLS = (
    ("retriever", 35, 180.0),
    ("web_search", 25, 900.0),
    ("sql_query", 15, 350.0),
    ("calculator", 15, 8.0),
    ("code_interpreter", 10, 2500.0),
)
_ERRORS = (
    (500, "internal server error"),
    (502, "bad gateway"),
    (504, "upstream timeout"),
    (429, "rate limited by provider"),
    (400, "invalid tool arguments"),
    (422, "response failed schema validation"),
)
_INCIDENT_ERRORS = (
    (504, "upstream model timeout"),
    (429, "rate limited by provider"),
    (503, "model provider unavailable"),
)
_FEEDBACK_UP = (
    "great answer",
    "exactly what I needed",
    "thanks!",
    "clear and concise",
    "helpful, saved me time",
)
_FEEDBACK_DOWN = (
    "wrong answer",
    "too slow",
    "made up a citation",
    "did not follow instructions",
    "answer was cut off",
    "not relevant to my question",
)
_WORDS = (
    "the",
    "model",
    "returns",
    "a",
    "summary",
    "of",
    "your",
    "order",
    "and",
    "shipping",
    "refund",
    "policy",
    "for",
    "items",
    "in",
    "cart",
    "within",
    "30",
    "days",
    "price",
    "total",
    "discount",
    "applies",
    "to",
    "every",
    "product",
    "category",
    "query",
    "results",
)
_FIRST = (("page_view", 45), ("search", 25), ("llm_call", 30))
_NEXT: dict[str, tuple[tuple[str, int], ...]] = {
    "page_view": (
        ("page_view", 30),
        ("search", 20),
        ("llm_call", 22),
        ("add_to_cart", 16),
        ("tool_call", 2),
        ("selected_text", 3),
        ("error", 1),
    ),
    "search": (
        ("page_view", 34),
        ("add_to_cart", 20),
        ("llm_call", 20),
        ("search", 16),
        ("selected_text", 3),
        ("error", 1),
    ),
    "llm_call": (
        ("waited_to_finish", 32),
        ("tool_call", 18),
        ("thumbs_up_down", 12),
        ("selected_text", 10),
        ("llm_call", 16),
        ("page_view", 8),
        ("error", 2),
    ),
    "tool_call": (("llm_call", 60), ("tool_call", 25), ("page_view", 8), ("error", 2)),
    "add_to_cart": (("add_to_cart", 30), ("checkout", 25), ("page_view", 35), ("search", 10)),
    "checkout": (("page_view", 70), ("search", 15), ("llm_call", 14), ("error", 1)),
    "error": (("page_view", 40), ("llm_call", 40), ("search", 20)),
    "thumbs_up_down": (("llm_call", 55), ("page_view", 30), ("search", 15)),
    "selected_text": (("llm_call", 45), ("thumbs_up_down", 15), ("page_view", 25), ("search", 15)),
    "waited_to_finish": (
        ("thumbs_up_down", 25),
        ("llm_call", 30),
        ("selected_text", 15),
        ("page_view", 20),
        ("tool_call", 10),
    ),
}


def timeline(days: int = 30, end_ms: int = DEFAULT_END_MS) -> dict[str, int]:
    """The window start, incident start/end and release time (epoch ms) for a generated window."""
    start = end_ms - days * DAY_MS
    incident = start + int(days * INCIDENT_DAY / 30) * DAY_MS + INCIDENT_HOUR * HOUR_MS
    release = start + int(days * RELEASE_DAY / 30) * DAY_MS + RELEASE_HOUR * HOUR_MS
    return {
        "start_ms": start,
        "end_ms": end_ms,
        "incident_start_ms": incident,
        "incident_end_ms": incident + INCIDENT_HOURS * HOUR_MS,
        "release_ms": release,
    }


def _pick(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    """One row of a (value, weight, ...) table, chosen by weight."""
    return rng.choices(table, weights=[row[1] for row in table])[0]


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    """A lognormal draw with the given median."""
    return rng.lognormvariate(math.log(median), sigma)


def _hex(rng: random.Random, digits: int) -> str:
    """Random lowercase hex of a fixed width."""
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _traffic_weight(ts: int) -> float:
    """Relative traffic at a moment: daytime UTC peak near 15:00, weekend dip (max 1.0)."""
    hour = (ts % DAY_MS) / HOUR_MS
    daily = 0.2 + 0.8 * (0.5 - 0.5 * math.cos(2 * math.pi * (hour - 3) / 24))
    weekday = (ts // DAY_MS + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
    return daily * (0.6 if weekday >= 5 else 1.0)


class _World:
    """Users, products and the timeline that every trace draws from."""

    def __init__(self, rng: random.Random, days: int, end_ms: int) -> None:
        self.rng = rng
        self.t = timeline(days, end_ms)
        self.users = [
            (f"user_{i:04d}", _pick(rng, _COUNTRIES)[0], _pick(rng, _PLANS)[0])
            for i in range(1, 3001)
        ]
        self.user_weights = [1.0 / (i + 300) for i in range(len(self.users))]
        self.products = [
            (f"sku_{i:05d}", rng.choice(_CATEGORIES), round(_lognormal(rng, 24.0, 0.9) + 0.99, 2))
            for i in range(1, 2001)
        ]
        self.product_weights = [1.0 / (i + 200) for i in range(len(self.products))]
        self.used_ids: set[str] = set()

    def new_id(self, prefix: str) -> str:
        """A fresh prefix_<hex16> id, unique within this generation."""
        while True:
            value = f"{prefix}_{_hex(self.rng, 16)}"
            if value not in self.used_ids:
                self.used_ids.add(value)
                return value

    def in_incident(self, ts: int) -> bool:
        """Whether a moment falls inside the incident window."""
        return self.t["incident_start_ms"] <= ts < self.t["incident_end_ms"]

    def start_for(self, duration: int, lo: int | None = None, hi: int | None = None) -> int:
        """A trace start so the whole trace fits in [lo, hi), following the traffic rhythm."""
        lo = self.t["start_ms"] if lo is None else lo
        hi = self.t["end_ms"] if hi is None else hi
        latest = max(lo, hi - 1 - duration)
        while True:
            ts = self.rng.randint(lo, latest)
            if self.rng.random() < _traffic_weight(ts):
                return ts

    def offsets(self, size: int) -> list[int]:
        """Millisecond offsets of a trace's events from its start: seconds to minutes apart."""
        out = [0]
        for _ in range(size - 1):
            gap = min(600_000, max(500, int(_lognormal(self.rng, 12_000, 1.1))))
            out.append(out[-1] + gap)
        return out


def _walk(rng: random.Random, size: int) -> list[str]:
    """The event types of one trace, as a walk through a simple user journey."""
    types = [_pick(rng, _FIRST)[0]]
    while len(types) < size:
        types.append(_pick(rng, _NEXT[types[-1]])[0])
    return types


def _snippet(rng: random.Random, length: int) -> str:
    """Some selected output text of exactly `length` characters."""
    words: list[str] = []
    while sum(len(w) + 1 for w in words) <= length:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:length].rstrip().ljust(length, ".")


def _event(
    world: _World, kind: str, ts: int, ctx: dict[str, Any], incident_burst: bool = False
) -> dict[str, Any]:
    """One track_event body of a given type at a given moment, within a trace's context."""
    rng = world.rng
    released = ts >= world.t["release_ms"]
    incident = world.in_incident(ts)
    metrics: dict[str, float | int] = {}
    details: dict[str, str] = {"user_id": ctx["user_id"]}
    if kind not in PREDEFINED_TYPES:
        details.update(session_id=ctx["session_id"], country=ctx["country"], plan=ctx["plan"])
    if kind == "page_view":
        page = _pick(rng, _PAGES)[0]
        metrics["load_ms"] = round(_lognormal(rng, 420.0, 0.6), 1)
        details["page"] = page
        if page == "/product":
            details["product_id"] = ctx["product"][0]
    elif kind == "search":
        results = 0 if rng.random() < 0.08 else int(_lognormal(rng, 18, 0.9))
        metrics["results"] = min(results, 500)
        metrics["latency_ms"] = round(_lognormal(rng, 120.0, 0.5), 1)
    elif kind == "llm_call":
        name, _, median, price_in, price_out = ctx["model"]
        latency = _lognormal(rng, median, 0.45) * (0.8 if released else 1.0)
        if incident:
            latency *= 4
        prompt = int(_lognormal(rng, 850, 0.6) * (1.3 if released else 1.0)) + 20
        completion = int(_lognormal(rng, 240, 0.7)) + 1
        metrics["latency_ms"] = round(latency, 1)
        metrics["prompt_tokens"] = prompt
        metrics["completion_tokens"] = completion
        metrics["cost_usd"] = round((prompt * price_in + completion * price_out) / 1e6, 6)
        details["model"] = name
    elif kind == "tool_call":
        name, _, median = _pick(rng, _TOOLS)
        metrics["duration_ms"] = round(_lognormal(rng, median, 0.7), 1)
        details["tool"] = name
        details["status"] = "error" if rng.random() < 0.04 else "ok"
    elif kind == "add_to_cart":
        sku, category, price = ctx["product"]
        quantity = rng.choices((1, 2, 3, 4), weights=(75, 15, 7, 3))[0]
        ctx["cart"].append(round(price * quantity, 2))
        metrics["amount"] = round(price * quantity, 2)
        metrics["quantity"] = quantity
        details["product_id"] = sku
        details["category"] = category
        ctx["product"] = world.products[
            rng.choices(range(len(world.products)), weights=world.product_weights)[0]
        ]
    elif kind == "checkout":
        cart = ctx["cart"] or [round(_lognormal(rng, 40.0, 0.8) + 0.99, 2)]
        metrics["amount"] = round(sum(cart), 2)
        metrics["items"] = len(cart)
        details["payment"] = rng.choices(("card", "paypal", "invoice"), weights=(70, 22, 8))[0]
        ctx["cart"] = []
    elif kind == "error":
        code, message = rng.choice(_INCIDENT_ERRORS if incident_burst else _ERRORS)
        metrics["code"] = code
        details["message"] = message
        details["source"] = "llm" if incident_burst else rng.choice(("api", "llm", "tool", "ui"))
    elif kind == "thumbs_up_down":
        vote = rng.choices((1, -1, 0), weights=(68, 28, 4))[0]
        metrics["vote"] = vote
        if vote != 0 and rng.random() < (0.45 if vote < 0 else 0.15):
            details["feedback"] = rng.choice(_FEEDBACK_DOWN if vote < 0 else _FEEDBACK_UP)
    elif kind == "selected_text":
        length = max(1, int(_lognormal(rng, 80, 0.9)))
        metrics["text_length"] = length
        if rng.random() < 0.3:
            details["selected_text"] = _snippet(rng, min(length, 400))
            metrics["text_length"] = len(details["selected_text"])
    elif kind == "waited_to_finish":
        metrics["finished"] = 1 if rng.random() < 0.78 else 0
    details["release"] = "v2" if released else "v1"
    return {
        "trace_id": ctx["trace_id"],
        "event_type": kind,
        "metrics": metrics,
        "event_details": details,
        "timestamp": ts,
        "event_id": world.new_id("evt"),
    }


def _context(world: _World) -> dict[str, Any]:
    """A new trace's fixed context: who, which model, which product they look at."""
    rng = world.rng
    user_id, country, plan = rng.choices(world.users, weights=world.user_weights)[0]
    return {
        "trace_id": world.new_id("trace"),
        "session_id": f"sess_{_hex(rng, 12)}",
        "user_id": user_id,
        "country": country,
        "plan": plan,
        "model": _pick(rng, _MODELS),
        "product": world.products[
            rng.choices(range(len(world.products)), weights=world.product_weights)[0]
        ],
        "cart": [],
    }


def generate_events(
    n: int = 50_000, days: int = 30, seed: int = 7, end_ms: int = DEFAULT_END_MS
) -> list[dict]:
    """n realistic track_event bodies over `days` days ending at end_ms, sorted by timestamp."""
    if n <= 0:
        return []
    rng = random.Random(seed)
    world = _World(rng, days, end_ms)
    events: list[dict] = []
    burst = round(n * INCIDENT_SHARE)
    normal = n - burst
    while len(events) < normal:
        size = min(40, max(1, round(_lognormal(rng, 6.0, 0.9))), normal - len(events))
        kinds = _walk(rng, size)
        offsets = world.offsets(size)
        start = world.start_for(offsets[-1])
        ctx = _context(world)
        events.extend(_event(world, k, start + o, ctx) for k, o in zip(kinds, offsets, strict=True))
    for hour in range(INCIDENT_HOURS):  # the burst, spread evenly over the incident hours
        lo = max(world.t["incident_start_ms"] + hour * HOUR_MS, world.t["start_ms"])
        hi = min(lo + HOUR_MS, world.t["end_ms"])
        target = normal + burst * (hour + 1) // INCIDENT_HOURS
        while len(events) < target:
            size = min(rng.randint(3, 9), target - len(events))  # a call, timeouts, retries
            kinds = ["llm_call"] + [
                "error" if rng.random() < 0.8 else "llm_call" for _ in range(size - 1)
            ]
            offsets = [o // 4 for o in world.offsets(size)]
            start = world.start_for(offsets[-1], lo, hi)
            ctx = _context(world)
            events.extend(
                _event(world, k, start + o, ctx, incident_burst=True)
                for k, o in zip(kinds, offsets, strict=True)
            )
    events.sort(key=lambda e: e["timestamp"])
    return events


# ---------------------------------------------------------------------------------------------
# Writers: the main export plus one small file per supported input shape.
# ---------------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    """Compact JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text with \\n line endings."""
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return path


def _jsonl(rows: list[Any]) -> str:
    """One compact JSON value per line."""
    return "".join(_dumps(r) + "\n" for r in rows)


def _stored(body: dict, rng: random.Random) -> dict:
    """A request body as LangWatch stores and returns it."""
    inserted = body["timestamp"] + rng.randint(150, 2500)
    return {
        "event_id": body["event_id"],
        "event_type": body["event_type"],
        "project_id": PROJECT_ID,
        "trace_id": body["trace_id"],
        "metrics": body["metrics"],
        "event_details": body["event_details"],
        "timestamps": {
            "started_at": body["timestamp"],
            "inserted_at": inserted,
            "updated_at": inserted,
        },
    }


def _by_trace(bodies: list[dict]) -> dict[str, list[dict]]:
    """Bodies grouped by trace_id, traces in order of their first event."""
    groups: dict[str, list[dict]] = {}
    for body in bodies:
        groups.setdefault(body["trace_id"], []).append(body)
    return groups


def _keys(bodies: list[dict], field: str) -> list[str]:
    """Sorted union of the keys of one dict field over all bodies."""
    return sorted({k for b in bodies for k in b[field]})


def _write_csvs(bodies: list[dict], flat: Path, json_cols: Path) -> None:
    """flat.csv (one column per metric/detail key) and json_columns.csv (JSON text columns)."""
    base = ["trace_id", "event_type", "timestamp", "event_id"]
    m_keys, d_keys = _keys(bodies, "metrics"), _keys(bodies, "event_details")
    with flat.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(base + [f"metrics.{k}" for k in m_keys] + [f"event_details.{k}" for k in d_keys])
        for b in bodies:
            w.writerow(
                [b[c] for c in base]
                + [b["metrics"].get(k, "") for k in m_keys]
                + [b["event_details"].get(k, "") for k in d_keys]
            )
    with json_cols.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(base + ["metrics", "event_details"])
        for b in bodies:
            w.writerow([b[c] for c in base] + [_dumps(b["metrics"]), _dumps(b["event_details"])])


def _write_parquets(bodies: list[dict], map_path: Path, struct_path: Path) -> None:
    """events_map.parquet (MAP columns, int64 ms) and events_struct.parquet (STRUCT, timestamp)."""
    base = {c: [b[c] for b in bodies] for c in ("trace_id", "event_type", "event_id")}
    metrics_map = pa.array(
        [[(k, float(v)) for k, v in b["metrics"].items()] for b in bodies],
        type=pa.map_(pa.string(), pa.float64()),
    )
    details_map = pa.array(
        [list(b["event_details"].items()) for b in bodies], type=pa.map_(pa.string(), pa.string())
    )
    map_table = pa.table(
        {
            "trace_id": pa.array(base["trace_id"], pa.string()),
            "event_type": pa.array(base["event_type"], pa.string()),
            "timestamp": pa.array([b["timestamp"] for b in bodies], pa.int64()),
            "event_id": pa.array(base["event_id"], pa.string()),
            "metrics": metrics_map,
            "event_details": details_map,
        }
    )
    pq.write_table(map_table, map_path)
    m_keys, d_keys = _keys(bodies, "metrics"), _keys(bodies, "event_details")
    m_type = pa.struct([(k, pa.float64()) for k in m_keys])
    d_type = pa.struct([(k, pa.string()) for k in d_keys])
    m_rows = [
        {k: (float(b["metrics"][k]) if k in b["metrics"] else None) for k in m_keys} for b in bodies
    ]
    struct_table = pa.table(
        {
            "trace_id": pa.array(base["trace_id"], pa.string()),
            "event_type": pa.array(base["event_type"], pa.string()),
            "timestamp": pa.array([b["timestamp"] for b in bodies], pa.timestamp("ms", tz="UTC")),
            "event_id": pa.array(base["event_id"], pa.string()),
            "metrics": pa.array(m_rows, type=m_type),
            "event_details": pa.array(
                [{k: b["event_details"].get(k) for k in d_keys} for b in bodies], type=d_type
            ),
        }
    )
    pq.write_table(struct_table, struct_path)


def _bad_lines(bodies: list[dict]) -> str:
    """20 good lines with one of each kind of bad line mixed in, plus an exact duplicate."""
    good = [_dumps(b) for b in bodies[:20]]
    spare = bodies[20:]

    def variant(i: int, **changes: Any) -> dict:
        body = {
            **spare[i],
            "metrics": dict(spare[i]["metrics"]),
            "event_details": dict(spare[i]["event_details"]),
        }
        body.update(changes)
        return body

    malformed = _dumps(variant(0))[:-1]  # truncated: the closing brace is missing
    no_trace = variant(1)
    del no_trace["trace_id"]
    string_metric = variant(2, event_type="add_to_cart", metrics={"amount": "17.5", "quantity": 1})
    number_detail = variant(3)
    number_detail["event_details"]["product_id"] = 123
    bad_vote = variant(4, event_type="thumbs_up_down", metrics={"vote": 5})
    zero_length = variant(5, event_type="selected_text", metrics={"text_length": 0})
    no_finished = variant(6, event_type="waited_to_finish", metrics={})
    array_line = [variant(7)]
    bad = [
        malformed,
        _dumps(no_trace),
        _dumps(string_metric),
        _dumps(number_detail),
        _dumps(bad_vote),
        _dumps(zero_length),
        _dumps(no_finished),
        _dumps(array_line),
        good[3],
    ]
    lines: list[str] = []
    for i, line in enumerate(good):
        lines.append(line)
        if i % 2 == 1 and i // 2 < len(bad):
            lines.append(bad[i // 2])
    return "".join(line + "\n" for line in lines)


def write_samples(out_dir: Path, n: int = 50_000, seed: int = 7) -> list[Path]:
    """Write events.jsonl.gz (n events) and small files in every other input shape to out_dir."""
    out_dir = Path(out_dir)
    formats = out_dir / "formats"
    formats.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    main = out_dir / "events.jsonl.gz"
    with (
        main.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        gz.write(_jsonl(generate_events(n=n, seed=seed)).encode("utf-8"))
    paths.append(main)

    # Another seed: the small files hold events of their own, not copies of the main export's.
    small = generate_events(n=FORMATS_N, seed=seed + 1000)
    rng = random.Random(f"formats-{seed}")
    stored = [_stored(b, rng) for b in small]
    groups = _by_trace(small)
    paths.append(
        _write_text(formats / "events.json", "[\n" + ",\n".join(_dumps(b) for b in small) + "\n]\n")
    )
    paths.append(_write_text(formats / "events.ndjson", _jsonl(small)))
    paths.append(_write_text(formats / "stored_events.jsonl", _jsonl(stored)))

    trace_id = max(groups, key=lambda t: len(groups[t]))  # first of the largest traces
    events = [s for s in stored if s["trace_id"] == trace_id]
    first = groups[trace_id][0]["event_details"]
    document = {
        "trace_id": trace_id,
        "project_id": PROJECT_ID,
        "metadata": {
            "user_id": first["user_id"],
            "thread_id": first.get("session_id"),
            "labels": ["sample", first["release"]],
        },
        "timestamps": {
            "started_at": events[0]["timestamps"]["started_at"],
            "inserted_at": events[0]["timestamps"]["inserted_at"],
            "updated_at": events[-1]["timestamps"]["updated_at"],
        },
        "events": events,
    }
    document_text = json.dumps(document, indent=2) + "\n"
    paths.append(_write_text(formats / "trace_document.json", document_text))

    rows = [
        {
            "trace_id": tid,
            "started_at": group[0]["timestamp"],
            "events": [
                {
                    "type": b["event_type"],
                    "timestamp": b["timestamp"],
                    "metrics": b["metrics"],
                    "details": b["event_details"],
                }
                for b in group
            ],
        }
        for tid, group in groups.items()
    ]
    search = {"traces": rows, "pagination": {"scrollId": "abc"}}
    paths.append(_write_text(formats / "search_response.json", json.dumps(search, indent=2) + "\n"))

    legacy = [
        {
            **s,
            "metrics": [{"key": k, "value": v} for k, v in s["metrics"].items()],
            "event_details": [{"key": k, "value": v} for k, v in s["event_details"].items()],
        }
        for s in stored
    ]
    paths.append(_write_text(formats / "legacy_keyvalue.jsonl", _jsonl(legacy)))

    flat, json_cols = formats / "flat.csv", formats / "json_columns.csv"
    _write_csvs(small, flat, json_cols)
    paths += [flat, json_cols]

    map_path, struct_path = formats / "events_map.parquet", formats / "events_struct.parquet"
    _write_parquets(small, map_path, struct_path)
    paths += [map_path, struct_path]

    paths.append(_write_text(formats / "bad_lines.jsonl", _bad_lines(small)))
    return paths
