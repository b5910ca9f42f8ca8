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


@pytest.mark.parametrize("reduction,expected_shape", [("mean", ()), ("sum", ()), ("none", (0,))])
def test_empty_batch_is_zero_with_zero_gradient(reduction, expected_shape):
    # torchvision test_giou_loss "test_empty_inputs": no matched boxes give 0 and a zero gradient
    a = torch.empty(0, 4, requires_grad=True)
    loss = giou_loss(a, torch.empty(0, 4), reduction=reduction)
    assert loss.shape == expected_shape and loss.sum().item() == 0.0
    loss.sum().backward()
    assert a.grad is not None and a.grad.shape == (0, 4)
    assert GIoULoss()(torch.empty(0, 4), torch.empty(0, 4)).item() == 0.0


def _giou_float64(a, b):
    # the closed form in float64 Python arithmetic, one pair at a time
    out = []
    for (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) in zip(a.tolist(), b.tolist(), strict=True):
        inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
        union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
        hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
        out.append(inter / union - (hull - union) / hull)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16])
def test_integer_and_half_boxes_are_upcast(dtype):
    # int16 areas of 300 x 300 boxes overflow; fp16 areas near 1000 exceed 65504 (NaN before)
    a = torch.tensor([[0, 0, 300, 300], [1000, 1000, 1200, 1100], [10, 20, 30, 40]]).to(dtype)
    b = torch.tensor([[100, 50, 400, 380], [900, 1024, 1100, 1080], [50, 60, 70, 80]]).to(dtype)
    from medloss.losses import generalized_box_iou

    got = generalized_box_iou(a, b)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _giou_float64(a.double(), b.double()), atol=1e-6, rtol=0)
    torch.testing.assert_close(giou_loss(a, b).double(), (1 - _giou_float64(a.double(), b.double())).mean(),
                               atol=1e-6, rtol=0)


def test_bool_boxes_are_rejected():
    with pytest.raises(TypeError, match="`input` must hold real coordinates"):
        giou_loss(torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 4))
