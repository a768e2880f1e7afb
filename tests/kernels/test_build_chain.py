"""The build -> dispatcher chain: schemas, reference default, native override, backend report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ftengine import kernels
from ftengine.kernels import _native, ops, reference

from kernel_utils import DEVICES, requires_native


def test_backend_info_shape() -> None:
    info = kernels.backend_info()
    assert set(info) == {"active", "native_available", "reason", "build"}
    assert info["active"] in ("native-cuda", "native-cpu", "reference")
    assert info["native_available"] == _native.available()
    if not info["native_available"]:
        assert info["active"] == "reference" and info["reason"]


@pytest.mark.parametrize("device", DEVICES)
def test_scale_add_matches_reference(device: str) -> None:
    x, y = torch.randn(4097, device=device), torch.randn(4097, device=device)
    torch.testing.assert_close(ops.scale_add(x, y, -0.5), reference.scale_add(x, y, -0.5))


@pytest.mark.native
@requires_native
def test_native_kernel_overrides_reference() -> None:
    dump = torch._C._dispatch_dump("ftengine::scale_add")
    assert "CPU: registered at" in dump and "scale_add.cpp" in dump
    assert kernels.backend_info()["build"]["version"]


def test_disable_native_env_falls_back_to_reference() -> None:
    code = "import json, ftengine.kernels as k; print(json.dumps(k.backend_info()))"
    env = {**os.environ, "FTENGINE_DISABLE_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    assert info["active"] == "reference" and info["native_available"] is False
    assert "FTENGINE_DISABLE_NATIVE=1" in info["reason"]


def test_scale_add_opcheck() -> None:
    torch.library.opcheck(torch.ops.ftengine.scale_add.default, (torch.randn(33), torch.randn(33), 2.0))
