"""The `eventlens` command: load exports, inspect the store, make sample data, start the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from eventlens.ingest import FileResult, LoadResult, load_files
from eventlens.store import DB_ENV, Store, StoreError, resolve_db_path

DB_OPTION = click.option(
    "--db",
    "db",
    default=None,
    envvar=DB_ENV,
    show_envvar=True,
    help="DuckDB file to use (default ./eventlens.duckdb; ':memory:' for a throwaway store).",
)


def _open_store(db: str | None) -> Store:
    try:
        return Store(db)
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventlens")
def main() -> None:
    """Explore, submit and replay LangWatch custom events."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@DB_OPTION
@click.option("--dataset", help="Dataset name (default: the first file's name).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def load(files: tuple[str, ...], db: str | None, dataset: str | None, as_json: bool) -> None:
    """Load event export FILES (JSONL, JSON, CSV, Parquet, gzip) into the store.

    Bad rows are rejected with a reason and reported; the good rows still load. The exit code is
    0 when the command ran, whatever was rejected; 2 for a usage error or an unreadable path.
    """
    unreadable = [f for f in files if not os.path.isfile(f) or not os.access(f, os.R_OK)]
    if unreadable:
        raise click.BadParameter("cannot read " + ", ".join(unreadable), param_hint="FILES")
    if dataset is not None and not dataset.strip():
        raise click.BadParameter("must not be empty", param_hint="--dataset")
    with _open_store(db) as store:
        result = load_files(store, files, dataset)
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        click.echo(format_load_summary(result))


def format_load_summary(result: LoadResult) -> str:
    """A plain-text summary of a load, one block per file."""
    lines = [f"dataset: {result.dataset}"]
    for f in result.files:
        lines.extend(_file_lines(f))
    lines.append(
        f"total: {result.loaded} loaded, {result.rejected} rejected, "
        f"{result.duplicates} duplicates"
        + (f", {len(result.failed_files)} file(s) not loaded" if result.failed_files else "")
    )
    return "\n".join(lines)


def _file_lines(f: FileResult) -> list[str]:
    if f.error:
        return [f"{f.path}: NOT LOADED: {f.error.removeprefix(f.path + ': ')}"]
    out = [
        f"{f.path} ({f.format}): {f.loaded} loaded, {f.rejected} rejected, "
        f"{f.duplicates} duplicates in {f.seconds:.2f}s"
    ]
    if f.first_event:
        out.append(f"  time range: {f.first_event} .. {f.last_event}")
    if f.event_types:
        types = ", ".join(f"{k} ({v})" for k, v in list(f.event_types.items())[:12])
        more = len(f.event_types) - 12
        out.append(f"  event types: {types}" + (f" and {more} more" if more > 0 else ""))
    if f.rejected:
        out.append(f"  first rejected rows (all {f.rejected} are in the store's rejects table):")
        out.extend(f"    {f.path}, {where}: {reason}" for where, reason in f.first_rejects)
        out.append("  most common reasons:")
        out.extend(f"    {count} x {reason}" for reason, count in f.top_reasons)
    return out


@main.command()
@DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(db: str | None, as_json: bool) -> None:
    """List the datasets in the store with their counts and time ranges."""
    with _open_store(db) as store:
        frame = store.datasets()
        total = store.event_count()
    rows = [
        {
            "dataset": r.dataset,
            "events": int(r.events),
            "traces": int(r.traces),
            "event_types": int(r.event_types),
            "rejects": int(r.rejects),
            "duplicates": int(r.duplicates),
            "first_event": _iso(r.first_event),
            "last_event": _iso(r.last_event),
            "files": list(r.files),
        }
        for r in frame.itertuples()
    ]
    if as_json:
        click.echo(json.dumps({"db": store.path, "events": total, "datasets": rows}))
        return
    click.echo(f"store: {store.path} ({total} events)")
    if not rows:
        click.echo("no datasets yet: load some with `eventlens load FILE`")
    for r in rows:
        click.echo(
            f"{r['dataset']}: {r['events']} events, {r['traces']} traces, "
            f"{r['event_types']} event types, {r['rejects']} rejected, "
            f"{r['first_event'] or '-'} .. {r['last_event'] or '-'}"
        )


def _iso(value: object) -> str | None:
    if value is None or value != value:  # None or NaT
        return None
    return value.isoformat()  # type: ignore[attr-defined]


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="sample_data",
    show_default=True,
    help="Folder to write the sample export and the small per-format files into.",
)
@click.option(
    "--events",
    "n",
    type=click.IntRange(1, 10_000_000),
    default=50_000,
    show_default=True,
    help="How many events in the main export.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed.")
def sample(out: str, n: int, seed: int) -> None:
    """Write the deterministic sample data (the same seed gives the same bytes)."""
    from eventlens.sample import write_samples

    for path in write_samples(Path(out), n=n, seed=seed):
        click.echo(str(path))


@main.command(context_settings={"ignore_unknown_options": True})
@DB_OPTION
@click.option("--port", type=int, default=None, help="Port to serve on (default 8501).")
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
def ui(db: str | None, port: int | None, streamlit_args: tuple[str, ...]) -> None:
    """Start the eventlens app in the browser (extra arguments go to `streamlit run`)."""
    app = app_path()
    # The app runs from its own folder so its .streamlit/config.toml applies; the store path is
    # made absolute first so that it still means what it meant where the command was typed.
    env = dict(os.environ, **{DB_ENV: os.path.abspath(resolve_db_path(db))})
    cmd = [sys.executable, "-m", "streamlit", "run", str(app)]
    if port:
        cmd += ["--server.port", str(port)]
    cmd += list(streamlit_args)
    if os.name == "posix":
        # Become the app, so that a signal to this process (Ctrl-C, a supervisor's TERM) stops
        # the server instead of leaving it running as an orphan.
        os.chdir(app.parent)
        os.execve(sys.executable, cmd, env)
    raise SystemExit(subprocess.call(cmd, env=env, cwd=app.parent))


def app_path() -> Path:
    """The app's entry script: beside the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "app.py", here / "_app" / "app.py"):
        if candidate.is_file():
            return candidate
    raise click.ClickException("cannot find app.py next to the eventlens package")


if __name__ == "__main__":
    main()
