"""MONAI's own expected-value tables, replayed with medloss's conventions (SPEC 12).

Each row: the MONAI test file and case index it comes from, the medloss loss and arguments that
mean the same thing, the inputs as MONAI's test writes them, and MONAI's published expected value
(its test tolerance: rtol 1e-5, MCC 1e-4). MONAI is not called here. Cases with no medloss
equivalent (``other_act``, ``soft_label=True``) are listed in docs/peers.md, not here.

Input conventions: MONAI's ``sigmoid=True`` on one channel is ``mode="binary"``; ``to_onehot_y`` +
``sigmoid`` is ``mode="multilabel"`` on the one-hot target; ``to_onehot_y`` + ``softmax`` is
``mode="multiclass"`` on the class indices; no activation is ``from_logits=False``.
"""

import pytest
import torch
import torch.nn.functional as F

from medloss.losses import DiceLoss, FocalLoss, GeneralizedDiceLoss, MCCLoss

T = torch.tensor
# MONAI's shared fixtures
BIN1 = (T([[[[1.0, -1.0], [-1.0, 1.0]]]]), T([[[[1.0, 0.0], [1.0, 1.0]]]]))
BIN2 = (T([[[[1.0, -1.0], [-1.0, 1.0]]], [[[1.0, -1.0], [-1.0, 1.0]]]]),
        T([[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]]]))
SOFT = (T([[[[0.3, 0.4], [0.7, 0.9]]], [[[1.0, 0.1], [0.5, 0.3]]]]),) * 2
MC_X = T([[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
MC_T = T([[[1.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]]])  # [B, 1, N] class indices as MONAI writes them
ONEHOT_X = T([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])


def indices(t):
    return t[:, 0].long()


def onehot(t, c=2):
    return F.one_hot(t[:, 0].long(), c).movedim(-1, 1).float()


# (MONAI source, medloss loss, input, target, expected)
DICE = "tests/losses/test_dice_loss.py TEST_CASES"
GDL = "tests/losses/test_generalized_dice_loss.py TEST_CASES"
MCC = "tests/losses/test_mcc_loss.py TEST_CASES"
S4 = dict(smooth_nr=1e-4, smooth_dr=1e-4)
CASES = [
    (f"{DICE}[0]", DiceLoss(mode="binary", smooth_nr=1e-6, smooth_dr=1e-6), *BIN1, 0.307576),
    (f"{DICE}[1]", DiceLoss(mode="binary", **S4), *BIN2, 0.416657),
    (f"{DICE}[3]", DiceLoss(mode="binary", from_logits=False, **S4), *SOFT, 0.307773),
    (f"{DICE}[4]", DiceLoss(from_logits=False, include_background=False, smooth_nr=0.0, smooth_dr=0.0),
     ONEHOT_X, indices(T([[[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])), 0.0),
    (f"{DICE}[5]", DiceLoss(mode="multilabel", **S4), MC_X, onehot(MC_T), 0.435050),
    (f"{DICE}[6]", DiceLoss(mode="multilabel", reduction="none", **S4), MC_X, onehot(MC_T),
     [[0.296529, 0.415136], [0.599976, 0.428559]]),
    (f"{DICE}[7]", DiceLoss(**S4), MC_X, indices(MC_T), 0.383713),
    (f"{DICE}[8]", DiceLoss(reduction="sum", **S4), MC_X, indices(MC_T), 1.534853),
    (f"{DICE}[9]", DiceLoss(mode="binary", squared_pred=True), *BIN1, 0.178337),
    (f"{DICE}[10]", DiceLoss(mode="binary", jaccard=True), *BIN1, 0.470451),
    (f"{GDL}[0]", GeneralizedDiceLoss(mode="binary", smooth_nr=1e-6, smooth_dr=1e-6), *BIN1, 0.307576),
    (f"{GDL}[1]", GeneralizedDiceLoss(mode="binary", **S4), *BIN2, 0.416597),
    (f"{GDL}[3]", GeneralizedDiceLoss(mode="binary", from_logits=False, **S4), *SOFT, 0.307748),
    (f"{GDL}[4]", GeneralizedDiceLoss(from_logits=False, include_background=False, smooth_nr=0.0, smooth_dr=0.0),
     ONEHOT_X, indices(T([[[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])), 0.0),
    (f"{GDL}[5]", GeneralizedDiceLoss(mode="multilabel", **S4), MC_X, onehot(MC_T), 0.469964),
    (f"{GDL}[6]", GeneralizedDiceLoss(**S4), MC_X, indices(MC_T), 0.414507),
    (f"{GDL}[7]", GeneralizedDiceLoss(reduction="sum", **S4), MC_X, indices(MC_T), 0.829015),
    (f"{GDL}[8]", GeneralizedDiceLoss(reduction="none", **S4), MC_X, indices(MC_T), [0.273476, 0.555539]),
    (f"{GDL}[9]", GeneralizedDiceLoss(from_logits=False, include_background=False, smooth_nr=1e-8, smooth_dr=1e-8),
     ONEHOT_X, torch.zeros(2, 3, dtype=torch.long), 0.0),
    (f"{GDL}[10]", GeneralizedDiceLoss(w_type="simple", smooth_nr=0.0, smooth_dr=0.0),
     T([[[0.0, 10.0, 10.0, 10.0], [10.0, 0.0, 0.0, 0.0]]]), T([[1, 1, 0, 0]]), 0.250023),
    (f"{MCC}[0]", MCCLoss(mode="binary"), *BIN1, 0.733197),
    (f"{MCC}[1]", MCCLoss(mode="binary"), *BIN2, 1.0),
    (f"{MCC}[2]", MCCLoss(mode="binary", from_logits=False), T([[[[1.0, 0.0], [0.0, 1.0]]]]),
     T([[[[1.0, 0.0], [0.0, 1.0]]]]), 0.0),
    (f"{MCC}[3]", MCCLoss(mode="binary", from_logits=False), T([[[[0.0, 1.0], [1.0, 0.0]]]]),
     T([[[[1.0, 0.0], [0.0, 1.0]]]]), 2.0),
    (f"{MCC}[4]", MCCLoss(from_logits=False, include_background=False), ONEHOT_X,
     indices(T([[[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])), 0.0),
    (f"{MCC}[5]", MCCLoss(mode="multilabel"), MC_X, onehot(MC_T), 0.836617),
    (f"{MCC}[6]", MCCLoss(mode="multilabel", batch=True), MC_X, onehot(MC_T), 0.845961),
    (f"{MCC}[7]", MCCLoss(mode="multilabel", reduction="sum"), MC_X, onehot(MC_T), 3.346468),
    (f"{MCC}[8]", MCCLoss(), MC_X, indices(MC_T), 0.730736),
    (f"{MCC}[9]", MCCLoss(reduction="none"), MC_X, indices(MC_T), [[0.461472, 0.461472], [1.0, 1.0]]),
    (f"{MCC}[10]", MCCLoss(mode="binary", from_logits=False), torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3), 0.0),
    (f"{MCC}[11]", MCCLoss(mode="binary", from_logits=False), torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), 0.0),
]


@pytest.mark.parametrize("source,loss,input,target,expected", CASES, ids=[c[0].split()[0].split("/")[-1][5:-3]
                                                                          + c[0][c[0].index("["):] for c in CASES])
def test_monai_expected_values(source, loss, input, target, expected):
    rtol = 1e-4 if "mcc" in source else 1e-5
    got = loss(input, target)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype).reshape(got.shape), rtol=rtol, atol=1e-6)


# MONAI tests/losses/test_focal_loss.py: its sigmoid focal loss on a one-hot target is medloss's multilabel
# FocalLoss; its softmax "mean" also divides by the number of channels C (medloss: mean over pixels).
FOCAL = "tests/losses/test_focal_loss.py"
FX = T([[[[1.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [0.5, 0.0]]]])
FT = T([[[0, 1], [2, 0]]])
FT_ONEHOT = F.one_hot(FT, 3).movedim(-1, 1).float()


@pytest.mark.parametrize("kwargs,expected", [
    ({}, 0.34959),
    ({"include_background": False}, 0.36498),
    ({"alpha": 0.8}, 0.08423),
    ({"reduction": "none"}, [[[[0.02266, 0.70187], [0.37741, 0.17329]], [[0.70187, 0.02266], [0.37741, 0.17329]],
                              [[0.70187, 0.70187], [0.06757, 0.17329]]]]),
    ({"reduction": "none", "weight": T([0.5, 0.1, 0.2])},
     [[[[0.01133, 0.35093], [0.18871, 0.08664]], [[0.07019, 0.00227], [0.03774, 0.01733]],
       [[0.14037, 0.14037], [0.01352, 0.03466]]]]),
], ids=["default", "no_background", "alpha", "none", "weight_none"])
def test_monai_sigmoid_focal(kwargs, expected):  # TEST_CASES[0, 2, 3, 4, 5]
    got = FocalLoss(mode="multilabel", **kwargs)(FX, FT_ONEHOT)
    torch.testing.assert_close(got, torch.tensor(expected).reshape(got.shape), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs,expected", [({}, 0.16276), ({"alpha": 0.8}, 0.08138)],
                         ids=["softmax", "softmax_alpha"])
def test_monai_softmax_focal_is_c_times_ours(kwargs, expected):  # TEST_CASES[6, 7] (use_softmax=True)
    got = FocalLoss(**kwargs)(FX, FT)
    assert got.item() / 3 == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_monai_focal_foreground():  # test_focal_loss.py::test_foreground
    background, foreground = torch.ones(1, 1, 5, 5), torch.zeros(1, 1, 5, 5)
    target = torch.cat((background, foreground), dim=1)
    x = torch.cat((background, foreground), dim=1)
    target[:, 0, 2, 2], target[:, 1, 2, 2] = 0, 1
    assert FocalLoss(mode="multilabel")(x, target).item() == pytest.approx(0.1116, abs=5e-4)
    assert FocalLoss(mode="multilabel", include_background=False)(x, target).item() == pytest.approx(0.1733, abs=5e-4)
