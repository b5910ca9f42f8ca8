"""torchvision's own expected values and relations (``test/test_ops.py``: ``TestGeneralizedBoxIouLoss``,
``TestFocalLoss``), replayed with medloss (SPEC 12). torchvision is not called here
(it does not import beside this torch build)."""

import pytest
import torch
import torch.nn.functional as F

from medloss.losses import GIoULoss, focal_loss, giou_loss

BOX1, BOX2, BOX3, BOX4 = ([-1, -1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 2], [1, 1, 2, 2])


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.half, 1e-3)])
@pytest.mark.parametrize("a,b,reduction,expected", [
    ([BOX1], [BOX1], "none", [0.0]),      # identical boxes
    ([BOX1], [BOX2], "none", [0.75]),     # quarter-size box inside: IoU 0.25
    ([BOX2], [BOX3], "none", [1.0]),      # side by side: IoU 0, GIoU 0
    ([BOX2], [BOX4], "none", [1.5]),      # diagonally adjacent: GIoU -0.5
    ([BOX2, BOX2], [BOX3, BOX4], "sum", 2.5),
    ([BOX2, BOX2], [BOX3, BOX4], "mean", 1.25),
])
def test_giou_loss(dtype, tol, a, b, reduction, expected):  # TestGeneralizedBoxIouLoss::test_giou_loss
    got = giou_loss(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype), reduction=reduction)
    torch.testing.assert_close(got.float(), torch.tensor(expected, dtype=torch.float32), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.half])
def test_giou_empty_inputs(dtype):  # TestGeneralizedBoxIouLoss::test_empty_inputs
    a = torch.randn(0, 4, dtype=dtype).requires_grad_()
    b = torch.randn(0, 4, dtype=dtype).requires_grad_()
    loss = GIoULoss()(a, b)
    loss.backward()
    assert loss.item() == 0.0 and a.grad is not None and b.grad is not None
    assert giou_loss(a, b, reduction="none").numel() == 0


def _diverse_pairs(seed):
    # TestFocalLoss._generate_diverse_input_target_pair: logits of probabilities in several ranges
    g = torch.Generator().manual_seed(seed)
    ranges = {"small": (0.0, 0.2), "big": (0.8, 1.0), "random": (0.0, 1.0)}
    xs, ys = [], []
    for p_range in ("small", "big", "random"):
        for t_range in ("zeros", "ones", "random_binary"):
            lo, hi = ranges[p_range]
            p = (lo + (hi - lo) * torch.rand(5, 2, generator=g, dtype=torch.float64)).clamp(1e-6, 1 - 1e-6)
            xs.append(torch.log(p / (1 - p)))
            ys.append({"zeros": torch.zeros(5, 2, dtype=torch.float64), "ones": torch.ones(5, 2, dtype=torch.float64),
                       "random_binary": torch.randint(0, 2, (5, 2), generator=g).double()}[t_range])
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("alpha", [None, 0.0, 0.58, 1.0])  # torchvision's alpha=-1 is medloss's None
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_focal_correct_ratio(alpha, gamma, seed):  # TestFocalLoss::test_correct_ratio
    x, y = _diverse_pairs(seed)
    fl = focal_loss(x, y, mode="binary", alpha=alpha, gamma=gamma, reduction="none")
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert bool((fl <= ce + 1e-12).all())
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    ratio = (1 - p_t) ** gamma
    if alpha is not None:
        ratio = ratio * (alpha * y + (1 - alpha) * (1 - y))
    torch.testing.assert_close(fl, ce * ratio, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("seed", [2, 3])
def test_focal_equal_ce_loss(reduction, seed):  # TestFocalLoss::test_equal_ce_loss (values and gradients)
    x, y = _diverse_pairs(seed)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    fl = focal_loss(a, y, mode="binary", gamma=0.0, reduction=reduction)
    ce = F.binary_cross_entropy_with_logits(b, y, reduction=reduction)
    torch.testing.assert_close(fl, ce)
    fl.backward()
    ce.backward()
    torch.testing.assert_close(a.grad, b.grad)
