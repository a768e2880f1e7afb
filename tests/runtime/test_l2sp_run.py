"""L2-SP end to end on the toy model: the run reads per-group strengths from the plan, so a group whose multiplier
is 0 drifts from its start as in a plain run while an anchored group stays near its start."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from toy import toy_backbone

from ftengine.runtime.seeding import seed_everything

GROUPS = ("stem", "block1", "block2")
# lr * strength = 0.5: each step removes half the drift, so an anchored group stays within about two Adam steps
# (2 * lr) of its start; a plain group drifts by up to one step (lr) per step, over 18 steps.
LR, STRENGTH = 1e-2, 50.0


def _start() -> dict[str, torch.Tensor]:
    """The toy backbone's starting weights (toy_build seeds with training.seed, then builds it)."""
    seed_everything(0)
    return {n: p.detach().clone() for n, p in toy_backbone().named_parameters()}


def _drift(run_dir: Path, start: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest |w - w0| over each group's Linear weight (the decaying parameters)."""
    final = load_file(str(run_dir / "model" / "model.safetensors"))
    return {g: (final[f"backbone.{g}.0.weight"] - start[f"{g}.0.weight"]).abs().max().item() for g in GROUPS}


def test_multiplier_zero_is_not_pulled_toward_its_start(toy_run) -> None:
    sections = dict(freeze={"stages": [{"name": "all", "trainable": ["all"], "epochs": 3}]},
                    schedule={"kind": "constant"}, training={"restore_best": False})
    plain = toy_run("plain", optimizer={"lr": LR, "head_lr": LR}, **sections)
    anchored = toy_run("l2sp", optimizer={"lr": LR, "head_lr": LR, "l2sp": {
        "strength": STRENGTH, "multipliers": {"block1": 0}}}, **sections)
    saved = json.loads((anchored.run_dir / "plan.json").read_text())["l2sp"]
    assert saved == {"dtype": "fp32", "strength": STRENGTH, "groups": {"stem": STRENGTH, "block1": 0.0,
                                                                        "block2": STRENGTH}}
    start = _start()
    before, after = _drift(plain.run_dir, start), _drift(anchored.run_dir, start)
    assert min(before.values()) > 5 * LR  # the plain run moved every group well past two steps
    for group in ("stem", "block2"):  # anchored: held within a few steps of the start
        assert after[group] < 3 * LR < before[group], (group, before, after)
    # multiplier 0: plain weight decay, so it drifts like the plain run's (not equal: the other groups differ)
    assert after["block1"] > 0.8 * before["block1"], (before, after)
