"""torchmetrics' published values (the docstring Examples of ``BinaryCalibrationError`` and
``MulticlassCalibrationError``), replayed with medloss's calibration metrics (SPEC 12).
torchmetrics is not called here (``tests/test_calibration_metrics.py`` also compares with it on
random data when it is installed)."""

import pytest
import torch

from medloss.calibration import expected_calibration_error, maximum_calibration_error


def test_torchmetrics_doctest_values_binary():
    p = torch.tensor([0.25, 0.25, 0.55, 0.75, 0.75])
    y = torch.tensor([0, 0, 1, 1, 1])
    # published in torchmetrics' docs (BinaryCalibrationError, n_bins=2)
    assert expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.2900, abs=5e-5)
    assert expected_calibration_error(p, y, n_bins=2, norm="l2") == pytest.approx(0.2918, abs=5e-5)
    assert maximum_calibration_error(p, y, n_bins=2) == pytest.approx(0.3167, abs=5e-5)


def test_torchmetrics_doctest_values_multiclass():
    p = torch.tensor([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    y = torch.tensor([0, 1, 2, 0])
    assert expected_calibration_error(p, y, n_bins=3) == pytest.approx(0.2000, abs=5e-5)
    assert expected_calibration_error(p, y, n_bins=3, norm="l2") == pytest.approx(0.2082, abs=5e-5)
    assert expected_calibration_error(p, y, n_bins=3, norm="max") == pytest.approx(0.2333, abs=5e-5)
