"""The implementation switch (medloss.implementation) and the Triton kernels, run through Triton's
interpreter in a process of their own (TRITON_INTERPRET=1 must be set before Triton is imported)."""

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import medloss
from medloss.losses import ComboLoss, DiceLoss
from medloss.ops import cpu_kernel as _native
from medloss.ops import switch

HERE = Path(__file__).resolve().parent


def test_unknown_implementation_is_an_error():
    with pytest.raises(ValueError, match="`name` must be one of 'auto', 'pytorch', 'cpu_kernel', 'triton'"):
        with medloss.implementation("cuda"):
            pass
    with pytest.raises(ValueError, match="must be one of"):
        medloss.set_implementation("fast")
    assert medloss.get_implementation() == "auto"


def test_auto_picks_by_device(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.setattr(switch, "triton_importable", lambda: True)
    with FakeTensorMode():
        cuda = torch.empty(2, 3, device="cuda")
        assert switch.resolve(cuda) == "triton"
        monkeypatch.setattr(switch, "triton_importable", lambda: False)
        assert switch.resolve(cuda) == "pytorch"
    assert switch.resolve(torch.zeros(1, device="meta")) == "pytorch"
    assert switch.resolve(cpu) == ("cpu_kernel" if _native._LIB is not None and _native.env_enabled() else "pytorch")
    with medloss.implementation("pytorch"):
        assert switch.resolve(cpu) == "pytorch" and not medloss.native_kernels_available()


def test_explicit_choices_that_cannot_run_say_why(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(switch, "triton_importable", lambda: True)
    with medloss.implementation("triton"), pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        DiceLoss()(torch.randn(1, 2, 4), torch.zeros(1, 4, dtype=torch.long))
    monkeypatch.setattr(switch, "triton_importable", lambda: False)
    with medloss.implementation("triton"), pytest.raises(RuntimeError, match="pip install triton"):
        switch.resolve(cpu)
    with medloss.implementation("cpu_kernel"), pytest.raises(ValueError, match="runs on CPU tensors; got a meta"):
        switch.resolve(torch.zeros(1, device="meta"))
    monkeypatch.setattr(_native, "_LIB", None)
    with medloss.implementation("cpu_kernel"), pytest.raises(RuntimeError, match="not installed"):
        switch.resolve(cpu)


def test_native_kernels_is_a_deprecated_alias():
    with pytest.warns(FutureWarning, match="medloss.implementation"):
        with medloss.native_kernels(False):
            assert medloss.get_implementation() == "pytorch"
    assert medloss.get_implementation() == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with medloss.native_kernels(True):
            assert medloss.get_implementation() == "auto"


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (pip install triton)")
def test_triton_kernels_through_the_interpreter():
    """Bad-label counts, determinism (the same bits twice), the launch budget (every segmentation loss of the
    registry in every mode, and label smoothing: forward + backward in at most 4 launches, gradients equal the
    PyTorch implementation's)
    and second derivatives: tests/triton_worker.py. Values and gradients against the float64 references:
    tests/test_conformance.py."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, str(HERE / "triton_worker.py")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "launch budget: 47 losses x modes, at most 4 launches each" in run.stdout, run.stdout
    assert "launches: cumulative_link forward + backward = 2" in run.stdout
    assert "second derivatives: equal the PyTorch implementation's" in run.stdout


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (pip install triton)")
def test_region_losses_on_cuda_take_the_triton_op_without_a_host_sync():
    """On (fake) CUDA tensors "auto" runs the Triton statistics op: the graph builds with the loss's shape
    and dtype, and nothing reads a value on the host (value checks off, as in a compiled step)."""
    from medloss.ops import triton_softmax_stats  # noqa: F401  (registers the op)

    with FakeTensorMode(), medloss.value_checks(False):
        x = torch.empty(2, 5, 8, 8, device="cuda")
        t = torch.empty(2, 8, 8, dtype=torch.long, device="cuda")
        assert switch.resolve(x) == "triton"
        for loss in (DiceLoss(), DiceLoss(batch=True, reduction="none"), ComboLoss()):
            out = loss(x, t)
            assert out.device.type == "cuda" and out.dtype == torch.float32
        stats, term, n_bad, total = torch.ops.medloss.softmax_stats_triton(x, t, -100, 1, None, 2.0, 2.0, 0.5)
        assert stats.shape == (2, 3, 5) and term.shape == () and n_bad.dtype == torch.int64
