"""medloss.integrations.torchmetrics: batch-by-batch values equal medloss's functions on
all samples at once; the states are O(n_bins) / O(K^2); the DDP sync is in tests/test_distributed.py."""

import pytest
import torch

pytest.importorskip("torchmetrics", reason="the torchmetrics integration needs torchmetrics ('medloss[lightning]')")

from medloss.calibration import expected_calibration_error  # noqa: E402
from medloss.integrations.torchmetrics import CalibrationError, QuadraticWeightedKappa  # noqa: E402
from medloss.metrics import quadratic_weighted_kappa  # noqa: E402


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_calibration_error_equals_the_function(norm):
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(3000, 5, generator=g, dtype=torch.float64), 1)
    labels = torch.randint(0, 5, (3000,), generator=g)
    metric = CalibrationError(n_bins=12, norm=norm)
    for chunk in range(0, 3000, 700):
        metric.update(probs[chunk:chunk + 700], labels[chunk:chunk + 700])
    expected = expected_calibration_error(probs, labels, n_bins=12, norm=norm)
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-12)
    assert sum(v.numel() for v in metric.metric_state.values()) == 3 * 12  # O(n_bins) whatever N


def test_calibration_error_matches_torchmetrics_multiclass():
    from torchmetrics.classification import MulticlassCalibrationError

    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(2000, 4, generator=g), 1)
    labels = torch.randint(0, 4, (2000,), generator=g)
    ours = CalibrationError(n_bins=15)
    ours.update(probs, labels)
    theirs = MulticlassCalibrationError(num_classes=4, n_bins=15)(probs, labels)
    assert float(ours.compute()) == pytest.approx(float(theirs), abs=1e-6)  # torchmetrics sums in float32


def test_quadratic_weighted_kappa_equals_the_function():
    g = torch.Generator().manual_seed(2)
    t, p = torch.randint(0, 5, (500,), generator=g), torch.randint(0, 5, (500,), generator=g)
    metric = QuadraticWeightedKappa(num_classes=5)
    metric.update(p[:200], t[:200])
    metric.update(p[200:], t[200:])
    assert float(metric.compute()) == pytest.approx(quadratic_weighted_kappa(p, t, 5), abs=1e-12)
    with pytest.raises(ValueError, match=r"grades must lie in \[0, 4\]"):
        metric.update(torch.tensor([5]), torch.tensor([0]))
