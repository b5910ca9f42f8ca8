"""dlordinal's and spacecutter's own expected values, replayed with medloss (SPEC 12).
Neither library is called here. dlordinal takes one-hot targets where medloss takes grades."""

import pytest
import torch

from medloss.calibration import negative_log_likelihood
from medloss.losses import CDWCELoss, CORNLoss, SquaredEMDLoss

X = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 8.0, 1.0, 0.0], [-2.0, 5.0, 3.0, 2.0], [-4.0, 5.0, 3.0, 2.0]])
GRADES = torch.tensor([0, 1, 2, 3])  # dlordinal's y_true = the identity one-hot rows


@pytest.mark.parametrize("alpha,expected", [(0.5, 1.73862), (1.0, 2.37753), (2.0, 4.99029)])
def test_dlordinal_cdwce_exact_value(alpha, expected):  # dlordinal/losses/tests/test_cdw.py::test_cdwce_exact_value
    assert CDWCELoss(4, alpha=alpha)(X, GRADES).item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("alpha,weight,expected", [
    (0.5, [5, 1, 1.1, 6.6], 0.57611), (1.0, [5, 1, 1.1, 6.6], 0.84099), (2.0, [5, 1, 1.1, 6.6], 1.90280),
    (0.5, [1, 2, 3, 4], 0.47590), (1.0, [1, 2, 3, 4], 0.62137), (2.0, [1, 2, 3, 4], 1.16119),
])
def test_dlordinal_cdwce_class_weights(alpha, weight, expected):  # test_cdw.py::test_cdwce_exact_value_class_weights
    # dlordinal divides sum_i w_{y_i} l_i by N * sum_k w_k; medloss by sum_i w_{y_i} (PyTorch's weighted mean).
    # With one sample per grade the two sums of weights are equal, so dlordinal's value is medloss's / N.
    ours = CDWCELoss(4, alpha=alpha, weight=torch.tensor(weight))(X, GRADES).item()
    assert ours / 4 == pytest.approx(expected, abs=1e-4)


def test_dlordinal_emd():  # dlordinal/losses/tests/test_emd_loss.py
    probs = torch.tensor([[0.2, 0.4, 0.2, 0.2], [0.7, 0.1, 0.1, 0.1], [0.5, 0.05, 0.1, 0.35], [0.1, 0.05, 0.65, 0.2]])
    assert SquaredEMDLoss(4)(probs.log(), torch.tensor([0, 0, 3, 2])).item() == pytest.approx(0.506875, rel=1e-6)
    # test_emd_max / test_emd_min pass log(0) = -inf logits; medloss refuses non-finite input, so a logit of
    # -1e4 stands for probability 0
    certain = torch.tensor([[0.0, -1e4, -1e4], [-1e4, -1e4, 0.0]])
    assert SquaredEMDLoss(3)(certain, torch.tensor([2, 0])).item() == pytest.approx(2.0, rel=1e-6)
    assert SquaredEMDLoss(3)(certain, torch.tensor([0, 2])).item() == pytest.approx(0.0, abs=1e-12)


def test_dlordinal_corn_zero_loss():  # dlordinal/losses/tests/test_corn_loss.py::test_cornloss_zeroloss
    x = torch.tensor([[-1e3, 1e3], [1e3, -1e3], [1e3, 1e3]])
    assert CORNLoss(3)(x, torch.tensor([0, 1, 2])).item() == pytest.approx(0.0, abs=1e-6)


def test_spacecutter_cumulative_link_loss():  # spacecutter tests/test_losses.py::Test_cumulative_link_loss
    # spacecutter's cumulative_link_loss is the NLL of the model's grade probabilities: medloss's NLL metric
    y_pred = torch.tensor([[0.25, 0.5, 0.25], [0.1, 0.6, 0.3]], dtype=torch.float64)
    assert negative_log_likelihood(y_pred, torch.tensor([1, 2])) == pytest.approx(0.94856, rel=1e-5)
