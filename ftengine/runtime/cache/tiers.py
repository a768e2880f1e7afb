"""Planning decisions: which tier each entry lives on, and which boundaries are safe to fill now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}
DEVICE_SHARE = 0.25
"""Most of the accelerator's free memory the device tier may take (activations and gradients need the rest)."""


def plan_tiers(sizes: Mapping[tuple[str, int], int], uses: Mapping[int, int], tier: str, budget: int,
               device: torch.device) -> dict[tuple[str, int], tuple[str, str]]:
    """Assign each entry a tier within the byte budget.

    Entries are placed in order of how often they are read (the training split first, then boundaries read
    by more epochs); each goes to the fastest allowed tier it still fits in, else to disk (read per batch).

    On a CPU run ``auto`` means disk. Host memory and the page cache are the same memory there, and the fill has
    just written every entry's files, so they are in the page cache already (an entry an earlier run filled is read
    from disk once, in the first epoch). A host-tier copy holds them a second time, in the process (MiniLM, 1,800
    tweets at one boundary: 86 MB). The disk tier reads each batch's rows from the page cache instead: 0.5 against
    0.16 ms per 32-tweet lookup on a 2-core EPYC, where a step of the quickstart's top stage takes ~330 ms. ``host``
    still asks for the copy.

    Args:
        sizes: (split, boundary) -> bytes.
        uses: boundary -> epochs that read it.
        tier: ``graph.cache.tier`` (``auto``/``device``/``host``/``disk``).
        budget: bytes the memory tiers (device + host together) may hold.
        device: the run's device; the device tier exists only for accelerators (on CPU it is host memory).

    Returns:
        (split, boundary) -> (tier, note); note says why an entry did not get the requested tier ("" if it did).
    """
    accelerator = device.type != "cpu"
    device_room = budget
    if accelerator and device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        device_room = min(budget, int(free * DEVICE_SHARE))
    if tier == "auto":
        wanted = ["device", "host"] if accelerator else []
    elif tier == "device":
        wanted = ["device"] if accelerator else ["host"]  # on a CPU run, device memory is host memory
    elif tier == "host":
        wanted = ["host"]
    else:
        wanted = []
    order = sorted(sizes, key=lambda k: (SPLIT_ORDER.get(k[0], 3), -uses.get(k[1], 0), k[1]))
    used = 0
    used_device = 0
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for key in order:
        size = sizes[key]
        placed = None
        for t in wanted:
            room = min(device_room - used_device, budget - used) if t == "device" else budget - used
            if size <= room:
                placed = t
                break
        if placed is None:
            placed = "disk"
        used += size if placed != "disk" else 0
        used_device += size if placed == "device" else 0
        note = ""
        if wanted and placed != wanted[0] and tier != "auto":
            note = (f"{size / 2**20:.1f} MiB does not fit cache.budget_mb (or the device's free memory) "
                    f"next to {used / 2**20:.1f} MiB already placed: stored on {placed}")
        out[key] = (placed, note)
    return out


def shared_tier(tier: str, device: torch.device, local_ranks: int) -> tuple[str, str]:
    """The tier to plan with when ``local_ranks`` processes of one node read the same entries, and why.

    On a CPU run, ``auto`` is ``disk`` anyway (``plan_tiers``): every rank reads the same files, so the node
    holds one copy in the page cache instead of one host-memory copy per rank. An accelerator keeps its choice
    (each rank's device tier is its own GPU's memory); an explicit ``host`` is honoured.
    """
    if local_ranks > 1 and device.type == "cpu" and tier == "auto":
        return "disk", (f"{local_ranks} processes on this node share it from disk (one copy in the page cache, "
                        f"not {local_ranks} in host memory)")
    return tier, ""


def stale_boundaries(graph: Any, boundaries: Sequence[int], from_stage: int = 0) -> dict[int, str]:
    """Boundaries not to fill now, with the reason: their prefix is trained by a stage that runs before a later
    stage reads them (the activations would go stale: that stage runs its prefix live instead), or only stages
    before ``from_stage`` read them (a resumed run no longer needs them).
    """
    stages = list(graph.stages)[from_stage:]
    out: dict[int, str] = {}
    for b in boundaries:
        readers = [s for s in stages if s.cache.allowed and s.cache.boundary == b]
        if not readers:
            if any(s.cache.allowed and s.cache.boundary == b for s in graph.stages):  # read only by finished stages
                out[b] = f"only stages before {from_stage} read boundary {b}: nothing left to serve"
            continue
        last = readers[-1].index
        for stage in stages:
            if stage.index >= last or stage in readers:
                continue
            # Groups that run below boundary b (an adapter group `lora:G` runs inside G: same index).
            trained = [g.name for g, info in zip(stage.groups, graph.groups) if info.index < b and g.trainable]
            if trained:
                out[b] = (f"stage {stage.index} ({stage.name}) trains {trained[0]} below boundary {b} before stage "
                          f"{last} reads it; that stage runs its prefix live")
                break
    return out
