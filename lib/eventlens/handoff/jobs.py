"""Running a handed-off command inside the server: the same click command the terminal would
have run, on this process's store, with its output, terminal and environment sent along.

click writes to sys.stdout and sys.stderr, which every thread of the server shares; they are
replaced once by routers that send a job thread's writes to its job (context.CURRENT) and
everything else where it went before.
"""

from __future__ import annotations

import contextvars
import ctypes
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from eventlens import settings
from eventlens.errors import EventlensError
from eventlens.handoff.context import CURRENT, Job

log = logging.getLogger("eventlens")

# The commands a server runs for another process: those that read or write its store. `ui`,
# `sandbox`, `send` and `sample` never need the store's lock.
HANDED_OFF = ("load", "info", "series", "replay", "pull", "delete")


@dataclass(frozen=True)
class JobRequest:
    """A command as the sending process parsed it, paths already absolute."""

    command: str
    params: Mapping[str, Any]
    typed: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    tty: Mapping[str, bool] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRequest:
        """The request a client sent; ValueError names what is wrong with it."""
        command = data.get("command")
        if command not in HANDED_OFF:
            raise ValueError(f"{command!r} is not a command the app runs for another process")
        params = data.get("params")
        if not isinstance(params, dict):
            raise ValueError("params must be an object")
        # JSON has lists where click gives tuples (nargs=-1, multiple=True).
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        return cls(
            command,
            params,
            {str(k): str(v) for k, v in (data.get("typed") or {}).items()},
            {str(k): str(v) for k, v in (data.get("environment") or {}).items()},
            {str(k): bool(v) for k, v in (data.get("tty") or {}).items()},
        )


class _Router:
    """A text stream that writes a job thread's output to its job, the rest to `fallback`."""

    def __init__(self, fallback: Any, name: str) -> None:
        self._fallback = fallback
        self._name = name

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes with b"" to tell binary streams apart
            raise TypeError("write() argument must be str")
        job = CURRENT.get()
        if job is None:
            return int(self._fallback.write(text))
        job.emit(self._name, text)
        return len(text)

    def flush(self) -> None:
        if CURRENT.get() is None:
            self._fallback.flush()

    def isatty(self) -> bool:
        job = CURRENT.get()
        return job.tty.get(self._name, False) if job else bool(self._fallback.isatty())

    @property
    def encoding(self) -> str:
        return "utf-8" if CURRENT.get() else str(getattr(self._fallback, "encoding", "utf-8"))

    @property
    def errors(self) -> str:
        return "strict" if CURRENT.get() else str(getattr(self._fallback, "errors", "strict"))

    def __getattr__(self, name: str) -> Any:  # fileno, buffer, ...: the process's own stream
        return getattr(self._fallback, name)


_installed = threading.Lock()


def install_routers() -> None:
    """Route sys.stdout and sys.stderr through job routers (once per process)."""
    with _installed:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout, "out")
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, "err")


def run(request: JobRequest, emit: Callable[[str, str], None]) -> int:
    """Run the command as `eventlens COMMAND` would and return its exit code; its output goes
    to `emit`. Call in a fresh thread (see start)."""
    CURRENT.set(Job(emit, request.tty, request.typed))
    settings.ENVIRONMENT.set(request.environment)
    try:
        return _invoke(request)
    except BaseException as exc:  # noqa: BLE001 - a job never takes the server down
        log.exception("a handed-off %s failed", request.command)
        emit("err", f"Error: the app could not run the command: {type(exc).__name__}\n")
        return 1


def _invoke(request: JobRequest) -> int:
    from eventlens.cli import main

    command = main.commands[request.command]
    try:
        with click.Context(main, info_name="eventlens") as root:
            with click.Context(command, info_name=request.command, parent=root) as ctx:
                ctx.params = dict(request.params)
                try:
                    command.invoke(ctx)
                except EventlensError as exc:  # as the command group says them
                    raise click.UsageError(str(exc), ctx) from None
        return 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        click.echo("Aborted!", err=True)
        return 1
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        click.echo(str(exc.code), err=True)
        return 1


def start(
    request: JobRequest, emit: Callable[[str, str], None], done: Callable[[int], None]
) -> threading.Thread:
    """Run a job on its own thread, in a fresh context; `done` gets the exit code."""
    context = contextvars.Context()
    thread = threading.Thread(
        target=lambda: done(context.run(run, request, emit)),
        name=f"handoff-{request.command}",
        daemon=True,
    )
    thread.start()
    return thread


def interrupt(thread: threading.Thread) -> None:
    """Stop a job as Ctrl-C would stop the command in a terminal: a KeyboardInterrupt in its
    thread (taken at the next Python instruction; a DuckDB statement finishes first)."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
        )
