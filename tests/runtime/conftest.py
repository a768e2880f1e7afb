"""Runtime fixtures: toy runs through the real `run_spec` (backbone/data/head replaced by small stand-ins), and a
tiny random BERT run through the CLI."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from cli_runs import ftengine_run
from toy import toy_build, toy_spec


@pytest.fixture()
def toy_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`toy_run(name, resume=False, quiet=True, **spec_sections) -> RunResult` in a temporary output folder."""
    import ftengine.runtime.run as run_module

    monkeypatch.setattr(run_module, "build", toy_build)
    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(tmp_path / "cache"))

    def run(name: str = "toy", resume: bool = False, quiet: bool = True, **sections: Any) -> Any:
        output = {"dir": str(tmp_path / "runs"), "name": name, "plots": False, **sections.pop("output", {})}
        spec = toy_spec(output=output, **sections)
        return run_module.run_spec(spec, tmp_path / f"{name}.yaml", resume=resume, quiet=quiet)

    return run


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm_dir: Path) -> Path:
    """A random 2-layer BERT (hidden 64) saved with the MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def spec_file(tmp_path_factory, tiny_bert: Path, tweets_csv: Path) -> Path:
    folder = tmp_path_factory.mktemp("spec")
    spec = {
        "backbone": {"kind": "hf", "source": str(tiny_bert)},
        "head": {"kind": "linear", "dropout": 0.1},
        "data": {"kind": "text", "train": str(tweets_csv), "encoding": "latin-1", "label_column": "sentiment",
                 "labels": ["negative", "neutral", "positive"], "limit": 400, "split": {"validation": 0.2},
                 "max_length": 48},
        "freeze": {"stages": [{"name": "head", "trainable": ["head"], "epochs": 1},
                              {"name": "top", "trainable": ["head", "encoder.layer.1"], "epochs": 3}]},
        "optimizer": {"lr": 1e-3, "head_lr": 1e-2},
        "schedule": {"kind": "cosine", "warmup_ratio": 0.1},
        "training": {"batch_size": 8, "threads": 1, "seed": 3},
        # fp32 frozen prefix on every CPU: `ftengine eval` (fp32 throughout) must give the run's own loss to 1e-6;
        # the default, auto, would fill in bf16 on a CPU with AVX512-BF16 or AMX
        "cache": {"fill_precision": "fp32"},
        "output": {"dir": str(folder / "runs"), "checkpoint_every_steps": 3, "plots": False},
    }
    path = folder / "resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def reference(spec_file: Path, tmp_path_factory) -> Path:
    """An unbroken run of `spec_file` through the CLI (the run directory)."""
    proc = ftengine_run(str(spec_file), "output.name=reference", cache=tmp_path_factory.mktemp("cache"))
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return spec_file.parent / "runs" / "reference"
