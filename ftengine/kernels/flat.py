"""Flat-buffer layout of the per-group optimizer, and the bytes each step moves per parameter.

One flat buffer per (device, dtype) holds every parameter, laid out group by group; each parameter starts at a
multiple of ``ALIGN`` elements (256 B for fp32), so vector loads never straddle a group and parameter views stay
aligned for other kernels. The gaps are zero in the parameter, gradient and state buffers, which keeps them zero
under every update rule. Each parameter (with its gap) is one row of the segment table: ``(offset, length,
trainable)`` (columns below, mirrored by ``csrc/include/ftengine/optim_math.h``), with its own hyper-parameter row
(its group's) and step count. Per-parameter rows are what makes the step torch.optim-exact: a parameter whose
``.grad`` is None this step is a row with ``trainable = 0``, and its step count, like torch's per-parameter
``state["step"]``, counts only the steps it took part in.
"""

from __future__ import annotations

import mmap
import warnings
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ftengine.kernels.pages import FileBuffer

ALIGN = 64
SEGMENT_COLUMNS = ("offset", "length", "trainable")
HYPER_COLUMNS = {
    "adamw": ("lr", "weight_decay", "beta1", "beta2", "eps"),
    "sgd": ("lr", "weight_decay", "momentum", "nesterov"),
}


LAZY_BYTES = 1 << 20
"""CPU buffers from this size on are mapped untouched (``untouched_zeros``); smaller ones are plain zeros."""


def exact_view(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (detached) on a storage of exactly its own bytes, sharing its memory where it can.

    A parameter or state view of a flat buffer shares the buffer's storage, and ``torch.save`` writes a tensor's
    whole storage: every group's bytes. A clone avoids that but holds a second copy while the checkpoint is written
    (+273 MB for MiniLM's fully trained AdamW state). A slice of the storage is neither. A contiguous CPU tensor is
    not copied (write it out before it changes); any other tensor is copied to the CPU.
    """
    tensor = tensor.detach()
    if tensor.device.type != "cpu" or not tensor.is_contiguous():
        return tensor.to("cpu", copy=True).contiguous()
    start, size = tensor.storage_offset() * tensor.element_size(), tensor.numel() * tensor.element_size()
    storage = tensor.untyped_storage()
    if start == 0 and size == storage.nbytes():
        return tensor
    return torch.empty(0, dtype=tensor.dtype).set_(storage[start:start + size], 0, tensor.shape)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def untouched_zeros(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(n,)`` zeros whose memory pages become resident only when something writes them.

    ``torch.zeros`` memsets the whole buffer, so every page is resident from the start. On a POSIX CPU the buffer
    is a private anonymous mapping of its own (page-aligned): the kernel zero-fills each page on first touch, so
    the slices nobody writes (a frozen group's gradients) never take memory: a head-only run on MiniLM keeps
    91 MB of fp32 gradients off its RSS. Not ``calloc``: below glibc's mmap threshold (raised to up to 32 MiB by
    earlier frees) it serves reused heap memory and memsets it. Other devices, and small buffers, get
    ``torch.zeros``.
    """
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    if device.type != "cpu" or nbytes < LAZY_BYTES or not hasattr(mmap, "MAP_PRIVATE"):
        return torch.zeros(n, dtype=dtype, device=device)
    # private, not Python's default shared mapping: a forked process (a data loader worker) gets copy-on-write
    pages = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with warnings.catch_warnings():  # the mapping is writable; torch warns about buffers in general
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(pages, dtype=dtype, count=n)  # keeps `pages` mapped while the tensor lives


@dataclass(frozen=True)
class FlatLayout:
    """Where each parameter and group lives in one flat buffer.

    Attributes:
        param_offsets: per group, the start of each of its parameters (elements).
        segments: per group, ``(offset, length)``; length spans the group's parameters and their alignment gaps.
        numel: total buffer length (elements).
        rows: per parameter in layout order, ``(offset, length, group)``; length includes its alignment gap.
    """

    param_offsets: tuple[tuple[int, ...], ...]
    segments: tuple[tuple[int, int], ...]
    numel: int
    rows: tuple[tuple[int, int, int], ...]

    @staticmethod
    def build(group_numels: list[list[int]]) -> FlatLayout:
        """Lay out groups of parameters (given by their element counts) back to back, each parameter aligned."""
        offset = 0
        param_offsets, segments, rows = [], [], []
        for group, numels in enumerate(group_numels):
            start, offsets = offset, []
            for n in numels:
                offsets.append(offset)
                rows.append((offset, _align(n), group))
                offset += _align(n)
            param_offsets.append(tuple(offsets))
            # the last parameter's gap belongs to the group too (always zero), so the group covers whole vectors
            segments.append((start, offset - start))
        return FlatLayout(tuple(param_offsets), tuple(segments), offset, tuple(rows))


def bytes_per_param(kind: str, param_dtype: torch.dtype, state_dtype: torch.dtype, *, grad_norm: bool,
                    momentum: bool = True, anchor_dtype: torch.dtype | None = None) -> int:
    """Bytes one optimizer step reads plus writes per trainable parameter (the table in optim_math.h).

    Args:
        kind: "adamw" or "sgd".
        param_dtype: dtype of the parameters (and their grads); 16-bit dtypes imply an fp32 master copy.
        state_dtype: dtype of the moments / momentum buffer.
        grad_norm: whether the global grad norm pass (clipping / non-finite skip) reads the grads once more.
        momentum: SGD only: whether a momentum buffer is kept.
        anchor_dtype: L2-SP anchor (starting weights) read on anchored rows: fp32 +4 B, bf16 +2 B (None: off).
    """
    p = torch.empty((), dtype=param_dtype).element_size()
    s = torch.empty((), dtype=state_dtype).element_size()
    low = p < 4
    weights = 4 + 4 + (p if low else 0)  # read + write the fp32 weights; write the 16-bit copy
    if kind == "adamw":
        total = weights + p + 4 * s  # + grad read, 2 moments read + written
    elif kind == "sgd":
        total = weights + p + (2 * s if momentum else 0)
    else:
        raise ValueError(f"bytes_per_param: kind must be 'adamw' or 'sgd' (got {kind!r})")
    anchor = torch.empty((), dtype=anchor_dtype).element_size() if anchor_dtype is not None else 0
    return total + (p if grad_norm else 0) + anchor


class FlatBucket:
    """The parameters of one (device, dtype) in one flat buffer, with flat grads, optimizer state and segment tables.

    Parameters become views into ``param`` and their ``.grad`` views into ``grad``. A grad that autograd allocates
    afresh (after ``.grad`` was set to None) is folded into ``grad`` by a post-accumulate hook as soon as backward
    has written it, so the loose copy is freed at once and later backward passes accumulate straight into the view.
    16-bit parameters get an fp32 ``master`` copy (the true weights). The segment tables have one row per parameter
    (``layout.rows``).

    Args:
        group_params: per optimizer group, this bucket's parameters of it (possibly none).
        state_names: the flat state buffers to allocate ("exp_avg", "exp_avg_sq" or "momentum_buffer").
        state_dtype: their dtype (fp32 or bf16).
        hyper_columns: number of per-group hyper-parameter columns (the l2sp column included when anchored).
        anchor_dtype: dtype of the L2-SP anchor buffer (fp32 or bf16), None for no anchor. Like the moments, a
            group's slice is written when the group first trains (its weights are still the starting ones then),
            so the groups that never train never get their anchor pages touched.
        weights_dir: CPU only: a folder for the file the weights are mapped from (``page_out``), None for
            anonymous memory. Anonymous too where the file cannot be made (see ``FileBuffer.create``).
    """

    def __init__(self, group_params: list[list[torch.nn.Parameter]], state_names: tuple[str, ...],
                 state_dtype: torch.dtype, hyper_columns: int, anchor_dtype: torch.dtype | None = None,
                 weights_dir: str | Path | None = None) -> None:
        first = next(p for params in group_params for p in params)
        self.device, self.dtype = first.device, first.dtype
        self.group_params = group_params
        self.layout = FlatLayout.build([[p.numel() for p in params] for params in group_params])
        n = self.layout.numel
        # Both untouched until written (CPU). The copy below makes the weights' pages resident as it goes, with
        # no memset of the whole buffer first. The gradient slices of groups that never train are never written
        # (their parameters get no grad, the kernels read only trainable rows, grad sync moves only trainable
        # ranges), so they never take memory. The original weights go when the last of them does: weights that
        # are views of one memory-mapped checkpoint keep all its resident pages until the end of this loop.
        self.slots: list[tuple[torch.nn.Parameter, int]] = [(p, o) for params, offsets in
                                                            zip(group_params, self.layout.param_offsets)
                                                            for p, o in zip(params, offsets)]
        # With `weights_dir` (CPU), the weights go to a file of their own instead, mapped privately, so that
        # `page_out` can give a group's pages back while no stage reads them (see kernels/pages.py).
        nbytes = n * torch.empty((), dtype=self.dtype).element_size()
        self.backing = FileBuffer.create([(o, p) for p, o in self.slots], n, self.dtype, weights_dir) \
            if weights_dir is not None and self.device.type == "cpu" and nbytes >= LAZY_BYTES else None
        self.param = self.backing.tensor if self.backing is not None else untouched_zeros(n, self.dtype, self.device)
        self.grad = untouched_zeros(n, self.dtype, self.device)
        with torch.no_grad():
            for p, o in self.slots:
                if self.backing is None:  # the file holds them already
                    self.param[o:o + p.numel()].copy_(p.detach().reshape(-1))
                if p.grad is not None:
                    self.grad[o:o + p.numel()].copy_(p.grad.reshape(-1))
                p.data = self.param[o:o + p.numel()].view_as(p)
                p.grad = self.grad[o:o + p.numel()].view_as(p)
        self.hook_grads()
        self.master = self.param.float() if self.dtype != torch.float32 else None
        # Moments are zeroed per group when the group first trains (`prepare_state`; on the CPU they already read
        # as zeros, elsewhere torch.empty's leftovers), not here: a frozen group's slices are never written, so
        # their pages are never touched (feature extraction on MiniLM: 2 x 91 MB of fp32 moments that never become
        # resident). Untouched mappings, not torch.empty: a buffer under glibc's mmap threshold (up to 32 MiB)
        # may reuse heap pages that are resident already.
        self.state = {name: self._untouched(n, state_dtype) for name in state_names}
        # (n,) starting weights for L2-SP: 4 B (fp32) or 2 B (bf16) per parameter of the groups that ever train
        self.anchor = self._untouched(n, anchor_dtype) if anchor_dtype is not None else None
        self._state_ready: set[int] = set()
        rows = len(self.slots)
        self._row_groups = [g for _, _, g in self.layout.rows]
        self.row_group = torch.tensor(self._row_groups, dtype=torch.int64)
        self.segments_host = torch.tensor([[o, length, 0] for o, length, _ in self.layout.rows],
                                          dtype=torch.int64).reshape(rows, 3)
        self.segments = self.segments_host.to(self.device)
        self.hyper = torch.zeros(rows, hyper_columns, dtype=torch.float64, device=self.device)
        self.steps = torch.zeros(rows, dtype=torch.int64, device=self.device)
        self._active: list[int] | None = None
        self._hyper_rows: list[list[float]] | None = None

    def page_out(self, groups: Iterable[int]) -> int:
        """Give back the resident pages of these groups' weights, to be read from the file again when something
        reads them (``FileBuffer.page_out``); the bytes advised, 0 without a backing file (GPU, or none asked for)."""
        if self.backing is None:
            return 0
        return sum(self.backing.page_out(*self.layout.segments[g]) for g in groups)

    def _untouched(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """State and anchor buffers: untouched zeros on the CPU, uninitialized memory elsewhere (CUDA as before)."""
        if self.device.type == "cpu":
            return untouched_zeros(n, dtype, self.device)
        return torch.empty(n, dtype=dtype, device=self.device)

    def _upload(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        if dst.is_cuda:  # pinned source: asynchronous, and the caching host allocator keeps it alive until copied
            src = src.pin_memory()
        dst.copy_(src, non_blocking=dst.is_cuda)

    def fold_and_mark(self, trainable: list[int]) -> list[int]:
        """Fold every grad that is not a view of the flat buffer (a None grad stays None) and return, per
        parameter, 1 when its group is trainable and it has a grad this step (torch.optim skips grad None). One pass
        reading each ``p.grad`` once: the step's per-parameter host cost (~0.6 us per parameter on a 2-core EPYC)."""
        base, size = self.grad.data_ptr(), self.grad.element_size()
        active = []
        for (p, o), g in zip(self.slots, self._row_groups):
            grad = p.grad
            if grad is None:
                active.append(0)
                continue
            if grad.data_ptr() != base + o * size:
                self.fold_grad(p, o)
            active.append(1 if trainable[g] else 0)
        return active

    def sync_tables(self, active: list[int], hyper_rows: list[list[float]]) -> None:
        """Upload the per-parameter active flags and the groups' hyper-parameters (expanded to one row per
        parameter) if they changed (lr does, every step, under a schedule)."""
        if active != self._active:
            self.segments_host[:, 2] = torch.tensor(active, dtype=torch.int64)
            self._upload(self.segments, self.segments_host)
            self._active = list(active)
        if hyper_rows != self._hyper_rows:
            table = torch.tensor(hyper_rows, dtype=torch.float64).reshape(len(hyper_rows), self.hyper.shape[1])
            self._upload(self.hyper, table.index_select(0, self.row_group))
            self._hyper_rows = [list(r) for r in hyper_rows]

    def prepare_state(self, trainable: list[int]) -> None:
        """Zero the moments of every trainable group that has none yet (torch.optim's zero initial state) and
        take its L2-SP anchor: its weights before its first update are the starting weights."""
        for g, flag in enumerate(trainable):
            if flag and g not in self._state_ready:
                offset, length = self.layout.segments[g]
                for buf in self.state.values():
                    buf[offset:offset + length].zero_()
                if self.anchor is not None:
                    weights = self.master if self.master is not None else self.param
                    self.anchor[offset:offset + length].copy_(weights[offset:offset + length])
                self._state_ready.add(g)

    def mark_state_ready(self) -> None:
        """Every group's moments were written from outside (a state load)."""
        self._state_ready = set(range(len(self.group_params)))

    def invalidate_tables(self) -> None:
        """Force the next ``sync_tables`` to upload (after a state load)."""
        self._active, self._hyper_rows = None, None

    def hook_grads(self) -> None:
        """Fold fresh grads into the flat buffer during backward (hooks only attach to params that require grad)."""
        owner = weakref.ref(self)  # once per call, not per parameter: this runs at every zero_grad
        for p, o in self.slots:
            p._ftengine_flat_slot = (owner, o)  # the newest bucket owns the parameter
            if p.requires_grad and not getattr(p, "_ftengine_hooked", False):  # one hook per parameter, ever
                p.register_post_accumulate_grad_hook(_fold_hook)
                p._ftengine_hooked = True

    def fold_grad(self, p: torch.nn.Parameter, offset: int) -> None:
        """Make ``p.grad`` the flat buffer's view again, copying a grad that something else allocated."""
        g = p.grad
        # pointer arithmetic, not a slice: this runs for every parameter at every step (~3 us per slice)
        if g is None or g.data_ptr() == self.grad.data_ptr() + offset * self.grad.element_size():
            return
        view = self.grad[offset:offset + p.numel()]
        with torch.no_grad():
            view.copy_(g.reshape(-1))
        p.grad = view.view_as(p)

    def rebind_grads(self) -> None:
        """Fold every grad that is not a view of the flat buffer; a None grad stays None (not stepped)."""
        self.fold_and_mark([0] * len(self.group_params))  # the same pass; the active flags are not needed here


def _fold_hook(p: torch.Tensor) -> None:
    """Post-accumulate-grad hook: fold ``p``'s fresh grad into the flat buffer of the bucket that owns ``p``."""
    owner, offset = getattr(p, "_ftengine_flat_slot", (None, 0))
    bucket = owner() if owner is not None else None
    # a deep copy of the parameter carries the attribute and the hook along but not the storage: leave it alone
    if bucket is not None and p.data_ptr() == bucket.param.data_ptr() + offset * bucket.param.element_size():
        bucket.fold_grad(p, offset)
