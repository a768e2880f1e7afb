"""LoRA adapters through peft on tiny random BERT and GPT-2: only adapters and head train, the adapter exported in
peft's format rebuilds the same model, eval/predict work on the run, WiSE-FT rows are logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory, minilm_dir: Path) -> Path:
    """A random 2-layer GPT-2 (hidden 32) saved with the MiniLM tokenizer (no GPT-2 vocabulary offline)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64)).save_pretrained(
        str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def lora_spec(source: Path, tweets: Path, out: Path, modules: list[str]) -> dict[str, Any]:
    return {
        "backbone": {"kind": "hf", "source": str(source)},
        "head": {"kind": "linear"},
        "data": {"kind": "text", "train": str(tweets), "encoding": "latin-1", "label_column": "sentiment",
                 "labels": ["negative", "neutral", "positive"], "limit": 90, "split": {"validation": 0.3, "test": 0.2},
                 "max_length": 24},
        "adapters": {"kind": "lora", "targets": ["re:.*1"], "modules": modules, "r": 4, "alpha": 8},
        "freeze": {"preset": "full_finetune"},
        "optimizer": {"lr": 5e-2, "head_lr": 1e-2},
        "training": {"epochs": 2, "batch_size": 16, "threads": 1, "seed": 1},
        "output": {"dir": str(out), "name": "run", "plots": False, "wise_ft": [0.0, 0.5, 1.0], "merge_adapters": True},
    }


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def lora_run(request, tmp_path_factory, tiny_bert: Path, tiny_gpt2: Path, tweets_csv: Path) -> tuple[str, Path, Path]:
    """(family, base model folder, run directory) of a finished two-epoch LoRA run with a WiSE-FT sweep."""
    from ftengine.runtime.run import run_spec

    source, modules = (tiny_bert, ["query", "value"]) if request.param == "bert" else (tiny_gpt2, ["c_attn"])
    folder = tmp_path_factory.mktemp(f"lora_{request.param}")
    path = folder / "lora.yaml"
    path.write_text(yaml.safe_dump(lora_spec(source, tweets_csv, folder / "runs", modules)))
    result = run_spec(None, path, quiet=True)
    return request.param, source, result.run_dir


def test_only_adapters_and_head_train(lora_run: tuple[str, Path, Path]) -> None:
    from transformers import AutoModel

    _, source, run_dir = lora_run
    final = load_file(str(run_dir / "model" / "model.safetensors"))
    base = AutoModel.from_pretrained(str(source)).state_dict()
    lora = [k for k in final if ".lora_" in k]
    assert lora and all(".encoder.layer.1." in k or ".h.1." in k for k in lora)
    best = json.loads((run_dir / "wise_ft.json").read_text())["best"]
    # B starts at zero; WiSE-FT at coefficient a scales it by a.
    assert best == 0.0 or any(k.endswith("lora_B.default.weight") and final[k].abs().sum() > 0 for k in lora)
    for key, value in base.items():  # every base weight bit-identical to the pretrained checkpoint
        name = "backbone." + key
        name = name if name in final else name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(final[name], value), key


def test_checkpoint_holds_adapters_and_head_only(lora_run: tuple[str, Path, Path]) -> None:
    from ftengine.runtime.checkpoint import load_checkpoint

    _, _, run_dir = lora_run
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last" / "checkpoint.pt")
    tensors = {k for k, v in ckpt["model"]["weights"].items() if isinstance(v, torch.Tensor)} \
        if "weights" in ckpt["model"] else set(ckpt["model"])
    trained = {k for k in tensors if ".lora_" in k or k.startswith("head.")}
    assert trained and not {k for k in tensors - trained if k.endswith(".weight") and "norm" not in k.lower()}
    best = (run_dir / "checkpoints" / "best" / "checkpoint.pt").stat().st_size
    assert best <= 0.05 * (run_dir / "model" / "model.safetensors").stat().st_size  # the target: <= 5%


def test_exported_adapter_loads_with_peft(lora_run: tuple[str, Path, Path], tweets_csv: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModel

    from ftengine.backbones.hf import wrap_hf_model
    from ftengine.runtime.finished_run import load_run
    from ftengine.runtime.model import FineTuneModel

    _, source, run_dir = lora_run
    loaded = load_run(run_dir, device="cpu")
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(str(source)), str(run_dir / "model" / "adapter"))
    rebuilt = FineTuneModel(wrap_hf_model(peft_model.base_model.model), loaded.model.head).eval()
    batch = loaded.model.backbone.tokenizer(["good day", "this is awful, really"], padding=True, return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(inputs), loaded.model(inputs))
        merged = AutoModel.from_pretrained(str(run_dir / "model" / "merged"))
        torch.testing.assert_close(FineTuneModel(wrap_hf_model(merged), loaded.model.head).eval()(inputs),
                                   loaded.model(inputs), rtol=1e-4, atol=1e-5)


def test_eval_predict_and_wise_ft_rows(lora_run: tuple[str, Path, Path], tmp_path: Path) -> None:
    from ftengine.runtime.finished_run import evaluate_run, predict_run

    _, _, run_dir = lora_run
    report = evaluate_run(run_dir, device="cpu")
    assert 0.0 <= report["accuracy"] <= 1.0
    texts = tmp_path / "in.csv"
    texts.write_text("text\ngood day\nawful\n")
    predict_run(run_dir, texts, tmp_path / "out.csv", device="cpu")
    assert len((tmp_path / "out.csv").read_text().strip().splitlines()) == 3
    sweep = json.loads((run_dir / "wise_ft.json").read_text())
    assert [r["alpha"] for r in sweep["rows"]] == [0.0, 0.5, 1.0] and sweep["best"] in (0.0, 0.5, 1.0)
    final = json.loads((run_dir / "run.json").read_text())["final"]
    assert final["wise_ft_alpha"] == sweep["best"] and len(final["wise_ft"]) == 3
    assert json.loads((run_dir / "report.json").read_text())["wise_ft_alpha"] == sweep["best"]
