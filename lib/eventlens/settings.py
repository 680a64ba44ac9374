"""Every setting eventlens reads from the environment, in one table: name, default and what it
does (datasette's SETTINGS is the model). Modules read them through this table, never through
os.environ directly; tests/test_docs.py checks that the README documents each one."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from dataclasses import dataclass

# A command the running app took over from another process reads that process's environment
# (its keys, its settings), not the server's: eventlens.handoff sets this for the job's thread.
ENVIRONMENT: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "eventlens_environment", default=None
)


def environ() -> Mapping[str, str]:
    """The environment this command runs with: its own process's, or a handed-off job's."""
    job = ENVIRONMENT.get()
    return os.environ if job is None else job


@dataclass(frozen=True)
class Setting:
    """One environment variable eventlens reads."""

    name: str
    default: str | None
    help: str

    def from_env(self) -> str | None:
        """The environment's value, None when unset (an empty value counts as unset)."""
        return environ().get(self.name) or None

    def value(self) -> str | None:
        """The environment's value, else the default."""
        return self.from_env() or self.default


DB = Setting(
    "EVENTLENS_DB",
    "eventlens.duckdb",
    "The store every command and the app use (`--db` overrides it): a DuckDB file, `:memory:` "
    "for a throwaway store, or a ClickHouse URL (`clickhouse://host:8123/db`, `https://...`, "
    "`chdb:///path`).",
)
CLICKHOUSE_PASSWORD = Setting(
    "CLICKHOUSE_PASSWORD",
    None,
    "The password for a ClickHouse store (`--db clickhouse://...` or `https://...`) when the URL "
    "has none; never printed, logged or shown.",
)
MEMORY_LIMIT = Setting(
    "EVENTLENS_MEMORY_LIMIT",
    None,
    "DuckDB's memory_limit, e.g. `4GB` (default: a quarter of the machine's memory, at least "
    "1 GB, for the app; DuckDB's 80% of RAM for commands; replay plans within 96 MB unless it "
    "is set); past it, a big load or query spills to disk instead of growing. A command the "
    "running app takes over runs with the app's.",
)
THREADS = Setting(
    "EVENTLENS_THREADS",
    None,
    "DuckDB's threads for a DuckDB store, e.g. `1` (default: one per core); fewer leave cores "
    "to other work, and on data smaller than a row group (122,880 rows) a second thread only "
    "costs CPU: the test suite runs with `1`. A command the running app takes over runs with "
    "the app's.",
)
API_KEY = Setting(
    "LANGWATCH_API_KEY",
    None,
    "The LangWatch key for Submit, `send` and `replay` when none is typed; never printed, "
    "logged or stored (`replay --api-key-env` names another variable).",
)
ENDPOINT = Setting(
    "LANGWATCH_ENDPOINT",
    "https://app.langwatch.ai",
    "Where `send` and `replay` post without `--endpoint`; when set, Submit and Replay offer it "
    "first (else they start on the app's own sandbox).",
)
SANDBOX_KEY = Setting(
    "EVENTLENS_SANDBOX_KEY",
    "sandbox-key",
    "The key the sandbox accepts (the embedded one and `eventlens sandbox`).",
)
STATE_DIR = Setting(
    "EVENTLENS_STATE_DIR",
    None,
    "The folder for a ClickHouse store's local files: replay's journal and plans, the "
    "sandbox's bookkeeping (default: beside a `chdb://` folder, or "
    "`$XDG_STATE_HOME/eventlens/<host>-<port>-<database>` for a server). A DuckDB store keeps "
    "its own.",
)
SETTINGS = (
    DB,
    CLICKHOUSE_PASSWORD,
    MEMORY_LIMIT,
    THREADS,
    API_KEY,
    ENDPOINT,
    SANDBOX_KEY,
    STATE_DIR,
)


def named(name: str) -> str | None:
    """A variable named at run time (replay's `--api-key-env`): a setting's value when it is
    one of the table's, else the environment's, None when unset."""
    known = next((s for s in SETTINGS if s.name == name), None)
    return known.value() if known else environ().get(name) or None
