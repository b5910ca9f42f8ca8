import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from medloss.losses import SoftF1Loss, soft_f1_loss


def test_binary_hand_example():
    p = torch.tensor([0.9, 0.2, 0.6, 0.1], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    tp, fp, fn = 0.9 + 0.1, 0.2 + 0.6, 0.1 + 0.9
    expected = 1 - 2 * tp / (2 * tp + fp + fn)
    got = soft_f1_loss(p, y, mode="binary", from_logits=False, smooth_dr=0.0)
    assert abs(got.item() - expected) < 1e-12
    # the same from logits
    got_logits = soft_f1_loss(torch.logit(p), y, mode="binary", smooth_dr=0.0)
    assert abs(got_logits.item() - expected) < 1e-12


@pytest.mark.parametrize("seed", [0, 1])
def test_hard_predictions_equal_one_minus_sklearn_f1(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=60)
    pred = np.where(rng.random(60) < 0.7, y, rng.integers(0, 4, size=60))
    probs = F.one_hot(torch.from_numpy(pred), 4).double()
    got = soft_f1_loss(probs, torch.from_numpy(y), mode="multiclass", from_logits=False, smooth_dr=0.0)
    assert abs(got.item() - (1 - f1_score(y, pred, average="macro"))) < 1e-12
    got_micro = soft_f1_loss(probs, torch.from_numpy(y), mode="multiclass", average="micro", from_logits=False,
                             smooth_dr=0)
    assert abs(got_micro.item() - (1 - f1_score(y, pred, average="micro"))) < 1e-12
    yb = (y > 1).astype(float)
    pb = (pred > 1).astype(float)
    got_b = soft_f1_loss(torch.from_numpy(pb), torch.from_numpy(yb), mode="binary", from_logits=False, smooth_dr=0.0)
    assert abs(got_b.item() - (1 - f1_score(yb, pb))) < 1e-12


def test_multilabel_macro_and_ignore_index():
    p = torch.rand(10, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (10, 3)).double()
    per_class = soft_f1_loss(p, y, mode="multilabel", from_logits=False, reduction="none", smooth_dr=0.0)
    for c in range(3):
        tp = (p[:, c] * y[:, c]).sum()
        ref = 1 - 2 * tp / (p[:, c].sum() + y[:, c].sum())
        assert abs(per_class[c].item() - ref.item()) < 1e-12
    # ignored positions count nowhere
    t = torch.randint(0, 3, (8, 5))
    logits = torch.randn(8, 3, 5, dtype=torch.float64)
    t_ign = t.clone()
    t_ign[:, :2] = -100
    a = soft_f1_loss(logits, t_ign, mode="multiclass")
    b = soft_f1_loss(logits[:, :, 2:], t[:, 2:], mode="multiclass")
    assert abs(a.item() - b.item()) < 1e-12


def test_gradcheck_and_module():
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (6, 4))
    assert torch.autograd.gradcheck(lambda z: soft_f1_loss(z, t, mode="multiclass"), (x,))
    loss = SoftF1Loss(mode="multiclass")
    assert torch.isclose(loss(x, t), soft_f1_loss(x, t, mode="multiclass"))
    xb = torch.full((4,), 1e4, requires_grad=True)
    out = SoftF1Loss()(xb, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(xb.grad).all()


def test_eps_is_the_old_spelling_of_smooth_dr():
    p, y = torch.tensor([0.9, 0.2, 0.6, 0.1]), torch.tensor([1.0, 0.0, 1.0, 1.0])
    tp, fp, fn = 0.9 + 0.6 + 0.1, 0.2, 0.1 + 0.4 + 0.9  # sum p y, sum p (1 - y), sum (1 - p) y
    with pytest.warns(FutureWarning, match="smooth_dr="):
        old = soft_f1_loss(p, y, from_logits=False, eps=0.5)
    assert old.item() == pytest.approx(1 - 2 * tp / (2 * tp + fp + fn + 0.5), rel=1e-6)
    with pytest.warns(FutureWarning, match="SoftF1Loss\\(eps=...\\)"):
        SoftF1Loss(eps=0.5)
    both = soft_f1_loss(p, y, from_logits=False, smooth_nr=0.2, smooth_dr=0.5)
    assert both.item() == pytest.approx(1 - (2 * tp + 0.2) / (2 * tp + fp + fn + 0.5), rel=1e-6)
