"""scikit-learn's published values (the Examples of ``brier_score_loss`` and ``log_loss``, scikit-learn
1.9), replayed with medloss's calibration metrics (SPEC 12). scikit-learn's label strings
become integer labels in sorted order (its own convention)."""

import pytest
import torch

from medloss.calibration import brier_score, negative_log_likelihood

Y = torch.tensor([0, 1, 1, 0])
P = torch.tensor([0.1, 0.9, 0.8, 0.3], dtype=torch.float64)


def test_brier_score_loss_examples():
    assert brier_score(P, Y) == pytest.approx(0.0375, abs=1e-12)
    assert brier_score(1 - P, 1 - Y) == pytest.approx(0.0375, abs=1e-12)  # pos_label=0
    assert brier_score((P > 0.5).double(), Y) == 0.0
    assert brier_score(P, Y, scale_by_half=False) == pytest.approx(0.075, abs=1e-12)
    # ["eggs", "ham", "spam"] -> 0, 1, 2; scikit-learn prints 0.146 (0.14666...)
    multi = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)
    assert brier_score(multi, torch.tensor([0, 1, 2])) == pytest.approx(0.44 / 3, abs=1e-12)


def test_log_loss_example():
    # ["spam", "ham", "ham", "spam"] -> 1, 0, 0, 1 (ham < spam); columns [ham, spam]
    probs = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]], dtype=torch.float64)
    assert negative_log_likelihood(probs, torch.tensor([1, 0, 0, 1])) == pytest.approx(0.21616, abs=5e-6)
