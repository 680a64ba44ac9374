"""How a load reads and checks its files: the sizes it works in and whether the fast path runs."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE_BYTES = 32 * 1024 * 1024  # also the largest element of a JSON array
CHUNK_RECORDS = 2_000_000  # records checked and inserted at a time


@dataclass(frozen=True)
class LoadOptions:
    """What every stage of a load is told, instead of module globals."""

    max_line_bytes: int = MAX_LINE_BYTES  # sizes the JSONL read buffers and array elements
    chunk_records: int = CHUNK_RECORDS  # memory follows the chunk, not the file
    # Off, every record takes the full path: tests compare what the two paths store.
    fast_path: bool = True
