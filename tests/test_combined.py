import pytest
import torch
import torch.nn.functional as F

from medloss.losses import CombinedLoss, FocalLoss, SoftF1Loss, get_loss, parse_loss_spec, soft_f1_loss


def test_weighted_sum_and_logged_terms():
    x = torch.randn(12, dtype=torch.float64)
    y = torch.randint(0, 2, (12,)).double()
    loss = CombinedLoss({"ce": (FocalLoss(mode="binary", gamma=0.0), 0.3), "soft_f1": (SoftF1Loss(), 0.7)})
    ce = F.binary_cross_entropy_with_logits(x, y)
    f1 = soft_f1_loss(x, y)
    assert abs(loss(x, y).item() - (0.3 * ce + 0.7 * f1).item()) < 1e-12
    assert set(loss.last_terms) == {"ce", "soft_f1"}
    assert abs(loss.last_terms["ce"].item() - ce.item()) < 1e-12
    assert not loss.last_terms["ce"].requires_grad


def test_from_spec():
    assert parse_loss_spec("0.5*ce + 0.5*soft_f1") == [(0.5, "ce"), (0.5, "soft_f1")]
    assert parse_loss_spec("focal") == [(1.0, "focal")]
    loss = CombinedLoss.from_spec("0.25*ce+0.75*focal", mode="multiclass", gamma=2.0)
    x = torch.randn(5, 3, dtype=torch.float64)
    t = torch.randint(0, 3, (5,))
    ref = 0.25 * F.cross_entropy(x, t) + 0.75 * FocalLoss(gamma=2.0)(x, t)
    assert abs(loss(x, t).item() - ref.item()) < 1e-12
    for bad in ["", "0.5*", "ce+ce", "0.5*nosuchloss", "a*ce"]:
        with pytest.raises(ValueError):
            parse_loss_spec(bad)
    with pytest.raises(ValueError, match="weight"):
        CombinedLoss({"ce": (FocalLoss(), -1.0)})
    with pytest.raises(TypeError, match="takes no argument"):
        get_loss("giou", mode="binary")
