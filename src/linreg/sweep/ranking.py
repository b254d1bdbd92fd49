"""How a sweep's jobs compare: their order, best first, and how far each is behind the best,
said plainly where the difference is within the noise of their validation rows. Shared by the
report's table and its picture."""

from __future__ import annotations

import math
from typing import Any


def rank(row: dict[str, Any]) -> tuple[int, float]:
    """Finished jobs first, by their objective; the rest after them."""
    value = row.get("objective")
    finished = row["status"] == "completed" and value is not None and math.isfinite(value)
    return (0, value) if finished else (1, math.inf)


def versus_best(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each finished row's `vs_best` (the rows best first): how far its objective lies above the
    best's, `within noise` where that is less than the difference's standard error (the two
    objectives' standard errors over their validation rows, combined as if independent: the
    same rows make the true one smaller, so a difference beyond it is a real one)."""
    finished = [row for row in rows if rank(row)[0] == 0]
    if not finished:
        return rows
    best = finished[0]
    best["vs_best"] = "best"
    for row in finished[1:]:
        row["vs_best"] = above_best(row["objective"], best["objective"])
        errors = (row.get("objective_std_error"), best.get("objective_std_error"))
        if None not in errors and row["objective"] - best["objective"] < math.hypot(*errors):
            row["vs_best"] += " (within noise)"
    return rows


def above_best(value: float, best: float) -> str:
    percent = 100 * (value / best - 1) if best else math.inf
    return f"+{percent:,.0f} %" if percent >= 100 else f"+{percent:.2g} %"
