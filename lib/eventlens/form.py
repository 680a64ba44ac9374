"""The Submit form's rules, without Streamlit: the rows it offers for an event type, what a
change of type keeps, and whether the answer to a send still describes the event in the form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventlens import analytics, model
from eventlens.store import Store

Rows = tuple[tuple[str, Any], ...]  # a key/value table's rows, in order


@dataclass(frozen=True)
class Tables:
    """The form's metrics and event_details tables."""

    metrics: Rows = ()
    details: Rows = ()

    @classmethod
    def of(cls, body: dict[str, Any]) -> Tables:
        """The tables holding a body's metrics and event_details."""
        return cls(
            tuple((body.get("metrics") or {}).items()),
            tuple((body.get("event_details") or {}).items()),
        )


def offer(store: Store, event_type: str) -> Tables:
    """The rows the form fills in for an event type.

    A predefined type gets its rule's metric with a value that passes and its optional detail;
    a type in the store gets the keys most of its events carry, with typical values; a type
    nobody has seen gets nothing.
    """
    if rule := model.PREDEFINED_RULES.get(event_type):
        detail = ((rule.detail, rule.detail_example),) if rule.detail else ()
        return Tables(((rule.metric, rule.example),), detail)
    metrics, details = analytics.typical_fields(store, event_type)
    return Tables(tuple(metrics.items()), tuple(details.items()))


@dataclass(frozen=True)
class Switch:
    """The tables after a change of event type, and the rows kept because the user wrote them."""

    tables: Tables
    kept: tuple[str, ...]  # "metrics.amount", "event_details.note"


def switch(current: Tables, filled: Tables, offered: Tables) -> Switch:
    """Replace what the form filled in with the new type's offer, keeping what the user wrote.

    A row still exactly as the form filled it in (by the previous offer, a template or a
    history load) gives way; a row the user typed or changed stays, so no hand-typed value is
    thrown away: on an offered key the user's value wins, other kept rows follow the offer.
    """
    metrics, kept_metrics = _switch_rows(current.metrics, filled.metrics, offered.metrics)
    details, kept_details = _switch_rows(current.details, filled.details, offered.details)
    kept = tuple(f"metrics.{k}" for k in kept_metrics)
    return Switch(
        Tables(metrics, details), kept + tuple(f"event_details.{k}" for k in kept_details)
    )


def _switch_rows(current: Rows, filled: Rows, offered: Rows) -> tuple[Rows, list[str]]:
    """One table after a switch (see `switch`) and the keys of the user's rows in it."""
    mine = {key: value for key, value in current if (key, value) not in filled}
    kept = list(mine)
    rows = [(key, mine.pop(key, value)) for key, value in offered]
    return (*rows, *mine.items()), kept


def same_event(sent: dict[str, Any], sent_now: bool, body: dict[str, Any], now: bool) -> bool:
    """Whether the form's body is the event that was sent, so the answer still describes it.

    `sent_now` and `now` say the timestamp was taken at "now": that is a new number on every
    rerun, so two such bodies match whatever their timestamps.
    """

    def fixed(one: dict[str, Any], stamped_now: bool) -> dict[str, Any]:
        return {k: v for k, v in one.items() if not (stamped_now and k == "timestamp")}

    return sent_now == now and fixed(sent, sent_now) == fixed(body, now)
