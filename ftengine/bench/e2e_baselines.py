"""The two "usual ways" that `ftengine bench e2e` compares against, on the same recipe, data split and seed.

* `plain`: a PyTorch loop the way the PyTorch transfer-learning tutorials write it: every text padded to
  `max_length` by the tokenizer, `requires_grad` flipped by hand, a new `torch.optim.AdamW` with per-group
  learning rates for each stage, full forward through the (partly frozen) encoder every batch, no cache.
* `hf`: a Hugging Face `Trainer` run: dynamic padding (`DataCollatorWithPadding`), one optimizer over every
  parameter group passed in `optimizers=`, and a small `TrainerCallback` that unfreezes the next stage's
  layers at the right epoch (what users write for gradual unfreezing).

Both use the same mean-pooled linear head (dropout 0.1), unweighted cross-entropy, AdamW (weight decay 0.01,
none on biases and norms), gradient clipping at 1.0 and a per-stage linear warmup (10%)/decay schedule.
Each function returns per-epoch records `{epoch, stage, train_seconds, val_accuracy, wall}` where `wall`
is seconds since the worker started (model and data loading included), taken after that epoch's validation.
On a CUDA device both run under the same autocast as ftengine's `training.precision` (auto: bf16) and synchronize
before an epoch's clock stops.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ftengine.bench.e2e_recipes import Recipe, Texts, stage_factor
from ftengine.bench.kit import sync
from ftengine.runtime.device import autocast_dtype
from ftengine.runtime.evaluate import autocast_context


class MeanPoolClassifier(nn.Module):
    """Encoder -> masked mean over tokens -> dropout -> linear (the sentence-transformers pooling)."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None, **_: Any) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def _select(model: MeanPoolClassifier, selector: str) -> list[tuple[str, nn.Parameter]]:
    """Parameters of a recipe group: "head", "all" or an encoder layer such as "layer.5" (the encoder's own
    `encoder.layer.5.*` parameters, the names ftengine's `encoder.layer.5` group holds)."""
    if selector == "head":
        return list(model.classifier.named_parameters(prefix="classifier"))
    if selector == "all":
        return list(model.encoder.named_parameters())
    chosen = [(n, p) for n, p in model.encoder.named_parameters() if n.startswith(f"encoder.{selector}.")]
    if not chosen:  # a recipe group that selects nothing would silently train less than ftengine does
        raise ValueError(f"bench e2e: recipe group {selector!r} selects no parameter of the encoder")
    return chosen


def _groups(model: MeanPoolClassifier, recipe: Recipe) -> list[dict[str, Any]]:
    """One AdamW group per (recipe group, decay / no decay): biases and LayerNorms get no weight decay."""
    groups = []
    for name in recipe.groups:
        params = _select(model, name)
        lr = recipe.head_lr if name == "head" else recipe.lr
        for decay in (True, False):
            chosen = [p for n, p in params if (("bias" in n or "LayerNorm" in n) != decay)]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "weight_decay": 0.01 if decay else 0.0, "group": name})
    return groups


def _autocast(device: str, precision: str) -> Any:
    """ftengine's own autocast for ``training.precision`` on ``device``: the baselines compute in the same dtype."""
    dev = torch.device(device)
    return autocast_context(dev, autocast_dtype(precision, dev))


def _accuracy(model: MeanPoolClassifier, loader: Any, device: str = "cpu", precision: str = "auto") -> float:
    model.eval()
    right = total = 0
    with torch.no_grad(), _autocast(device, precision):
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch["input_ids"], batch["attention_mask"])["logits"]
            right += int((logits.argmax(-1) == batch["labels"]).sum())
            total += int(batch["labels"].numel())
    return right / max(total, 1)


def run_plain(recipe: Recipe, data: Texts, model_dir: str, started: float, device: str = "cpu",
              precision: str = "auto") -> list[dict[str, Any]]:
    """The tutorial-style PyTorch loop (see the module docstring) on ``device`` with ``precision``'s autocast."""
    from torch.utils.data import DataLoader
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def loader(split: str, shuffle: bool, batch_size: int) -> DataLoader:
        texts, labels = data.split(split)
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=recipe.max_length, return_tensors="pt")
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "labels": torch.tensor(labels[i])} for i in range(len(labels))]
        return DataLoader(rows, batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(recipe.seed))

    train, val = loader("train", True, recipe.batch_size), loader("validation", False, 2 * recipe.batch_size)
    model = MeanPoolClassifier(AutoModel.from_pretrained(model_dir), len(data.labels)).to(device)
    records, epoch = [], 0
    for index, stage in enumerate(recipe.stages):
        for p in model.parameters():  # the tutorials' freezing: requires_grad by hand
            p.requires_grad = False
        groups = [g for g in _groups(model, recipe) if g["group"] in stage.trainable]
        for g in groups:
            g["lr"] *= stage.multipliers.get(g["group"], 1.0)
            for p in g["params"]:
                p.requires_grad = True
        optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "group"} for g in groups])
        steps = stage.epochs * len(train)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s, n=steps: stage_factor(s, n, recipe.warmup))
        for _ in range(stage.epochs):
            model.train()
            t0 = time.perf_counter()
            for batch in train:
                optimizer.zero_grad()
                with _autocast(device, precision):
                    loss = model(**{k: v.to(device) for k, v in batch.items()})["loss"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
            sync(device)
            seconds = time.perf_counter() - t0
            epoch += 1
            records.append({"epoch": epoch, "stage": index, "train_seconds": seconds,
                            "val_accuracy": _accuracy(model, val, device, precision),
                            "wall": time.perf_counter() - started})
    return records


def run_hf(recipe: Recipe, data: Texts, model_dir: str, started: float, out_dir: str, device: str = "cpu",
           precision: str = "auto") -> list[dict[str, Any]]:
    """A Hugging Face Trainer run with an unfreezing callback (see the module docstring); on a CUDA ``device`` the
    Trainer's own device choice (the current CUDA device) and its ``bf16`` / ``fp16`` autocast flag."""
    from transformers import (
        AutoModel,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def dataset(split: str) -> list[dict[str, Any]]:
        texts, labels = data.split(split)
        enc = tokenizer(texts, truncation=True, max_length=recipe.max_length)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels[i]}
                for i in range(len(labels))]

    train, val = dataset("train"), dataset("validation")
    model = MeanPoolClassifier(AutoModel.from_pretrained(model_dir), len(data.labels))
    groups = _groups(model, recipe)
    stage_of_epoch = [i for i, s in enumerate(recipe.stages) for _ in range(s.epochs)]
    steps_per_epoch = -(-len(train) // recipe.batch_size)

    def set_stage(index: int) -> None:
        for p in model.parameters():
            p.requires_grad = False
        for g in groups:
            for p in g["params"]:
                p.requires_grad = g["group"] in recipe.stages[index].trainable

    def factor(group: dict[str, Any]) -> Any:
        def f(step: int) -> float:  # per-stage warmup/decay, 0 for groups the stage keeps frozen
            epoch = min(step // steps_per_epoch, len(stage_of_epoch) - 1)
            stage = recipe.stages[stage_of_epoch[epoch]]
            if group["group"] not in stage.trainable:
                return 0.0
            first = stage_of_epoch.index(stage_of_epoch[epoch]) * steps_per_epoch
            return stage.multipliers.get(group["group"], 1.0) * stage_factor(step - first, stage.epochs * steps_per_epoch,
                                                                               recipe.warmup)
        return f

    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "group"} for g in groups])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g) for g in groups])
    set_stage(0)
    records: list[dict[str, Any]] = []

    class Stages(TrainerCallback):
        """Unfreeze each stage's layers when its first epoch begins; time each epoch."""

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            set_stage(stage_of_epoch[min(round(state.epoch or 0), len(stage_of_epoch) - 1)])
            sync(device)
            self.t0 = time.perf_counter()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync(device)
            self.seconds = time.perf_counter() - self.t0

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kw: Any) -> None:
            epoch = len(records) + 1
            records.append({"epoch": epoch, "stage": stage_of_epoch[epoch - 1], "train_seconds": self.seconds,
                            "val_accuracy": float((metrics or {})["eval_accuracy"]), "wall": time.perf_counter() - started})

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    amp = autocast_dtype(precision, torch.device(device))  # the Trainer's autocast flag: ftengine's dtype
    args = TrainingArguments(output_dir=out_dir, num_train_epochs=len(stage_of_epoch),
                             per_device_train_batch_size=recipe.batch_size,
                             per_device_eval_batch_size=2 * recipe.batch_size, eval_strategy="epoch", save_strategy="no",
                             logging_strategy="no", report_to=[], seed=recipe.seed, use_cpu=device == "cpu",
                             bf16=amp is torch.bfloat16, fp16=amp is torch.float16, max_grad_norm=1.0,
                             disable_tqdm=True, dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
            data_collator=DataCollatorWithPadding(tokenizer), optimizers=(optimizer, scheduler),
            compute_metrics=accuracy, callbacks=[Stages()]).train()
    return records
