"""The build -> dispatcher chain: schemas, reference default, native override, backend report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ftengine import kernels
from ftengine.kernels import _native

from kernel_utils import requires_native


def test_backend_info_shape() -> None:
    info = kernels.backend_info()
    assert set(info) == {"active", "native_available", "reason", "build"}
    assert info["active"] in ("native-cuda", "native-cpu", "reference")
    assert info["native_available"] == _native.available()
    if not info["native_available"]:
        assert info["active"] == "reference" and info["reason"]


@pytest.mark.native
@requires_native
@pytest.mark.parametrize("op", ["flat_grad_sqnorm", "adamw_step", "sgd_step"])
def test_native_cpu_kernel_overrides_the_reference(op: str) -> None:
    dump = torch._C._dispatch_dump(f"ftengine::{op}")
    assert "CompositeExplicitAutograd[alias]: registered at" in dump  # the reference default
    assert "CPU: registered at" in dump and "flat_optim.cpp" in dump  # overridden on CPU by the C++ kernel
    if kernels.backend_info()["build"].get("cuda_compiled"):
        assert "CUDA: registered at" in dump and "flat_optim.cu" in dump


def test_disable_native_env_falls_back_to_reference() -> None:
    code = "import json, ftengine.kernels as k; print(json.dumps(k.backend_info()))"
    env = {**os.environ, "FTENGINE_DISABLE_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    assert info["active"] == "reference" and info["native_available"] is False
    assert "FTENGINE_DISABLE_NATIVE=1" in info["reason"]


def test_native_available_agrees_with_backend_info() -> None:
    info = kernels.backend_info()
    assert kernels.native_available("cpu") == info["native_available"]
    assert kernels.native_available("cuda") == (info["native_available"] and bool(info["build"].get("cuda_compiled")))


def test_require_native_names_the_device_and_the_reason() -> None:
    code = ("import ftengine.kernels as k\n"
            "try:\n    k.require_native('cpu')\nexcept k.NativeUnavailableError as e:\n    print(e)")
    env = {**os.environ, "FTENGINE_DISABLE_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "native kernels unavailable for cpu (FTENGINE_DISABLE_NATIVE=1 is set)"
