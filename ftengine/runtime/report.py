"""The test-set report (report.json, report.txt, confusion matrix plot) and training-curve plots.

Plots use matplotlib's object API with the Agg canvas (no pyplot global state, no display needed).
Training curves come from ``metrics.jsonl`` rows with the keys ``stage``, ``epoch``, ``step``,
``train_loss``, ``val_loss``, ``val_accuracy``, ``val_macro_f1``, ``lr``, ``epoch_seconds`` and
``samples_per_second`` (any may be missing from a row); stage changes are drawn as dashed lines.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ftengine.runtime.metrics import classification_metrics
from ftengine.runtime.task_report import TASK_FORMATS, name_width, per_name_table
from ftengine.runtime.run_dir import dumps


def build_report(y_true: Tensor, probs: Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """Report metrics from true class ids (N,) and predicted probabilities (N, C), plus ``loss`` (mean NLL).

    Rows with a negative true label (unlabelled) are left out.
    """
    y, p = y_true.long().cpu(), probs.float().cpu()
    metrics = classification_metrics(y, p.argmax(dim=1), labels)
    known = y >= 0
    if known.any():
        picked = p[known].gather(1, y[known].unsqueeze(1)).clamp(min=1e-12)
        metrics["loss"] = float(-picked.log().mean())
    return metrics


def format_report(metrics: dict[str, Any], title: str = "test set") -> str:
    """A plain-text report: overall numbers, a per-class table and the confusion matrix (other tasks: their own)."""
    if (other := TASK_FORMATS.get(metrics.get("task", ""))) is not None:
        return other(metrics, title)
    labels = metrics["labels"]
    width = name_width(labels)
    lines = [f"{title}: {metrics['num_examples']:,} examples", f"accuracy     {metrics['accuracy']:.4f}",
             f"macro F1     {metrics['macro_f1']:.4f}", f"weighted F1  {metrics['weighted_f1']:.4f}"]
    if "loss" in metrics:
        lines.append(f"loss         {metrics['loss']:.4f}")
    lines += ["", *per_name_table("class", labels, metrics["per_class"])]
    lines.append(f"{'macro avg':<{width}}  {metrics['macro_precision']:9.4f}  {metrics['macro_recall']:6.4f}  "
                 f"{metrics['macro_f1']:.4f}  {metrics['num_examples']:7,}")
    cm = metrics["confusion_matrix"]
    cell = max(6, *(len(f"{v:,}") for row in cm for v in row), *(min(len(n), 10) for n in labels))
    lines += ["", "confusion matrix (rows: true class, columns: predicted)",
              " " * width + "  " + " ".join(f"{n[:10]:>{cell}}" for n in labels)]
    lines += [f"{name:<{width}}  " + " ".join(f"{v:>{cell},}" for v in row) for name, row in zip(labels, cm, strict=True)]
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, metrics: dict[str, Any], *, split: str = "test",
                 extra: dict[str, Any] | None = None, plots: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``report.txt`` and (with ``plots``) ``plots/confusion_matrix.png``.

    Args:
        run_dir: the run directory.
        metrics: from :func:`ftengine.runtime.metrics.metrics_from_confusion` (optionally with ``loss``).
        split: which split was evaluated (recorded in the report).
        extra: more facts to record (checkpoint used, data file, seconds).
        plots: also draw the confusion matrix.

    Returns:
        ``{"json": ..., "txt": ..., ("confusion_matrix": ...)}`` paths.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = {"json": run_dir / "report.json", "txt": run_dir / "report.txt"}
    out["json"].write_text(dumps({"split": split, **(extra or {}), **metrics}, indent=2) + "\n")  # NaN as null
    out["txt"].write_text(format_report(metrics, title=f"{split} set"))
    if plots and "confusion_matrix" in metrics:  # classification only
        out["confusion_matrix"] = plot_confusion(metrics, run_dir / "plots" / "confusion_matrix.png", title=f"{split} set")
    return out


def plot_confusion(metrics: dict[str, Any], path: Path, title: str = "test set") -> Path:
    """Confusion matrix heat map with counts and row-normalised shading (recall per cell)."""
    labels, cm = metrics["labels"], metrics["confusion_matrix"]
    n = len(labels)
    side = min(3 + 0.6 * n, 14)
    fig = Figure(figsize=(side + 1.2, side), dpi=110)
    ax = fig.add_subplot()
    rows = [[v / max(sum(row), 1) for v in row] for row in cm]
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for t in range(n):
        for p in range(n):
            ax.text(p, t, f"{cm[t][p]:,}", ha="center", va="center", fontsize=9 if n <= 10 else 6,
                    color="white" if rows[t][p] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    return _save(fig, path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl``; a row repeated after a resume (same stage, epoch, step, keys) keeps its last copy.

    A torn last line (a crash mid-write) is ignored.
    """
    rows: dict[tuple, dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                break
            rows[(_stage(row), row.get("epoch"), row.get("step"), tuple(sorted(row)))] = row
    return sorted(rows.values(), key=lambda r: (r.get("step", 0) or 0))


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(row.get("step", i))
            ys.append(value)
    return xs, ys


def _stage(row: dict[str, Any]) -> Any:
    return row.get("stage_index", row.get("stage"))


def _stage_name(row: dict[str, Any]) -> str:
    """``stage_name``, or ``stage`` when it holds a name, else ``stage <index>``."""
    name = row.get("stage_name") or (row.get("stage") if isinstance(row.get("stage"), str) else None)
    return str(name) if name else f"stage {_stage(row)}"


def _stage_marks(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Dashed line where each stage starts (at the last step of the stage before), labelled with its name."""
    if rows and any(_stage(r) != _stage(rows[0]) for r in rows):
        ax.annotate(_stage_name(rows[0]), (0, 1), xycoords="axes fraction", xytext=(3, -12), textcoords="offset points",
                    fontsize=8, color="0.3")
    for prev, row in itertools.pairwise(rows):
        if _stage(row) != _stage(prev):
            x = prev.get("step", 0)
            ax.axvline(x, color="0.45", linestyle="--", linewidth=1)
            ax.annotate(_stage_name(row), (x, 1), xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
                        fontsize=8, color="0.3")


def _panel(fig: Figure, rows: Sequence[dict[str, Any]], keys: dict[str, str], ylabel: str, title: str, *,
           log: bool = False) -> bool:
    ax = fig.add_subplot()
    drawn = False
    for key, label in keys.items():
        xs, ys = _series(rows, key)
        if log:  # frozen groups log lr 0: leave those points out rather than break the log axis
            xs, ys = [x for x, y in zip(xs, ys, strict=True) if y > 0], [y for y in ys if y > 0]
        if xs:
            style = "-" if len(xs) > 30 else "-o"
            ax.plot(xs, ys, style, markersize=4, linewidth=1.4, label=label)
            drawn = True
    _stage_marks(ax, rows)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if log and drawn:
        ax.set_yscale("log")
    if drawn and len(keys) > 3:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif drawn:
        ax.legend(fontsize=8, loc="best")
    return drawn


def _lr_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Flatten ``lr`` (a number or ``{group: lr}``) into ``lr/<group>`` keys."""
    flat, keys = [], {}
    for row in rows:
        lr = row.get("lr")
        new = {k: v for k, v in row.items() if k != "lr"}
        for name, value in (lr.items() if isinstance(lr, dict) else [("lr", lr)] if lr is not None else []):
            new[f"lr/{name}"] = value
            keys.setdefault(f"lr/{name}", str(name))
        flat.append(new)
    return flat, keys


def plot_history(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``loss.png``, ``metrics.png``, ``lr.png`` and ``throughput.png`` from ``metrics.jsonl``.

    Returns:
        The files written (a plot with nothing to show is skipped).
    """
    rows, out_dir = read_metrics(metrics_path), Path(out_dir)
    lr_rows, lr_keys = _lr_rows(rows)
    if len(lr_keys) > 16:  # a legend of dozens of groups is unreadable: the head and the top backbone groups
        names = list(lr_keys)
        lr_keys = {k: lr_keys[k] for k in names[-16:]}
    panels = [
        ("loss.png", rows, {"train_loss": "train loss", "val_loss": "validation loss"}, "cross-entropy", "Loss"),
        ("metrics.png", rows, {"val_accuracy": "validation accuracy", "val_macro_f1": "validation macro F1",
                               "val_micro_f1": "validation micro F1", "val_pearson": "validation Pearson r",
                               "val_spearman": "validation Spearman rho"},
         "score", "Validation metrics"),
        ("lr.png", lr_rows, lr_keys, "learning rate (log; frozen groups omitted)", "Learning rate per parameter group"),
        ("throughput.png", rows, {"samples_per_second": "samples / s"}, "samples per second", "Training throughput"),
    ]
    written = []
    for name, data, keys, ylabel, title in panels:
        fig = Figure(figsize=(9 if len(keys) > 3 else 7.5, 4.2), dpi=110)
        if _panel(fig, data, keys, ylabel, title, log=name == "lr.png"):
            written.append(_save(fig, out_dir / name))
    return written


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))
    return path
