"""The README against the code: every setting in its table as settings.py has it, every CLI
command shown (datasette's tests/test_docs.py is the model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventlens import settings
from eventlens.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def settings_table() -> str:
    """The README's settings table as settings.SETTINGS renders it."""
    rows = ["| variable | default | what it does |", "| --- | --- | --- |"]
    for s in settings.SETTINGS:
        default = f"`{s.default}`" if s.default else "(none)"
        rows.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(rows)


def test_the_readme_lists_every_setting_as_the_code_has_it():
    assert settings_table() in README, (
        "README's settings table differs from settings.SETTINGS:\n" + (settings_table())
    )


@pytest.mark.parametrize("command", sorted(main.commands))
def test_the_readme_shows_every_command(command):
    assert f"uv run eventlens {command}" in README
