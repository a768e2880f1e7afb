"""``kind: hf`` -- a transformers model from a local directory, a ``pkg:`` path or a hub id."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftengine.backbones import hf_decoders, hf_encoders  # noqa: F401  (importing registers their families)
from ftengine.backbones.backbone import Backbone, image_boundary_shape, text_boundary_shape
from ftengine.backbones.hf_families import HF_FAMILIES, HFFamily
from ftengine.backbones.hf_vision import image_preprocessing
from ftengine.backbones.loading import existing_path
from ftengine.backbones.trust import require_backbone_allowed
from ftengine.errors import RunError, SpecError
from ftengine.spec.paths import is_package_path


def build_hf(spec: Any, *, pretrained: bool, device: str | torch.device, base_dir: str | Path | None) -> Backbone:
    """Builder for ``HFBackboneSpec``: spec fields in, flat keyword arguments out.

    Raises:
        UntrustedCodeError: ``trust_remote_code`` is true and the user has not allowed remote code.
    """
    require_backbone_allowed(spec)  # before transformers reads (and would run) the checkpoint's own code
    return load_hf_backbone(spec.source, revision=spec.revision, trust_remote_code=spec.trust_remote_code,
                            pretrained=pretrained, device=device, base_dir=base_dir)


def resolve_source(source: str, base_dir: str | Path | None) -> str:
    """A local model directory (absolute path) or, failing that, a hub id.

    A ``pkg:`` path or anything that looks like a filesystem path must exist; a bare ``name`` or
    ``org/name`` that is not a directory next to the spec is taken as a hub id.
    """
    if is_package_path(source):
        return str(existing_path(source, base_dir, "backbone.source", want_dir=True))
    local = Path(base_dir or Path.cwd()) / Path(source).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or os.sep == "\\" and "\\" in source:
        raise SpecError(f"backbone.source: no such model directory '{local}' (got '{source}'); "
                        "fix the path (relative paths start at the spec file's folder)")
    return source


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("TRANSFORMERS_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def _load_error(source: str, location: str, exc: Exception) -> Exception:
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if Path(location).is_dir():
        return SpecError(f"backbone.source: '{location}' is not a transformers model directory ({reason}); "
                         "point it at a folder with config.json and the weights (save_pretrained output)")
    how = ("offline mode (HF_HUB_OFFLINE) and not in the local cache" if _offline()
           else f"hub download failed: {reason}")
    return RunError(f"backbone.source: cannot load '{source}' from the Hugging Face hub ({how}); "
                    "run once with network access to cache it, or set backbone.source to a local model directory")


def _fp32_kwarg() -> dict[str, torch.dtype]:
    # fp32 master weights whatever the checkpoint stores; transformers renamed torch_dtype to dtype in 4.56.
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.float32}


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    # transformers draws a "Loading weights" bar per model; the CLI has its own progress output.
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _check_supported(config: Any) -> HFFamily:
    family = HF_FAMILIES.get(config.model_type)
    if family is None or getattr(config, "is_decoder", False) and family.family == "encoder":
        what = f"decoder-configured '{config.model_type}'" if family else f"model type '{config.model_type}'"
        raise SpecError(f"backbone.source: {what} is not supported (supported: {', '.join(sorted(HF_FAMILIES))}); "
                        "use one of these, the module kind, or register its layer groups with "
                        "ftengine.backbones.register_hf_family")
    if family.family == "decoder":
        try:
            from transformers.masking_utils import create_causal_mask  # noqa: F401
        except ImportError as exc:
            raise RunError("backbone.source: decoder backbones need transformers>=4.53 (masking_utils); "
                           "pip install -U transformers") from exc
    return family


def _load_tokenizer(location: str, revision: str | None, trust_remote_code: bool, decoder: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
    if decoder and tokenizer.pad_token is None:
        # GPT-2 ships no pad token; padding positions are masked out, so any id works (right padding).
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_hf_backbone(source: str, *, revision: str | None = None, trust_remote_code: bool = False,
                     pretrained: bool = True, device: str | torch.device = "cpu",
                     base_dir: str | Path | None = None) -> Backbone:
    """Build a transformers backbone.

    Args:
        source: local directory, ``pkg:<package>/<dir>`` or hub id.
        revision: hub revision (ignored for local directories).
        trust_remote_code: allow code shipped with the checkpoint.
        pretrained: load the checkpoint's weights; False: random init (``device="meta"``: structure only,
            reads config.json and nothing else).
        device: where the parameters live.
        base_dir: folder relative paths start from (the spec file's folder).

    Raises:
        SpecError: bad path, not a model directory, unsupported model type.
        RunError: a hub id that cannot be fetched (e.g. offline and not cached).
    """
    from transformers import AutoConfig, AutoModel

    location = resolve_source(source, base_dir)
    try:
        config = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(source, location, exc) from exc
    _check_supported(config)
    meta = torch.device(device).type == "meta"
    if pretrained and not meta:
        try:
            with _quiet_progress():
                model = AutoModel.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code,
                                                  **_fp32_kwarg())
        except (OSError, ValueError) as exc:
            raise _load_error(source, location, exc) from exc
    else:
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    model = model.to(device) if not meta else model
    return wrap_hf_model(model, location=location, revision=revision, trust_remote_code=trust_remote_code,
                         source=source, pretrained=pretrained and not meta)


def wrap_hf_model(model: nn.Module, *, location: str | None = None, revision: str | None = None,
                  trust_remote_code: bool = False, source: str | None = None, pretrained: bool = False) -> Backbone:
    """Wrap an already built transformers base model (``AutoModel`` output) as a Backbone.

    Args:
        model: e.g. a ``BertModel``, ``LlamaModel`` or ``ViTModel`` (not a task model such as
            ``...ForSequenceClassification``).
        location: where its tokenizer lives (None: no tokenizer).
        revision, trust_remote_code: passed to ``AutoTokenizer``.
        source: the spec's source string, for ``info``.
        pretrained: whether the weights are pretrained, for ``info``.

    Raises:
        SpecError: the model type has no registered group layout.
    """
    config = model.config
    family = _check_supported(config)
    image = family.modality == "image"
    loader = (partial(_load_tokenizer, location, revision, trust_remote_code, family.family == "decoder")
              if location is not None and not image else None)
    return Backbone(
        model, family.groups(model), modality=family.modality, family=family.family,
        # Image models: measured from the final state (e.g. ConvNeXt's last stage width), text: the hidden size.
        feature_dim=None if image else config.hidden_size,
        boundary_shape_fn=image_boundary_shape if image else text_boundary_shape, tokenizer_loader=loader,
        preprocessing=image_preprocessing(config, location) if image else None,
        info={"kind": "hf", "source": source, "location": location, "model_type": config.model_type,
              "pretrained": pretrained, "max_length": getattr(config, "max_position_embeddings", None)},
    )
