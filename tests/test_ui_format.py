"""Escaping user text before Streamlit renders it as Markdown."""

from __future__ import annotations

import pytest

from eventlens.ui.format import human_bytes, md_escape


@pytest.mark.parametrize(
    "text",
    [
        "![img](http://example.invalid/x.png)",
        "<script>alert(1)</script>",
        "**bold** _it_ `code` # head",
        "[link](javascript:alert(1))",
        "line one\nline two",
    ],
)
def test_md_escape_leaves_no_markup_active(text):
    escaped = md_escape(text)
    specials = set("\\`*_{}[]()<>#+-.!|~$:")
    unescaped = [
        i
        for i, ch in enumerate(escaped)
        if ch in specials and ch != "\\" and (i == 0 or escaped[i - 1] != "\\")
    ]
    assert unescaped == [], escaped
    assert "\n" not in escaped
    # Removing the escapes gives back the text, newlines folded to spaces.
    assert escaped.replace("\\", "") == text.replace("\n", " ")


def test_md_escape_of_plain_words_is_unchanged():
    assert md_escape("events 2025 loaded") == "events 2025 loaded"


@pytest.mark.parametrize(
    ("n", "text"),
    [(512, "512 bytes"), (2048, "2.0 KB"), (1024**3, "1.0 GB"), (5 * 1024**4, "5120.0 GB")],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text
