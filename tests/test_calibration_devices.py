"""Calibration metrics compute on the input's device and bring only O(n_bins) numbers to the host.

No GPU here: fake CUDA tensors (FakeTensorMode) run the device-side part symbolically, so any
CPU-only step (``.numpy()``, a CPU constant mixed in, a host round trip for indices) raises.
"""

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from medloss.calibration import expected_calibration_error
from medloss.calibration._inputs import top_label
from medloss.calibration.metrics import _device_binned_sums, _quantile_edges, _uniform_bin_index


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binned_sums_stay_on_the_device(binning, dtype):
    with FakeTensorMode():
        conf = torch.empty(1000, device="cuda", dtype=dtype)
        correct = torch.empty(1000, device="cuda", dtype=torch.bool)
        counts, sum_conf, sum_correct, edges = _device_binned_sums(conf, correct, 15, binning)
    for t in (counts, sum_conf, sum_correct):
        assert t.device.type == "cuda" and t.shape == (15,)


def test_top_label_has_no_host_round_trip_on_cuda():
    with FakeTensorMode():
        p = torch.empty(100, 4, device="cuda")
        y = torch.empty(100, dtype=torch.long, device="cuda")
        conf, correct = top_label(p, y)
    assert conf.device.type == "cuda" and correct.device.type == "cuda"


def test_device_path_of_top_label_equals_argmax():
    """The branch-free form used off the CPU agrees with argmax, ties included (first index wins)."""
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [0.1, 0.2, 0.7], [0.25, 0.25, 0.5]])
    y = torch.tensor([1, 2, 2, 0])
    suspect_free = p.argmax(1) == y  # torch's argmax takes the first of tied maxima
    conf, correct = top_label(p.to("meta"), y.to("meta"))  # meta runs the device (non-CPU) branch
    assert correct.device.type == "meta"
    _, correct_cpu = top_label(p, y)
    assert torch.equal(correct_cpu, suspect_free)


def test_quantile_edges_match_numpy_array_split():
    rng = np.random.default_rng(0)
    conf = rng.random(103)
    edges = _quantile_edges(torch.from_numpy(conf), 10).numpy()
    groups = np.array_split(np.sort(conf), 10)
    np.testing.assert_array_equal(edges[1:-1], [g[-1] for g in groups[:-1]])
    assert edges[0] == 0.0 and edges[-1] == 1.0


def test_uniform_bin_index_float64_edges_as_scikit_learn():
    conf = torch.tensor([0.0, 0.7, 0.70000001, 1.0], dtype=torch.float64)
    # (lo, hi] bins of np.linspace(0, 1, 11): 0.7 is the upper edge of bin 6
    assert _uniform_bin_index(conf, 10).tolist() == [0, 6, 7, 9]


def test_ece_of_float64_input_equals_numpy_reference():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=500)
    y = rng.integers(0, 4, 500)
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, 16)
    idx = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, 14)
    ece = sum(abs((pred[idx == b] == y[idx == b]).mean() - conf[idx == b].mean()) * (idx == b).mean()
              for b in range(15) if (idx == b).any())
    assert expected_calibration_error(torch.from_numpy(p), torch.from_numpy(y)) == pytest.approx(ece, abs=1e-12)
