"""The sending side: a command whose store a running server holds is run there instead.

The command's options are parsed here, as always (a usage error never leaves the terminal);
paths are made absolute, so that they mean in the server the file they mean here, and the
server is sent the parsed options, the environment, whether each stream is a terminal and how
each path was typed. Its output is written here as it comes; its exit code is this command's.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

import click
import httpx

from eventlens import location
from eventlens.client import tls_context
from eventlens.handoff.context import in_job
from eventlens.handoff.published import JOBS, Published, find_live
from eventlens.store import resolve_db_path

READ_TIMEOUT_S = 60.0  # a live job sends at least a heartbeat a second


def hand_off_when_held(
    keep: Mapping[str, Collection[str]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a command run in the server that holds its store, when one does.

    Its click.Path arguments, and any listed in `keep` (with the words that are not paths,
    like replay's `store`), are made absolute before they go.
    """
    extra = dict(keep or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(**params: Any) -> Any:
            if in_job():
                return command(**params)
            db = resolve_db_path(params.get("db"))
            key = location.handoff_key(db)
            server = find_live(key) if key is not None else None
            if server is None:
                return command(**params)
            ctx = click.get_current_context()
            absolute, typed = _absolute_paths(ctx, params, extra)
            absolute["db"] = location.held_form(db, server.store)
            typed[absolute["db"]] = db
            raise SystemExit(run_remote(server, ctx.info_name or "", absolute, typed))

        return run

    return decorate


def _absolute_paths(
    ctx: click.Context, params: dict[str, Any], extra: Mapping[str, Collection[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The parameters with every path absolute, and each absolute path's typed form."""
    typed: dict[str, str] = {}
    words: dict[str | None, Collection[str]] = {
        p.name: () for p in ctx.command.params if isinstance(p.type, click.Path)
    }
    words.update(extra)

    def absolute(value: Any, keep: Collection[str]) -> Any:
        if isinstance(value, tuple):
            return tuple(absolute(v, keep) for v in value)
        if not isinstance(value, str) or value in keep or value in ("", "-"):
            return value
        path = os.path.abspath(value)
        typed[path] = value
        return path

    out = {
        name: absolute(value, words[name]) if name in words else value
        for name, value in params.items()
    }
    return out, typed


def run_remote(
    server: Published, command: str, params: dict[str, Any], typed: dict[str, str]
) -> int:
    """Send a command to the server and play its output here; returns its exit code."""
    body = {
        "command": command,
        "params": params,
        "typed": typed,
        "environment": dict(os.environ),  # the job reads the keys and settings this one would
        "tty": {"out": sys.stdout.isatty(), "err": sys.stderr.isatty()},
    }
    signals = _Signals()
    job_id: str | None = None
    asked_to_stop = False
    try:
        with (
            signals,
            httpx.Client(
                timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S), verify=tls_context()
            ) as http,
        ):
            with http.stream(
                "POST", server.url + JOBS, json=body, headers=server.headers()
            ) as answer:
                if answer.status_code != 200:
                    answer.read()
                    return _refused(answer)
                for line in answer.iter_lines():  # at least a heartbeat a second
                    if signals.count and job_id and not asked_to_stop:
                        asked_to_stop = True  # the job stops as Ctrl-C stops it here
                        http.post(
                            f"{server.url}{JOBS}/{job_id}/interrupt", headers=server.headers()
                        )
                    item = json.loads(line) if line else {}
                    if "job" in item:
                        job_id = item["job"]
                    elif "out" in item:
                        sys.stdout.write(item["out"])
                        sys.stdout.flush()
                    elif "err" in item:
                        sys.stderr.write(item["err"])
                        sys.stderr.flush()
                    elif "exit" in item:
                        return int(item["exit"])
    except KeyboardInterrupt:  # a second Ctrl-C: leave without waiting for the job
        click.echo("\nStopped waiting; the app is stopping the job.", err=True)
        return 130
    except (httpx.HTTPError, ValueError):
        pass
    click.echo(
        f"Error: the eventlens app holding {typed.get(server.store, server.store)} (pid"
        f" {server.pid}) stopped during the job. Nothing half-done was kept: the store has what"
        " the job had committed (a load's finished files, a pull's applied pages, a replay's"
        " journal). Run the command again.",
        err=True,
    )
    return 1


def _refused(answer: httpx.Response) -> int:
    try:
        reason = answer.json().get("error", "")
    except ValueError:
        reason = answer.text[:200]
    click.echo(f"Error: the running eventlens app refused the command: {reason}", err=True)
    return 1


class _Signals:
    """While a job runs, Ctrl-C or TERM asks the server to stop it (as either stops the command
    in a terminal) and the output goes on to the end; a second one leaves at once."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if _main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._caught)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)

    def _caught(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
