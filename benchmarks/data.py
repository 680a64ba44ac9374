"""The benchmarks' data: a generated LangWatch export, and stores loaded from it.

generate(n, workdir) writes WORKDIR/events_<n>.jsonl: n track_event bodies as JSON lines, made
by one DuckDB query (no Python loop) from hashes of the row numbers, so the same n always gives
the same file. Traces hold 1-40 events (20.5 on average) 45-75 s apart, spread over the 30 days
before 2025-12-01; ten event types with their own metrics and details. The file is reused when
it already holds n lines.

build_store(n, workdir, name) loads that file into WORKDIR/<name>_<n>.duckdb with
eventlens.ingest.load_files, or reuses the store when it already holds n events.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from eventlens.ingest import load_files
from eventlens.store import Store

DATASET = "bench"  # the dataset the stores' events are loaded into
DAY_MS = 86_400_000
END_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z
START_MS = END_MS - 30 * DAY_MS
STEP_MS = 45_000  # events of a trace are 45-75 s apart

# ---------------------------------------------------------------------------------------------
# The export
# ---------------------------------------------------------------------------------------------


def _pick(options: list[str], salt: str, key: str = "i") -> str:
    """SQL choosing one of several string constants by a hash of the row."""
    items = ", ".join("'" + o.replace("'", "''") + "'" for o in options)
    return f"[{items}][1 + (hash({key}, '{salt}') % {len(options)})::INT]"


def _u(salt: str, key: str = "i") -> str:
    """SQL for a deterministic uniform number in [0, 1) from a hash of the row."""
    return f"((hash({key}, '{salt}') % 1000000) / 1000000.0)"


def _events_sql(n: int, traces: int) -> str:
    """SELECT producing n track_event bodies, ordered by timestamp."""
    user = "'user_' || lpad((hash(t, 'user') % 20000)::VARCHAR, 5, '0')"
    model = _pick(["gpt-4o-mini", "gpt-4o", "claude-sonnet"], "model", "t")
    country = _pick(["US", "DE", "GB", "IN", "BR", "FR", "JP", "NL"], "country", "t")
    release = _pick(["v1", "v2"], "release", "t")
    page = _pick(["/", "/chat", "/product", "/docs", "/pricing", "/cart", "/checkout"], "page")
    query = _pick(
        [
            "refund policy",
            "shipping to germany",
            "cancel my order",
            "gpu laptop under 1500",
            "how do I export events",
            "reset password",
            "invoice for march",
        ],
        "query",
    )
    tool = _pick(["retriever", "web_search", "sql_query", "calculator", "code_interpreter"], "tool")
    category = _pick(["apparel", "books", "electronics", "garden", "grocery", "home"], "cat")
    payment = _pick(["card", "paypal", "invoice"], "pay")
    error = _pick(
        [
            "upstream timeout",
            "rate limited by provider",
            "internal server error",
            "invalid tool arguments",
            "response failed schema validation",
        ],
        "err",
    )
    feedback = _pick(
        [
            "great answer",
            "too slow",
            "wrong answer",
            "thanks!",
            "made up a citation",
            "clear and concise",
        ],
        "fb",
    )
    selected = _pick(
        [
            "the refund is issued within 30 days",
            "free shipping over 50 EUR",
            "SELECT count(*) FROM events",
            "your order ships tomorrow",
        ],
        "sel",
    )
    u = _u
    # (event_type, share in %, metrics json_object args, details json_object args)
    types = [
        (
            "page_view",
            22,
            f"'load_ms', round(80 + 1500 * {u('a')}, 1), 'dom_nodes', (300 + 2000 * {u('b')})::INT",
            f"'user_id', user_id, 'session_id', session_id, 'page', {page}, 'country', country",
        ),
        (
            "search",
            14,
            f"'results', (50 * {u('a')})::INT, 'latency_ms', round(40 + 400 * {u('b')}, 1), "
            f"'query_tokens', (2 + 12 * {u('c')})::INT",
            f"'user_id', user_id, 'query', {query}, 'country', country",
        ),
        (
            "llm_call",
            16,
            f"'prompt_tokens', (200 + 3000 * {u('a')})::INT, "
            f"'completion_tokens', (20 + 800 * {u('b')})::INT, "
            f"'latency_ms', round(300 + 4000 * {u('c')}, 1), "
            f"'cost_usd', round(0.02 * {u('d')}, 6)",
            "'model', model, 'user_id', user_id, 'release', release",
        ),
        (
            "tool_call",
            12,
            f"'duration_ms', round(5 + 2500 * {u('a')}, 1), 'retries', (3 * {u('b')} ^ 4)::INT",
            f"'tool', {tool}, 'user_id', user_id, 'status', "
            f"CASE WHEN {u('c')} < 0.95 THEN 'ok' ELSE 'error' END",
        ),
        (
            "add_to_cart",
            7,
            f"'price', round(5 + 300 * {u('a')}, 2), 'quantity', (1 + 3 * {u('b')})::INT",
            f"'category', {category}, 'user_id', user_id, 'currency', 'EUR'",
        ),
        (
            "checkout",
            3,
            f"'total', round(10 + 900 * {u('a')}, 2), 'items', (1 + 8 * {u('b')})::INT, "
            f"'discount', round(20 * {u('c')}, 2)",
            f"'plan', {_pick(['free', 'pro', 'enterprise'], 'plan', 't')}, 'user_id', user_id, "
            f"'payment_method', {payment}",
        ),
        (
            "error",
            4,
            f"'status_code', {_pick(['500', '502', '504', '429', '400'], 'code')}::INT, "
            f"'retry_after_ms', (30000 * {u('a')})::INT",
            f"'message', {error}, 'user_id', user_id, 'release', release, 'endpoint', '/api/chat'",
        ),
        (
            "thumbs_up_down",
            8,
            f"'vote', CASE WHEN {u('a')} < 0.7 THEN 1 ELSE -1 END, "
            f"'latency_ms', round(300 + 4000 * {u('b')}, 1)",
            f"'feedback', {feedback}, 'user_id', user_id, 'model', model",
        ),
        (
            "selected_text",
            7,
            f"'text_length', (1 + 400 * {u('a')})::INT, 'start_offset', (2000 * {u('b')})::INT",
            f"'selected_text', {selected}, 'user_id', user_id",
        ),
        (
            "waited_to_finish",
            7,
            f"'finished', CASE WHEN {u('a')} < 0.8 THEN 1 ELSE 0 END, "
            f"'wait_ms', round(500 + 8000 * {u('b')}, 1)",
            "'user_id', user_id, 'model', model",
        ),
    ]
    assert sum(share for _, share, _, _ in types) == 100
    type_case, metrics_case, details_case, low = [], [], [], 0
    for name, share, metrics, details in types:
        cond = f"WHEN bucket < {low + share}"
        type_case.append(f"{cond} THEN '{name}'")
        metrics_case.append(f"{cond} THEN json_object({metrics})")
        details_case.append(f"{cond} THEN json_object({details})")
        low += share
    span = 30 * DAY_MS - 40 * (STEP_MS + 30_000)
    return f"""
        WITH traces AS (
            SELECT t, size, sum(size) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) - size AS first
            FROM (SELECT t, 1 + (hash(t, 'size') % 40)::BIGINT AS size FROM range({traces}) r(t))
        ),
        ev AS (
            SELECT first + k AS i, t, k FROM (SELECT t, first, unnest(range(size)) AS k FROM traces)
            WHERE first + k < {n}
        ),
        rows AS (
            SELECT i, t, k, (hash(i, 'type') % 100)::INT AS bucket,
                   'trace_' || printf('%016x', hash(t, 'trace')) AS trace_id,
                   {user} AS user_id,
                   'sess_' || printf('%012x', hash(t, 'sess') % 281474976710656) AS session_id,
                   {model} AS model, {country} AS country, {release} AS release,
                   {START_MS} + (hash(t, 'start') % {span})::BIGINT + k * {STEP_MS}
                       + (hash(i, 'jitter') % 30000)::BIGINT AS ts
            FROM ev
        )
        SELECT trace_id,
               CASE {" ".join(type_case)} END AS event_type,
               CASE {" ".join(metrics_case)} END AS metrics,
               CASE {" ".join(details_case)} END AS event_details,
               ts AS timestamp,
               'evt_' || printf('%016x', hash(i, 'evt')) AS event_id
        FROM rows
        ORDER BY ts, i
    """


# The shape real exports often have (issue 16): no event_id (LangWatch makes it optional), not
# in time order, many short traces (about 4 events each), 7 event types with 1-3 metrics and
# 0-2 details, about 180 bytes a line.
_REAL_TYPES = [
    ("llm_call", ["latency_ms", "tokens", "cost_usd"], ["model", "route"]),
    ("retrieval", ["latency_ms", "docs"], ["index"]),
    ("tool_call", ["latency_ms"], ["tool", "status"]),
    ("feedback", ["score"], ["channel"]),
    ("guardrail", ["latency_ms", "score"], []),
    ("page_view", ["duration_ms"], ["page"]),
    ("error", ["count"], ["kind", "component"]),
]


def _real_events_sql(n: int) -> str:
    """SELECT producing n track_event bodies of the real shape, in random order."""
    kind = "(hash(i, 'kind') % 7)::INT"
    types = "[" + ", ".join(f"'{t}'" for t, _, _ in _REAL_TYPES) + "]"

    def per_type(build: Callable[[tuple[str, list[str], list[str]]], str]) -> str:
        cases = " ".join(f"WHEN {k} THEN {build(t)}" for k, t in enumerate(_REAL_TYPES))
        return f"CASE {kind} {cases} END"

    def metrics(t: tuple[str, list[str], list[str]]) -> str:
        return "MAP {" + ", ".join(f"'{m}': round({_u(m)} * 1000, 2)" for m in t[1]) + "}"

    def details(t: tuple[str, list[str], list[str]]) -> str:
        if not t[2]:
            return "NULL::MAP(VARCHAR, VARCHAR)"
        return (
            "MAP {"
            + ", ".join(
                f"'{d}': {_pick(['a', 'b', 'c', 'd', 'e'], d)} || (hash(i, '{d}') % 50)::VARCHAR"
                for d in t[2]
            )
            + "}"
        )

    return f"""
        SELECT 'trace_' || printf('%012x', hash(i // 4, 'trace')) AS trace_id,
               {types}[1 + {kind}] AS event_type,
               {per_type(metrics)} AS metrics,
               {per_type(details)} AS event_details,
               1762000000000 + (hash(i // 4, 'start') % 2592000000)::BIGINT
                 + (i % 4) * 1500 AS timestamp
        FROM range({n}) r(i)
        ORDER BY hash(i, 'order')
    """


SHAPES = ("generated", "real")


def events_path(n: int, workdir: Path, shape: str = "generated") -> Path:
    return workdir / (f"events_{n}.jsonl" if shape == "generated" else f"{shape}_{n}.jsonl")


def generate(n: int, workdir: Path, shape: str = "generated") -> Path:
    """WORKDIR/events_<n>.jsonl (or <shape>_<n>.jsonl), generated unless it already holds n
    lines."""
    path = events_path(n, workdir, shape)
    if path.is_file():
        lines = count_lines(path)
        if lines == n:
            print(f"reusing {path} ({n:,} events, {path.stat().st_size / 1e6:,.0f} MB)")
            return path
        print(f"{path} holds {lines:,} lines, not {n:,}: generating it again")
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".jsonl.part")
    con = duckdb.connect()
    if shape == "real":
        try:
            con.execute(f"COPY ({_real_events_sql(n)}) TO '{tmp}' (FORMAT json)")
        finally:
            con.close()
        tmp.replace(path)
        print(f"generated {path} ({n:,} events, {path.stat().st_size / 1e6:,.0f} MB)")
        return path
    try:
        # Enough traces (1-40 events each, 20.5 on average) to cover n events.
        traces = n // 15 + 64
        while (
            con.execute(
                f"SELECT sum(1 + hash(t, 'size') % 40) FROM range({traces}) r(t)"
            ).fetchone()[0]
            < n
        ):
            traces *= 2
        con.execute(f"COPY ({_events_sql(n, traces)}) TO '{tmp}' (FORMAT json)")
    finally:
        con.close()
    tmp.replace(path)
    print(
        f"generated {path} ({n:,} events, {path.stat().st_size / 1e6:,.0f} MB) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return path


PARQUET_KINDS = ("map", "struct")


def parquet_export(src: Path, kind: str) -> Path:
    """The JSONL export `src` as Parquet beside it, <stem>_<kind>.parquet, reused when it exists
    and holds as many rows as src has lines. `map`: metrics MAP(VARCHAR, DOUBLE) and
    event_details MAP(VARCHAR, VARCHAR) (eventlens's own types); `struct`: the STRUCT columns
    DuckDB's read_json detects. A column the export never has (event_id in the real shape) is
    left out."""
    path = src.with_name(f"{src.stem}_{kind}.parquet")
    n = count_lines(src)
    con = duckdb.connect()
    try:
        if path.is_file():
            rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()
            if rows and rows[0] == n:
                print(f"reusing {path} ({n:,} rows, {path.stat().st_size / 1e6:,.0f} MB)")
                return path
        started = time.perf_counter()
        has_id = '"event_id"' in src.open(encoding="utf-8").readline()
        columns = (
            "{trace_id: 'VARCHAR', event_type: 'VARCHAR', timestamp: 'BIGINT',"
            + (" event_id: 'VARCHAR'," if has_id else "")
            + " metrics: 'MAP(VARCHAR, DOUBLE)', event_details: 'MAP(VARCHAR, VARCHAR)'}"
        )
        options = f", columns={columns}" if kind == "map" else ""
        tmp = path.with_suffix(".parquet.part")
        con.execute(
            f"COPY (SELECT * FROM read_json(?{options})) TO '{tmp}' (FORMAT parquet)", [str(src)]
        )
        tmp.replace(path)
    finally:
        con.close()
    print(
        f"wrote {path} ({n:,} rows, {path.stat().st_size / 1e6:,.0f} MB) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return path


def count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(16 * 1024 * 1024):
            count += chunk.count(b"\n")
    return count


# ---------------------------------------------------------------------------------------------
# Contenders


# ---------------------------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------------------------


def remove_db(db: Path) -> None:
    """A DuckDB file with its WAL and spill folder."""
    for p in (db, Path(f"{db}.wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(f"{db}.tmp", ignore_errors=True)


def stored_events(db: Path) -> int | None:
    """The events the store file holds, None when it is missing or unreadable."""
    if not db.is_file():
        return None
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return None
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    except duckdb.Error:
        return None
    finally:
        con.close()


def build_store(
    n: int, workdir: Path, name: str, note: str = ""
) -> tuple[Path, Path | None, float | None]:
    """WORKDIR/<name>_<n>.duckdb holding n events (reused when it does); the JSONL and the
    load's seconds when it had to be loaded. `note` ends the line that reports the load."""
    db = workdir / f"{name}_{n}.duckdb"
    held = stored_events(db)
    if held == n:
        print(f"reusing {db} ({n:,} events, {db.stat().st_size / 1e6:,.0f} MB)")
        return db, None, None
    if held is not None:
        print(f"{db} holds {held:,} events, not {n:,}: building it again")
    remove_db(db)
    src = generate(n, workdir)
    started = time.perf_counter()
    store = Store(db)
    try:
        result = load_files(store, [src], DATASET)
    finally:
        store.close()
    seconds = time.perf_counter() - started
    if result.failed_files or result.loaded != n:
        errors = "; ".join(f.error or "" for f in result.failed_files)
        raise SystemExit(
            f"loading {src} gave {result.loaded:,} events, not {n:,} "
            f"(rejected {result.rejected:,}, duplicates {result.duplicates:,}) {errors}"
        )
    print(
        f"loaded {n:,} events into {db} ({db.stat().st_size / 1e6:,.0f} MB) in {seconds:.1f} s"
        + (f" {note}" if note else "")
    )
    return db, src, seconds


def delete_data(db: Path, n: int, workdir: Path) -> None:
    """--delete-data: the store and the JSONL it was loaded from."""
    remove_db(db)
    events_path(n, workdir).unlink(missing_ok=True)
    print(f"\ndeleted {db} and the JSONL")
