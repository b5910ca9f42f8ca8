"""segmentation_models_pytorch's own expected-value tables (``tests/test_losses.py``), replayed with
medloss's conventions (SPEC 12). smp is not called here.

smp's region losses sum the counts over the whole batch (``batch=True``), use no numerator
smoothing, clamp the denominator at ``eps`` (medloss adds ``smooth_dr``), and give a class absent
from the batch's ground truth a loss of 0 (medloss: ``ignore_empty=True`` leaves it out of the
mean, which is 0 when nothing is left). With those arguments every case below is smp's value to
its own tolerance (``abs=1e-5``).
"""

import pytest
import torch

from medloss.losses import DiceLoss, JaccardLoss, TverskyLoss

SMP = dict(from_logits=False, batch=True, smooth_nr=0.0, smooth_dr=1e-7, ignore_empty=True)
SRC = "tests/test_losses.py"


def binary(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


# smp's binary tables: (y_pred, y_true, expected); the same table for Dice, Tversky(0.5, 0.5) and Jaccard
BINARY = [
    ([1.0, 1.0, 1.0], [1, 1, 1], 0.0),
    ([1.0, 0.0, 1.0], [1, 0, 1], 0.0),
    ([0.0, 0.0, 0.0], [0, 0, 0], 0.0),
    ([1.0, 1.0, 1.0], [0, 0, 0], 0.0),  # "worst case": smp zeroes an absent class
    ([1.0, 0.0, 1.0], [0, 1, 0], 1.0),
    ([0.0, 0.0, 0.0], [1, 1, 1], 1.0),
]
BINARY_CASES = [
    (f"{SRC}::test_dice_loss_binary", DiceLoss), (f"{SRC}::test_tversky_loss_binary", TverskyLoss),
    (f"{SRC}::test_binary_jaccard_loss", JaccardLoss),
]


@pytest.mark.parametrize("source,cls", BINARY_CASES, ids=[c[1].__name__ for c in BINARY_CASES])
@pytest.mark.parametrize("y_pred,y_true,expected", BINARY)
def test_smp_binary_tables(source, cls, y_pred, y_true, expected):
    kwargs = dict(alpha=0.5, beta=0.5) if cls is TverskyLoss else {}
    loss = cls(mode="binary", **SMP, **kwargs)(binary(y_pred), torch.tensor(y_true).view(1, 1, 1, -1))
    assert loss.item() == pytest.approx(expected, abs=1e-5)


MULTICLASS = [  # test_multiclass_jaccard_loss: probabilities [1, 2, 4], labels [1, 4]
    ([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], [[0, 0, 1, 1]], 0.0),
    ([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], [[1, 1, 0, 0]], 1.0),
    ([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]], [[1, 1, 0, 0]], 1.0 - 1.0 / 3.0),
]
MULTILABEL = [  # test_multilabel_jaccard_loss: probabilities and targets [1, 2, 4]
    ([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], [[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], 0.0),
    ([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], [[[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]], 1.0),
    ([[[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]]], [[[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]], 1.0 - 1.0 / 3.0),
]


@pytest.mark.parametrize("y_pred,y_true,expected", MULTICLASS)
def test_smp_multiclass_jaccard(y_pred, y_true, expected):
    loss = JaccardLoss(**SMP)(torch.tensor(y_pred), torch.tensor(y_true))
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("y_pred,y_true,expected", MULTILABEL)
def test_smp_multilabel_jaccard(y_pred, y_true, expected):
    loss = JaccardLoss(mode="multilabel", **SMP)(torch.tensor(y_pred), torch.tensor(y_true))
    assert loss.item() == pytest.approx(expected, abs=1e-5)
