"""The table files linreg reads (`data=table`, `predict.py`), told apart by name alone."""

from __future__ import annotations

from pathlib import Path

CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
NUMPY_SUFFIXES = (".npy", ".npz")
SUFFIXES = (*CSV_SUFFIXES, *PARQUET_SUFFIXES, *NUMPY_SUFFIXES)
# What data=table may do with a row that has an empty cell.
MISSING_CHOICES = ("error", "drop")


def table_suffix(path: Path) -> str | None:
    """The supported suffix `path` ends with ("" for a folder of Parquet files), or None."""
    if path.is_dir():
        return ""
    name = path.name.lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def parquet_files(path: Path) -> list[Path]:
    """A Parquet table's files: the file itself, or a folder's Parquet files in name order."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.name.lower().endswith(PARQUET_SUFFIXES))
