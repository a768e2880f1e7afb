"""The run directory: what a run leaves behind, and the rule against clobbering a finished one.

    <output.dir>/<name>/
        run.json            status (running / finished / failed or interrupted, with the error), where the
                            spec came from, final numbers
        spec.resolved.yaml  the spec with overrides and defaults filled in
        plan.json           the execution graph (`ExecutionGraph.to_dict()`)
        labels.json         class names, index = class id
        metrics.jsonl       one row per epoch
        checkpoints/        last/ (resume), best/, latest.json
        model/              model.safetensors + head.json (+ backbone/ save_pretrained for hf backbones)
        report.json         test-split report
        report.txt          the same, as a table
        plots/              loss, metrics, lr, throughput, confusion matrix (PNG)
"""

from __future__ import annotations

import json
import math
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


def json_safe(value: Any) -> Any:
    """`value` with every NaN/inf float replaced by None, so that it is strict JSON.

    Python's json writes bare `NaN`/`Infinity`, which other JSON readers (jq, JavaScript, pandas with a strict
    parser) refuse; a diverged epoch's loss is "no value", which JSON spells null.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of `value` (non-finite floats as null; see `json_safe`)."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)


def write_json(path: Path, value: Any) -> None:
    """Pretty strict JSON (non-finite floats as null), written atomically."""
    atomic_write(path, lambda f: f.write((dumps(value, indent=2) + "\n").encode()))


def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> bool:
    """Decide what a run does with `run_dir` (nothing is deleted yet: see `start_fresh`).

    Returns:
        True when the run continues from a checkpoint (or finished state) there, False when it starts fresh.

    Raises:
        RunError: the folder holds a finished or resumable run and neither `--resume` nor `output.overwrite`
            says what to do with it.
    """
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())) and not (run_dir / RUN_INFO).exists() \
            and not (run_dir / "spec.resolved.yaml").exists():
        raise RunError(f"{run_dir}: already exists and is not an ftengine run directory (no {RUN_INFO}); choose "
                       "another output.name or output.dir (a run never deletes folders it did not create)")
    checkpoint = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    finished = read_run_info(run_dir).get("status") == "finished"
    if resume and (checkpoint is not None or finished):
        return True
    if run_dir.exists() and (checkpoint is not None or finished) and not overwrite:
        what = "a finished run" if finished else "an unfinished run with a checkpoint"
        raise RunError(f"{run_dir}: {what} is already there (output.dir/output.name); pass --resume to continue it, "
                       "set output.overwrite=true to replace it, or choose another output.name")
    return False


def start_fresh(run_dir: Path) -> None:
    """Empty (or create) the run directory for a run that starts from the beginning."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


def write_spec_files(run_dir: Path, spec: Any, graph: Any, labels: Sequence[str]) -> None:
    """spec.resolved.yaml, plan.json and labels.json."""
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write(run_dir / "spec.resolved.yaml", lambda f: f.write(text.encode()))
    write_json(run_dir / "plan.json", graph.to_dict())
    write_json(run_dir / "labels.json", list(labels))


class MetricsLog:
    """metrics.jsonl: one JSON object per epoch, appended and flushed as each epoch ends."""

    def __init__(self, path: Path, keep: int | None = None, *, write: bool = True) -> None:
        """Open `path`; with `keep`, drop rows past the first `keep` (written after the checkpoint resumed from).
        With `write` off (a data-parallel rank other than 0) rows are counted, never written."""
        self.path, self.write = path, write
        rows = self.read(path)
        if keep is not None and len(rows) > keep and write:
            rows = rows[:keep]
            atomic_write(path, lambda f: f.write("".join(dumps(r) + "\n" for r in rows).encode()))
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
        """Add one row (NaN/inf values as null: `train_loss` of an epoch that trained on nothing, a diverged loss)."""
        if self.write:
            with open(self.path, "a") as f:
                f.write(dumps(row) + "\n")
        self.rows += 1
