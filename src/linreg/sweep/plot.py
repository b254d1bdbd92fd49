"""report.png: which setting won, by how much, and how it got there.

Panels, left to right: every job's objective, best first, with how far each is from the best; the
objective by the varied settings (a grid over one or two settings) or by trial and by each searched
value (an Optuna search); the validation loss by epoch of the best jobs. One colour per value of
the first varied choice (the optimizer, say) in every panel, or per job when all varied settings
are numbers. Axes spanning ten-fold or more are logarithmic, so a job that trained badly cannot
flatten the others (the first panel then shows the values; over a narrower range, how far each job
is behind the best, in %), the curves' axis ends at 4x their lowest value, and tick labels are
plain numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator, ScalarFormatter

from linreg.config.job_names import settings_label, short_keys, split_override
from linreg.sweep.ranking import versus_best

MAX_BARS = 20
MAX_CURVES = 4
# The curves' axis ends at this multiple of the lowest value shown.
CURVE_CLIP = 4.0
# What an objective is measured in, for the axes that show it.
UNITS = {"loss": "target units²", "mse": "target units²", "mae": "target units", "r2": "fraction"}
MAX_VALUE_PANELS = 2
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")
FAILED_COLOUR = "0.6"


@dataclass
class Job:
    folder: str
    settings: dict[str, str]
    status: str
    objective: float | None
    versus_best: str = ""  # the report's verdict: `best`, `+0.03 % (within noise)`, ...
    label: str = ""
    colour: Any = None
    trial: int = 0
    curve: tuple[list[int], list[float]] = field(default_factory=lambda: ([], []))


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _is_numeric(jobs: Sequence[Job], key: str) -> bool:
    return all(_number(job.settings.get(key, "")) is not None for job in jobs)


def describe(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[Job], list[str], dict[str, Any]]:
    """The jobs (best first, as the rows are) labelled and coloured, the varied keys, and the
    colour of each value of the first varied choice (`optimizer=adam`: a colour), if any."""
    from matplotlib import colormaps

    jobs = []
    for row in rows:
        settings = dict(map(split_override, str(row["overrides"]).split()))
        finished = row["status"] == "completed" and row.get("objective") is not None
        number = row["job"].split("-", 1)[0]
        jobs.append(Job(row["job"], settings, row["status"],
                        float(row["objective"]) if finished else None, row.get("vs_best", ""),
                        trial=int(number) if number.isdigit() else len(jobs)))  # fmt: skip
    keys = list(dict.fromkeys(key for job in jobs for key in job.settings))
    varied = [key for key in keys if len({job.settings.get(key) for job in jobs}) > 1]
    palette = colormaps["tab10"].colors
    choice = next((key for key in varied if not _is_numeric(jobs, key)), None)
    values = list(dict.fromkeys(job.settings.get(choice, "") for job in jobs)) if choice else []
    for rank, job in enumerate(jobs):
        label = settings_label([(key, job.settings.get(key, "")) for key in varied], ", ")
        job.label = label or f"job {job.folder}"
        index = values.index(job.settings.get(choice, "")) if choice else rank
        job.colour = palette[index % len(palette)] if job.objective is not None else FAILED_COLOUR
    legend = {f"{choice}={value}": palette[i % len(palette)] for i, value in enumerate(values)}
    return jobs, varied, legend


def _scale(axes: Axes, axis: str, values: Sequence[float]) -> None:
    """Logarithmic when the values span ten-fold or more; plain tick labels either way (on a log
    axis spanning two decades or less, 2s and 5s are labelled too)."""
    positive = [value for value in values if value > 0]
    ticks = axes.xaxis if axis == "x" else axes.yaxis
    if positive and len(positive) == len(values) and max(positive) >= 10 * min(positive):
        (axes.set_xscale if axis == "x" else axes.set_yscale)("log")
        few_decades = max(positive) <= 100 * min(positive)
        ticks.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ticks.set_minor_formatter(
            FuncFormatter(lambda v, _: f"{v:g}" if few_decades and f"{v:.0e}"[0] in "25" else "")
        )
    else:
        plain = ScalarFormatter(useOffset=False)
        plain.set_scientific(False)
        ticks.set_major_formatter(plain)


def _ranking(axes: Axes, jobs: Sequence[Job], objective: str) -> None:
    shown = [job for job in jobs if job.objective is not None][:MAX_BARS]
    failed = [job for job in jobs if job.objective is None][: max(0, MAX_BARS - len(shown))]
    values = [job.objective for job in shown]
    xlabel = f"{with_unit(objective)}, lower is better"
    if values:
        best = values[0]
        if max(values) >= 10 * best > 0:  # a wide range: the values, on a log axis
            _scale(axes, "x", values)
            lengths, left = [value - best / 2 for value in values], best / 2
            # From where the bars start: a log axis left to itself starts at a round decade,
            # which can lie beyond the best jobs' bars and hide them.
            axes.set_xlim(left=best / 2, right=max(values) * 3)
        else:  # a narrow one: how far behind the best, which bars from 0 would hide
            lengths, left = [100 * (value / best - 1) for value in values], 0.0
            xlabel = f"% above the best {objective} ({best:.5g})"
            axes.set_xlim(right=max(max(lengths) * 1.3, 1e-3))
        axes.barh(range(len(shown)), lengths, left=left, color=[job.colour for job in shown])
        for row, (job, length) in enumerate(zip(shown, lengths, strict=True)):
            note = job.versus_best
            axes.annotate(note, (left + length, row), xytext=(3, 0), textcoords="offset points",
                          va="center", fontsize="small",
                          color="0.45" if "within noise" in note else "black")  # fmt: skip
    for row, job in enumerate(failed, start=len(shown)):
        axes.annotate(job.status, (0, row), xycoords=("axes fraction", "data"), xytext=(3, 0),
                      textcoords="offset points", va="center", color=FAILED_COLOUR)  # fmt: skip
    every = [*shown, *failed]
    separator = "\n" if len(every) <= 8 else ", "
    labels = [job.label.replace(", ", separator)[:60] for job in every]
    axes.set_yticks(range(len(every)), labels, fontsize="small")
    axes.set_ylim(len(every) - 0.5, -0.5)  # the best at the top
    hidden = len(jobs) - len(every)
    title = "jobs, best first" + (f" (best {len(every)} of {len(jobs)})" if hidden else "")
    axes.set(xlabel=xlabel, title=title)


def _by_setting(axes: Axes, jobs: Sequence[Job], varied: Sequence[str], objective: str) -> None:
    """A grid over one or two settings: the objective by the first numeric one (or the first),
    a line per value of the other."""
    finished = [job for job in jobs if job.objective is not None]
    numeric = [key for key in varied if _is_numeric(jobs, key)]
    x_key = numeric[0] if numeric else varied[0]
    line_key = next((key for key in varied if key != x_key), None)
    categories = list(dict.fromkeys(job.settings[x_key] for job in jobs))

    def x_of(job: Job) -> float:
        value = job.settings[x_key]
        return float(value) if numeric else categories.index(value)

    lines: dict[str, list[Job]] = {}
    for job in finished:
        lines.setdefault(job.settings.get(line_key, "") if line_key else "", []).append(job)
    short = short_keys(varied)
    for index, (value, members) in enumerate(lines.items()):
        members.sort(key=x_of)
        xs, ys = [x_of(job) for job in members], [job.objective for job in members]
        if not numeric and not line_key:  # categories have no order to draw a line along
            axes.scatter(xs, ys, color=[job.colour for job in members], zorder=3)
            continue
        colour = members[0].colour if line_key else "0.5"
        axes.plot(xs, ys, color=colour, linestyle=LINE_STYLES[index % len(LINE_STYLES)])
        axes.scatter(xs, ys, color=[job.colour for job in members], zorder=3)
        if line_key:  # named at its end, not in a legend of its own
            axes.annotate(f" {short[line_key]}={value}", (xs[-1], ys[-1]), color=colour,
                          fontsize="small", va="center")  # fmt: skip
    if numeric:
        _scale(axes, "x", [x_of(job) for job in finished])
    else:
        axes.set_xticks(range(len(categories)), categories)
    _scale(axes, "y", [job.objective for job in finished])
    axes.set(xlabel=x_key, ylabel=with_unit(objective), title=f"{objective} by {short[x_key]}")


def _by_trial(axes: Axes, jobs: Sequence[Job], objective: str) -> None:
    finished = sorted((job for job in jobs if job.objective is not None), key=lambda j: j.trial)
    trials = [job.trial for job in finished]
    values = [job.objective for job in finished]
    axes.scatter(trials, values, color=[job.colour for job in finished], zorder=3)
    running = [min(values[: i + 1]) for i in range(len(values))]
    axes.step(trials, running, where="post", color="black", label="best so far")
    _scale(axes, "y", values)
    axes.annotate(" best so far", (trials[-1], running[-1]), fontsize="small", va="top")
    axes.set(xlabel="trial", ylabel=with_unit(objective), title=f"{objective} by trial")


def _by_value(axes: Axes, jobs: Sequence[Job], key: str, objective: str) -> None:
    finished = [job for job in jobs if job.objective is not None]
    xs = [float(job.settings[key]) for job in finished]
    axes.scatter(xs, [job.objective for job in finished], color=[j.colour for j in finished])
    _scale(axes, "x", xs)
    _scale(axes, "y", [job.objective for job in finished])
    axes.set(xlabel=key, ylabel=with_unit(objective), title=f"{objective} by {key} (searched)")


def _curves(axes: Axes, jobs: Sequence[Job]) -> None:
    """The best jobs' validation loss by epoch: identical curves stay visible through their line
    styles and markers, drawn widest first."""
    values, finals = [], []
    for index, job in enumerate(jobs):
        epochs, losses = job.curve
        finals.append(losses[-1])
        width = 1.2 + 0.8 * (MAX_CURVES - index)
        axes.plot(epochs, losses, color=job.colour, linewidth=width,
                  linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                  marker=MARKERS[index % len(MARKERS)], markevery=max(1, len(epochs) // 10),
                  label=job.label[:60])  # fmt: skip
        values += losses
    title = f"how the best {len(jobs)} got there"
    # Where the runs differ, at the end: the first epochs, far above, would flatten it. From the
    # lowest value to a little above the highest last one (at most CURVE_CLIP x the lowest).
    lowest = min(values)
    top = min(CURVE_CLIP * lowest, lowest + 3 * (max(finals) - lowest) + 0.02 * lowest)
    if max(values) > top > 0:
        _scale(axes, "y", [lowest, top])
        axes.set_ylim(lowest - 0.1 * (top - lowest), top)
        title += f" (cut at {top / lowest:.3g}x the lowest)"
    else:
        _scale(axes, "y", values)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if max(len(job.curve[0]) for job in jobs) == 1:  # one epoch: one tick, not fractions of it
        axes.set_xticks([1])
    axes.set(xlabel="epoch", ylabel=with_unit("val/loss"), title=title)


def validation_curve(job_dir: Path) -> tuple[list[int], list[float]]:
    """val/loss by epoch (1, 2, ...) from a job's TensorBoard events (empty without them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # per-file progress notes
    if not job_dir.is_dir():
        return [], []
    events = EventAccumulator(str(job_dir), size_guidance={"scalars": 0})
    events.Reload()
    if "val/loss" not in events.Tags()["scalars"]:
        return [], []
    values = [scalar.value for scalar in events.Scalars("val/loss")]
    return list(range(1, len(values) + 1)), values


def report_figure(sweep_dir: Path, rows: Sequence[dict[str, Any]], objective: str, searched: bool):
    """The report's figure (returned, for the caller to save) for the rows of `collect`."""
    from linreg.diagnostics.figures import Figure

    jobs, varied, legend = describe(versus_best([dict(row) for row in rows]))
    best = [job for job in jobs if job.objective is not None][:MAX_CURVES]
    for job in best:
        job.curve = validation_curve(sweep_dir / job.folder)
    best = [job for job in best if job.curve[0]]
    numeric = [key for key in varied if _is_numeric(jobs, key)][:MAX_VALUE_PANELS]
    # A grid's panel of the objective by its setting, unless the setting is one choice (the
    # ranking shows exactly that).
    one_choice = len(varied) == 1 and not numeric
    grid = bool(varied) and len(varied) <= 2 and not searched and not one_choice
    middle = (1 + len(numeric)) if searched else int(grid)
    n_panels = 1 + middle + bool(best)
    columns = min(n_panels, 3)
    rows_of_panels = -(-n_panels // columns)
    figure = Figure(figsize=(5.5 * columns, 4.5 * rows_of_panels), layout="constrained")
    panels = list(figure.subplots(rows_of_panels, columns, squeeze=False).ravel())
    for unused in panels[n_panels:]:
        unused.set_visible(False)
    _ranking(panels.pop(0), jobs, objective)
    if searched:
        _by_trial(panels.pop(0), jobs, objective)
        for key in numeric:
            _by_value(panels.pop(0), jobs, key, objective)
    elif grid:
        _by_setting(panels.pop(0), jobs, varied, objective)
    # One legend, under the panels: the curves' (a job's colour, line and marker), or else the
    # colours of the first varied choice. The ranking names every job beside its bar.
    if best:
        curves = panels.pop(0)
        _curves(curves, best)
        handles, labels = curves.get_legend_handles_labels()
    else:
        from matplotlib.patches import Patch

        handles = [Patch(color=colour, label=name) for name, colour in legend.items()]
        labels = list(legend)
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4))
    figure.suptitle(f"sweep {sweep_dir.name}: {len(jobs)} jobs on {_data_of(sweep_dir, jobs)}")
    return figure


def with_unit(metric: str) -> str:
    unit = UNITS.get(metric.rsplit("/", 1)[-1])
    return f"{metric} ({unit})" if unit else metric


def _data_of(sweep_dir: Path, jobs: Sequence[Job]) -> str:
    """What the jobs trained on, from the first one's saved config: a table's file and target,
    or the synthetic data's shape."""
    from omegaconf import OmegaConf

    for job in jobs:
        saved = sweep_dir / job.folder / ".hydra" / "config.yaml"
        if saved.is_file():
            data = OmegaConf.load(saved).data
            if "path" in data:
                return f"{Path(str(data.path)).name} (target {data.target})"
            return f"synthetic data, {data.n_samples:,} rows x {data.n_features} features"
    return "their data"
