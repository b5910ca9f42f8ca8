"""Segmentation losses against a float64 transcription of the papers' formulas (written here),
their documented reductions, MONAI where the definitions coincide, and edge cases."""

import importlib.metadata
import math

import pytest
import torch
import torch.nn.functional as F

from medloss.losses import (
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    ComboLoss,
    DiceLoss,
    FocalTverskyLoss,
    HybridFocalLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    SymmetricUnifiedFocalLoss,
    TverskyLoss,
)

ALL = [DiceLoss, TverskyLoss, FocalTverskyLoss, ComboLoss, SymmetricFocalLoss, AsymmetricFocalLoss,
       SymmetricFocalTverskyLoss, AsymmetricFocalTverskyLoss, SymmetricUnifiedFocalLoss,
       AsymmetricUnifiedFocalLoss, HybridFocalLoss]


# ----------------------------------------------------------------------------- reference formulas
def ref_probs(x, t, mode):
    """probabilities and one-hot targets [B, C, *] in float64, as the papers define them."""
    x = x.double()
    if mode == "multiclass":
        return torch.softmax(x, 1), F.one_hot(t, x.shape[1]).movedim(-1, 1).double()
    if mode == "binary2":  # binary as the two-channel softmax [1 - p, p]
        p = torch.sigmoid(x[:, 0])
        return torch.stack([1 - p, p], 1), torch.stack([1 - t.double(), t.double()], 1)
    return torch.sigmoid(x), t.double()


def ref_counts(p, y, batch=False):
    dims = tuple(range(2, p.ndim))
    tp, fp, fn = (p * y).sum(dims), (p * (1 - y)).sum(dims), ((1 - p) * y).sum(dims)
    if batch:
        tp, fp, fn = tp.sum(0), fp.sum(0), fn.sum(0)
    return tp, fp, fn


def ref_unified(p, y, delta, gamma, weight, asymmetric, smooth=1e-7):
    tp, fp, fn = ref_counts(p, y)
    mti = (tp + smooth) / (tp + delta * fn + (1 - delta) * fp + smooth)
    ft = (1 - mti) ** (1 - gamma)
    if asymmetric:
        ft[:, 0] = 1 - mti[:, 0]
    ce = -y * torch.log(p)
    w = torch.full((p.shape[1],), delta, dtype=torch.float64)
    w[0] = 1 - delta
    g = torch.full((p.shape[1],), gamma, dtype=torch.float64)
    if asymmetric:
        g[1:] = 0.0
    shape = (1, -1) + (1,) * (p.ndim - 2)
    focal = (w.view(shape) * (1 - p) ** g.view(shape) * ce).sum(1).mean()
    return ft.mean(), focal, weight * ft.mean() + (1 - weight) * focal


def case(shape=(2, 3, 6, 5), seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return x, t


# ----------------------------------------------------------------------------- formulas
@pytest.mark.parametrize("shape", [(2, 3, 6, 5), (2, 4, 3, 4, 5), (3, 2, 7)])
@pytest.mark.parametrize("batch", [False, True])
def test_region_losses_equal_formulas(shape, batch):
    x, t = case(shape)
    p, y = ref_probs(x, t, "multiclass")
    tp, fp, fn = ref_counts(p, y, batch)
    s = 1e-5
    dice = 1 - (2 * tp + s) / (2 * tp + fp + fn + s)
    ti = (tp + s) / (tp + 0.3 * fp + 0.7 * fn + s)
    assert DiceLoss(batch=batch)(x, t).item() == pytest.approx(dice.mean().item(), rel=1e-12)
    assert TverskyLoss(batch=batch)(x, t).item() == pytest.approx((1 - ti).mean().item(), rel=1e-12)
    assert FocalTverskyLoss(batch=batch)(x, t).item() == pytest.approx(((1 - ti) ** 0.75).mean().item(), rel=1e-12)
    none = DiceLoss(batch=batch, reduction="none")(x, t)
    assert none.shape == dice.shape
    torch.testing.assert_close(none, dice, rtol=1e-12, atol=0)


def test_binary_and_multilabel_region_losses():
    x, _ = case((3, 1, 5, 5))
    yb = (torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.6).long()
    p, y = ref_probs(x, yb, "sigmoid")
    tp, fp, fn = ref_counts(p, y)
    assert DiceLoss(mode="binary")(x, yb).item() == pytest.approx((1 - (2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5)).mean().item(), rel=1e-12)
    xm, _ = case((2, 3, 4, 4), seed=2)
    ym = (torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3)) > 0.5).double()
    p, y = ref_probs(xm, ym, "sigmoid")
    tp, fp, fn = ref_counts(p, y)
    ti = (tp + 1e-5) / (tp + 0.4 * fp + 0.6 * fn + 1e-5)
    assert TverskyLoss(mode="multilabel", alpha=0.4, beta=0.6)(xm, ym).item() == pytest.approx((1 - ti).mean().item(), rel=1e-12)


def test_include_background_weights_and_ignore_index():
    x, t = case((2, 4, 6, 6), seed=3)
    p, y = ref_probs(x, t, "multiclass")
    tp, fp, fn = ref_counts(p, y)
    dice = 1 - (2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5)
    assert DiceLoss(include_background=False)(x, t).item() == pytest.approx(dice[:, 1:].mean().item(), rel=1e-12)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    expected = (dice * w).sum() / (w.sum() * 2)
    assert DiceLoss(weight=w)(x, t).item() == pytest.approx(expected.item(), rel=1e-12)
    # ignored pixels count in no TP / FP / FN and get no gradient
    t_ign = t.clone()
    t_ign[:, :2] = -100
    xi = x.clone().requires_grad_()
    got = DiceLoss()(xi, t_ign)
    p2, y2 = ref_probs(x[:, :, 2:], t[:, 2:], "multiclass")
    tp2, fp2, fn2 = ref_counts(p2, y2)
    assert got.item() == pytest.approx((1 - (2 * tp2 + 1e-5) / (2 * tp2 + fp2 + fn2 + 1e-5)).mean().item(), rel=1e-12)
    got.backward()
    assert xi.grad[:, :, :2].abs().max() == 0
    uf = SymmetricUnifiedFocalLoss()(x, t_ign)
    _, _, ref = ref_unified(p2, y2, 0.6, 0.5, 0.5, False)
    assert uf.item() == pytest.approx(ref.item(), rel=1e-10)


@pytest.mark.parametrize("asymmetric", [False, True])
@pytest.mark.parametrize("mode", ["multiclass", "binary"])
def test_unified_family_equals_official_definitions(asymmetric, mode):
    if mode == "multiclass":
        x, t = case((2, 4, 5, 6), seed=4)
        p, y = ref_probs(x, t, "multiclass")
    else:
        x, _ = case((2, 1, 6, 6), seed=5)
        t = (torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(6)) > 0.7).long()
        p, y = ref_probs(x, t[:, 0], "binary2")
    ft_cls = AsymmetricFocalTverskyLoss if asymmetric else SymmetricFocalTverskyLoss
    fo_cls = AsymmetricFocalLoss if asymmetric else SymmetricFocalLoss
    un_cls = AsymmetricUnifiedFocalLoss if asymmetric else SymmetricUnifiedFocalLoss
    ft, _, _ = ref_unified(p, y, 0.7, 0.75, 0.5, asymmetric)
    _, fo, _ = ref_unified(p, y, 0.7, 2.0, 0.5, asymmetric)
    _, _, un = ref_unified(p, y, 0.6, 0.5, 0.5, asymmetric)
    assert ft_cls(mode=mode)(x, t).item() == pytest.approx(ft.item(), rel=1e-10)
    assert fo_cls(mode=mode)(x, t).item() == pytest.approx(fo.item(), rel=1e-10)
    assert un_cls(mode=mode)(x, t).item() == pytest.approx(un.item(), rel=1e-10)
    _, _, un3 = ref_unified(p, y, 0.8, 0.3, 0.3, asymmetric)
    assert un_cls(mode=mode, lambda_=0.3, delta=0.8, gamma=0.3)(x, t).item() == pytest.approx(un3.item(), rel=1e-10)


@pytest.mark.parametrize("asymmetric", [False, True])
def test_reductions_gamma0_delta_half(asymmetric):
    x, t = case((2, 3, 6, 6), seed=7)
    p, y = ref_probs(x, t, "multiclass")
    tp, fp, fn = ref_counts(p, y)
    e = 1e-7
    dice = (1 - (2 * tp + 2 * e) / (2 * tp + fp + fn + 2 * e)).mean()  # mTI at delta .5 = Dice with smooth 2e
    half_ce = 0.5 * F.cross_entropy(x, t)
    ft_cls = AsymmetricFocalTverskyLoss if asymmetric else SymmetricFocalTverskyLoss
    fo_cls = AsymmetricFocalLoss if asymmetric else SymmetricFocalLoss
    un_cls = AsymmetricUnifiedFocalLoss if asymmetric else SymmetricUnifiedFocalLoss
    assert ft_cls(delta=0.5, gamma=0.0)(x, t).item() == pytest.approx(dice.item(), rel=1e-12)
    assert fo_cls(delta=0.5, gamma=0.0)(x, t).item() == pytest.approx(half_ce.item(), rel=1e-12)
    assert un_cls(delta=0.5, gamma=0.0, lambda_=0.25)(x, t).item() == pytest.approx((0.25 * dice + 0.75 * half_ce).item(), rel=1e-12)
    # Dice loss proper with the same smoothing
    assert DiceLoss(smooth_nr=2 * e, smooth_dr=2 * e)(x, t).item() == pytest.approx(dice.item(), rel=1e-12)


def test_hybrid_and_combo_equal_formulas():
    x, t = case((2, 3, 5, 5), seed=8)
    p, y = ref_probs(x, t, "multiclass")
    tp, fp, fn = ref_counts(p, y)
    a = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    focal = (-(a.view(1, 3, 1, 1) * (1 - p) ** 2.0 * y * torch.log(p)).sum(1)).mean()
    ti = (tp + 1e-7) / (tp + 0.3 * fp + 0.7 * fn + 1e-7)
    ft = ((1 - ti) ** 0.75).mean()
    assert HybridFocalLoss(lambda_=0.4, focal_weight=a)(x, t).item() == pytest.approx((0.4 * focal + 0.6 * ft).item(), rel=1e-10)
    alpha, beta = 0.6, 0.7
    wce = -(beta * y * torch.log(p) + (1 - beta) * (1 - y) * torch.log(1 - p)).mean()
    dsc = ((2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5)).mean()
    assert ComboLoss(alpha=alpha, beta=beta)(x, t).item() == pytest.approx((alpha * wce - (1 - alpha) * dsc).item(), rel=1e-10)
    xb, _ = case((2, 1, 5, 5), seed=9)
    yb = (torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(9)) > 0.5).double()
    pb = torch.sigmoid(xb)
    tp, fp, fn = ref_counts(pb, yb)
    wce = -(beta * yb * torch.log(pb) + (1 - beta) * (1 - yb) * torch.log(1 - pb)).mean()
    dsc = ((2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5)).mean()
    assert ComboLoss(alpha=alpha, beta=beta, mode="binary")(xb, yb).item() == pytest.approx((alpha * wce - (1 - alpha) * dsc).item(), rel=1e-10)


# ----------------------------------------------------------------------------- MONAI
def test_agreement_with_monai():
    monai = pytest.importorskip("monai.losses", reason="MONAI not installed (pip install -e '.[dev]')")
    x, t = case((2, 4, 8, 8), seed=10)
    t1 = t.unsqueeze(1)
    kw = {"softmax": True, "to_onehot_y": True}
    for ours, theirs in [
        (DiceLoss(), monai.DiceLoss(**kw)),
        (DiceLoss(include_background=False), monai.DiceLoss(include_background=False, **kw)),
        (DiceLoss(batch=True), monai.DiceLoss(batch=True, **kw)),
        (TverskyLoss(alpha=0.3, beta=0.7), monai.TverskyLoss(alpha=0.3, beta=0.7, **kw)),
        (TverskyLoss(alpha=0.6, beta=0.4, batch=True), monai.TverskyLoss(alpha=0.6, beta=0.4, batch=True, **kw)),
    ]:
        assert ours(x, t).item() == pytest.approx(theirs(x, t1).item(), rel=1e-9)
    # class weights: MONAI averages w_c L_c over classes; medloss divides by the weights' sum
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    theirs = monai.DiceLoss(weight=w, **kw)(x, t1).item()
    assert DiceLoss(weight=w)(x, t).item() * w.sum().item() / 4 == pytest.approx(theirs, rel=1e-9)
    # binary: one sigmoid channel
    xb, _ = case((2, 1, 8, 8), seed=11)
    yb = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(11)) > 0.5).double()
    assert DiceLoss(mode="binary")(xb, yb).item() == pytest.approx(monai.DiceLoss(sigmoid=True)(xb, yb).item(), rel=1e-9)
    # MONAI's asymmetric unified-focal parts take two probability channels [1 - p, p]
    pr = torch.softmax(xb.repeat(1, 2, 1, 1) * torch.tensor([0.0, 1.0]).view(1, 2, 1, 1), 1)
    onehot = torch.cat([1 - yb, yb], 1)
    labels = yb[:, 0].long()
    ufl = pytest.importorskip("monai.losses.unified_focal_loss")
    ft_ref = ufl.AsymmetricFocalTverskyLoss(delta=0.6, gamma=0.5)(pr, onehot).item()
    ft = AsymmetricFocalTverskyLoss(delta=0.6, gamma=0.5, from_logits=False)(pr, labels).item()
    assert ft == pytest.approx(ft_ref, rel=1e-5)
    # the focal part: MONAI <= 1.5 sums the two class terms per pixel, as the official code; MONAI 1.6
    # averages over the channel axis too, i.e. half of it
    fo_ref = ufl.AsymmetricFocalLoss(delta=0.6, gamma=0.5)(pr, onehot).item()
    fo = AsymmetricFocalLoss(delta=0.6, gamma=0.5, from_logits=False)(pr, labels).item()
    monai_version = tuple(int(v) for v in importlib.metadata.version("monai").split(".")[:2])
    assert (fo / 2 if monai_version >= (1, 6) else fo) == pytest.approx(fo_ref, rel=1e-5)


# ----------------------------------------------------------------------------- probabilities as given
def test_probabilities_are_counted_as_given():
    # SPEC 12(b): an empty prediction of an empty class is a perfect score (was 0.980:
    # the probabilities went through clipped logits), and so is a perfect one-hot prediction
    empty = torch.zeros(1, 1, 64, 64)
    for cls in (DiceLoss, TverskyLoss, FocalTverskyLoss):
        assert cls(mode="binary", from_logits=False)(empty, empty.long()).item() == 0.0
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :3] = 1  # classes 2 and 3 absent
    onehot = F.one_hot(labels, 4).movedim(-1, 1).float()
    for loss in (DiceLoss(), TverskyLoss(), FocalTverskyLoss(), SymmetricFocalTverskyLoss(),
                 AsymmetricFocalTverskyLoss()):
        loss.from_logits = False
        assert loss(onehot, labels).item() == 0.0, type(loss).__name__
    # Combo at a perfect prediction: alpha * 0 - (1 - alpha) * 1 (the cross-entropy still clips: ~1e-7)
    assert ComboLoss(from_logits=False)(onehot, labels).item() == pytest.approx(-0.5, abs=1e-6)


@pytest.mark.parametrize("mode", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("batch", [False, True])
def test_probability_input_dice_matches_the_formula(mode, batch):
    g = torch.Generator().manual_seed(3)
    if mode == "multiclass":
        p = torch.softmax(3 * torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64), 1)
        t = torch.randint(0, 3, (2, 5, 6), generator=g)
        t[0, 0, :2] = -100
        keep = (t != -100).unsqueeze(1).double()
        y = F.one_hot(t.clamp_min(0), 3).movedim(-1, 1).double() * keep
    else:
        c = 1 if mode == "binary" else 3
        p = torch.rand(2, c, 5, 6, generator=g, dtype=torch.float64)
        t = torch.randint(0, 2, (2, c, 5, 6), generator=g)
        t[0, 0, 0, :2] = -100
        keep = (t != -100).double()
        y = t.clamp_min(0).double() * keep
    dims = (0, 2, 3) if batch else (2, 3)
    tp = (p * y * keep).sum(dims)
    expected = (1 - (2 * tp + 1e-5) / ((p * keep).sum(dims) + y.sum(dims) + 1e-5)).mean()
    p.requires_grad_(True)
    out = DiceLoss(mode=mode, from_logits=False, batch=batch)(p, t)
    assert out.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.autograd.gradcheck(lambda q: DiceLoss(mode=mode, from_logits=False, batch=batch)(q, t), (p,))


# ----------------------------------------------------------------------------- edge cases
def _empty_case(predict_foreground: bool):
    # two classes; the ground truth is all background; the prediction confident either way
    x = torch.zeros(1, 2, 4, 4)
    x[:, 1] = 40.0 if predict_foreground else -40.0
    return x.requires_grad_(), torch.zeros(1, 4, 4, dtype=torch.long)


@pytest.mark.parametrize("cls", [DiceLoss, TverskyLoss, FocalTverskyLoss, SymmetricFocalTverskyLoss, AsymmetricFocalTverskyLoss])
def test_empty_ground_truth_is_defined(cls):
    for fg, expected in [(False, 0.0), (True, 1.0)]:
        x, t = _empty_case(fg)
        per_class = cls(reduction="none")(x, t)
        fg_loss = per_class[0, 1].item()
        assert fg_loss == pytest.approx(expected, abs=1e-3)  # empty mask: 0 if nothing predicted, ~1 with false positives
        per_class.sum().backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("mode", ["multiclass", "binary"])
def test_extreme_logits_finite_and_bf16(cls, mode):
    shape = (2, 3, 4, 4) if mode == "multiclass" else (2, 1, 4, 4)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(*shape, generator=g).sign() * 1e4
    t = torch.randint(0, 3, (2, 4, 4), generator=g) if mode == "multiclass" else torch.randint(0, 2, (2, 1, 4, 4), generator=g)
    loss = cls(mode=mode)
    xx = x.clone().requires_grad_()
    value = loss(xx, t)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(xx.grad).all()
    xb = torch.randn(*shape, generator=g).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vb = loss(xb * 1.0, t)
    vb.backward()
    assert vb.dtype == torch.float32 and torch.isfinite(vb) and torch.isfinite(xb.grad.float()).all()
    assert vb.item() == pytest.approx(loss(xb.detach().double(), t).item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("cls", ALL)
def test_gradcheck(cls):
    x, t = case((2, 3, 3, 4), seed=13, scale=1.5)
    t[0, 0, 0] = -100
    xx = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: cls()(z, t), (xx,))


def test_gradcheck_3d_batch_and_multilabel():
    x, t = case((2, 3, 2, 3, 3), seed=14)
    assert torch.autograd.gradcheck(lambda z: FocalTverskyLoss(batch=True)(z, t), (x.clone().requires_grad_(),))
    xm, _ = case((2, 3, 3, 3), seed=15)
    ym = (torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(15)) > 0.5).double()
    assert torch.autograd.gradcheck(lambda z: DiceLoss(mode="multilabel")(z, ym), (xm.clone().requires_grad_(),))


BAD = [
    ("label out of range", lambda: DiceLoss()(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3)), ValueError, r"target.*\[0, 2\]"),
    ("target shape", lambda: DiceLoss()(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, dtype=torch.long)), ValueError, r"target.*\[1, 2, 2\]"),
    ("multilabel unified", lambda: SymmetricUnifiedFocalLoss(mode="multilabel"), ValueError, r"mode.*'binary', 'multiclass'"),
    ("soft labels unified", lambda: AsymmetricFocalLoss(mode="binary")(torch.zeros(1, 1, 2), torch.full((1, 1, 2), 0.5)), ValueError, r"hard labels"),
    ("weight length", lambda: DiceLoss(weight=torch.ones(2))(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)), ValueError, r"weight.*\(3\)"),
    ("composite reduction none with batch", lambda: SymmetricUnifiedFocalLoss(reduction="none", batch=True), ValueError,
     r"reduction='none'.*batch=True"),
    ("delta above 1", lambda: AsymmetricFocalTverskyLoss(delta=1.5), ValueError, r"delta"),
    ("negative alpha", lambda: TverskyLoss(alpha=-0.1), ValueError, r"alpha"),
    ("probabilities out of range", lambda: DiceLoss(from_logits=False)(torch.full((1, 2, 2, 2), 0.9), torch.zeros(1, 2, 2, dtype=torch.long)), ValueError, r"sum to 1"),
    ("NaN logits", lambda: SymmetricFocalLoss()(torch.full((1, 2, 2), float("nan")), torch.zeros(1, 2, dtype=torch.long)), ValueError, r"NaN"),
]


@pytest.mark.parametrize("desc,call,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(desc, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_float16_volume_does_not_overflow():
    # MONAI's and smp's Dice return NaN here: the fp16 sums of a 96^3 volume overflow
    x = torch.randn(1, 2, 96, 96, 96).half()
    t = torch.randint(0, 2, (1, 96, 96, 96))
    value = DiceLoss()(x, t)
    assert torch.isfinite(value) and value.item() == pytest.approx(DiceLoss()(x.float(), t).item(), rel=1e-6)
    assert not math.isnan(value.item())


def test_ignore_empty_leaves_out_absent_classes():
    x, t = case((2, 3, 6, 6), seed=20)
    t[0][t[0] == 2] = 1  # image 0 has no pixel of class 2
    p, y = ref_probs(x, t, "multiclass")
    tp, fp, fn = ref_counts(p, y)
    dice = 1 - (2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5)
    present = y.sum((2, 3)) > 0
    assert not present[0, 2] and present.sum() == 5
    assert DiceLoss(ignore_empty=True)(x, t).item() == pytest.approx(dice[present].mean().item(), rel=1e-12)
    assert DiceLoss()(x, t).item() == pytest.approx(dice.mean().item(), rel=1e-12)  # default: counted
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    wm = (w.expand(2, 3) * present).double()
    expected = (dice * wm).sum() / wm.sum()
    assert DiceLoss(ignore_empty=True, weight=w)(x, t).item() == pytest.approx(expected.item(), rel=1e-12)
    # no foreground anywhere and background excluded: nothing left, the loss is 0 with a zero gradient
    xx = x.clone().requires_grad_()
    value = DiceLoss(ignore_empty=True, include_background=False)(xx, torch.zeros_like(t))
    value.backward()
    assert value.item() == 0.0 and xx.grad.abs().max() == 0


# ------------------------------------------------------------------------------ more region losses
from medloss.losses import GeneralizedDiceLoss, JaccardLoss, MCCLoss  # noqa: E402


@pytest.mark.parametrize("make", [
    lambda: GeneralizedDiceLoss(), lambda: GeneralizedDiceLoss(w_type="simple", batch=True),
    lambda: JaccardLoss(), lambda: MCCLoss(), lambda: MCCLoss(mode="multilabel"),
    lambda: DiceLoss(squared_pred=True), lambda: DiceLoss(jaccard=True), lambda: DiceLoss(average="micro"),
    lambda: TverskyLoss(average="micro", include_background=False),
])
def test_new_losses_gradcheck_and_ignore_index(make):
    g = torch.Generator().manual_seed(5)
    loss = make()
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    if loss.mode == "multilabel":
        t = torch.randint(0, 2, (2, 3, 4, 5), generator=g)
    else:
        t = torch.randint(0, 3, (2, 4, 5), generator=g)
    assert torch.autograd.gradcheck(lambda z: loss(z, t), (x,))
    # ignored rows count nowhere: the loss equals the loss of the image without them, and they get no gradient
    t_ign = t.clone()
    if loss.mode == "multilabel":
        t_ign[:, :, -1] = -100
    else:
        t_ign[:, -1] = -100
    out = loss(x, t_ign)
    ref = loss(x[:, :, :-1].detach(), t[..., :-1, :] if loss.mode == "multilabel" else t[:, :-1])
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    out.backward()
    assert x.grad[:, :, -1].abs().max() == 0


def test_mcc_matches_the_soft_count_formula():
    # per image and class, counts in float64 written out here
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (3, 6), generator=g)
    p = x.softmax(1)
    y = F.one_hot(t, 4).movedim(-1, 1).double()
    tp, fp = (p * y).sum(-1), (p * (1 - y)).sum(-1)
    fn, tn = ((1 - p) * y).sum(-1), ((1 - p) * (1 - y)).sum(-1)
    mcc = (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn) + 1e-5)
    # a class absent from an image's ground truth: MCC's limits (1 with no error, -1 all wrong), linear in FP
    absent = y.sum(-1) == 0
    assert absent.any()  # the case is exercised (image 2, class 3)
    mcc = torch.where(absent, 1 - 2 * fp / 6, mcc)
    torch.testing.assert_close(MCCLoss(reduction="none")(x, t), 1 - mcc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mcc_on_an_empty_mask_scores_the_false_positives(dtype):
    """An empty ground truth: a confident empty prediction scores ~0, false positives raise the loss towards
    2 (MCC = -1 when every pixel is wrong) and always get a gradient (2 mean(p) in closed form)."""
    empty = torch.zeros(1, 1, 4, 4, dtype=dtype)
    for logit in (-20.0, -5.0, 0.0, 5.0, 20.0):
        x = torch.full((1, 1, 4, 4), logit, dtype=dtype, requires_grad=True)
        loss = MCCLoss(mode="binary")(x, empty)
        loss.backward()
        p = torch.sigmoid(torch.tensor(logit, dtype=torch.float64))
        assert loss.item() == pytest.approx(2 * p.item(), rel=1e-5, abs=1e-12)
        # d/dx 2 mean(sigmoid(x)) = 2 p (1 - p) / 16 per pixel
        expected = (2 * p * torch.sigmoid(-torch.tensor(logit, dtype=torch.float64)) / 16).item()
        assert x.grad.min().item() == pytest.approx(expected, rel=1e-4)
        assert x.grad.min() > 0
    # an all-foreground ground truth mirrors it: 2 FN / N
    x = torch.full((1, 1, 4, 4), -1.0, dtype=dtype)
    assert MCCLoss(mode="binary")(x, torch.ones(1, 1, 4, 4, dtype=dtype)).item() == pytest.approx(
        2 * torch.sigmoid(torch.tensor(1.0)).item(), rel=1e-5)


def test_generalized_dice_weights_by_inverse_squared_volume():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 10, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 10), generator=g)
    t[1] = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])  # class 2 absent from image 1: the image's largest weight
    p = x.softmax(1)
    y = F.one_hot(t, 3).movedim(-1, 1).double()
    vol = y.sum(-1)
    w = torch.where(vol > 0, 1 / vol.clamp_min(1) ** 2, 0.0)
    w = torch.where(vol > 0, w, w.amax(-1, keepdim=True))
    expected = 1 - (2 * (w * (p * y).sum(-1)).sum(-1) + 1e-5) / ((w * (p.sum(-1) + vol)).sum(-1) + 1e-5)
    torch.testing.assert_close(GeneralizedDiceLoss(reduction="none")(x, t), expected)


def test_micro_average_sums_counts_over_classes():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 7), generator=g)
    p = x.softmax(1)[:, 1:]
    y = F.one_hot(t, 3).movedim(-1, 1).double()[:, 1:]
    w = torch.tensor([2.0, 0.5], dtype=torch.float64).view(1, 2, 1)
    tp, sp, sy = (w * p * y).sum((1, 2)), (w * p).sum((1, 2)), (w * y).sum((1, 2))
    expected = 1 - (2 * tp + 1e-5) / (sp + sy + 1e-5)
    got = DiceLoss(average="micro", include_background=False, weight=torch.tensor([9.0, 2.0, 0.5]),
                   reduction="none")(x, t)
    torch.testing.assert_close(got, expected)


def test_lambda_renaming_keeps_values_and_warns():
    # per-class weights are `weight` everywhere, the unified family's mixing lambda is `lambda_`
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 6, 6), generator=g)
    ft = AsymmetricFocalTverskyLoss(delta=0.6, gamma=0.5)(x, t)
    fo = AsymmetricFocalLoss(delta=0.6, gamma=0.5)(x, t)
    new = AsymmetricUnifiedFocalLoss(lambda_=0.3)(x, t)
    assert new.item() == pytest.approx((0.3 * ft + 0.7 * fo).item(), rel=1e-12)
    with pytest.warns(FutureWarning, match="lambda_"):
        old = AsymmetricUnifiedFocalLoss(weight=0.3)
    assert old(x, t).item() == pytest.approx(new.item(), rel=1e-12)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    with pytest.warns(FutureWarning, match="focal_alpha"):
        hybrid_old = HybridFocalLoss(focal_alpha=w)
    assert hybrid_old(x, t).item() == pytest.approx(HybridFocalLoss(focal_weight=w)(x, t).item(), rel=1e-12)


def test_unified_family_smoothing_is_smooth_nr_and_smooth_dr():
    """mTI = (TP + s_nr) / (TP + delta FN + (1 - delta) FP + s_dr), the two terms apart as in every region loss
    (checked by hand at gamma = 0, where the Focal Tversky loss is the mean of 1 - mTI); `smooth` is the
    deprecated spelling of both."""
    p = torch.tensor([[[0.9, 0.2, 0.6, 0.1], [0.1, 0.8, 0.4, 0.9]]], dtype=torch.float64)  # [1, 2 classes, 4]
    t = torch.tensor([[0, 1, 1, 1]])
    y = torch.nn.functional.one_hot(t, 2).movedim(-1, 1).double()
    tp, fn, fp = (p * y).sum(-1), ((1 - p) * y).sum(-1), (p * (1 - y)).sum(-1)
    delta, nr, dr = 0.6, 0.3, 0.7
    expected = (1 - (tp + nr) / (tp + delta * fn + (1 - delta) * fp + dr)).mean()
    loss = SymmetricFocalTverskyLoss(delta=delta, gamma=0.0, from_logits=False, smooth_nr=nr, smooth_dr=dr)
    assert loss(p, t).item() == pytest.approx(expected.item(), rel=1e-12)
    with pytest.warns(FutureWarning, match="smooth_nr= and smooth_dr="):
        old = SymmetricFocalTverskyLoss(delta=delta, gamma=0.0, from_logits=False, smooth=0.5)
    new = SymmetricFocalTverskyLoss(delta=delta, gamma=0.0, from_logits=False, smooth_nr=0.5, smooth_dr=0.5)
    assert old(p, t).item() == new(p, t).item()
    with pytest.warns(FutureWarning, match="smooth_nr"):
        hybrid_old = HybridFocalLoss(smooth=0.5)
    assert (hybrid_old.smooth_nr, hybrid_old.smooth_dr) == (0.5, 0.5)


_PER_IMAGE_LOSSES = [
    lambda m: DiceLoss(mode=m), lambda m: DiceLoss(mode=m, squared_pred=True), lambda m: DiceLoss(mode=m, average="micro"),
    lambda m: JaccardLoss(mode=m), lambda m: TverskyLoss(mode=m), lambda m: FocalTverskyLoss(mode=m),
    lambda m: GeneralizedDiceLoss(mode=m), lambda m: MCCLoss(mode=m), lambda m: DiceLoss(mode=m, from_logits=False),
    lambda m: ComboLoss(mode=m),
]
_UNIFIED_LOSSES = [SymmetricFocalTverskyLoss, AsymmetricFocalTverskyLoss, SymmetricUnifiedFocalLoss,
                   AsymmetricUnifiedFocalLoss, HybridFocalLoss]


def _with_one_ignored_image(mode, from_logits=True):
    g = torch.Generator().manual_seed(3)
    c = {"multiclass": 3, "multilabel": 3, "binary": 1}[mode]
    x = torch.randn(3, c, 5, 5, generator=g, dtype=torch.float64)
    if mode == "multiclass":
        t = torch.randint(0, 3, (3, 5, 5), generator=g)
    else:
        t = torch.randint(0, 2, (3, c, 5, 5), generator=g).double()
    t[0] = -100
    return x, t


_IGNORED_IMAGE_CASES = [(make, mode) for make in _PER_IMAGE_LOSSES for mode in ("multiclass", "binary", "multilabel")]
_IGNORED_IMAGE_CASES += [(lambda m, cls=cls: cls(mode=m), mode) for cls in _UNIFIED_LOSSES
                         for mode in ("multiclass", "binary")]  # the Unified family has no multilabel mode


@pytest.mark.parametrize("make,mode", _IGNORED_IMAGE_CASES)
def test_an_image_with_every_pixel_ignored_counts_in_no_mean(make, mode):
    """The mean runs over the images that have a counted pixel: a fully ignored image changes neither the
    loss (= the loss of the other images alone) nor their gradients, and gets none itself."""
    loss = make(mode)
    x, t = _with_one_ignored_image(mode)
    if not loss.__dict__.get("from_logits", getattr(getattr(loss, "dice", None), "from_logits", True)):
        x = torch.sigmoid(x) if mode != "multiclass" else x.softmax(1)
    x = x.requires_grad_(True)
    out = loss(x, t)
    out.backward()
    rest = x[1:].detach().clone().requires_grad_(True)
    ref = loss(rest, t[1:])
    ref.backward()
    assert out.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    torch.testing.assert_close(x.grad[1:], rest.grad, rtol=1e-9, atol=1e-12)
    assert x.grad[0].abs().max() == 0
    # every image ignored: nothing counted, loss 0
    if not isinstance(loss, (ComboLoss, SymmetricUnifiedFocalLoss, HybridFocalLoss)):
        t_all = torch.full_like(t, -100)
        assert loss(x.detach(), t_all).item() == 0.0


_PER_IMAGE_COMBINATIONS = [
    ("ComboLoss", "multiclass"), ("ComboLoss", "binary"), ("ComboLoss", "multilabel"),
    ("SymmetricUnifiedFocalLoss", "multiclass"), ("AsymmetricUnifiedFocalLoss", "multiclass"),
    ("AsymmetricUnifiedFocalLoss", "binary"), ("HybridFocalLoss", "multiclass"), ("HybridFocalLoss", "binary"),
]


@pytest.mark.parametrize("name, mode", _PER_IMAGE_COMBINATIONS)
def test_region_plus_pixel_losses_reduce_per_image(name, mode):
    """reduction="none" gives the loss of each image [B] (its pixel term averaged within the image): each entry
    equals the default loss of that image alone, values and gradients, ignored pixels included; "sum" is their
    sum; batch=True has no per-image losses (a clear error)."""
    import medloss.losses as losses

    g = torch.Generator().manual_seed(31)
    c = 1 if mode == "binary" else 3
    x = torch.randn(3, c, 5, 6, generator=g, dtype=torch.float64)
    if mode == "multiclass":
        t = torch.randint(0, c, (3, 5, 6), generator=g)
        t[1, 0, :4] = -100
    else:
        t = (torch.rand(3, c, 5, 6, generator=g) > 0.5).double()
    cls = getattr(losses, name)
    xa = x.clone().requires_grad_(True)
    per_image = cls(mode=mode, reduction="none")(xa, t)
    assert per_image.shape == (3,)
    per_image.sum().backward()
    for b in range(3):
        xb = x[b:b + 1].clone().requires_grad_(True)
        alone = cls(mode=mode)(xb, t[b:b + 1])
        alone.backward()
        assert per_image[b].item() == pytest.approx(alone.item(), rel=1e-10, abs=1e-12)
        torch.testing.assert_close(xa.grad[b:b + 1], xb.grad, rtol=1e-9, atol=1e-12)
    total = cls(mode=mode, reduction="sum")(x, t)
    assert total.item() == pytest.approx(per_image.sum().item(), rel=1e-12)
    with pytest.raises(ValueError, match="batch=True"):
        cls(mode=mode, reduction="none", batch=True)


@pytest.mark.parametrize("mode", ["multiclass", "binary", "multilabel"])
def test_mcc_validates_its_input_once(monkeypatch, mode):
    """MCCLoss takes its counted pixels from the statistics, not from a second validation of the input."""
    import medloss.losses._region as overlap

    calls = []
    real = overlap.canonical_inputs

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(overlap, "canonical_inputs", counting)
    g = torch.Generator().manual_seed(5)
    if mode == "multiclass":
        x, t = torch.randn(2, 3, 4, 4, generator=g), torch.randint(0, 3, (2, 4, 4), generator=g)
    else:
        c = 1 if mode == "binary" else 3
        x, t = torch.randn(2, c, 4, 4, generator=g), (torch.rand(2, c, 4, 4, generator=g) > 0.5).float()
    MCCLoss(mode=mode)(x, t)
    assert len(calls) <= 1


def test_unified_region_options_match_the_formula():
    """The Unified family shares the region losses' options: weight, include_background, ignore_empty and
    average act on the Focal Tversky terms (1 - mTI)^(1 - gamma) exactly as on Dice's, checked against the
    float64 formula; the compound losses apply them to their Focal Tversky half."""
    g = torch.Generator().manual_seed(21)
    x = torch.randn(3, 3, 5, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (3, 5, 5), generator=g)
    t[0][t[0] == 2] = 1  # image 0 has no pixel of class 2
    p, y = ref_probs(x, t, "multiclass")
    tp, fp, fn = ref_counts(p, y)
    delta, gamma, e = 0.6, 0.4, 1e-7

    def terms(tp, fp, fn):
        return (1 - (tp + e) / (tp + delta * fn + (1 - delta) * fp + e)) ** (1 - gamma)

    full = terms(tp, fp, fn)  # [B, C]
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    nonempty = (y.sum((2, 3)) > 0).double()
    cases = {
        "weight": ({"weight": w}, (full * w).sum() / (3 * w.sum())),
        "include_background": ({"include_background": False}, full[:, 1:].mean()),
        "ignore_empty": ({"ignore_empty": True}, (full * nonempty).sum() / nonempty.sum()),
        "micro": ({"average": "micro"}, terms(tp.sum(1), fp.sum(1), fn.sum(1)).mean()),
    }
    for name, (options, expected) in cases.items():
        got = SymmetricFocalTverskyLoss(delta=delta, gamma=gamma, **options)(x, t)
        assert got.item() == pytest.approx(expected.item(), rel=1e-10), name
        focal = SymmetricFocalLoss(delta=delta, gamma=gamma)(x, t)
        unified = SymmetricUnifiedFocalLoss(lambda_=0.3, delta=delta, gamma=gamma, **options)(x, t)
        assert unified.item() == pytest.approx((0.3 * expected + 0.7 * focal).item(), rel=1e-10), name
    with pytest.raises(ValueError, match="needs average='macro'"):
        AsymmetricFocalTverskyLoss(average="micro")


def test_focal_losses_of_the_family_take_no_region_options():
    with pytest.warns(FutureWarning, match="SymmetricFocalLoss ignores `batch`"):
        SymmetricFocalLoss(batch=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'average'"):
        SymmetricFocalLoss(average="micro")
