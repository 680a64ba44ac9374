"""The `eventlens` command: load exports, inspect the store, make sample data, start the app."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from eventlens import analytics
from eventlens.export import neutralise
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


@main.command()
@DB_OPTION
@click.option("--metric", help="Metric key to aggregate (without it: the event count).")
@click.option(
    "--agg",
    type=click.Choice(analytics.AGGREGATIONS),
    default=None,
    help="Aggregation (default: count, or avg with --metric).",
)
@click.option("--bucket", type=click.Choice(analytics.BUCKETS), default="auto", show_default=True)
@click.option(
    "--by", "split", default="event_type", show_default=True, help="event_type, none or detail:KEY."
)
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="With --by detail:KEY, the values kept; the rest is 'other'.",
)
@click.option("--type", "types", multiple=True, help="Only this event type (repeatable).")
@click.option("--dataset", "datasets", multiple=True, help="Only this dataset (repeatable).")
@click.option("--start", help="ISO date or date-time; without an offset it is in --tz.")
@click.option("--end", help="ISO date or date-time (exclusive); without an offset it is in --tz.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone for the buckets.")
def series(
    db: str | None,
    metric: str | None,
    agg: str | None,
    bucket: str,
    split: str,
    top: int,
    types: tuple[str, ...],
    datasets: tuple[str, ...],
    start: str | None,
    end: str | None,
    tz: str,
) -> None:
    """Print a time series as CSV (bucket,series,value), as the Explore chart shows it.

    Buckets are ISO-8601 with their UTC offset in --tz; an empty bucket prints 0 for counts and
    an empty value for a metric.
    """
    agg = agg or ("avg" if metric else "count")
    if agg in analytics.METRIC_AGGREGATIONS and not metric:
        raise click.BadParameter(f"{agg} needs --metric", param_hint="--agg")
    with _open_store(db) as store:
        try:
            query = analytics.SeriesQuery(
                agg=agg,
                metric=metric if agg in analytics.METRIC_AGGREGATIONS else None,
                bucket=bucket,
                tz=tz,
                split=split,
                top=top,
                datasets=datasets,
                event_types=types,
                start=_instant(store, start, tz, "--start"),
                end=_instant(store, end, tz, "--end"),
            )
            result = analytics.series(store, query)
        except analytics.QueryError as exc:
            raise click.UsageError(str(exc)) from None
    counts = agg in ("count", "traces")
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["bucket", "series", "value"])
    for row in result.frame.sort_values(["bucket", "series"], kind="stable").itertuples():
        value = row.value
        if value is None or value != value:  # NaN: an empty bucket of a metric
            text = ""
        else:
            text = str(int(value)) if counts else f"{float(value):.15g}"
        out.writerow([row.bucket.isoformat(), neutralise(row.series), text])
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


def _instant(store: Store, text: str | None, tz: str, name: str) -> dt.datetime | None:
    """An ISO date or date-time as an instant; one without an offset is read in `tz`."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO date or date-time", param_hint=name
        ) from None
    if value.tzinfo is not None:
        return value
    try:
        return analytics.local_to_instant(store, value, tz)
    except analytics.QueryError as exc:
        raise click.BadParameter(str(exc), param_hint="--tz") from None


def _pairs(values: tuple[str, ...], name: str, numeric: bool) -> dict[str, Any]:
    """KEY=VALUE options as a dict; numbers parsed for metrics."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=name)
        if numeric:
            try:
                out[key] = float(value) if any(c in value.lower() for c in ".en") else int(value)
            except ValueError:
                raise click.BadParameter(
                    f"{key}: {value!r} is not a number", param_hint=name
                ) from None
        else:
            out[key] = value
    return out


@main.command()
@click.option("--trace-id", required=True, help="The trace the event belongs to.")
@click.option("--type", "event_type", required=True, help="The event_type.")
@click.option("--metric", "metrics", multiple=True, help="KEY=NUMBER (repeatable).")
@click.option("--detail", "details", multiple=True, help="KEY=TEXT (repeatable).")
@click.option("--timestamp", type=int, help="Epoch milliseconds (default: the server's now).")
@click.option("--event-id", help="Makes a resend idempotent: the server drops repeats.")
@click.option(
    "--endpoint",
    default=None,
    help="Base URL (default: $LANGWATCH_ENDPOINT, else https://app.langwatch.ai).",
)
@click.option("--bearer", is_flag=True, help="Send the key as Authorization: Bearer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def send(
    trace_id: str,
    event_type: str,
    metrics: tuple[str, ...],
    details: tuple[str, ...],
    timestamp: int | None,
    event_id: str | None,
    endpoint: str | None,
    bearer: bool,
    as_json: bool,
) -> None:
    """Send one event to POST /api/track_event; the key comes from $LANGWATCH_API_KEY only.

    The event is checked against LangWatch's rules first and not sent if it breaks one.
    Exit 0: accepted; 1: invalid, rejected or failed; 2: usage error.
    """
    from eventlens import client

    body: dict[str, Any] = {
        "trace_id": trace_id,
        "event_type": event_type,
        "metrics": _pairs(metrics, "--metric", numeric=True),
    }
    if details:
        body["event_details"] = _pairs(details, "--detail", numeric=False)
    if timestamp is not None:
        body["timestamp"] = timestamp
    if event_id:
        body["event_id"] = event_id
    target = client.resolve_target(endpoint, auth="bearer" if bearer else "x-auth-token")
    result = client.send_event(body, target)
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "endpoint": target.url}, ensure_ascii=False))
    else:
        where = f"{target.url} (key from {target.key_source})"
        latency = f" in {result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
        click.echo(f"{result.outcome}: {result.message}{latency}; {where}")
        if result.response is not None:
            click.echo(json.dumps(result.response, ensure_ascii=False))
    raise SystemExit(0 if result.ok else 1)


@main.command()
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8787, show_default=True)
@click.option(
    "--key",
    default=None,
    help="The sandbox's own key (default: $EVENTLENS_SANDBOX_KEY, else 'sandbox-key').",
)
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of 500s.")
@click.option("--throttle-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of 429s.")
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests stored, then answered by a closed connection.",
)
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="Added to each answer.")
@click.option("--seed", type=int, default=None, help="Makes the faults repeatable.")
def sandbox(
    db: str | None,
    host: str,
    port: int,
    key: str | None,
    fail_rate: float,
    throttle_rate: float,
    drop_rate: float,
    latency_ms: float,
    seed: int | None,
) -> None:
    """Run a local LangWatch-compatible track_event endpoint that stores what it accepts."""
    from eventlens.sandbox import Faults, serve

    if fail_rate + throttle_rate + drop_rate > 1:
        raise click.BadParameter("the fault rates add up to more than 1", param_hint="--fail-rate")
    faults = Faults(fail_rate, throttle_rate, drop_rate, latency_ms, seed=seed)
    with _open_store(db) as store:
        click.echo(
            f"sandbox: http://{host}:{port}/api/track_event (store {store.path}, dataset sandbox)"
        )
        serve(store, host, port, key, faults)


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
    # The launcher serves app.py and, on the same port, the sandbox's track_event routes.
    launcher = Path(__file__).resolve().parent / "ui" / "server.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(launcher)]
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
