"""kornia's own expected values (``tests/losses/test_dice.py``, ``tests/losses/test_tversky.py``),
replayed with medloss's conventions (SPEC 12). kornia is not called here.

kornia's Dice defaults to ``average="micro"`` (counts summed over classes, one ratio per image)
with ``eps = 1e-8`` added to the denominator only: ``DiceLoss(average="micro", smooth_nr=0,
smooth_dr=1e-8)``. Its Tversky loss (since kornia#5543) is per class over the classes present in
each sample, with ``eps`` in the denominator: ``TverskyLoss(ignore_empty=True, smooth_nr=0,
smooth_dr=1e-8)`` (equal to kornia's when every sample has the same number of present classes,
as in the case below; medloss averages over all present (image, class) pairs at once).
"""

import math

import pytest
import torch

from medloss.losses import DiceLoss, TverskyLoss

KORNIA_DICE = dict(average="micro", smooth_nr=0.0, smooth_dr=1e-8)


def test_dice_all_zeros():  # test_dice.py::TestDiceLoss::test_all_zeros
    logits = torch.zeros(2, 3, 1, 2)
    logits[:, 0], logits[:, 1], logits[:, 2] = 10.0, 1.0, 1.0
    loss = DiceLoss(**KORNIA_DICE)(logits, torch.zeros(2, 1, 2, dtype=torch.long))
    assert loss.item() == pytest.approx(0.0, abs=1e-3)


def _two_class_logits():
    logits = torch.zeros(1, 2, 4, 1)
    logits[:, 0, 0:3], logits[:, 0, 3:4] = 10.0, 1.0
    logits[:, 1, 0:3], logits[:, 1, 3:4] = 1.0, 10.0
    return logits


def test_dice_averaging_micro():  # test_dice.py::TestDiceLoss::test_averaging_micro (labels of batch 1:
    # kornia's test passes 2 identical label rows that broadcast against a batch of 1)
    e1, e10 = math.exp(1.0), math.exp(10.0)
    intersection = (3.0 * e10 + e1) / (e1 + e10)
    expected = 1.0 - 2.0 * intersection / (8.0 + 1e-8)
    loss = DiceLoss(**KORNIA_DICE)(_two_class_logits(), torch.zeros(1, 4, 1, dtype=torch.long))
    assert loss.item() == pytest.approx(expected, abs=1e-3)


def test_dice_averaging_macro():  # test_dice.py::TestDiceLoss::test_averaging_macro
    e1, e10 = math.exp(1.0), math.exp(10.0)
    inter_1 = (3.0 * e10 + e1) / (e1 + e10)
    card_1 = 4.0 + inter_1
    card_2 = (e10 + 3.0 * e1) / (e1 + e10)
    expected = ((1.0 - 2.0 * inter_1 / (card_1 + 1e-8)) + (1.0 - 0.0 / (card_2 + 1e-8))) / 2.0
    loss = DiceLoss(average="macro", smooth_nr=0.0, smooth_dr=1e-8)(_two_class_logits(),
                                                                      torch.zeros(1, 4, 1, dtype=torch.long))
    assert loss.item() == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("ignore_index", [-100, 255])
def test_dice_ignore_index(ignore_index):  # test_dice.py::TestDiceLoss::test_ignore_index
    logits = torch.zeros(2, 2, 1, 4)
    logits[:, 0, :, 0] = 100.0
    logits[:, 1, :, 1:] = 100.0
    labels = torch.zeros(2, 1, 4, dtype=torch.long)
    labels[..., 2:] = ignore_index
    loss = DiceLoss(ignore_index=ignore_index, **KORNIA_DICE)(logits, labels)
    assert loss.item() == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("ignore_index", [-100, 255])
def test_tversky_ignore_index(ignore_index):  # test_tversky.py::TestTverskyLoss::test_ignore_index
    logits = torch.zeros(2, 2, 1, 4)
    logits[:, 0, :, 0] = 100.0
    logits[:, 1, :, 1:] = 100.0
    labels = torch.zeros(2, 1, 4, dtype=torch.long)
    labels[..., 2:] = ignore_index
    loss = TverskyLoss(alpha=0.5, beta=0.5, ignore_index=ignore_index, ignore_empty=True, smooth_nr=0.0,
                       smooth_dr=1e-8)(logits, labels)
    assert loss.item() == pytest.approx(1.0 / 3.0, abs=1e-3)


def test_tversky_per_class_issue_5543():  # test_tversky.py::TestTverskyLoss::test_per_class_issue_5543
    generator = torch.Generator().manual_seed(1206)
    logits = torch.randn(2, 3, 4, 6, dtype=torch.float64, generator=generator) * 2
    labels = torch.randint(0, 3, (2, 4, 6), generator=generator)
    labels[1, :, :2] = 2
    logits = logits.float()
    for (alpha, beta), value in zip(((0.3, 0.7), (0.7, 0.3), (0.5, 0.5)), (0.6015094950, 0.5990951811, 0.6037325821),
                                    strict=True):
        loss = TverskyLoss(alpha=alpha, beta=beta, ignore_empty=True, smooth_nr=0.0, smooth_dr=1e-8)(logits, labels)
        assert loss.item() == pytest.approx(value, abs=1e-7)  # kornia: rtol 0, atol 1e-7
