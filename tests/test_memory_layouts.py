"""Non-contiguous, permuted and channels_last inputs give the same values and gradients as contiguous ones."""

import pytest
import torch

from medloss import losses as L
from medloss.calibration import expected_calibration_error

MULTICLASS = ["DiceLoss", "TverskyLoss", "FocalTverskyLoss", "ComboLoss", "SymmetricFocalLoss", "AsymmetricFocalLoss",
              "SymmetricFocalTverskyLoss", "AsymmetricFocalTverskyLoss", "SymmetricUnifiedFocalLoss",
              "AsymmetricUnifiedFocalLoss", "HybridFocalLoss", "FocalLoss"]


@pytest.mark.parametrize("name", MULTICLASS + ["SoftF1Loss"])
def test_channels_last_and_permuted_inputs(name):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 3, generator=g, dtype=torch.float64).permute(0, 3, 2, 1)  # [2, 3, 6, 5], permuted
    t = torch.randint(0, 3, (2, 5, 6), generator=g).transpose(1, 2)  # [2, 6, 5], non-contiguous
    loss = getattr(L, name)(**({"mode": "multiclass"} if name == "SoftF1Loss" else {}))
    ref_x = x.contiguous().requires_grad_()
    ref = loss(ref_x, t.contiguous())
    ref.backward()
    for layout in (x, x.contiguous(memory_format=torch.channels_last)):
        xx = layout.detach().requires_grad_()
        value = loss(xx, t)
        value.backward()
        assert value.item() == pytest.approx(ref.item(), rel=1e-12)
        torch.testing.assert_close(xx.grad, ref_x.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_sigmoid_region_losses_with_strided_inputs(mode):
    g = torch.Generator().manual_seed(1)
    c = 1 if mode == "binary" else 3
    base = torch.randn(2, 4, 4, c, generator=g, dtype=torch.float64)
    x = base.permute(0, 3, 1, 2)
    y = (torch.rand(2, 4, 4, c, generator=g) > 0.5).double().permute(0, 3, 1, 2)
    for cls in (L.DiceLoss, L.TverskyLoss):
        expected = cls(mode=mode)(x.contiguous(), y.contiguous()).item()
        assert cls(mode=mode)(x, y).item() == pytest.approx(expected, rel=1e-12)


def test_strided_probabilities_and_scores():
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(4, 500, generator=g), 0).t()  # [500, 4], non-contiguous
    y = torch.randint(0, 4, (500,), generator=g)
    assert expected_calibration_error(p, y) == expected_calibration_error(p.contiguous(), y)
    scores = torch.randn(50, 2, generator=g, dtype=torch.float64)[:, 1]  # strided 1-D
    grades = torch.randint(0, 4, (50,), generator=g)
    loss = L.CumulativeLinkLoss(4)
    assert loss(scores, grades).item() == pytest.approx(loss(scores.contiguous(), grades).item(), rel=1e-12)
