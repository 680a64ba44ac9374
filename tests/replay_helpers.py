"""Input files shared by the replay tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, items: list[Any]) -> Path:
    """Items as lines: a str is written as is (a raw, maybe broken line), anything else as JSON."""
    lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
