"""The ClickHouse tables: one node (what `ClickHouseStore` makes), and the same on a cluster.

Events are ordered for Explore's and Traces' queries: every Explore query filters on dataset
(test data left out) and usually event_type, then a time range; one trace is found through a
bloom filter on trace_id. Maps hold Nullable values so that a missing key reads NULL, as
DuckDB's maps do (a plain Map returns 0 or ''), which the shared filters rely on.
"""

from __future__ import annotations

import re

# The fields a load sends, between the key and the batch.
EVENT_FIELDS = """
    event_id Nullable(String),
    trace_id String,
    event_type LowCardinality(String),
    timestamp Nullable(DateTime64(3, 'UTC')),
    metrics Map(String, Nullable(Float64)),
    event_details Map(String, Nullable(String)),
    dataset LowCardinality(String),
    source_file Nullable(String),
    source_line Nullable(Int64)"""
EVENTS_COLUMNS = f"""
    event_key UInt128,{EVENT_FIELDS},
    batch_id Int64,
    INDEX trace_idx trace_id TYPE bloom_filter GRANULARITY 4
"""
# A load's work table: the key in two 64-bit halves (Arrow has no 128-bit integer), no batch.
STAGED_COLUMNS = f"key_hi UInt64, key_lo UInt64,{EVENT_FIELDS}"
EVENTS_ORDER = "ORDER BY (dataset, event_type, timestamp) SETTINGS allow_nullable_key = 1"

DATASETS_COLUMNS = """
    name String,
    files Array(String),
    content_hash String,
    loaded_at DateTime64(3, 'UTC'),
    events UInt64,
    rejects UInt64,
    duplicates UInt64,
    test Bool,
    revision DateTime64(6, 'UTC')
"""
REJECTS_COLUMNS = """
    dataset String,
    file Nullable(String),
    file_hash Nullable(String),
    line Nullable(Int64),
    location Nullable(String),
    reason String,
    raw Nullable(String),
    trace_id Nullable(String),
    rejected_at DateTime64(3, 'UTC')
"""
# One row per (dataset, trace) and insert, merged in the background and summed when read
# (traces_sql.py): what the trace list needs without grouping every event, as DuckDB's
# trace_summary, but kept by ClickHouse itself on every insert into events.
TRACE_SUMMARY_COLUMNS = """
    dataset LowCardinality(String),
    trace_id String,
    events SimpleAggregateFunction(sum, UInt64),
    first_time SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    last_time SimpleAggregateFunction(max, Nullable(DateTime64(3, 'UTC'))),
    event_types SimpleAggregateFunction(groupUniqArrayArray, Array(String))
"""
TRACE_SUMMARY_ORDER = "ORDER BY (dataset, trace_id)"
TRACE_SUMMARY_SELECT = (
    "SELECT dataset, trace_id, count() AS events, min(timestamp) AS first_time,"
    " max(timestamp) AS last_time, groupUniqArray(toString(event_type)) AS event_types"
    " FROM {events} GROUP BY dataset, trace_id"
)
# The Submit page's history and saved shapes (history.py): ids from the clock, as ClickHouse has
# no sequences; the latest template of a name wins.
SUBMISSIONS_COLUMNS = """
    id UInt64,
    sent_at DateTime64(3, 'UTC'),
    endpoint String,
    body String,
    outcome String,
    status Nullable(Int32),
    response Nullable(String),
    latency_ms Nullable(Float64),
    message Nullable(String)
"""
TEMPLATES_COLUMNS = "name String, body String, saved_at DateTime64(6, 'UTC')"
# The latest row per dataset name wins (read with FINAL): a load, or a change of its test mark,
# writes the dataset's row anew with a later revision.
DATASETS_ENGINE = "ReplacingMergeTree(revision) ORDER BY name"
REJECTS_ORDER = "ORDER BY (dataset, ifNull(file_hash, ''), ifNull(line, 0))"
# One row per file per load, as DuckDB's `files`: a dataset's files, duplicates and content hash
# (sha256 over its files' sha256) are read from it.
FILES_COLUMNS = """
    dataset String,
    path String,
    sha256 String,
    format Nullable(String),
    loaded_at DateTime64(3, 'UTC'),
    loaded Int64,
    rejected Int64,
    duplicates Int64
"""
# Pulls from LangWatch (clickhouse/pulls.py), as DuckDB's tables of the same names: a pull's row
# and a cursor are written anew on every change, and the latest revision wins (read FINAL).
PULLS_COLUMNS = """
    pull_id String,
    endpoint String,
    dataset String,
    started_at DateTime64(3, 'UTC'),
    finished_at Nullable(DateTime64(3, 'UTC')),
    since_ms Nullable(Int64),
    until_ms Nullable(Int64),
    total_hits Nullable(Int64),
    traces Int64,
    events Int64,
    added Int64,
    removed Int64,
    rejected Int64,
    pages Int64,
    updated_through_ms Nullable(Int64),
    outcome String,
    message Nullable(String),
    pid Nullable(Int64),
    revision UInt64
"""
PULL_CURSORS_COLUMNS = """
    endpoint String,
    dataset String,
    updated_through_ms Nullable(Int64),
    scroll Nullable(String),
    revision UInt64
"""
# A pulled trace's metadata, replaced with the trace (deleted, then inserted).
TRACE_METADATA_COLUMNS = """
    dataset LowCardinality(String),
    trace_id String,
    user_id Nullable(String),
    thread_id Nullable(String),
    customer_id Nullable(String),
    labels Array(String),
    updated_at Nullable(DateTime64(3, 'UTC'))
"""


def single_node() -> list[str]:
    """The statements ClickHouseStore runs on opening a database (each idempotent)."""
    return [
        f"CREATE TABLE IF NOT EXISTS events ({EVENTS_COLUMNS}) ENGINE = MergeTree {EVENTS_ORDER}",
        f"CREATE TABLE IF NOT EXISTS datasets ({DATASETS_COLUMNS}) ENGINE = {DATASETS_ENGINE}",
        f"CREATE TABLE IF NOT EXISTS rejects ({REJECTS_COLUMNS}) ENGINE = MergeTree"
        f" {REJECTS_ORDER}",
        f"CREATE TABLE IF NOT EXISTS trace_summary ({TRACE_SUMMARY_COLUMNS})"
        f" ENGINE = AggregatingMergeTree {TRACE_SUMMARY_ORDER}",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS trace_summary_mv TO trace_summary AS "
        + TRACE_SUMMARY_SELECT.format(events="events"),
        f"CREATE TABLE IF NOT EXISTS submissions ({SUBMISSIONS_COLUMNS})"
        " ENGINE = MergeTree ORDER BY id",
        f"CREATE TABLE IF NOT EXISTS templates ({TEMPLATES_COLUMNS})"
        " ENGINE = ReplacingMergeTree(saved_at) ORDER BY name",
        f"CREATE TABLE IF NOT EXISTS files ({FILES_COLUMNS}) ENGINE = MergeTree"
        " ORDER BY (dataset, path)",
        *_pull_tables("MergeTree", "ReplacingMergeTree(revision)"),
    ]


def _pull_tables(plain: str, replacing: str, on: str = "", db: str = "") -> list[str]:
    prefix = f"{db}." if db else ""
    return [
        f"CREATE TABLE IF NOT EXISTS {prefix}pulls {on} ({PULLS_COLUMNS}) ENGINE = {replacing}"
        " ORDER BY pull_id",
        f"CREATE TABLE IF NOT EXISTS {prefix}pull_cursors {on} ({PULL_CURSORS_COLUMNS})"
        f" ENGINE = {replacing} ORDER BY (endpoint, dataset)",
        f"CREATE TABLE IF NOT EXISTS {prefix}trace_metadata {on} ({TRACE_METADATA_COLUMNS})"
        f" ENGINE = {plain} ORDER BY (dataset, trace_id)",
    ]


def cluster(name: str, database: str = "default") -> list[str]:
    """The same tables on a cluster: a ReplicatedMergeTree table per shard (`<table>_local`)
    and a Distributed `events` over them sharded by trace_id, so one trace's events sit on one
    shard. Run them once as an administrator; eventlens then opens `database` as usual. `name`
    and `database` are identifiers the administrator types, quoted here, never user data."""
    for identifier in (name, database):  # quoted below; a backtick would end the quoting
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}", identifier):
            raise ValueError(f"{identifier!r} is not a cluster or database name")
    on = f"ON CLUSTER `{name}`"
    db = f"`{database}`"
    replicated = "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.events_local {on} ({EVENTS_COLUMNS})"
        f" ENGINE = {replicated} {EVENTS_ORDER}",
        f"CREATE TABLE IF NOT EXISTS {db}.events {on} AS {db}.events_local"
        f" ENGINE = Distributed(`{name}`, {db}, events_local, cityHash64(trace_id))",
        # A trace's events share a shard, so each shard summarises its own traces.
        f"CREATE TABLE IF NOT EXISTS {db}.trace_summary_local {on} ({TRACE_SUMMARY_COLUMNS})"
        f" ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{{shard}}/{{database}}/"
        f"{{table}}', '{{replica}}') {TRACE_SUMMARY_ORDER}",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trace_summary_mv {on}"
        f" TO {db}.trace_summary_local AS "
        + TRACE_SUMMARY_SELECT.format(events=f"{db}.events_local"),
        f"CREATE TABLE IF NOT EXISTS {db}.trace_summary {on} AS {db}.trace_summary_local"
        f" ENGINE = Distributed(`{name}`, {db}, trace_summary_local, cityHash64(trace_id))",
        # Small tables: one replicated copy on every node, no sharding.
        f"CREATE TABLE IF NOT EXISTS {db}.datasets {on} ({DATASETS_COLUMNS}) ENGINE ="
        " ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/{table}', '{replica}',"
        " revision) ORDER BY name",
        f"CREATE TABLE IF NOT EXISTS {db}.rejects {on} ({REJECTS_COLUMNS}) ENGINE ="
        " ReplicatedMergeTree('/clickhouse/tables/all/{database}/{table}', '{replica}')"
        f" {REJECTS_ORDER}",
        f"CREATE TABLE IF NOT EXISTS {db}.files {on} ({FILES_COLUMNS}) ENGINE ="
        " ReplicatedMergeTree('/clickhouse/tables/all/{database}/{table}', '{replica}')"
        " ORDER BY (dataset, path)",
        *_pull_tables(
            "ReplicatedMergeTree('/clickhouse/tables/all/{database}/{table}', '{replica}')",
            "ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/{table}',"
            " '{replica}', revision)",
            on,
            db,
        ),
    ]
