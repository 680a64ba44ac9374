"""Where the store lives: a DuckDB file (the embedded default) or a ClickHouse database.

`--db` and EVENTLENS_DB take a path, `:memory:`, or a URL:

- `clickhouse://[user[:password]@]host[:port]/database` (HTTP, port 8123 by default)
- `https://[user[:password]@]host[:port]/database` (TLS, port 8443 by default: ClickHouse Cloud)
- `chdb:///path/to/dir[?database=name]` (ClickHouse's engine in this process, through chDB;
  one folder per process, so several stores in it are databases)

The password comes from the URL or from CLICKHOUSE_PASSWORD; `display` never contains it, so a
location can be printed, logged or put in an error message as it is.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from eventlens import settings
from eventlens.errors import EventlensError

CLICKHOUSE_SCHEMES = {"clickhouse": ("http", 8123), "https": ("https", 8443), "chdb": ("chdb", 0)}


class LocationError(EventlensError, ValueError):
    """A --db value that names no store eventlens can open, worded for the person who typed it."""


@dataclass(frozen=True)
class Location:
    """A parsed --db value."""

    engine: str  # "duckdb" or "clickhouse"
    path: str = ""  # DuckDB: the file (or :memory:); chDB: its data folder
    interface: str = ""  # ClickHouse: http, https or chdb
    host: str = ""
    port: int = 0
    database: str = "default"
    user: str = "default"
    password: str = field(default="", repr=False)  # never in display or repr

    @property
    def display(self) -> str:
        """The location as a person may see it: no password."""
        if self.engine == "duckdb":
            return self.path
        if self.interface == "chdb":
            suffix = "" if self.database == "default" else f"?database={self.database}"
            return f"chdb://{self.path}{suffix}"
        scheme = "clickhouse" if self.interface == "http" else "https"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}"


def state_dir(loc: Location) -> Path:
    """Where the local files a ClickHouse store needs live (replay's journal, the sandbox's
    bookkeeping: state updated in place, which DuckDB does in transactions): $EVENTLENS_STATE_DIR,
    else a folder beside a chDB folder, else one under the user's state folder named by server
    and database (no user, no password)."""
    if given := settings.STATE_DIR.from_env():
        return Path(given)
    if loc.interface == "chdb":
        folder = Path(loc.path).resolve()
        return folder.with_name(f"{folder.name}.{loc.database}.eventlens")
    state = settings.environ().get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    host = re.sub(r"[^A-Za-z0-9.-]", "_", loc.host)
    return Path(state) / "eventlens" / f"{host}-{loc.port}-{loc.database}"


def replay_journal(loc: Location) -> str:
    """Replay's journal of runs for a ClickHouse store (its plans go beside it)."""
    return str(state_dir(loc) / "journal.duckdb")


def sandbox_state(loc: Location) -> str:
    """The sandbox's own DuckDB for a ClickHouse store: the keys it has seen and the traces its
    read routes answer from (the events it accepts go to ClickHouse too)."""
    return str(state_dir(loc) / "sandbox.duckdb")


def handoff_key(text: str) -> str | None:
    """What a running app that holds the store `text` names is published under (handoff/): a
    DuckDB file's real path, or a chDB folder's, since chDB lets one process open a folder (with
    every database in it). None where no other process could be refused: `:memory:`, and a
    ClickHouse server, which takes every process's commands itself."""
    if text == ":memory:":
        return None
    if not is_url(text):
        return str(Path(text).resolve())
    loc = parse(text)
    return str(Path(loc.path).resolve()) if loc.interface == "chdb" else None


def held_form(text: str, held: str) -> str:
    """`text` as a command run by the app holding `held` (its handoff_key) takes it: the held
    file itself, or the chDB URL with its folder made absolute (the database kept)."""
    if not is_url(text):
        return held
    database = parse(text).database
    return f"chdb://{held}" + ("" if database == "default" else f"?database={database}")


def _name(database: str) -> str:
    """A database name as ClickHouse takes it unquoted (it is put in CREATE DATABASE)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", database):
        raise LocationError(
            f"--db: {database!r} is not a database name (letters, digits and _, not first a digit)"
        )
    return database


def is_url(text: str) -> bool:
    """Whether a --db value is a ClickHouse URL rather than a DuckDB path."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme in CLICKHOUSE_SCHEMES


def parse(text: str) -> Location:
    """A --db value as a Location; LocationError says what is wrong (never with the password)."""
    if not is_url(text):
        if "://" in text:
            scheme = text.split("://", 1)[0]
            raise LocationError(
                f"--db: {scheme}:// is not a store eventlens can open; give a DuckDB file,"
                " clickhouse://host:8123/database, https://host:8443/database or chdb:///path"
            )
        return Location("duckdb", path=text)
    parts = urllib.parse.urlsplit(text)
    interface, default_port = CLICKHOUSE_SCHEMES[parts.scheme.lower()]
    if interface == "chdb":
        path = urllib.parse.unquote(parts.netloc + parts.path)
        if not path:
            raise LocationError("--db: chdb:// needs a folder for its data, as in chdb:///data/ch")
        # One chDB folder per process: several stores in it are databases (?database=name).
        database = urllib.parse.parse_qs(parts.query).get("database", ["default"])[0]
        return Location("clickhouse", path=path, interface="chdb", database=_name(database))
    if not parts.hostname:
        raise LocationError(f"--db: {parts.scheme}:// needs a host, as in {parts.scheme}://host")
    try:
        port = parts.port or default_port
    except ValueError:
        raise LocationError(
            f"--db: the port of {parts.scheme}://{parts.hostname} is not a number"
        ) from None
    database = _name(parts.path.strip("/") or "default")
    password = urllib.parse.unquote(parts.password or "") or (
        settings.CLICKHOUSE_PASSWORD.from_env() or ""
    )
    return Location(
        "clickhouse",
        interface=interface,
        host=parts.hostname,
        port=port,
        database=database,
        user=urllib.parse.unquote(parts.username or "") or "default",
        password=password,
    )
