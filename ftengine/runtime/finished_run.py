"""Reusing a finished run: `evaluate_run` (metrics on its test split or another labelled file) and `predict_run`.

The model is rebuilt from the run directory alone: the resolved spec, `labels.json` and `model/` (for hf
backbones the saved transformers folder, so the run stays usable after the original model folder moves).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ftengine.data.targets import TaskInfo
from ftengine.errors import DataError, RunError
from ftengine.runtime.adapters import attach_adapters
from ftengine.runtime.export import HF_DIR, MODEL_DIR, WEIGHTS, load_final_weights, load_task
from ftengine.runtime.device import pick_device
from ftengine.runtime.evaluate import Evaluation, evaluate
from ftengine.runtime.model import FineTuneModel, inputs_of, to_device
from ftengine.runtime.run_dir import read_run_info
from ftengine.runtime.settings import TrainSettings


@dataclass
class LoadedRun:
    """A finished run's spec, labels and fine-tuned model (eval mode)."""

    run_dir: Path
    spec: Any
    spec_dir: Path
    labels: list[str]
    model: FineTuneModel
    device: torch.device
    task: TaskInfo = field(default_factory=TaskInfo)

    @property
    def eval_batch_size(self) -> int:
        """The run's evaluation batch size (`TrainSettings.eval_batch_size`)."""
        return TrainSettings.from_spec(self.spec).eval_batch_size


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """Rebuild the fine-tuned model of a finished run.

    Raises:
        DataError: no such folder, or not a run directory (exit 2: the path is the user's to fix).
        RunError: the run has not finished (with how to finish it).
    """
    from ftengine.backbones import build_backbone
    from ftengine.heads import build_head
    from ftengine.spec import load_spec

    run_dir = Path(run_dir)
    weights = run_dir / MODEL_DIR / WEIGHTS
    if not weights.is_file():
        printed = "pass the folder a finished `ftengine run` printed (its last line: run directory: ...)"
        if not run_dir.is_dir():
            raise DataError(f"{run_dir}: no such folder; {printed}")
        if not (run_dir / "spec.resolved.yaml").is_file():
            raise DataError(f"{run_dir}: not a run directory (no spec.resolved.yaml); {printed}")
        raise RunError(f"{run_dir}: the run has not finished (no {MODEL_DIR}/{WEIGHTS}); finish it with "
                       f"`ftengine run --resume {run_dir}`, or {printed}")
    spec = load_spec(run_dir / "spec.resolved.yaml")
    spec_dir = Path(read_run_info(run_dir).get("spec_path", run_dir / "spec.resolved.yaml")).parent
    labels = json.loads((run_dir / "labels.json").read_text())
    backbone_spec = spec.backbone
    if spec.backbone.kind == "hf" and (run_dir / MODEL_DIR / HF_DIR).is_dir():
        backbone_spec = backbone_spec.model_copy(update={"source": str((run_dir / MODEL_DIR / HF_DIR).resolve())})
    dev = pick_device(device)
    # Structure only: every weight comes from model.safetensors below.
    backbone = build_backbone(backbone_spec, pretrained=False, device=dev, base_dir=spec_dir)
    attach_adapters(backbone, spec.adapters)  # LoRA layers: model.safetensors holds their weights too
    model = FineTuneModel(backbone, build_head(spec.head, backbone, len(labels))).to(dev)
    load_final_weights(run_dir, model)
    return LoadedRun(run_dir, spec, spec_dir, labels, model.eval(), dev, TaskInfo.from_dict(load_task(run_dir)))


def _run_split(run: LoadedRun, data: Any, split: str) -> Evaluation:
    loader = data.make_loader(split, run.eval_batch_size, shuffle=False)
    result = evaluate(lambda b: run.model(inputs_of(to_device(b, run.device))), loader, run.labels, task=run.task)
    if result is None:
        raise RunError(f"{run.run_dir}: the {split} split is empty; nothing to evaluate")
    return result


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, *, device: str = "auto") -> dict[str, Any]:
    """Metrics of a finished run's model on its test split (validation when it has none) or on `data`.

    Returns:
        The report dict (accuracy, macro-F1, per-class precision/recall/F1, confusion matrix, loss) plus
        `split` and `data` (what was evaluated).

    Raises:
        RunError: a run is writing into `run_dir` now (readers share the folder's lock; see `runtime.lock`).
    """
    from ftengine.runtime.lock import locked_run_dir

    with locked_run_dir(run_dir, "ftengine eval", shared=True):  # no run rewrites the folder while it is read
        return _evaluate_run(run_dir, data, device)


def _evaluate_run(run_dir: str | Path, data: str | Path | None, device: str) -> dict[str, Any]:
    """`evaluate_run` once it holds a reader's lock on the run directory."""
    from ftengine.data import build_data, load_file

    run = load_run(run_dir, device)
    if data is not None:
        bundle = load_file(run.spec.data, run.model.backbone, data, run.labels, require_labels=True, where="--data")
        split, source = "test", str(data)
    else:
        bundle = build_data(run.spec.data, run.model.backbone, run.spec_dir, run.spec.training.seed)
        split = "test" if bundle.test is not None else "validation"
        source = f"the run's {split} split"
        if bundle.split(split) is None:
            raise RunError(f"{run.run_dir}: the run has no test or validation split; pass --data FILE")
    with torch.no_grad():
        result = _run_split(run, bundle, split)
    return {"split": split, "data": source, **result.report}


def predict_run(run_dir: str | Path, input_file: str | Path, output: str | Path | None = None, *,
                device: str = "auto") -> Path:
    """Label every example of `input_file` with the model of the finished run in `run_dir` (see `_predict_run`).

    Raises:
        RunError: a run is writing into `run_dir` now (readers share the folder's lock; see `runtime.lock`).
    """
    from ftengine.runtime.lock import locked_run_dir

    # Shared, as eval: predictions land in the run directory by default, and the model must not be rewritten
    # (a fresh run or --resume) while it is read.
    with locked_run_dir(run_dir, "ftengine predict", shared=True):
        return _predict_run(run_dir, input_file, output, device=device)


def _predict_run(run_dir: str | Path, input_file: str | Path, output: str | Path | None = None, *,
                 device: str = "auto") -> Path:
    """Predict labels for every example of `input_file` (labels in it are optional and ignored).

    Writes CSV (default) or JSON lines (`.jsonl` output), in input order: the input (text or image path), then
    classification: the predicted `label`, its `confidence` and `p_<class>` for every class; multilabel: the
    predicted `labels` (a list in JSON lines, joined by the data's `label_separator` in CSV) and `p_<label>` for
    every label; regression: the predicted value as `prediction` (in the target's unit).

    Returns:
        The predictions file (default `<run_dir>/predictions/<input stem>.csv`).
    """
    from ftengine.data import load_file

    run = load_run(run_dir, device)
    bundle = load_file(run.spec.data, run.model.backbone, input_file, run.labels, require_labels=False,
                       where="--input")
    loader = bundle.make_loader("test", run.eval_batch_size, shuffle=False)
    probs, index = [], []
    with torch.no_grad():
        for batch in loader:
            probs.append(run.task.outputs(run.model(inputs_of(to_device(batch, run.device))).float()).cpu())
            index.append(batch["index"])
    p = torch.cat(probs)[torch.argsort(torch.cat(index))]
    out = Path(output) if output else run.run_dir / "predictions" / f"{Path(input_file).stem}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    as_json = out.suffix in (".jsonl", ".json", ".ndjson")
    joiner = None if as_json else getattr(run.spec.data, "label_separator", "|")
    rows = [{**_source(bundle.test, i), **_outputs(run.task, p[i], run.labels, joiner)} for i in range(len(p))]
    if as_json:
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["label"])
            writer.writeheader()
            writer.writerows(rows)
    return out


def _source(dataset: Any, i: int) -> dict[str, Any]:
    """The input of example `i`: its text (and pair), or its image path."""
    texts = getattr(dataset, "texts", None)
    if texts is not None:
        text, pair = texts[i]
        return {"text": text, **({"text_pair": pair} if pair is not None else {})}
    return {"path": str(dataset.items[i])}


def _outputs(task: TaskInfo, out: torch.Tensor, labels: list[str], joiner: str | None) -> dict[str, Any]:
    """One row's prediction columns (see `predict_run`); `joiner` None keeps a multilabel list a list (JSON)."""
    if task.kind == "regression":
        return {"prediction": round(float(out), 6)}
    probs = {f"p_{name}": round(float(v), 6) for name, v in zip(labels, out.tolist(), strict=True)}
    if task.kind == "multilabel":
        chosen = [name for name, v in zip(labels, out.tolist(), strict=True) if v >= task.threshold]
        return {"labels": chosen if joiner is None else joiner.join(chosen), **probs}
    best = int(out.argmax())
    return {"label": labels[best], "confidence": round(float(out[best]), 6), **probs}
