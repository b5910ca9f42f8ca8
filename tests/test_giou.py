import pytest
import torch

from medloss.losses import GIoULoss, giou_loss


def test_hand_examples():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
    # overlap: IoU 1/7, hull 9, union 7 -> GIoU 1/7 - 2/9; identical: 0; disjoint: IoU 0, hull 3, union 2
    expected = torch.tensor([1 - (1 / 7 - 2 / 9), 0.0, 1 + 1 / 3], dtype=torch.float64)
    got = giou_loss(a, b, reduction="none", eps=1e-12)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)
    assert abs(GIoULoss(eps=1e-12)(a, b).item() - expected.mean().item()) < 1e-9


def test_gradcheck_and_gradient_when_disjoint():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.1, 1.4, 2.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[2.0, 0.5, 3.0, 1.5], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: giou_loss(z, b), (a,))
    giou_loss(a, b).backward()
    assert a.grad[0].abs().sum() > 0  # no overlap, still a gradient


def test_invalid_boxes_raise():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"`input` has 1 invalid box"):
        giou_loss(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), good)
    with pytest.raises(ValueError, match="shape"):
        giou_loss(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="same boxes shape"):
        giou_loss(good, good.repeat(2, 1))
