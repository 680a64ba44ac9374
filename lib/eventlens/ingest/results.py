"""What a load did: one FileResult per file, a LoadResult per load, both JSON-ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FileResult:
    """What loading one file did."""

    path: str
    format: str | None = None
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    error: str | None = None
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    first_rejects: list[tuple[str, str]] = field(default_factory=list)  # (location, reason)
    first_event: str | None = None
    last_event: str | None = None
    event_types: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    record_too_long: bool = False  # it failed: a line or array element passed max_line_bytes
    out_of_memory: bool = False  # it failed: DuckDB's memory_limit was too small for it

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["top_reasons"] = [{"reason": r, "count": n} for r, n in self.top_reasons]
        out["first_rejects"] = [{"location": at, "reason": r} for at, r in self.first_rejects]
        return out


@dataclass
class LoadResult:
    """What loading several files into one dataset did."""

    dataset: str
    files: list[FileResult]

    @property
    def loaded(self) -> int:
        return sum(f.loaded for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def failed_files(self) -> list[FileResult]:
        return [f for f in self.files if f.error]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with integer totals and one entry per file."""
        return {
            "dataset": self.dataset,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "files": [f.as_dict() for f in self.files],
        }
