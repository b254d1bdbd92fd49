"""The report of a sweep: every job's overrides, status and metrics in one sorted table, and a plot.

    python -m linreg.sweep.report outputs/train/multiruns/<time>

writes report.csv, report.md and report.png into the sweep folder and prints the table. It also
runs by itself at the end of every multirun (see `SweepCallbacks`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from linreg.errors import LinregError, RunFolderError
from linreg.runs import read_summary
from linreg.sweep.ranking import rank, versus_best

COLUMNS = ("job", "overrides", "status", "objective", "vs_best", "objective_std_error", "test/mse",
           "gap_to_reference_%", "reference/test_mse", "val/loss", "params/weight_error",
           "wall_time_s", "reason")  # fmt: skip


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (a folder holding .hydra/overrides.yaml), best objective first."""
    rows = []
    for job in sorted(
        p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()
    ):
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        row: dict[str, Any] = {
            "job": job.name,
            "overrides": " ".join(overrides),
            "status": "missing",
        }
        try:
            summary = read_summary(job)
        except RunFolderError as err:  # a damaged record must not hide the other jobs
            summary, row["status"], row["reason"] = None, "unreadable", str(err)
        if summary is not None:
            metrics = summary.get("metrics") or {}
            row["status"] = summary.get("status", "unreadable")
            objective = summary.get("objective") or {}
            row["objective"], row["objective_name"] = objective.get("value"), objective.get("name")
            row["objective_std_error"] = objective.get("std_error")
            row["reason"] = summary.get("reason", "")
            row["wall_time_s"] = summary.get("wall_time_s")
            for name in ("val/loss", "test/mse", "reference/test_mse", "params/weight_error"):
                row[name] = metrics.get(name)
            if "test_mse_gap_to_reference" in summary:
                row["gap_to_reference_%"] = 100 * summary["test_mse_gap_to_reference"]
        elif row["status"] == "missing":
            row["reason"] = "no metrics.json: the job crashed or is still running"
        rows.append(row)
    return versus_best(sorted(rows, key=rank))


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value).replace("|", "\\|")


REPORT_FILES = ("report.csv", "report.md", "report.png")


def write_report(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write report.csv, report.md and report.png into the sweep folder; returns the rows. An
    earlier report is removed first: a report is of the sweep as it is now, or there is none."""
    if not sweep_dir.is_dir():
        raise LinregError(f"{sweep_dir}: no such sweep folder")
    for name in REPORT_FILES:
        (sweep_dir / name).unlink(missing_ok=True)
    rows = collect(sweep_dir)
    if not rows:
        raise LinregError(f"{sweep_dir} holds no job folders (with .hydra/overrides.yaml)")
    with (sweep_dir / "report.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "report.md").write_text(markdown(rows))
    plot(sweep_dir, rows)
    return rows


def plot(sweep_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """report.png: see `linreg.sweep.plot`."""
    from linreg.sweep.plot import report_figure

    objective = next((row["objective_name"] for row in rows if row.get("objective_name")), "")
    figure = report_figure(sweep_dir, rows, objective or "objective", _searched(sweep_dir, rows))
    figure.savefig(sweep_dir / "report.png", dpi=100)


def _searched(sweep_dir: Path, rows: Sequence[dict[str, Any]]) -> bool:
    """Whether the jobs are trials of a search (Optuna) rather than a grid's points."""
    for row in rows:
        saved = sweep_dir / row["job"] / ".hydra" / "hydra.yaml"
        if saved.is_file():
            return "optuna" in str(OmegaConf.load(saved).hydra.sweeper.get("_target_", ""))
    return False


def main(argv: Sequence[str]) -> None:
    from linreg.cli import exit_on_user_error

    if len(argv) != 1:
        print("usage: python -m linreg.sweep.report <sweep folder>", file=sys.stderr)
        sys.exit(2)
    sweep_dir = Path(argv[0])
    rows = exit_on_user_error(lambda: write_report(sweep_dir))
    print(markdown(rows), end="")
    print(f"written: {sweep_dir / 'report.csv'}, report.md, report.png")


if __name__ == "__main__":
    main(sys.argv[1:])
