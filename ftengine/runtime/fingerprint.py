"""Byte-exact tensor fingerprints (sha256), shared by the activation cache's keys and the checkpoints.

sha256 runs at ~1.4 GB/s on one core here: a 91 MB backbone hashes in ~0.07 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


def hash_tensor(h: Any, name: str, tensor: Tensor) -> None:
    """Feed `name`, dtype, shape and every byte of `tensor` into the hash object `h`."""
    if tensor.device.type == "meta":
        raise ValueError(f"cannot fingerprint '{name}': it has no data (meta tensor); build the backbone with weights")
    h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
    data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8)
    h.update(memoryview(data.numpy()))


def tensors_digest(named: Iterable[tuple[str, Tensor]]) -> str:
    """sha256 hex digest over (name, tensor) pairs, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda kv: kv[0]):
        hash_tensor(h, name, tensor)
    return h.hexdigest()
