"""The fill pass: one forward through the frozen prefix per split, storing every requested boundary.

For boundaries ``b1 < b2 < ...`` a batch runs groups ``start..b1``, its state is stored, then the same
state continues through ``b1..b2``, is stored, and so on: the prefix below ``b_k`` runs once per split, not
once per boundary. ``start`` is 0 (raw inputs) or a boundary already cached in fp32, whose stored rows
replace the groups below it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from ftengine.errors import RunError
from ftengine.runtime.cache.layout import EntryWriter
from ftengine.runtime.cache.store import ActivationStore
from ftengine.runtime.model import inputs_of, to_device

MASK = "attention_mask"


def split_state(state: Mapping[str, Tensor], where: str) -> tuple[dict[str, Tensor], Tensor | None, dict[str, Tensor]]:
    """Separate a boundary state into packed ragged tensors, per-example lengths and fixed-shape tensors.

    Text states carry ``attention_mask`` (B, T): every ``(B, T, ...)`` tensor is packed to its real tokens,
    ``(sum_len, ...)`` in batch order (left or right padding alike). Everything else must be one row per
    example, ``(B, ...)``: pooled vectors, image feature maps.
    """
    mask = state.get(MASK)
    ragged: dict[str, Tensor] = {}
    fixed: dict[str, Tensor] = {}
    batch = mask.shape[0] if mask is not None else None
    keep = mask.bool() if mask is not None else None
    for name, value in state.items():
        if name == MASK or not torch.is_tensor(value):
            continue
        if not value.is_floating_point():
            raise RunError(f"cache fill at {where}: state '{name}' is {value.dtype}, not activations; this backbone "
                           "cannot be cached here, set cache.enabled=off")
        if mask is not None and value.dim() >= 3 and tuple(value.shape[:2]) == tuple(mask.shape):
            ragged[name] = value[keep]
        else:
            batch = value.shape[0] if batch is None else batch
            if value.dim() == 0 or value.shape[0] != batch:
                raise RunError(f"cache fill at {where}: state '{name}' has shape {tuple(value.shape)}, not one row per "
                               f"example (batch {batch}); this backbone cannot be cached here, set cache.enabled=off")
            fixed[name] = value
    lengths = keep.sum(dim=1) if keep is not None and ragged else None
    return ragged, lengths, fixed


def _narrow(name: str, value: Tensor, dtype: torch.dtype, boundary: int) -> Tensor:
    """Convert to the storage type on the device (fewer bytes to move), then copy to the host."""
    out = value.to(dtype)
    if dtype == torch.float16 and bool(torch.isinf(out).any()) and not bool(torch.isinf(value).any()):
        raise RunError(f"cache fill at boundary {boundary}: '{name}' exceeds the fp16 range (max 65504, got "
                       f"{float(value.abs().max()):.4g}); set cache.dtype to bf16 or fp32")
    return out.cpu()


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the fill (no dropout, frozen BatchNorm statistics), restoring each module's mode after."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def run_fill(backbone: nn.Module, batches: Iterable[Mapping[str, Tensor]], writers: Mapping[int, EntryWriter], *,
             device: torch.device, store_dtype: torch.dtype, start: int = 0,
             start_store: ActivationStore | None = None, progress: object | None = None,
             compute_dtype: torch.dtype | None = None) -> int:
    """Run the prefix once over ``batches`` and append every boundary in ``writers``.

    Args:
        backbone: the Backbone (``forward_from``).
        batches: collated batches with ``index`` (example ids) and raw inputs.
        writers: boundary -> open entry writer; boundaries must be > ``start``.
        device: where the prefix runs.
        store_dtype: element type written (converted on the device before the copy to host: fewer bytes move).
        start: boundary to start from (0: raw inputs).
        start_store: cached entry for ``start`` when ``start > 0``.
        progress: a tqdm-like object with ``update(n)``.
        compute_dtype: run the prefix under autocast to this dtype (``cache.fill_precision`` bf16); None: fp32.

    Returns:
        Examples processed.
    """
    boundaries = sorted(writers)
    seen = 0
    precision = (torch.autocast(device.type, dtype=compute_dtype) if compute_dtype is not None
                 else contextlib.nullcontext())
    with eval_mode(backbone), torch.inference_mode(), precision:
        for batch in batches:
            index = batch.get("index")
            if index is None:
                raise RunError("cache fill: the data collate gives no 'index' (example ids) per batch; the cache "
                               f"stores rows by example id (batch keys: {', '.join(batch)}); set cache.enabled=off")
            if start_store is not None:
                state = start_store.lookup(index)
            else:
                state = to_device(inputs_of(batch), device)  # the keys training feeds the backbone, no others
            at = start
            for b in boundaries:
                state = backbone.forward_from(at, state, stop=b)
                at = b
                ragged, lengths, fixed = split_state(state, f"boundary {b}")
                ragged = {k: _narrow(k, v, store_dtype, b) for k, v in ragged.items()}
                fixed = {k: _narrow(k, v, store_dtype, b) for k, v in fixed.items()}
                writers[b].add(index, ragged, None if lengths is None else lengths.cpu(), fixed)
            seen += len(index)
            if progress is not None:
                progress.update(len(index))
    return seen
