"""Numbers have upper bounds: a typo such as 1e20 is a spec error naming the field, the value and the bound."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_helpers import SPEC, problems, write

from ftengine.spec import load_spec


@pytest.mark.parametrize("override, message", [
    ("training.batch_size=100000000000000000000",
     "training.batch_size: out of range (got 100000000000000000000); use a value <= 1048576"),
    ("training.batch_size=1.0e+20", "training.batch_size: out of range (got 1e+20); use a value <= 1048576"),
    ("training.batch_size=1e20",
     "training.batch_size: not a whole number (got '1e20'); write it in digits (at most 1048576), e.g. 1000 for 1e3"),
    ("training.eval_batch_size=2000000", "training.eval_batch_size: out of range (got 2000000); use a value <= 1048576"),
    ("training.epochs=1000000", "training.epochs: out of range (got 1000000); use a value <= 100000"),
    ("training.num_workers=5000", "training.num_workers: out of range (got 5000); use a value <= 1024"),
    ("training.threads=10000", "training.threads: out of range (got 10000); use a value <= 4096"),
    ("training.grad_accum_steps=100000", "training.grad_accum_steps: out of range (got 100000); use a value <= 65536"),
    ("training.max_steps=10000000000000", "training.max_steps: out of range (got 10000000000000); use a value <= 1000000000000"),
    ("training.seed=-1", "training.seed: out of range (got -1); use a value >= 0"),
    ("training.seed=18446744073709551616",
     "training.seed: out of range (got 18446744073709551616); use a value <= 9223372036854775807"),
    ("data.max_length=2000000", "data.max_length: out of range (got 2000000); use a value <= 1048576"),
    ("data.limit=10000000000000", "data.limit: out of range (got 10000000000000); use a value <= 1000000000000"),
    ("schedule.warmup_steps=10000000000000",
     "schedule.warmup_steps: out of range (got 10000000000000); use a value <= 1000000000000"),
    ("cache.budget_mb=2000000000", "cache.budget_mb: out of range (got 2000000000); use a value <= 1073741824"),
    ("freeze.head_epochs=1000000", "freeze.head_epochs: out of range (got 1000000); use a value <= 100000"),
    ("head.num_classes=2000000", "head.num_classes: out of range (got 2000000); use a value <= 1048576"),
    ("optimizer.lr=.inf", "optimizer.lr: input should be a finite number (got inf); fix the value"),
    ("optimizer.eps=.nan", "optimizer.eps: input should be a finite number (got nan); fix the value"),
])
def test_numbers_past_their_bound_name_field_value_and_bound(tmp_path: Path, override: str, message: str) -> None:
    assert problems(tmp_path, SPEC, [override]) == [message]


def test_image_sizes_and_hidden_widths_are_bounded(tmp_path: Path) -> None:
    text = ("backbone: {kind: torchvision, arch: resnet18}\ndata: {kind: sklearn_digits, image_size: 100000}\n"
            "head: {kind: mlp, hidden: [0, 10000000]}\n")
    assert problems(tmp_path, text) == [
        "head.hidden[0]: out of range (got 0); use a value >= 1",
        "head.hidden[1]: out of range (got 10000000); use a value <= 1048576",
        "data.image_size: out of range (got 100000); use a value <= 16384",
    ]


def test_values_at_the_bound_are_accepted(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, SPEC),
                     ["training.batch_size=1048576", "training.seed=9223372036854775807", "training.epochs=100000"])
    assert (spec.training.batch_size, spec.training.seed, spec.training.epochs) == (2**20, 2**63 - 1, 100_000)
