"""Runs in background threads: the Replay page's sessions, which outlive the page's reruns."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from eventlens.replay.engine import Replay
from eventlens.replay.report import Report
from eventlens.replay.specs import ReplayError

log = logging.getLogger(__name__)


@dataclass
class Session:
    """A run in a background thread (the Replay page's worker)."""

    replay: Replay
    thread: threading.Thread
    report: Report | None = None
    error: str | None = None

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


def start_background(replay: Replay) -> Session:
    """Run a session in a daemon thread; the Session gives progress and controls."""
    run_id = replay.run.run_id
    holder: list[Session] = []

    def target() -> None:
        session = holder[0]
        try:
            session.report = replay.execute()
        except ReplayError as exc:
            session.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown on the page, details in the log
            log.exception("replay %s failed", run_id)
            session.error = f"the replay failed ({type(exc).__name__}: {exc})"

    thread = threading.Thread(target=target, name=f"replay-{run_id}", daemon=True)
    holder.append(Session(replay, thread))
    thread.start()
    return holder[0]
