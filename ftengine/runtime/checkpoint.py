"""Checkpoints written atomically: a crash never leaves a half-written file where a reader would look.

Layout under `<run_dir>/checkpoints/`::

    last/checkpoint.pt    full training state (model, optimizer, schedule position, stage, data position,
                          RNG states, tracker); what `--resume` continues from
    best/checkpoint.pt    model weights and the metric of the best validation epoch
    latest.json           pointer to the newest full checkpoint, with its position; written last

Each file is written to a temporary name in the same folder, flushed to disk, then `os.replace`d over the
old one (atomic on POSIX and Windows), and the folder is synced so the rename itself survives a power cut.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

FORMAT = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask (the only portable way is to set it and set it back)
LAST, BEST, POINTER = "last", "best", "latest.json"


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)` so that readers see the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the permissions open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
    """`model.state_dict()` with every tensor cloned to its own contiguous CPU storage.

    The flat optimizer makes parameters views into one buffer; saving views would either drag the whole buffer
    along (torch.save) or be refused (safetensors).
    """
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(run_dir: Path, which: str, state: dict[str, Any]) -> Path:
    """Write checkpoints/<which>/checkpoint.pt atomically; for `last` then move the pointer."""
    path = run_dir / "checkpoints" / which / "checkpoint.pt"
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))
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
    """Read a checkpoint written by `save_checkpoint` (tensors only: no code is unpickled)."""
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')} (this ftengine reads {FORMAT})")
    return state
