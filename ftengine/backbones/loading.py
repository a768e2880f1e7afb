"""Shared loading functions: import paths, checkpoint files, state-dict surgery, one-line errors."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ftengine.errors import SpecError
from ftengine.spec.paths import is_package_path, resolve_path


def shorten(items: Iterable[str], limit: int = 5) -> str:
    """``a, b, c (+7 more)`` for error messages."""
    items = list(items)
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def import_object(path: str, where: str) -> Any:
    """Import ``package.module:Name`` or ``package.module:Class.attribute``.

    Raises:
        SpecError: one line naming ``where``, what failed and how to fix it.
    """
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise SpecError(f"{where}: expected 'package.module:Name' (got '{path}'); separate module and name with ':'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"{where}: cannot import '{module_name}' ({exc}); install the package or fix the path") from exc
    for i, part in enumerate(attr_path.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            owner = ".".join([module_name, *attr_path.split(".")[:i]])
            raise SpecError(f"{where}: '{owner}' has no attribute '{part}' (got '{path}'); check the name") from exc
    return obj


def existing_path(value: str, base_dir: str | Path | None, where: str, *, want_dir: bool = False) -> Path:
    """Resolve a spec path (relative or ``pkg:``) and require that it exists.

    Raises:
        SpecError: the package is missing or the path does not exist.
    """
    try:
        path = resolve_path(value, base_dir)
    except FileNotFoundError as exc:
        raise SpecError(f"{where}: {exc} (got '{value}'); install it or fix the path") from exc
    kind = "directory" if want_dir else "file"
    if not (path.is_dir() if want_dir else path.is_file()):
        hint = " inside the package" if is_package_path(value) else ""
        raise SpecError(f"{where}: no such {kind} '{path}'{hint} (got '{value}'); fix the path")
    return path


def load_state_dict_file(path: Path, where: str, key: str | None = None) -> dict[str, Tensor]:
    """Read a state dict from a ``.safetensors`` or ``torch.save`` file (tensors only, never pickled code).

    Args:
        path: the checkpoint file.
        where: spec path for error messages.
        key: sub-dict holding the state dict (``"state_dict"``, ``"model"``); None: the file is the
            state dict, or a dict whose only mapping value under ``state_dict``/``model`` is.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        data: Any = load_file(str(path))
    else:
        try:
            # str(): some libraries and older torch builds mishandle Path objects here.
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling failure means the same thing to the user
            reason = str(exc).splitlines()[0][:200]
            raise SpecError(f"{where}: cannot read '{path}' as a weights-only checkpoint ({reason}); "
                            "re-save it with torch.save(model.state_dict(), path)") from exc
    if key is not None:
        if not isinstance(data, Mapping) or key not in data:
            found = shorten(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
            raise SpecError(f"{where}: checkpoint '{path}' has no key '{key}' (top level: {found}); "
                            "fix backbone.checkpoint_key")
        data = data[key]
    elif isinstance(data, Mapping) and not any(isinstance(v, Tensor) for v in data.values()):
        for wrapper in ("state_dict", "model"):
            if isinstance(data.get(wrapper), Mapping):
                data = data[wrapper]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, Tensor) for v in data.values()):
        raise SpecError(f"{where}: '{path}' does not hold a state dict of tensors; "
                        "name the sub-dict with backbone.checkpoint_key or re-save the state dict")
    state = dict(data)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_into(model: nn.Module, state: dict[str, Tensor], *, where: str, strict: bool,
              dropped: Iterable[str] = (), strict_fix: str = "fix the checkpoint or set backbone.strict=false",
              ) -> dict[str, list[str]]:
    """Load ``state`` into ``model``, ignoring keys under dropped modules (e.g. a removed classifier).

    Args:
        strict_fix: the "how to fix" part of the message for a strict mismatch.

    Returns:
        ``{"missing": [...], "unexpected": [...], "ignored": [...]}``.

    Raises:
        SpecError: shape mismatch, nothing matched, or (strict) any missing/unexpected key.
    """
    prefixes = tuple(f"{d}." for d in dropped)
    ignored = [k for k in state if prefixes and k.startswith(prefixes)]
    state = {k: v for k, v in state.items() if k not in set(ignored)}
    own = model.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and own[k].shape != v.shape]
    if bad:
        raise SpecError(f"{where}: checkpoint shapes do not match the model ({shorten(bad, 3)}); "
                        "use the checkpoint of this architecture or fix the factory kwargs")
    if own and not set(state) & set(own):
        raise SpecError(f"{where}: no checkpoint key matches the model (checkpoint: {shorten(state)}; "
                        f"model: {shorten(own)}); use the right file or set backbone.checkpoint_key")
    result = model.load_state_dict(state, strict=False)
    report = {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys), "ignored": ignored}
    if strict and (report["missing"] or report["unexpected"]):
        raise SpecError(f"{where}: checkpoint does not match the model exactly (missing: "
                        f"{shorten(report['missing']) or 'none'}; unexpected: {shorten(report['unexpected']) or 'none'}); "
                        f"{strict_fix}")
    return report


def drop_module(model: nn.Module, name: str) -> None:
    """Replace submodule ``name`` by ``nn.Identity`` (frees a classifier the head replaces)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
