"""Checks shared by the AppTest page tests: no exception, no failed section, plain text."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def errors(at: AppTest) -> list[str]:
    """Each exception as 'Type: message (the last frame in this project)'."""
    out = []
    for e in at.exception:
        ours = [f for f in e.stack_trace if str(ROOT) in f and ".venv" not in f] or ["?"]
        out.append(f"{e.proto.type.rsplit('.', 1)[-1]}: {e.message} ({ours[-1]})")
    return out


def ok(at: AppTest) -> None:
    """No exception and no section that failed to draw (pytest.fail, not an AssertionError)."""
    if at.exception:
        pytest.fail(f"the page raised: {errors(at)}")
    if at.error:
        pytest.fail(f"the page showed errors: {[e.value for e in at.error]}")


def plain(text: str) -> str:
    """A message without the Markdown escapes the page adds (md_escape)."""
    return text.replace("\\", "")
