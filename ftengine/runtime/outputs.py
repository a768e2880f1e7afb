"""The run directory: what a run leaves behind, and the rule against clobbering a finished one.

    <output.dir>/<name>/
        run.json            status (running / finished), where the spec came from, final numbers
        spec.resolved.yaml  the spec with overrides and defaults filled in
        plan.json           the execution graph (`ExecutionGraph.to_dict()`)
        labels.json         class names, index = class id
        metrics.jsonl       one row per epoch
        checkpoints/        last/ (resume), best/, latest.json
        model/              model.safetensors + head.json (+ backbone/ save_pretrained for hf backbones)
        report.json         test-split report
        plots/              loss.png, metrics.png
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ftengine.errors import RunError
from ftengine.runtime.checkpoint import atomic_write, latest_checkpoint

RUN_INFO = "run.json"


def run_dir_of(spec: Any, spec_path: Path) -> Path:
    """`output.dir / (output.name or the spec file's stem)`."""
    return Path(spec.output.dir) / (spec.output.name or spec_path.stem)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """`run.json` of a run directory ({} when absent or unreadable)."""
    try:
        return json.loads((run_dir / RUN_INFO).read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, value: Any) -> None:
    """Pretty JSON, written atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(value, indent=2) + "\n").encode()))


def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> bool:
    """Decide what to do with `run_dir` before a run starts.

    Returns:
        True when the run continues from a checkpoint there, False when it starts fresh (the folder is then
        empty, created if needed).

    Raises:
        RunError: the folder holds a finished or resumable run and neither `--resume` nor `output.overwrite`
            says what to do with it.
    """
    checkpoint = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    finished = read_run_info(run_dir).get("status") == "finished"
    if resume and (checkpoint is not None or finished):
        return True
    if run_dir.exists() and (checkpoint is not None or finished) and not overwrite:
        what = "a finished run" if finished else "an unfinished run with a checkpoint"
        raise RunError(f"{run_dir}: {what} is already there (output.dir/output.name); pass --resume to continue it, "
                       "set output.overwrite=true to replace it, or choose another output.name")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return False


def write_spec_files(run_dir: Path, spec: Any, graph: Any, labels: Sequence[str]) -> None:
    """spec.resolved.yaml, plan.json and labels.json."""
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write(run_dir / "spec.resolved.yaml", lambda f: f.write(text.encode()))
    write_json(run_dir / "plan.json", graph.to_dict())
    write_json(run_dir / "labels.json", list(labels))


class MetricsLog:
    """metrics.jsonl: one JSON object per epoch, appended and flushed as each epoch ends."""

    def __init__(self, path: Path, keep: int | None = None) -> None:
        """Open `path`; with `keep`, drop rows past the first `keep` (written after the checkpoint resumed from)."""
        self.path = path
        rows = self.read(path)
        if keep is not None and len(rows) > keep:
            rows = rows[:keep]
            atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in rows).encode()))
        self.rows = len(rows)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """Every complete row of a metrics file (a torn last line from a crash is ignored)."""
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
        return rows

    def append(self, row: dict[str, Any]) -> None:
        """Add one row."""
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows += 1


def save_plots(run_dir: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """plots/loss.png (train and validation loss) and plots/metrics.png (validation accuracy, macro-F1) per epoch,
    with dotted lines where a new stage starts."""
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = run_dir / "plots"
    folder.mkdir(exist_ok=True)
    epochs = [r["epoch"] for r in rows]
    starts = [r["epoch"] - 0.5 for a, r in zip(rows, rows[1:]) if r["stage_index"] != a["stage_index"]]
    paths = []
    for name, keys, ylabel in (("loss", ("train_loss", "val_loss"), "cross-entropy"),
                               ("metrics", ("val_accuracy", "val_macro_f1"), "score")):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for key in keys:
            points = [(e, r[key]) for e, r in zip(epochs, rows) if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=key)
        for x in starts:
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
