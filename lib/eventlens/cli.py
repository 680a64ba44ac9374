"""The `eventlens` command: load exports, inspect the store, make sample data, start the app."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from eventlens import analytics, location, settings, stores
from eventlens.errors import EventlensError
from eventlens.export import neutralise
from eventlens.handoff import hand_off_when_held, in_job, shown
from eventlens.ingest import FileResult, LoadResult
from eventlens.store import DB_ENV, STORE_HELP, Store, resolve_db_path
from eventlens.stores import open_store, opened_replay_store, opened_sandbox_stores
from eventlens.words import bar, counted

if TYPE_CHECKING:  # replay loads aiohttp: imported where a command needs it
    from eventlens.replay import DryRun, Report, Run

DB_OPTION = click.option(
    "--db",
    "db",
    default=None,
    envvar=DB_ENV,
    show_envvar=True,
    help=STORE_HELP,
)


class _Commands(click.Group):
    """eventlens's own errors (a locked store, a query that cannot run, a run that cannot resume)
    end the command as a usage error: one sentence and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EventlensError as exc:
            raise click.UsageError(str(exc)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventlens")
def main() -> None:
    """Explore, submit and replay LangWatch custom events."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@DB_OPTION
@click.option("--dataset", help="Dataset name (default: the first file's name).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@hand_off_when_held()
def load(files: tuple[str, ...], db: str | None, dataset: str | None, as_json: bool) -> None:
    """Load event export FILES (JSONL, JSON, CSV, Parquet, gzip) into the store.

    Bad rows are rejected with a reason and reported; the good rows still load. The exit code is
    0 when the command ran, whatever was rejected; 2 for a usage error or an unreadable path.
    """
    unreadable = [f for f in files if not os.path.isfile(f) or not os.access(f, os.R_OK)]
    if unreadable:
        raise click.BadParameter(
            "cannot read " + ", ".join(map(shown, unreadable)), param_hint="FILES"
        )
    if dataset is not None and not dataset.strip():
        raise click.BadParameter("must not be empty", param_hint="--dataset")
    with open_store(db) as store:
        result = stores.load(store, files, dataset, [shown(f) for f in files])
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
        f"{counted(result.duplicates, 'duplicate', grouped=False)}"
        + (
            f", {counted(len(result.failed_files), 'file')} not loaded"
            if result.failed_files
            else ""
        )
    )
    return "\n".join(lines)


def _file_lines(f: FileResult) -> list[str]:
    if f.error:
        return [f"{f.path}: NOT LOADED: {f.error.removeprefix(f.path + ': ')}"]
    out = [
        f"{f.path} ({f.format}): {f.loaded} loaded, {f.rejected} rejected, "
        f"{counted(f.duplicates, 'duplicate', grouped=False)} in {f.seconds:.2f}s"
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
@hand_off_when_held()
def info(db: str | None, as_json: bool) -> None:
    """List the datasets in the store with their counts and time ranges."""
    with open_store(db) as store:
        records = store.dataset_records()
        total = store.event_count()
    rows: list[dict[str, Any]] = [
        {
            "dataset": r["dataset"],
            "test": bool(r["test"]),  # test data: left out of "all datasets" (see series)
            "events": int(r["events"]),
            "traces": int(r["traces"]),
            "event_types": int(r["event_types"]),
            "rejects": int(r["rejects"]),
            "duplicates": int(r["duplicates"]),
            "first_event": _iso(r["first_event"]),
            "last_event": _iso(r["last_event"]),
            "files": list(r["files"]),
        }
        for r in records
    ]
    if as_json:
        click.echo(json.dumps({"db": shown(store.path), "events": total, "datasets": rows}))
        return
    click.echo(f"store: {shown(store.path)} ({counted(total, 'event', grouped=False)})")
    if not rows:
        click.echo("no datasets yet: load some with `eventlens load FILE`")
    for r in rows:
        click.echo(
            f"{r['dataset']}{' (test data)' if r['test'] else ''}:"
            f" {counted(r['events'], 'event', grouped=False)},"
            f" {counted(r['traces'], 'trace', grouped=False)},"
            f" {counted(r['event_types'], 'event type', grouped=False)}, {r['rejects']} rejected, "
            f"{r['first_event'] or '-'} .. {r['last_event'] or '-'}"
        )


@main.command()
@click.argument("dataset")
@DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@hand_off_when_held()
def delete(dataset: str, db: str | None, as_json: bool) -> None:
    """Delete DATASET: its events, rejects, files and pull cursor (other datasets stay)."""
    with open_store(db) as store:
        names = store.dataset_names()
        if dataset not in names:
            have = ", ".join(names) or "none"
            raise click.BadParameter(
                f"no dataset named {dataset!r} (the store has: {have})", param_hint="DATASET"
            )
        removed = store.delete_dataset(dataset)
    if as_json:
        click.echo(json.dumps({"dataset": dataset, "events_removed": removed}))
    else:
        click.echo(f"deleted dataset {dataset}: {counted(removed, 'event')} removed")


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
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="Only this dataset (repeatable; default: every dataset but test data).",
)
@click.option(
    "--include-test",
    is_flag=True,
    help="With no --dataset, count test data too (the sandbox's, or datasets marked so).",
)
@click.option("--start", help="ISO date or date-time; without an offset it is in --tz.")
@click.option("--end", help="ISO date or date-time (exclusive); without an offset it is in --tz.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone for the buckets.")
@hand_off_when_held()
def series(
    db: str | None,
    metric: str | None,
    agg: str | None,
    bucket: str,
    split: str,
    top: int,
    types: tuple[str, ...],
    datasets: tuple[str, ...],
    include_test: bool,
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
    with open_store(db) as store:
        query = analytics.SeriesQuery(
            agg=agg,
            metric=metric if agg in analytics.METRIC_AGGREGATIONS else None,
            bucket=bucket,
            tz=tz,
            split=split,
            top=top,
            datasets=datasets,
            include_test=include_test,
            event_types=types,
            start=_instant(store, start, tz, "--start"),
            end=_instant(store, end, tz, "--end"),
        )
        result = analytics.series(store, query)
    counts = agg in ("count", "traces")
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["bucket", "series", "value"])
    ordered = result.frame.sort_values(["bucket", "series"], kind="stable")
    for row in ordered.to_dict("records"):
        value = row["value"]
        if value is None or value != value:  # NaN: an empty bucket of a metric
            text = ""
        else:
            text = str(int(value)) if counts else f"{float(value):.15g}"
        out.writerow([row["bucket"].isoformat(), neutralise(row["series"]), text])
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


def _instant(store: Any, text: str | None, tz: str, name: str) -> dt.datetime | None:
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
@click.option(
    "--no-select",
    is_flag=True,
    help="Reads ignore `select`, as LangWatch before 3.5.0 did (no `schema` in the answer).",
)
@click.option(
    "--ignore-scroll",
    is_flag=True,
    help="Reads ignore every scrollId (page 1 forever), as LangWatch bug #2615 did.",
)
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
    no_select: bool,
    ignore_scroll: bool,
) -> None:
    """Run a local LangWatch-compatible track_event endpoint that stores what it accepts, and
    answers trace reads (POST /api/traces/search, GET /api/traces/{id}) over it."""
    from eventlens.sandbox import Faults, ReadOptions, network_problem, serve

    if problem := network_problem(host, key):
        raise click.UsageError(f"--host {host}: {problem}")
    if fail_rate + throttle_rate + drop_rate > 1:
        raise click.BadParameter("the fault rates add up to more than 1", param_hint="--fail-rate")
    faults = Faults(fail_rate, throttle_rate, drop_rate, latency_ms, seed=seed)
    reads = ReadOptions(select_supported=not no_select, ignore_scroll=ignore_scroll)
    with opened_sandbox_stores(db) as (store, mirror):
        shown_store = store.path if mirror is None else f"{mirror.path}, kept in {store.path}"
        click.echo(
            f"sandbox: http://{host}:{port}/api/track_event (store {shown_store}, dataset"
            " sandbox); reads on /api/traces/search and /api/traces/{id}"
        )
        serve(store, host, port, key, faults, reads, mirror)


@main.command()
@click.argument("source", required=False)
@DB_OPTION
@click.option(
    "--endpoint", default=None, help="Base URL (default: $LANGWATCH_ENDPOINT, else LangWatch)."
)
@click.option(
    "--path",
    "route",
    type=click.Choice(["/api/track_event", "/api/events/track"]),
    default=None,
    help="The route (default /api/track_event).",
)
@click.option("--bearer", is_flag=True, default=None, help="Send the key as Authorization: Bearer.")
@click.option(
    "--api-key-env",
    default=None,
    metavar="VAR",
    help="Environment variable holding the key (default LANGWATCH_API_KEY).",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="At most N events/s.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    help="Keep the original timing, X times faster (e.g. 60).",
)
@click.option(
    "--max-gap",
    type=click.FloatRange(min=0),
    default=None,
    help="With --speed: original gaps longer than this many seconds count as this long (60).",
)
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None, help="In flight (16).")
@click.option("--max-retries", type=click.IntRange(0, 100), default=None, help="Per event (8).")
@click.option(
    "--timestamps",
    type=click.Choice(["keep", "shift", "now"]),
    default=None,
    help="keep; shift (the first event is now, gaps kept); now.",
)
@click.option("--trace-ids", default=None, metavar="keep|prefix:P|fresh", help="Trace ids (keep).")
@click.option("--redact", multiple=True, metavar="KEY", help="Replace this detail's value.")
@click.option("--dataset", "datasets", multiple=True, help="SOURCE store: only this dataset.")
@click.option("--type", "types", multiple=True, help="SOURCE store: only this event type.")
@click.option("--trace", "traces", multiple=True, help="SOURCE store: only this trace id.")
@click.option("--since", help="SOURCE store: events at or after this ISO time (UTC unless given).")
@click.option("--until", help="SOURCE store: events before this ISO time.")
@click.option("--dry-run", is_flag=True, help="Check, count and estimate; send nothing.")
@click.option(
    "--resume", "resume_id", metavar="RUN_ID", help="Resume a run ('last': the newest unfinished)."
)
@click.option("--dead-letter", type=click.Path(dir_okay=False), help="Write dead letters here.")
@click.option("--json", "as_json", is_flag=True, help="End with the report as one JSON object.")
@hand_off_when_held(keep={"source": ("store",)})
def replay(
    source: str | None,
    db: str | None,
    endpoint: str | None,
    route: str | None,
    bearer: bool | None,
    api_key_env: str | None,
    rate: float | None,
    speed: float | None,
    max_gap: float | None,
    concurrency: int | None,
    max_retries: int | None,
    timestamps: str | None,
    trace_ids: str | None,
    redact: tuple[str, ...],
    datasets: tuple[str, ...],
    types: tuple[str, ...],
    traces: tuple[str, ...],
    since: str | None,
    until: str | None,
    dry_run: bool,
    resume_id: str | None,
    dead_letter: str | None,
    as_json: bool,
) -> None:
    """Replay SOURCE (an export file, or the word `store` for --db's events) to track_event.

    Paced, concurrent, retried (5xx, 429 with Retry-After, timeouts); each event gets an event_id
    stable for the run, so retries and resumes are deduplicated by the server. Every outcome is
    journalled in the store: `--resume RUN_ID` (or `last`) sends only what was not accepted.
    The key is read from $LANGWATCH_API_KEY (or --api-key-env VAR), never from an argument.
    Exit 0: every valid event accepted; 1: otherwise; 2: usage error.
    """
    from eventlens import replay as rp

    if not resume_id and not source:
        raise click.UsageError("give a SOURCE file (or `store`), or --resume RUN_ID")
    if source and source != "store" and not os.path.isfile(source):
        raise click.BadParameter(f"{shown(source)}: no such file", param_hint="SOURCE")
    if source != "store" and (datasets or types or traces or since or until):
        raise click.UsageError(
            "--dataset, --type, --trace, --since and --until filter SOURCE store"
        )
    with opened_replay_store(db) as store:  # on ClickHouse: a local journal (stores.py)
        if not in_job():  # in the app's process, the app's budget holds
            rp.hold_memory(store)
        started = time.monotonic()
        pacing = {
            "rate": rate,
            "speed": speed,
            "max_gap_s": max_gap,
            "concurrency": concurrency,
            "max_retries": max_retries,
        }
        if resume_id:
            run = rp.get_run(store, resume_id)
            # The command that started the run may resume it: its SOURCE, filters and transforms
            # must be the run's (a resume continues the plan; it does not make another).
            asked = (
                _replay_source(store, source, datasets, types, traces, since, until)
                if source
                else None
            )
            changed = rp.resume_differences(
                run,
                asked,
                rp.given(
                    run.transforms,
                    timestamps=timestamps,
                    trace_ids=trace_ids,
                    redact=redact or None,
                ),
            )
            if changed:
                raise click.UsageError(
                    f"--resume continues run {run.run_id} as it was planned, and this differs: "
                    + "; ".join(changed)
                    + " (leave out --resume to plan a new run)"
                )
            rp.check_resume_endpoint(run, endpoint)
            run.pacing = rp.given(run.pacing, **pacing)
            run.endpoint = rp.given(run.endpoint, key_env=api_key_env)
        else:
            if source and source != "store":  # a big file takes minutes to check and sort
                size = os.path.getsize(source) / 1e6
                click.echo(
                    f"planning {shown(source)} ({size:,.1f} MB): checking every event...", err=True
                )
            run = rp.plan(
                store,
                _replay_source(store, source or "", datasets, types, traces, since, until),
                rp.given(
                    rp.Transforms(), timestamps=timestamps, trace_ids=trace_ids, redact=redact
                ),
                rp.given(rp.Pacing(), **pacing),
                rp.given(
                    rp.Endpoint(),
                    url=endpoint or settings.ENDPOINT.from_env(),
                    path=route,
                    auth="bearer" if bearer else None,
                    key_env=api_key_env,
                ),
            )
        if not resume_id:
            click.echo(
                f"planned {counted(run.planned, 'event')} ({run.invalid:,} invalid,"
                f" {run.duplicates:,}"
                f" repeated) in {_duration(time.monotonic() - started)}",
                err=True,
            )
        click.echo(f"run_id: {run.run_id}" + (" (dry run: nothing is sent)" if dry_run else ""))
        if dry_run:
            _print_dry_run(rp.dry_run(store, run), as_json)
            if not resume_id:  # planned just for this look; a resumed run stays
                rp.discard_unstarted(store, run.run_id, None)
            raise SystemExit(0)
        if not rp.can_start(run, None):  # finished: say so, with its report
            report = run.report or rp.build_report(store, run)
            click.echo(f"run {run.run_id} has finished; there is nothing left to send")
            click.echo(_report_text(report))
            if as_json:
                click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
            raise SystemExit(0 if report.all_accepted else 1)
        key = settings.named(run.endpoint.key_env)
        if not key:
            raise click.UsageError(
                f"set ${run.endpoint.key_env} to the API key (the run is saved: resume it with"
                f" --resume {run.run_id})"
            )
        report = _run_replay(store, run, key)
        if dead_letter or report.dead_lettered:
            out = dead_letter or str(rp.plan_dir(store) / f"{run.run_id}.dead-letter.jsonl")
            report = dataclasses.replace(report, dead_letter_file=out)
            rp.write_dead_letters(store, run.run_id, out)
        click.echo(_report_text(report))
        if as_json:
            click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    raise SystemExit(0 if report.all_accepted else 1)


def _replay_source(
    store: Store,
    source: str,
    datasets: tuple[str, ...],
    types: tuple[str, ...],
    traces: tuple[str, ...],
    since: str | None,
    until: str | None,
) -> Any:
    from eventlens.replay import Source

    if source != "store":
        # Kept absolute, so the run resumes from any folder (or inside the app, see handoff);
        # the journal names it as it was typed.
        return Source(path=os.path.abspath(source), display_name=shown(source))
    return Source(
        datasets=datasets,
        event_types=types,
        trace_ids=traces,
        start=_instant(store, since, "UTC", "--since"),
        end=_instant(store, until, "UTC", "--until"),
    )


def _run_replay(store: Store, run: Run, key: str) -> Report:
    """Run a session in a thread, drawing progress on stderr; Ctrl-C or TERM stops it cleanly."""
    import signal
    import threading

    from eventlens.replay import Replay

    session = Replay(store, run, key)
    box: dict[str, Any] = {}

    # Waited on through an Event, not Thread.join: a KeyboardInterrupt inside join() can mark
    # a running thread as stopped (CPython before 3.13), and the store would close under it.
    done = threading.Event()

    def work() -> None:
        try:
            box["report"] = session.execute()
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["error"] = exc
        finally:
            done.set()

    def stop(signum: int, frame: Any) -> None:
        session.stop("stopped by a signal; resume the run to send the rest")

    # A signal handler can only be set on the main thread; a job the app took over from
    # another process (eventlens.handoff) is stopped by that process's Ctrl-C or TERM instead.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    thread = threading.Thread(target=work, name="replay", daemon=True)
    thread.start()
    tty = sys.stderr.isatty()
    last_line = 0.0

    def watch() -> None:
        nonlocal last_line
        while not done.wait(0.5 if tty else 5.0):
            now = time.monotonic()
            if tty or now - last_line >= 5.0:
                _progress_line(session.progress(), tty)
                last_line = now

    try:
        while True:  # until the session ends: the store must stay open while it writes
            try:
                watch()
                break
            except KeyboardInterrupt:
                session.stop("stopped by Ctrl-C; resume the run to send the rest")
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if tty:
            click.echo("", err=True)
    if "error" in box:
        error = box["error"]
        if isinstance(error, EventlensError):
            raise error  # the command group says it as a usage error
        raise click.ClickException(f"the replay failed: {error}")
    return box["report"]


def _progress_line(p: Any, tty: bool) -> None:
    share = p.done / p.planned if p.planned else 1.0
    errors = p.rejected + p.invalid + p.failed + p.unknown
    eta = _duration(p.eta_s) if p.eta_s is not None else "?"
    held = f" | paused {p.paused_for_s:.0f}s (Retry-After)" if p.paused_for_s else ""
    line = (
        f"[{bar(share)}] {p.done:,}/{p.planned:,} events | {p.rate:,.0f}/s | errors {errors:,}"
        f" | retries {p.retried:,} | ETA {eta}{held}"
    )
    click.echo(("\r" + line) if tty else line, err=True, nl=not tty)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _print_dry_run(info: DryRun, as_json: bool) -> None:
    est = info.estimated_s
    click.echo(
        f"{counted(info.events, 'event')} in {counted(info.traces, 'trace')} would be sent"
        f" ({info.first_time or '-'} .. {info.last_time or '-'});"
        f" {info.invalid:,} invalid, {info.duplicates:,} repeated in the source"
    )
    fastest = "as fast as the endpoint answers (no --rate or --speed)"
    click.echo("estimated duration: " + (_duration(est) if est is not None else fastest))
    for item in info.invalid_reasons:
        click.echo(f"  invalid: {item['reason']}")
    click.echo("first bodies as they would be sent:")
    for body in info.first_bodies:
        click.echo("  " + json.dumps(body, ensure_ascii=False))
    if as_json:
        click.echo(json.dumps(info.as_dict(), ensure_ascii=False))


def _report_text(r: Report) -> str:
    lat = r.latency_ms
    lines = [
        f"run {r.run_id}: {r.state}" + (f" ({r.message})" if r.message else ""),
        f"  events {r.events:,}: planned {r.planned:,}, invalid {r.invalid:,},"
        f" repeated in the source {r.duplicates_in_source:,}",
        f"  sent {r.sent:,} ({counted(r.requests, 'request')}): accepted {r.accepted:,},"
        f" rejected {r.rejected:,}, retried {r.retried:,}, failed {r.failed:,},"
        f" unknown {r.unknown:,}, not sent {r.not_sent:,}",
        f"  dead-lettered {r.dead_lettered:,}"
        + (f" -> {r.dead_letter_file}" if r.dead_letter_file else ""),
        f"  {r.rate_per_s or 0:,.0f} events/s over {_duration(r.elapsed_s)};"
        f" latency p50 {lat.p50} ms, p95 {lat.p95} ms, p99 {lat.p99} ms"
        + (" (estimated)" if lat.estimated else ""),
    ]
    for event_type, counts in r.by_type.items():
        parts = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        lines.append(f"  {event_type}: {parts}")
    return "\n".join(lines)


@main.command(context_settings={"ignore_unknown_options": True})
@DB_OPTION
@click.option("--port", type=int, default=None, help="Port to serve on (default 8501).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 opens the app (and its sandbox) to the network.",
)
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
def ui(db: str | None, port: int | None, host: str, streamlit_args: tuple[str, ...]) -> None:
    """Start the eventlens app in the browser (extra arguments go to `streamlit run`)."""
    from eventlens.sandbox import network_problem

    if problem := network_problem(host, None):
        raise click.UsageError(f"--host {host}: {problem}")
    app = app_path()
    # The app runs from its own folder so its .streamlit/config.toml applies; the store path is
    # made absolute first so that it still means what it meant where the command was typed.
    path = resolve_db_path(db)
    if location.is_url(path):
        open_store(path).close()  # a bad URL or an unreachable server: one sentence, exit 2
    elif path != ":memory:":
        path = os.path.abspath(path)
        _check_not_held(path)
    env = dict(os.environ, **{DB_ENV: path})
    # The launcher serves app.py and, on the same port, the sandbox's track_event routes.
    launcher = Path(__file__).resolve().parent / "ui" / "server.py"
    # Loopback unless asked: the app shows events (prompts, user text in details) and its
    # sandbox takes writes. Streamlit's own default is every interface.
    cmd = [sys.executable, "-m", "streamlit", "run", str(launcher), "--server.address", host]
    if port:
        cmd += ["--server.port", str(port)]
    cmd += list(streamlit_args)
    if os.name == "posix":
        # Become the app, so that a signal to this process (Ctrl-C, a supervisor's TERM) stops
        # the server instead of leaving it running as an orphan.
        os.chdir(app.parent)
        os.execve(sys.executable, cmd, env)
    raise SystemExit(subprocess.call(cmd, env=env, cwd=app.parent))


def _check_not_held(path: str) -> None:
    """Say now, not in the browser later, that another process holds the store."""
    from eventlens.handoff import find_live

    if held := find_live(path):
        raise click.UsageError(
            f"{path} is already open in the eventlens app at {held.app_url or held.url}"
            f" (pid {held.pid}): use that one, stop it, or choose another store with --db"
        )
    Store(path).close()  # a StoreError (held by a load, say) is a usage error: exit 2


def app_path() -> Path:
    """The app's entry script: beside the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "app.py", here / "_app" / "app.py"):
        if candidate.is_file():
            return candidate
    raise click.ClickException("cannot find app.py next to the eventlens package")


def _add_commands() -> None:
    from eventlens.cli_pull import pull

    main.add_command(pull)


_add_commands()

if __name__ == "__main__":
    main()
