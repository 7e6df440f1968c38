"""Training curves from runs' `metrics.jsonl`: read into series, drawn as an image or in the terminal.

Comparing runs is the point, so every run gets one colour across all panels and is labelled by its folder
name. The panels: loss against step and against elapsed time (validation solid with markers, training
thinner), then smaller learning-rate and speed panels. The plotting libraries are an optional extra
(`charrnn[plot]`) and are imported only here, only when drawing, so the rest of charrnn never needs them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.atomic import atomic_write
from charrnn.errors import CharrnnError
from charrnn.jsonl import read_records

METRICS = "metrics.jsonl"
IMAGE_FORMATS = ("png", "svg")
DPI = 100  # pixels per inch of PNG images, so --width/--height are pixels exactly
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
TERMINAL_COLOURS = ("blue+", "red+", "green+", "orange+", "magenta+", "cyan+", "yellow+", "gray+")
TERMINAL_MARKERS = ("●", "■", "▲", "◆", "x", "+", "o", "*")
INSTALL_HINT = (
    "install the plotting extra: pip install 'charrnn[plot]' (in a checkout: pip install -e '.[plot]')"
)


@dataclass
class RunSeries:
    """One run's log as columns; a value a record lacks (no validation text, say) is None."""

    label: str
    path: Path
    step: list[float] = field(default_factory=list)
    elapsed: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    lr: list[float | None] = field(default_factory=list)
    chars_per_sec: list[float | None] = field(default_factory=list)

    def points(self, x: str, y: str) -> tuple[list[float], list[float]]:
        """The (x, y) pairs where both are known, ready to draw."""
        pairs = [(a, b) for a, b in zip(getattr(self, x), getattr(self, y), strict=True) if a is not None]
        pairs = [(a, b) for a, b in pairs if b is not None]
        return [a for a, _ in pairs], [b for _, b in pairs]


def metrics_file(run: Path) -> Path:
    """The log of a run given as its folder, its metrics.jsonl, or one of its checkpoints."""
    if run.is_dir():
        return run / METRICS
    if run.suffix == ".pt":
        return run.parent / METRICS
    return run


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def read_run(run: Path, label: str, warn: Callable[[str], None] | None = None) -> RunSeries:
    """A run's metrics; a missing or empty log is a one-line CharrnnError naming the run and the fix."""
    path = metrics_file(run)
    if not path.is_file():
        where = f"{run} has no {METRICS}" if run.is_dir() else f"{path}: no such file"
        raise CharrnnError(
            f"{where}; give a run folder written by `charrnn train` (or its {METRICS}) to plot"
        )
    try:
        records = read_records(path, warn) if warn else read_records(path)
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read ({e.strerror})") from None
    series = RunSeries(label, path)
    for record in records:
        step = _number(record.get("step"))
        if step is None:
            continue  # not one of our records
        series.step.append(step)
        series.elapsed.append(_number(record.get("elapsed")))
        series.train_loss.append(_number(record.get("train_loss")))
        series.val_loss.append(_number(record.get("val_loss")))
        series.lr.append(_number(record.get("lr")))
        series.chars_per_sec.append(_number(record.get("chars_per_sec")))
    if not series.step:
        raise CharrnnError(
            f"{path} holds no evaluations yet; plot it after the run's first evaluation "
            "(every --eval-every steps)"
        )
    return series


def run_labels(runs: list[Path]) -> list[str]:
    """Folder names; equal names get their parent folder too, and still-equal ones a number."""
    folders = [(run if run.is_dir() else run.parent).resolve() for run in runs]
    names = [f.name or str(f) for f in folders]
    labels = [
        f"{f.parent.name}/{n}" if names.count(n) > 1 else n for f, n in zip(folders, names, strict=True)
    ]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} ({seen[label]})"
    return labels


def read_runs(runs: list[Path], warn: Callable[[str], None] | None = None) -> list[RunSeries]:
    return [read_run(run, label, warn) for run, label in zip(runs, run_labels(runs), strict=True)]


def _time_unit(series: list[RunSeries]) -> tuple[str, float]:
    """Seconds, minutes or hours, whichever keeps the time axis readable."""
    longest = max((t for s in series for t in s.elapsed if t is not None), default=0.0)
    if longest >= 3 * 3600:
        return "hours", 3600.0
    if longest >= 180:
        return "minutes", 60.0
    return "seconds", 1.0


def image_format(out: Path) -> str:
    """png or svg, from the file name; anything else is refused before any work is done."""
    kind = out.suffix.lower().lstrip(".")
    if kind not in IMAGE_FORMATS:
        raise CharrnnError(f"--out {out}: write a .png or .svg file (the format follows the extension)")
    return kind


def _import(name: str):
    """Import a plotting library, or say in one line how to get it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise CharrnnError(
            f"`charrnn plot` needs {name.split('.')[0]}, which is not installed; {INSTALL_HINT}"
        ) from None


# ---- image (matplotlib) -------------------------------------------------------------------------------
def figure(series: list[RunSeries], width: int, height: int):
    """The four panels as a matplotlib Figure of `width` x `height` pixels (no pyplot: no global state)."""
    _import("matplotlib")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter, FuncFormatter

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(2.2, 1))
    by_step, by_time = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    lr, speed = fig.add_subplot(grid[1, 0], sharex=by_step), fig.add_subplot(grid[1, 1], sharex=by_step)
    unit, scale = _time_unit(series)
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        for ax, x in ((by_step, "step"), (by_time, "elapsed")):
            div = scale if x == "elapsed" else 1.0
            xs, ys = s.points(x, "train_loss")
            ax.plot([v / div for v in xs], ys, color=colour, linewidth=0.9, alpha=0.55)
            xs, ys = s.points(x, "val_loss")
            ax.plot([v / div for v in xs], ys, color=colour, linewidth=1.8, marker="o", markersize=3)
        lr.plot(*s.points("step", "lr"), color=colour, linewidth=1.2)
        speed.plot(*s.points("step", "chars_per_sec"), color=colour, linewidth=1.2)
    by_step.set(title="loss by step", xlabel="step", ylabel="loss (nats per symbol)")
    by_time.set(title="loss by time", xlabel=f"elapsed ({unit})")
    lr.set(title="learning rate", xlabel="step")
    speed.set(title="training speed (symbols/s)", xlabel="step")
    lr.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    speed.yaxis.set_major_formatter(EngFormatter(sep=""))
    speed.set_ylim(bottom=0)
    for ax in (by_step, by_time, lr, speed):
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize="small")
    handles = [Line2D([], [], color=COLOURS[i % len(COLOURS)], linewidth=3) for i in range(len(series))]
    handles += [
        Line2D([], [], color="black", linewidth=1.8, marker="o", markersize=3),
        Line2D([], [], color="black", linewidth=0.9, alpha=0.55),
    ]
    labels = [s.label for s in series] + ["validation", "training"]
    by_step.legend(handles, labels, fontsize="small")
    return fig


def save_image(series: list[RunSeries], out: Path, width: int, height: int) -> None:
    """Write the figure as PNG or SVG (by extension), atomically: the old file or the new one."""
    kind = image_format(out)
    fig = figure(series, width, height)
    if not out.parent.is_dir():
        raise CharrnnError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    with atomic_write(out) as f:
        # no creation date in the file, so the same runs give the same image
        fig.savefig(f, format=kind, metadata={"Date": None} if kind == "svg" else None)


# ---- terminal (plotext) -------------------------------------------------------------------------------
def _panel(
    plt,
    title: str,
    lines: list[tuple[list[float], list[float], str, str, str]],
    width: int,
    height: int,
    xlabel: str,
) -> list[str]:
    """One plotext panel as lines of text, each exactly `width` columns wide."""
    plt.clear_figure()
    plt.theme("clear")
    drawn = False
    for xs, ys, label, colour, marker in lines:
        if xs:
            plt.plot(xs, ys, label=label or None, color=colour, marker=marker)
            drawn = True
    if not drawn:
        plt.text("no data", 0.5, 0.5)
    plt.title(title)
    plt.xlabel(xlabel)
    plt.plotsize(width, height)
    return plt.build().split("\n")


def terminal_plot(series: list[RunSeries], width: int, height: int, colour: bool) -> str:
    """The panels drawn in text for a terminal of `width` columns: two side by side when there is room
    (each panel needs about 50 columns to be read), else one under another. ANSI colours only if `colour`."""
    plt = _import("plotext")
    unit, scale = _time_unit(series)
    side_by_side = width >= 100
    panel_w = width // 2 if side_by_side else width
    big = max(12, height)
    small = max(10, height // 2 + 2)
    loss_step, loss_time, lrs, speeds = [], [], [], []
    for i, s in enumerate(series):
        c = TERMINAL_COLOURS[i % len(TERMINAL_COLOURS)]
        m = TERMINAL_MARKERS[i % len(TERMINAL_MARKERS)]
        for target, x, div in ((loss_step, "step", 1.0), (loss_time, "elapsed", scale)):
            xs, ys = s.points(x, "val_loss")
            target.append(([v / div for v in xs], ys, f"{s.label} val", c, m))
            xs, ys = s.points(x, "train_loss")
            target.append(([v / div for v in xs], ys, f"{s.label} train", c, "·"))
        lrs.append((*s.points("step", "lr"), "", c, m))  # the loss panels carry the legend
        xs, ys = s.points("step", "chars_per_sec")
        speeds.append((xs, [v / 1000 for v in ys], "", c, m))
    panels = [
        _panel(plt, "loss by step (nats/symbol)", loss_step, panel_w, big, "step"),
        _panel(plt, "loss by time (nats/symbol)", loss_time, panel_w, big, f"elapsed ({unit})"),
        _panel(plt, "learning rate", lrs, panel_w, small, "step"),
        _panel(plt, "training speed (thousand symbols/s)", speeds, panel_w, small, "step"),
    ]
    rows: list[str] = []
    if side_by_side:
        for left, right in (panels[0:2], panels[2:4]):
            rows += [a + b for a, b in zip(left, right, strict=False)]
    else:
        for panel in panels:
            rows += panel
    text = "\n".join(rows) + "\n"
    return text if colour else _strip_ansi(text)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)
