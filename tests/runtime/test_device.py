"""Device and precision choices, and a bf16-autocast run on the CPU."""

from __future__ import annotations

import pytest
import torch

from ftengine.errors import RunError, SpecError
from ftengine.runtime.device import attention_kernels, autocast_dtype, grad_scaler, pick_device

CPU = torch.device("cpu")


def test_auto_precision_is_fp32_on_cpu_and_fp16_needs_cuda():
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(SpecError, match=r"^training.precision: fp16 autocast needs a CUDA device \(got device cpu\)"):
        autocast_dtype("fp16", CPU)
    assert grad_scaler(torch.bfloat16, CPU) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a CUDA device")
def test_asking_for_cuda_without_one_says_what_to_do():
    assert pick_device("auto") == CPU
    with pytest.raises(RunError, match=r"^training.device: no CUDA device is available \(got 'cuda:1'\); use device: "):
        pick_device("cuda:1")


def test_bf16_autocast_run_on_cpu(toy_run):
    result = toy_run(training={"precision": "bf16"})
    assert result.metrics["epochs_run"] == 4 and 0.0 <= result.metrics["val_accuracy"] <= 1.0


def _sdp_flags() -> dict[str, bool]:
    b = torch.backends.cuda
    return dict(cudnn=b.cudnn_sdp_enabled(), flash=b.flash_sdp_enabled(), efficient=b.mem_efficient_sdp_enabled(),
                math=b.math_sdp_enabled())


def test_cuda_runs_attend_without_cudnn_and_restore_the_flags_after():
    # the flags are process settings; setting them needs no GPU
    before = _sdp_flags()
    assert before["cudnn"], "torch's default has cuDNN attention on; this test checks that a run turns it off"
    with attention_kernels(torch.device("cuda")):
        assert _sdp_flags() == dict(cudnn=False, flash=True, efficient=True, math=True)
    assert _sdp_flags() == before
    with attention_kernels(CPU):
        assert _sdp_flags() == before


def test_run_spec_trains_inside_the_attention_choice(toy_run, monkeypatch):
    import contextlib

    import ftengine.runtime.run as run_module

    entered = []

    @contextlib.contextmanager
    def recording(device):
        entered.append(device)
        yield

    monkeypatch.setattr(run_module, "attention_kernels", recording)
    toy_run()
    assert entered == [CPU]
