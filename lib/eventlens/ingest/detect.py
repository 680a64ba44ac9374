"""Tell what a file holds from its first bytes: a record layout, or NotAnExport saying why not."""

from __future__ import annotations

import csv
import gzip
import json
import os
from dataclasses import dataclass
from typing import Literal, get_args

from eventlens.errors import EventlensError

SNIFF_BYTES = 256 * 1024

# The record layouts detect() tells apart; readers.py has one reader for each.
Kind = Literal["jsonl", "json-array", "json-document", "csv", "parquet"]
KINDS: tuple[Kind, ...] = get_args(Kind)

# The columns a CSV or Parquet row's trace_id and event_type are read from; a table needs one.
KEY_COLUMNS = {"trace_id": ("trace_id",), "event_type": ("event_type", "type")}
_CSV_SEPARATORS = (",", "\t", ";", "|")  # the delimiters DuckDB's CSV sniffer tries
ACCEPTED_FORMATS = (
    "eventlens reads JSON lines, a JSON array, a LangWatch trace document or search response,"
    " CSV with a header naming trace_id and event_type, and Parquet, each also gzip-compressed."
)


class NotAnExport(EventlensError):
    """A file that holds no event export; its message says what it is instead."""


@dataclass(frozen=True)
class Detected:
    """What a file holds: its record layout and whether it is gzip-compressed."""

    kind: Kind
    gzip: bool = False

    @property
    def label(self) -> str:
        """A short name for summaries, e.g. 'jsonl+gzip'."""
        return self.kind + ("+gzip" if self.gzip else "")


def detect(path: str | os.PathLike[str]) -> Detected:
    """Tell a file's format from its content (the extension only breaks ties)."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not head:
        raise NotAnExport("the file is empty")
    compressed = head[:2] == b"\x1f\x8b"
    if compressed:
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(SNIFF_BYTES)
        except (OSError, EOFError) as exc:
            raise NotAnExport(
                f"it looks gzip-compressed but cannot be decompressed ({exc})"
            ) from None
        if not head:
            raise NotAnExport("the file is empty once decompressed")
    if head[:4] == b"PAR1":
        if compressed:
            raise NotAnExport("a gzip-compressed Parquet file is not supported; decompress it")
        return Detected("parquet")
    if str(path).lower().endswith(".parquet"):
        raise NotAnExport("the name says Parquet but the content is not a Parquet file")
    text = _decode(head)
    if text is None:
        raise NotAnExport("it is binary data, not JSON, CSV or Parquet")
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise NotAnExport("the file holds only blank lines")
    if stripped[0] == "[" and stripped[1:].lstrip()[:1] in ("{", "[", "]", '"', ""):
        return Detected("json-array", compressed)
    if stripped[0] == "{":
        return Detected(_jsonl_or_document(stripped), compressed)
    first_line = stripped.split("\n", 1)[0].rstrip("\r")
    if _is_event_csv_header(first_line):
        return Detected("csv", compressed)
    # Prose and other tables end here: without the header check, any line with a comma was
    # "CSV" and failed later with its words listed as columns.
    start = first_line if len(first_line) <= 60 else first_line[:60].rstrip() + "…"
    raise NotAnExport(
        "it is not an event export: its first line is neither JSON nor a CSV header naming"
        f' trace_id or event_type (it begins "{start}"). {ACCEPTED_FORMATS}'
    )


def _is_event_csv_header(line: str) -> bool:
    """Whether a line is a CSV header with at least two columns, one of them an event key."""
    names = {name for names in KEY_COLUMNS.values() for name in names}
    for sep in _CSV_SEPARATORS:
        cells = next(csv.reader([line], delimiter=sep), [])
        if len(cells) > 1 and any(c.strip().lower() in names for c in cells):
            return True
    return False


def _decode(head: bytes) -> str | None:
    """The sniffed bytes as text, or None when they are binary."""
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sniff may cut a multi-byte character at its end; anything earlier is binary.
        if exc.start >= len(head) - 4:
            return head[: exc.start].decode("utf-8")
        return None


def _jsonl_or_document(text: str) -> Kind:
    """JSON lines have an object per line; a document spreads one object over many lines."""
    lines = [ln for ln in text.split("\n")[:3] if ln.strip()]
    if len(lines) >= 2 and not lines[1].lstrip().startswith("{"):
        # The second line continues the first: pretty-printed, unless line one stands alone.
        try:
            json.loads(lines[0])
        except ValueError:
            return "json-document"
    return "jsonl"
