"""Load event exports into the store: detect the format, read with DuckDB, validate, dedupe.

Every format is first turned into one row of JSON text per record (a line, an array element, a
CSV or Parquet row), numbered by its position in the file. Clean, new events then go straight
into `events` in one statement (the fast path). The records left over take the full path: it
expands trace documents and search responses into events, checks them against model.py's
rules, sends failures to `rejects` with the reason, and inserts the rest unless an event with
the same identity is already stored. No Python code runs per row.

detect.py tells the layout, readers.py holds a reader per layout, sql.py the statements,
pipeline.py runs them (load_files), results.py is what a load reports.
"""

from eventlens.ingest.detect import ACCEPTED_FORMATS, Detected, NotAnExport, detect
from eventlens.ingest.options import CHUNK_RECORDS, MAX_LINE_BYTES, LoadOptions
from eventlens.ingest.pipeline import default_dataset_name, file_sha256, load_files
from eventlens.ingest.results import FileResult, LoadResult
from eventlens.ingest.sql import columns_json_sql

__all__ = [
    "ACCEPTED_FORMATS",
    "CHUNK_RECORDS",
    "MAX_LINE_BYTES",
    "Detected",
    "FileResult",
    "LoadOptions",
    "LoadResult",
    "NotAnExport",
    "columns_json_sql",
    "default_dataset_name",
    "detect",
    "file_sha256",
    "load_files",
]
