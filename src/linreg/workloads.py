"""What the benchmarks run on and how they time it: tables written to disk in pieces, and waiting
for a device's queued work before reading the clock."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work: a GPU's timings are otherwise its launch times."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REGIONS = ("east", "north", "south", "west", "centre", "coast", "hills", "plain")


def write_table_files(
    rows: int, folder: Path, text_column: bool = False, kinds: Sequence[str] = ("CSV", "Parquet")
) -> dict[str, Path]:
    """A CSV and a Parquet table (or those of `kinds`) of `rows` rows x 16 float32 features and a
    target `y`, written in pieces (never held whole); `text_column`: a 17th feature, `region`,
    text of 8 levels."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    weight = rng.standard_normal(16).astype(np.float32)
    kind = "-region" if text_column else ""
    paths = {
        name: folder / f"table-{rows:.0e}{kind}.{name.lower()}"
        for name in ("CSV", "Parquet")
        if name in kinds
    }
    names = [*(f"x{i}" for i in range(16)), "y"]
    schema = pa.schema([(name, pa.float32()) for name in names])
    if text_column:
        schema = schema.insert(16, pa.field("region", pa.string()))
    opened = {"CSV": csv.CSVWriter, "Parquet": pq.ParquetWriter}
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(opened[name](path, schema)) for name, path in paths.items()]
        for start in range(0, rows, 1 << 20):
            n = min(1 << 20, rows - start)
            x = (3 + 5 * rng.standard_normal((n, 16))).astype(np.float32)
            y = x @ weight + 0.5 * rng.standard_normal(n).astype(np.float32)
            columns = [*x.T, y]
            if text_column:
                codes = rng.integers(0, len(REGIONS), n)
                y += codes.astype(np.float32)  # a level's effect: its index
                columns = [*x.T, pa.array(np.asarray(REGIONS)[codes]), y]
            batch = pa.record_batch(columns, schema=schema)
            for writer in writers:
                writer.write_batch(batch)
    return paths
