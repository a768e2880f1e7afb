"""Backbones: pretrained models as ordered layer groups that can run from any group boundary.

``build_backbone(spec.backbone, pretrained=..., device=..., base_dir=...)`` dispatches on ``kind``
(``hf``, ``torchvision``, ``timm``, ``module``) to a registered builder. Importing this package is cheap:
transformers, torchvision and timm are imported only when a backbone of that kind is built.

``hf`` model types are split by registered layouts (:data:`HF_FAMILIES`): BERT-style encoders, DistilBERT,
DeBERTa-v2/v3, ModernBERT, GPT-2, Llama-style decoders (Llama, Mistral, Qwen2/3, Gemma/Gemma 2, Phi-3),
ViT, DINOv2 and ConvNeXt; :func:`register_hf_family` adds one.
"""

from ftengine.backbones.adapters import ADAPTERS, Adaptation, register_adapter, resolve_adapter
from ftengine.backbones.backbone import Backbone, GroupDef, GroupRunner, LayerGroup, State
from ftengine.backbones.hf import build_hf, load_hf_backbone, wrap_hf_model
from ftengine.backbones.hf_families import HF_FAMILIES, HFFamily, register_hf_family
from ftengine.backbones.module import build_module, load_module_backbone
from ftengine.backbones.registry import BUILDERS, BackboneBuilder, build_backbone, register_builder
from ftengine.backbones.resnet import RESNET_ARCHS, build_torchvision, load_resnet
from ftengine.backbones.timm_models import build_timm, load_timm_backbone

register_builder("hf")(build_hf)
register_builder("torchvision")(build_torchvision)
register_builder("module")(build_module)
register_builder("timm")(build_timm)

__all__ = [
    "ADAPTERS",
    "BUILDERS",
    "HF_FAMILIES",
    "RESNET_ARCHS",
    "Adaptation",
    "Backbone",
    "BackboneBuilder",
    "GroupDef",
    "GroupRunner",
    "HFFamily",
    "LayerGroup",
    "State",
    "build_backbone",
    "load_hf_backbone",
    "load_module_backbone",
    "load_resnet",
    "load_timm_backbone",
    "register_adapter",
    "register_builder",
    "register_hf_family",
    "resolve_adapter",
    "wrap_hf_model",
]
