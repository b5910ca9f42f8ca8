"""Train-time calibration losses against float64 transcriptions of their papers' formulas, as their official
repositories compute them (each source named beside its case), with the conventions every loss follows."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medloss.losses import (
    DCALoss,
    FocalLossAdaptive,
    MarginLabelSmoothingLoss,
    MDCALoss,
    NeighborAwareCalibrationLoss,
    SpatiallyVaryingLabelSmoothingLoss,
    dca_loss,
    focal_loss_adaptive,
)


def _rows(n=32, k=4, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, k, generator=g, dtype=torch.float64), torch.randint(0, k, (n,), generator=g)


def _images(b=2, c=3, size=(6, 7), seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(b, c, *size, generator=g, dtype=torch.float64)
    t = torch.randint(0, c, (b, *size), generator=g)
    return x, t


# ---------------------------------------------------------------------------------------------- FLSD-53
def flsd_official(logits, target, gamma=3.0):
    """torrvision/focal_calibration, FocalLossAdaptive (FLSD-53: gamma 3 with ps_pairs {0.2: 5, 0.5: 3}), whose
    forward sums over the batch: -(1 - pt)^gamma_i log pt, gamma_i from pt.item()."""
    logpt = F.log_softmax(logits, 1).gather(1, target.view(-1, 1)).view(-1)
    pt = logpt.exp()
    gammas = []
    for p in pt.tolist():
        gammas.append(gamma if p >= 0.5 else (5.0 if p < 0.2 else 3.0))
    return (-1 * (1 - pt) ** torch.tensor(gammas, dtype=pt.dtype) * logpt).sum()


def test_flsd_equals_the_official_code_and_its_schedule():
    x, t = _rows()
    assert FocalLossAdaptive(reduction="sum")(x, t).item() == pytest.approx(flsd_official(x, t).item(), rel=1e-12)
    assert focal_loss_adaptive(x, t).item() == pytest.approx(flsd_official(x, t).item() / len(t), rel=1e-12)
    # another schedule: gamma 0 (cross-entropy) above p_t = 0.6, 4 below
    ce = F.cross_entropy(x, t, reduction="none")
    p_t = torch.exp(-ce)
    expected = torch.where(p_t < 0.6, (1 - p_t) ** 4 * ce, ce).mean()
    got = FocalLossAdaptive(thresholds=(0.6,), gammas=(4.0, 0.0))(x, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_flsd_segmentation_ignore_index_weight_and_binary():
    x, t = _images()
    t[0, 0] = -100
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    per_pixel = FocalLossAdaptive(weight=w, reduction="none")(x, t)
    flat_x, flat_t = x.movedim(1, -1).reshape(-1, 3), t.reshape(-1)
    keep = flat_t != -100
    logp = F.log_softmax(flat_x[keep], 1).gather(1, flat_t[keep].view(-1, 1)).view(-1)
    p = logp.exp()
    gamma = torch.where(p < 0.2, 5.0, 3.0)
    expected = -w[flat_t[keep]] * (1 - p) ** gamma * logp
    np.testing.assert_allclose(per_pixel.reshape(-1)[keep].numpy(), expected.numpy(), rtol=1e-12)
    assert float(per_pixel[0, 0].abs().sum()) == 0.0  # ignored pixels: 0
    # binary mode is the two-class softmax [1 - sigmoid(x), sigmoid(x)]
    xb = x[:, :1]
    tb = (t.clamp_min(0) > 0).long()
    two = torch.cat([torch.zeros_like(xb), xb], 1)
    assert FocalLossAdaptive(mode="binary")(xb, tb).item() == pytest.approx(FocalLossAdaptive()(two, tb).item(),
                                                                            rel=1e-12)


# ---------------------------------------------------------------------------------------------- MDCA, DCA
def mdca_official(logits, target):
    """HebbalaguppeRamya/MDCA-Calibration, calibration_library/MDCA.py: MDCA.forward on softmax outputs."""
    output = torch.softmax(logits, dim=1)
    loss = torch.tensor(0.0, dtype=logits.dtype)
    batch, classes = output.shape
    for c in range(classes):
        avg_count = (target == c).to(logits.dtype).mean()
        avg_conf = torch.mean(output[:, c])
        loss += torch.abs(avg_conf - avg_count)
    return loss / classes


def dca_official(logits, labels, weights=None, alpha=1.0, beta=5.0):
    """GB-TonyLiang/DCA, cross_entropy_with_dca_loss."""
    ce = F.cross_entropy(logits, labels, weight=weights)
    softmaxes = F.softmax(logits, dim=1)
    confidences, predictions = torch.max(softmaxes, 1)
    accuracies = predictions.eq(labels)
    mean_conf = confidences.mean()
    acc = accuracies.to(logits.dtype).sum() / len(accuracies)
    return alpha * ce + beta * torch.abs(mean_conf - acc)


def test_mdca_equals_the_official_code_with_ce_and_focal():
    x, t = _rows(seed=3)
    # ClassficationAndMDCA("NLL+MDCA", beta=1): F.cross_entropy + beta * MDCA
    assert MDCALoss()(x, t).item() == pytest.approx((F.cross_entropy(x, t) + mdca_official(x, t)).item(), rel=1e-12)
    # "FL+MDCA", gamma 2, beta 5: their FocalLoss (mean of -(1 - pt)^gamma log pt) + beta * MDCA
    logpt = F.log_softmax(x, 1).gather(1, t.view(-1, 1)).view(-1)
    focal = (-(1 - logpt.exp()) ** 2 * logpt).mean()
    got = MDCALoss(beta=5.0, gamma=2.0)(x, t)
    assert got.item() == pytest.approx((focal + 5.0 * mdca_official(x, t)).item(), rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_dca_equals_the_official_code(weighted):
    x, t = _rows(seed=4)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64) if weighted else None
    expected = dca_official(x, t, weights=w)
    assert DCALoss(weight=w)(x, t).item() == pytest.approx(expected.item(), rel=1e-12)
    assert dca_loss(x, t, weight=w).item() == pytest.approx(expected.item(), rel=1e-12)


def test_batch_penalties_on_images_count_pixels_and_split_none_evenly():
    x, t = _images(seed=5)
    t[1, :, :2] = -100
    keep = t != -100
    flat_x, flat_t = x.movedim(1, -1)[keep], t[keep]  # the counted pixels as rows
    for loss, expected in ((MDCALoss(beta=2.0), F.cross_entropy(flat_x, flat_t) + 2.0 * mdca_official(flat_x, flat_t)),
                           (DCALoss(), dca_official(flat_x, flat_t))):
        assert loss(x, t).item() == pytest.approx(expected.item(), rel=1e-12)
        loss.reduction = "none"
        per_pixel = loss(x, t)
        assert per_pixel.shape == t.shape and float(per_pixel[~keep].abs().sum()) == 0.0
        loss.reduction = "sum"
        assert loss(x, t).item() == pytest.approx(per_pixel.sum().item(), rel=1e-12)


# ---------------------------------------------------------------------------------------------- MbLS
def mbls_official(inputs, targets, margin=10.0, alpha=0.1):
    """by-liu/MbLS, calibrate/losses/logit_margin_l1.py: LogitMarginL1.forward (no ignored pixels)."""
    if inputs.dim() > 2:
        inputs = inputs.view(inputs.size(0), inputs.size(1), -1).transpose(1, 2).contiguous()
        inputs = inputs.view(-1, inputs.size(2))
        targets = targets.view(-1)
    loss_ce = F.cross_entropy(inputs, targets)
    max_values = inputs.max(dim=1).values.unsqueeze(dim=1).repeat(1, inputs.shape[1])
    diff = max_values - inputs
    loss_margin = F.relu(diff - margin).mean()
    return loss_ce + alpha * loss_margin


@pytest.mark.parametrize("image", [False, True])
def test_mbls_equals_the_official_code(image):
    x, t = _images(seed=6) if image else _rows(seed=6, scale=8.0)
    x = 4 * x if image else x  # logit gaps beyond the margin
    assert MarginLabelSmoothingLoss()(x, t).item() == pytest.approx(mbls_official(x, t).item(), rel=1e-12)
    got = MarginLabelSmoothingLoss(margin=2.0, lambda_=0.5)(x, t)
    assert got.item() == pytest.approx(mbls_official(x, t, margin=2.0, alpha=0.5).item(), rel=1e-12)


# ---------------------------------------------------------------------------------------------- SVLS
def svls_kernel_official(kernel_size=3, sigma=1.0):
    """mobarakol/SVLS, svls.py: get_svls_filter_2d's kernel (before it becomes a conv weight)."""
    x_coord = torch.arange(kernel_size)
    x_grid = x_coord.repeat(kernel_size).view(kernel_size, kernel_size)
    y_grid = x_grid.t()
    xy_grid = torch.stack([x_grid, y_grid], dim=-1).double()
    mean = (kernel_size - 1) / 2.0
    variance = sigma**2.0
    gaussian_kernel = (1.0 / (2.0 * math.pi * variance + 1e-16)) * torch.exp(
        -torch.sum((xy_grid - mean) ** 2.0, dim=-1) / (2 * variance + 1e-16))
    gaussian_kernel = gaussian_kernel / torch.sum(gaussian_kernel)
    neighbors_sum = 1 - gaussian_kernel[1, 1]
    gaussian_kernel[1, 1] = neighbors_sum
    svls_kernel_2d = gaussian_kernel / neighbors_sum
    return svls_kernel_2d / svls_kernel_2d.sum()


def svls_official(inputs, labels, classes, sigma=1.0):
    """mobarakol/SVLS, CELossWithSVLS_2D.forward: replicate padding, the kernel per class, mean CE."""
    oh = F.one_hot(labels, classes).permute(0, 3, 1, 2).double()
    kernel = svls_kernel_official(sigma=sigma)
    weight = kernel.expand(classes, 1, 3, 3)
    svls_labels = F.conv2d(F.pad(oh, (1, 1, 1, 1), mode="replicate"), weight, groups=classes)
    return (-svls_labels * F.log_softmax(inputs, dim=1)).sum(dim=1).mean()


@pytest.mark.parametrize("sigma", [1.0, 0.6])
def test_svls_equals_the_official_code(sigma):
    x, t = _images(seed=7, size=(9, 8))
    got = SpatiallyVaryingLabelSmoothingLoss(sigma=sigma)(x, t)
    assert got.item() == pytest.approx(svls_official(x, t, 3, sigma).item(), rel=1e-12)


def test_svls_3d_keeps_uniform_regions_one_hot_and_mixes_boundaries():
    x = torch.randn(1, 2, 4, 5, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    t = torch.zeros(1, 4, 5, 6, dtype=torch.long)
    t[..., 3:] = 1
    per_voxel = SpatiallyVaryingLabelSmoothingLoss(reduction="none")(x, t)
    ce = F.cross_entropy(x, t, reduction="none")
    # far from the boundary (x index 0 and 5, with replicated borders) the target is one-hot: plain CE
    torch.testing.assert_close(per_voxel[..., 0], ce[..., 0])
    torch.testing.assert_close(per_voxel[..., 5], ce[..., 5])
    # at the boundary (index 2): the target is 1/2 (centre) + the neighbours' Gaussian shares; by hand
    offsets = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
    g = np.array([math.exp(-(a * a + b * b + c * c) / 2) for a, b, c in offsets])
    share_class1 = 0.5 * g[[c == 1 for _, _, c in offsets]].sum() / g.sum()
    logp = F.log_softmax(x, 1)[0, :, 2, 2, 2]
    expected = -((1 - share_class1) * logp[0] + share_class1 * logp[1])
    assert per_voxel[0, 2, 2, 2].item() == pytest.approx(expected.item(), rel=1e-12)


# ---------------------------------------------------------------------------------------------- NACL
def nacl_official(inputs, targets, classes, kernel_size=3, alpha=0.1):
    """MONAI's NACLLoss (the paper's code, ported; kernel_ops="mean", distance_type="l1"): the one-hot mask through a
    k x k mean filter with replicated borders, then CE + alpha * mean |shares - logits|."""
    oh = F.one_hot(targets, classes).permute(0, 3, 1, 2).double()
    pad = kernel_size // 2
    kernel = torch.ones(classes, 1, kernel_size, kernel_size, dtype=torch.float64) / kernel_size**2
    shares = F.conv2d(F.pad(oh, (pad,) * 4, mode="replicate"), kernel, groups=classes)
    return F.cross_entropy(inputs, targets) + alpha * (shares - inputs).abs().mean()


@pytest.mark.parametrize("k", [3, 5])
def test_nacl_equals_the_official_code(k):
    x, t = _images(seed=9, size=(6, 5))
    got = NeighborAwareCalibrationLoss(kernel_size=k, lambda_=0.3)(x, t)
    assert got.item() == pytest.approx(nacl_official(x, t, 3, k, 0.3).item(), rel=1e-12)


def test_nacl_shares_leave_ignored_pixels_out():
    # one ignored pixel inside a uniform region of class 1: its neighbours' shares stay (0, 1)
    x, t = torch.zeros(1, 2, 4, 4, dtype=torch.float64), torch.ones(1, 4, 4, dtype=torch.long)
    t[0, 1, 1] = -100
    per_pixel = NeighborAwareCalibrationLoss(reduction="none")(x, t)
    expected = math.log(2) + 0.1 * (abs(0 - 0) + abs(1 - 0)) / 2  # logits 0, shares (0, 1)
    counted = t != -100
    np.testing.assert_allclose(per_pixel[counted].numpy(), expected, rtol=1e-12)
    assert per_pixel[0, 1, 1].item() == 0.0


# ---------------------------------------------------------------------------------------------- conventions
ALL = [FocalLossAdaptive(), MDCALoss(gamma=1.0), DCALoss(), MarginLabelSmoothingLoss(margin=1.0),
       SpatiallyVaryingLabelSmoothingLoss(), NeighborAwareCalibrationLoss()]


@pytest.mark.parametrize("loss", ALL, ids=lambda m: type(m).__name__)
def test_gradients_in_float64(loss):
    x, t = _images(b=2, c=3, size=(4, 4), seed=10)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss(a, t), (x,))


@pytest.mark.parametrize("loss", ALL, ids=lambda m: type(m).__name__)
def test_clear_errors(loss):
    x, t = _images(seed=11)
    with pytest.raises(ValueError, match=r"target"):
        loss(x, t + 5)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite"):
        loss(bad, t)
    with pytest.raises(ValueError, match=r"`mode` must be one of 'binary', 'multiclass'"):
        type(loss)(mode="multilabel")


def test_option_errors():
    with pytest.raises(ValueError, match="`gammas` needs one more entry"):
        FocalLossAdaptive(thresholds=(0.2, 0.5), gammas=(5.0, 3.0))
    with pytest.raises(ValueError, match="`kernel_size` must be an odd integer"):
        NeighborAwareCalibrationLoss(kernel_size=4)
    with pytest.raises(ValueError, match="needs images"):
        SpatiallyVaryingLabelSmoothingLoss()(*_rows())
    with pytest.raises(ValueError, match="`weight` must have one entry per class"):
        DCALoss(weight=torch.ones(2))(*_rows())


@pytest.mark.parametrize("loss", ALL, ids=lambda m: type(m).__name__)
def test_second_derivatives_in_float64(loss):
    # gradient penalties differentiate the gradient: gradgradcheck away from the hinges' and abs' kinks
    x, t = _images(b=1, c=3, size=(3, 3), seed=12)
    x.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda a: loss(a, t), (x,))
