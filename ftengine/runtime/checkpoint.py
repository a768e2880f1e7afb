"""Checkpoints written atomically: a crash never leaves a half-written file where a reader would look.

Layout under `<run_dir>/checkpoints/`::

    last/checkpoint.pt    full training state (model, optimizer, schedule position, stage, data position,
                          RNG states, tracker); what `--resume` continues from
    last/previous.pt      the full checkpoint before it (a hard link, so no copy): `--resume` falls back to it
                          when checkpoint.pt cannot be read (truncated, damaged)
    best/checkpoint.pt    model weights and the metric of the best validation epoch
    latest.json           pointer to the newest full checkpoint, with its position; written last

Model weights are stored as a delta over the pretrained backbone: every parameter that has been trainable in
some stage (and the head, and every buffer) is saved; a parameter that has been frozen since the start still
holds the bytes the backbone loaded, so the checkpoint keeps only its name and a sha256 of all of them
(``base``). Loading rebuilds the model from the spec, checks that digest and loads the rest over it. A
feature-extraction checkpoint of MiniLM-L6 is ~0.1 MB instead of 91 MB (two are written per epoch).

Each file is written to a temporary name in the same folder, flushed to disk, then `os.replace`d over the
old one (atomic on POSIX and Windows), and the folder is synced so the rename itself survives a power cut.

Every checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
checkpoint file can never run code (a pickle that would is refused, and the run says which file it was).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from ftengine.errors import RunError
from ftengine.kernels.flat import exact_view
from ftengine.runtime.fingerprint import tensors_digest
from ftengine.runtime.progress import warn

FORMAT = 2  # 2: model weights may be a delta over the pretrained backbone ("base")
READABLE = (1, 2)
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask (the only portable way is to set it and set it back)
LAST, BEST, POINTER = "last", "best", "latest.json"
PREVIOUS = "previous.pt"  # in last/: the full checkpoint written before last/checkpoint.pt
RESUME_KEYS = ("model", "optimizer", "progress", "tracker", "rng", "metrics_rows", "best_stage")


class CheckpointError(RunError):
    """A checkpoint file that cannot be used: truncated or damaged, not weights-only, or not ftengine's."""


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, previous: Path | None = None) -> None:
    """Write `path` through `write(file)` so that readers see the old file or the complete new one.

    Args:
        path: the file to (re)write.
        write: writes the new contents.
        previous: keep the file being replaced under this name (only once the new one is complete).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the permissions open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.is_file():
            _keep(path, previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _keep(path: Path, previous: Path) -> None:
    """Make `previous` another name of `path`'s current contents; `path` exists throughout (crash-safe)."""
    tmp = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)  # a second name for the same bytes: no copy, and replacing `path` keeps them
    except OSError:  # no hard links on this filesystem
        shutil.copy2(path, tmp)
    os.replace(tmp, previous)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with every tensor on a CPU storage of exactly its own bytes, for writing out at once.

    The flat optimizer makes parameters views into one buffer; saving views would either drag the whole buffer
    along (torch.save) or be refused (safetensors). A clone of every tensor would hold the weights twice while they
    are written; storage slices share memory (see :func:`~ftengine.kernels.flat.exact_view`). A tensor whose bytes
    an earlier name already holds (tied weights) is copied: safetensors refuses two names over the same memory.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in model.state_dict().items():
        place = (v.data_ptr(), v.numel() * v.element_size())
        out[k] = v.detach().to("cpu", copy=True).contiguous() if place in seen else exact_view(v)
        seen.add(place)
    return out


class DeltaState:
    """Model weights as a delta over the pretrained backbone (see the module docstring).

    Args:
        model: the model being trained.
        always: parameter names saved even if never trainable (the head: it is not pretrained).
    """

    def __init__(self, model: nn.Module, always: set[str]) -> None:
        self.model = model
        self.trained: set[str] = set(always)  # parameters whose bytes may differ from the pretrained ones
        self._digests: dict[tuple[str, ...], str] = {}  # memo: frozen-since-start bytes never change in a run

    def mark_trainable(self) -> set[str]:
        """Record the parameters that take gradients now (call after every freeze change); returns the new ones."""
        new = {n for n, p in self.model.named_parameters() if p.requires_grad} - self.trained
        self.trained |= new
        return new

    def widen(self, saved: dict[str, Any], where: str) -> dict[str, Any] | None:
        """A saved delta that also stores the parameters trainable from now on, or None when it already does.

        Call it when a stage unfreezes more groups, before their first update: their bytes are still the
        pretrained ones, so this is the last moment a checkpoint written earlier (``best``) can take them along.
        Restoring that checkpoint after they trained then puts back what they held when it was written.
        """
        base = saved.get("base")
        state, now_base = self._split()
        if base is None or not set(base["params"]) - set(now_base):
            return None
        verify_base(state, base, where)
        now = self.state()
        return {**saved, "model": {**now["model"], **saved["model"]}, "base": now["base"]}

    def _split(self) -> tuple[dict[str, torch.Tensor], list[str]]:
        """(the model's state dict, names of its frozen-since-start parameters: the ones a delta leaves out)."""
        kept_ids = {id(p) for n, p in self.model.named_parameters() if n in self.trained}
        params = dict(self.model.named_parameters(remove_duplicate=False))  # tied weights: every name
        state = self.model.state_dict()
        base = sorted(k for k in state if k in params and id(params[k]) not in kept_ids)
        return state, base

    def _digest(self, state: dict[str, torch.Tensor], base: list[str]) -> str:
        key = tuple(base)
        if key not in self._digests:
            self._digests[key] = tensors_digest((k, state[k]) for k in base)
        return self._digests[key]

    def prime(self) -> None:
        """Hash the frozen-since-start weights now, as the next checkpoint would: before they leave memory
        (``FlatOptimizer.page_out``), so that checkpoints do not read them back in."""
        self._digest(*self._split())

    def state(self) -> dict[str, Any]:
        """{"model": stored tensors, "base": {"params": names left out, "sha256": their digest}}.

        The stored tensors share the model's memory (see :func:`~ftengine.kernels.flat.exact_view`): write them out
        before the next step.
        """
        state, base = self._split()
        digest = self._digest(state, base)
        skip = set(base)
        return {"model": {k: exact_view(v) for k, v in state.items() if k not in skip},
                "base": {"params": base, "sha256": digest}}

    def restore(self, saved: dict[str, Any], where: str) -> None:
        """Load a checkpoint's weights (a delta or, from format 1, the full state dict) into the model.

        Raises:
            RunError: the checkpoint leaves out other parameters than this model has untouched, or their
                pretrained bytes changed since it was written (the backbone's weights file was replaced).
        """
        load_model_state(self.model, saved, where)
        names = {n for n, _ in self.model.named_parameters()}
        self.trained |= names & set(saved["model"])


def load_model_state(model: nn.Module, saved: dict[str, Any], where: str) -> None:
    """`model.load_state_dict` for a checkpoint's ``model`` (and ``base`` when it is a delta); see `DeltaState`."""
    tensors, base = saved["model"], saved.get("base")
    if base is None:
        model.load_state_dict(tensors)
        return
    state = model.state_dict()
    odd = ((set(state) - set(tensors)) ^ set(base["params"])) | (set(tensors) - set(state))
    if odd:
        raise _misfit(where, odd)
    verify_base(state, base, where)
    model.load_state_dict(tensors, strict=False)


def verify_base(state: dict[str, torch.Tensor], base: dict[str, Any], where: str) -> None:
    """Check that ``state`` still holds the bytes a delta checkpoint left out (its ``base``).

    Raises:
        RunError: a left-out parameter is missing, or its bytes differ from the ones the checkpoint was trained on.
    """
    absent = set(base["params"]) - set(state)
    if absent:
        raise _misfit(where, absent)
    if tensors_digest((k, state[k]) for k in base["params"]) != base["sha256"]:
        raise RunError(f"{where}: the pretrained weights of the {len(base['params'])} parameters this checkpoint does "
                       "not store (frozen since the start) differ from the ones it was trained on; point "
                       "backbone.source at the same weights, or start a new run (output.overwrite=true)")


def _misfit(where: str, odd: set[str]) -> RunError:
    return RunError(f"{where}: the checkpoint's weights do not fit this model ({len(odd)} parameter names differ, "
                    f"e.g. {min(odd)!r}); load it with the spec (backbone and head) it was trained with")


def save_checkpoint(run_dir: Path, which: str, state: dict[str, Any]) -> Path:
    """Write checkpoints/<which>/checkpoint.pt atomically; for `last` then move the pointer."""
    path = run_dir / "checkpoints" / which / "checkpoint.pt"
    previous = path.with_name(PREVIOUS) if which == LAST else None
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f), previous=previous)
    if which == LAST:
        pointer = {"path": f"{which}/checkpoint.pt", **{k: state["progress"][k] for k in
                                                        ("stage", "epoch", "batches_done", "global_step")}}
        atomic_write(run_dir / "checkpoints" / POINTER, lambda f: f.write(json.dumps(pointer, indent=1).encode()))
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest full checkpoint of a run, or None when it has none."""
    folder = run_dir / "checkpoints"
    pointer = folder / POINTER
    if pointer.is_file():
        try:
            path = folder / json.loads(pointer.read_text())["path"]
        except (ValueError, KeyError):
            path = folder / LAST / "checkpoint.pt"
    else:
        path = folder / LAST / "checkpoint.pt"
    return path if path.is_file() else None


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors only: no code is unpickled).

    Raises:
        CheckpointError: the file is truncated or damaged, holds pickled objects beyond tensors (refused
            unread: nothing in it runs), or is not an ftengine checkpoint of a format this version reads.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [x.strip() for x in str(exc).splitlines() if "GLOBAL" in x]  # torch names what it refused there
        if lines:  # weights_only refused a global: the file would import and call code
            raise CheckpointError(f"{path}: not a weights-only checkpoint, refused unread: nothing in it ran "
                                  f"({lines[0][:160]}); ftengine writes and reads tensors only") from None
        raise CheckpointError(f"{path}: unreadable checkpoint, truncated or damaged ({_first(exc)})") from None
    except Exception as exc:  # noqa: BLE001 (damage shows as zip, pickle or tensor errors of every type)
        raise CheckpointError(f"{path}: unreadable checkpoint, truncated or damaged ({_first(exc)})") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not an ftengine checkpoint this version reads (format {got}; reads "
                              f"{', '.join(map(str, READABLE))})")
    return state


def _first(exc: Exception) -> str:
    """The first sentence of an exception's message (torch's run on for lines), or its type."""
    text = str(exc).strip().split(". ")[0].splitlines()
    return text[0][:160] if text else type(exc).__name__


def resume_point(run_dir: Path, warn: Callable[[str], None] = warn,
                 device: str | torch.device = "cpu") -> tuple[Path | None, dict[str, Any] | None]:
    """The newest usable full checkpoint of a run and its state, or ``(None, None)`` when it has none.

    A damaged newest checkpoint is reported through ``warn`` and the one saved before it (``last/previous.pt``)
    is used instead, with a second line saying so. ``best/`` is no fallback: it holds weights only, not the
    optimizer, schedule and data position a resumed run needs to train on as the unbroken run would.

    Raises:
        RunError: there are checkpoints but none is usable (one line naming them and the fix).
    """
    folder = run_dir / "checkpoints"
    newest = latest_checkpoint(run_dir)
    if newest is None:
        return None, None
    candidates = [newest, *(p for p in (folder / LAST / "checkpoint.pt", folder / LAST / PREVIOUS)
                            if p.is_file() and p != newest)]
    failed: list[Path] = []
    for path in candidates:
        try:
            state = load_checkpoint(path, device)
            missing = [k for k in RESUME_KEYS if k not in state]
            if missing:
                raise CheckpointError(f"{path}: not a full training checkpoint (no {', '.join(missing)})")
        except CheckpointError as exc:
            warn(f"--resume: {exc}")
            failed.append(path)
            continue
        if failed:
            warn(f"--resume: continuing from the checkpoint before it, {path} (step {state['progress']['global_step']});"
                 " the steps after it are trained again")
        return path, state
    names = ", ".join(str(p.relative_to(run_dir)) for p in failed)
    raise RunError(f"--resume: no usable checkpoint in {run_dir} ({names} unreadable); this run cannot continue: "
                   "start a new run with output.overwrite=true (or another output.name)")
