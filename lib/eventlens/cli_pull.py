"""`eventlens pull`: the sync from LangWatch on the command line (the core is eventlens.sync)."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from eventlens import settings
from eventlens.handoff import hand_off_when_held
from eventlens.store import DB_ENV, STORE_HELP
from eventlens.stores import open_store
from eventlens.sync import DEFAULT_DATASET, MAX_PAGE_SIZE, Progress, PullError, PullResult, PullSpec
from eventlens.words import bar, counted


def parse_when(text: str | None, name: str) -> int | None:
    """Epoch ms from epoch ms digits, or an ISO date or date-time (UTC unless it has an offset)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO date or date-time, nor epoch milliseconds", param_hint=name
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def progress_line(p: Progress, tty: bool) -> None:
    """Traces out of totalHits, events, pages, rate; on a terminal, one line redrawn."""
    total = p.total_hits or 0
    share = min(1.0, p.traces / total) if total else (1.0 if p.pages else 0.0)
    of = f"/{total:,}" if p.total_hits is not None else ""
    line = (
        f"[{bar(share)}] {p.traces:,}{of} traces | {p.events:,} events | {counted(p.pages, 'page')}"
        f" | {p.events_per_s:,.0f} events/s" + (f" | {p.note}" if p.note else "")
    )
    click.echo(("\r" + line) if tty else line, err=True, nl=not tty)


def summary(r: PullResult) -> str:
    through = r.as_dict()["updated_through"] or "-"
    text = (
        f"Pulled {counted(r.traces, 'trace')} ({counted(r.events, 'event')}: {r.added:,} added,"
        f" {r.removed:,} removed, {r.rejected:,} rejected) in {counted(r.pages, 'page')} into"
        f" dataset {r.dataset}; the next pull starts at {through}."
    )
    if r.refetched:
        text += f" {counted(r.refetched, 'trace')} with 1,000 events were read whole."
    if r.rejected:
        text += " The rejects are on the Data page (`eventlens info` counts them)."
    return text


@click.command()
@click.option(
    "--endpoint",
    default=None,
    help=f"LangWatch's address (default: ${settings.ENDPOINT.name}, else the cloud).",
)
@click.option(
    "--db",
    "db",
    default=None,
    envvar=DB_ENV,
    show_envvar=True,
    help=STORE_HELP,
)
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True, help="Dataset to sync into.")
@click.option("--since", help="Traces updated at or after this (ISO, UTC unless given; or ms).")
@click.option("--until", help="Traces updated at or before this (default: now).")
@click.option("--full", is_flag=True, help="Start again from the beginning (or --since).")
@click.option(
    "--page-size",
    type=click.IntRange(1, MAX_PAGE_SIZE),
    default=MAX_PAGE_SIZE,
    show_default=True,
    help="Traces per page.",
)
@click.option(
    "--api-key-env",
    default=settings.API_KEY.name,
    show_default=True,
    help="The environment variable holding the key (never a key on the command line).",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object.")
@hand_off_when_held()
def pull(
    endpoint: str | None,
    db: str | None,
    dataset: str,
    since: str | None,
    until: str | None,
    full: bool,
    page_size: int,
    api_key_env: str,
    as_json: bool,
) -> None:
    """Pull a LangWatch project's events into a dataset; a second pull goes on where the first
    stopped. Exit 0 done, 1 failed, 2 usage."""
    from eventlens.sync import pull as run_pull

    try:
        spec = PullSpec(
            endpoint=(endpoint or str(settings.ENDPOINT.value())).rstrip("/"),
            dataset=dataset,
            since_ms=parse_when(since, "--since"),
            until_ms=parse_when(until, "--until"),
            full=full,
            page_size=page_size,
            api_key_env=api_key_env,
        )
    except PullError as exc:
        raise click.UsageError(str(exc)) from None
    tty = sys.stderr.isatty()
    try:
        with open_store(db) as store:
            result = run_pull(store, spec, progress=lambda p: progress_line(p, tty))
    except PullError as exc:
        if tty:
            click.echo("", err=True)
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        click.echo("\nInterrupted: the pages applied are kept; pull again to go on.", err=True)
        raise SystemExit(1) from None
    if tty:
        click.echo("", err=True)
    click.echo(summary(result))
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
