"""Making user-supplied text safe to show: Streamlit renders Markdown in messages."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


def md_escape(text: object) -> str:
    """Text with every Markdown and HTML special character escaped, so it shows as written."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")


def human_bytes(n: float) -> str:
    """A byte count in the largest unit that keeps it above 1 (e.g. '1.0 GB')."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
