"""FocalLoss against independent references: PyTorch built-ins and the paper's formula in float64."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from medloss.losses import CrossEntropyLoss, FocalLoss, cross_entropy_loss, focal_loss

SHAPES_MC = [(7, 3), (2, 4, 5, 6), (2, 3, 3, 4, 5)]


def ref_softmax_focal(x, t, gamma, alpha=None, ignore_index=-100):
    """-alpha_t (1 - p_t)^gamma log p_t, plain float64 autograd, mean over non-ignored positions."""
    valid = t != ignore_index
    ts = t.clamp_min(0)
    logp = F.log_softmax(x.double(), 1).gather(1, ts.unsqueeze(1)).squeeze(1)
    term = -((1 - logp.exp()) ** gamma) * logp
    if alpha is not None:
        term = term * alpha.double()[ts]
    return term[valid].mean()


def ref_sigmoid_focal(x, y, gamma, alpha=None):
    """RetinaNet / torchvision's sigmoid_focal_loss formula, in float64."""
    x, y = x.double(), y.double()
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss.mean()


@pytest.mark.parametrize("shape", SHAPES_MC)
def test_gamma0_equals_cross_entropy(shape):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    ours = focal_loss(x, t, gamma=0.0)
    ref = F.cross_entropy(x, t)
    assert abs(ours.item() - ref.item()) < 1e-9
    g1, = torch.autograd.grad(ours, x)
    g2, = torch.autograd.grad(ref, x)
    torch.testing.assert_close(g1, g2, atol=1e-12, rtol=0)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_gamma0_weighted_equals_weighted_cross_entropy(eps):
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6, 3, 3))
    t[0, 0, :] = -100
    w = torch.tensor([0.2, 1.0, 3.0, 0.7], dtype=torch.float64)
    ours = focal_loss(x, t, gamma=0.0, weight=w, normalize="weights", label_smoothing=eps)
    ref = F.cross_entropy(x, t, weight=w, label_smoothing=eps, ignore_index=-100)
    assert abs(ours.item() - ref.item()) < 1e-9
    g1, = torch.autograd.grad(ours, x)
    g2, = torch.autograd.grad(ref, x)
    torch.testing.assert_close(g1, g2, atol=1e-12, rtol=0)
    ce = CrossEntropyLoss(weight=w, label_smoothing=eps)(x, t)
    assert abs(ce.item() - ref.item()) < 1e-9


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_gamma0_equals_bce_with_logits(mode):
    shape = (5, 1, 4, 4) if mode == "binary" else (5, 3, 4)
    x = torch.randn(*shape, dtype=torch.float64)
    y = torch.randint(0, 2, shape).double()
    ours = focal_loss(x, y, mode=mode, gamma=0.0)
    ref = F.binary_cross_entropy_with_logits(x, y)
    assert abs(ours.item() - ref.item()) < 1e-9


def test_label_smoothing_worked_example():
    # a published worked example of label smoothing. It prints 0.4122, but its own softmax of the
    # second row is wrong; by hand: row losses 0.5137 and 0.6797, mean 0.5967 (PyTorch agrees).
    x = torch.tensor([[2.0, 1.0, 0.1], [0.5, 1.5, 0.8]], dtype=torch.float64)
    t = torch.tensor([0, 1])
    q = torch.tensor([[0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3], [0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3]], dtype=torch.float64)
    by_hand = -(q * torch.log_softmax(x, 1)).sum(1).mean().item()
    ours = focal_loss(x, t, gamma=0.0, label_smoothing=0.1).item()
    assert round(by_hand, 4) == 0.5967
    assert abs(ours - by_hand) < 1e-12
    assert abs(ours - F.cross_entropy(x, t, label_smoothing=0.1).item()) < 1e-12


def test_label_smoothing_with_focal_term():
    x = torch.randn(8, 5, dtype=torch.float64)
    t = torch.randint(0, 5, (8,))
    eps, gamma = 0.2, 1.5
    q = F.one_hot(t, 5).double() * (1 - eps) + eps / 5
    logp = torch.log_softmax(x, 1)
    ref = (-(q * (1 - logp.exp()) ** gamma * logp).sum(1)).mean()
    assert abs(focal_loss(x, t, gamma=gamma, label_smoothing=eps).item() - ref.item()) < 1e-12


def test_binary_label_smoothing_equals_bce_on_smoothed_targets():
    x = torch.randn(20, dtype=torch.float64)
    y = torch.randint(0, 2, (20,)).double()
    ours = focal_loss(x, y, mode="binary", gamma=0.0, label_smoothing=0.2)
    ref = F.binary_cross_entropy_with_logits(x, y * 0.8 + 0.1)
    assert abs(ours.item() - ref.item()) < 1e-12


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.8])
def test_binary_equals_retinanet_formula(gamma, alpha):
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (4, 1, 6, 6)).double()
    ours = focal_loss(x, y, mode="binary", gamma=gamma, alpha=alpha)
    assert abs(ours.item() - ref_sigmoid_focal(x, y, gamma, alpha).item()) < 1e-12
    # [B, *] input without the channel dim is accepted too
    assert abs(focal_loss(x[:, 0], y[:, 0], mode="binary", gamma=gamma, alpha=alpha).item() - ours.item()) < 1e-15


@pytest.mark.parametrize("shape", SHAPES_MC)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_multiclass_equals_formula(shape, gamma):
    x = torch.randn(*shape, dtype=torch.float64) * 2
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    assert abs(focal_loss(x, t, gamma=gamma).item() - ref_softmax_focal(x, t, gamma).item()) < 1e-12


def test_per_class_weight_and_scalar_alpha():
    x = torch.randn(10, 3, 4, dtype=torch.float64)
    t = torch.randint(0, 3, (10, 4))
    a = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    assert abs(focal_loss(x, t, weight=a).item() - ref_softmax_focal(x, t, 2.0, a).item()) < 1e-12
    # scalar alpha in multiclass: background (class 0) 1 - alpha, the others alpha
    expected = ref_softmax_focal(x, t, 2.0, torch.tensor([0.75, 0.25, 0.25]))
    assert abs(focal_loss(x, t, alpha=0.25).item() - expected.item()) < 1e-12
    # normalize="weights" divides by the sum of alpha_t
    raw = ref_softmax_focal(x, t, 2.0, a) * t.numel()
    assert abs(focal_loss(x, t, weight=a, normalize="weights").item() - (raw / a[t].sum()).item()) < 1e-12


def test_binary_alpha_pair_is_negative_positive_weights():
    x = torch.randn(30, dtype=torch.float64)
    y = torch.randint(0, 2, (30,)).double()
    w = torch.tensor([1.0, 4.0], dtype=torch.float64)
    ours = focal_loss(x, y, mode="binary", gamma=0.0, weight=w, normalize="weights")
    sw = w[y.long()]
    ref = (F.binary_cross_entropy_with_logits(x, y, reduction="none") * sw).sum() / sw.sum()
    assert abs(ours.item() - ref.item()) < 1e-12


def test_multilabel_per_class_alpha():
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    y = torch.randint(0, 2, (6, 3, 5)).double()
    a = torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64)
    ours = focal_loss(x, y, mode="multilabel", alpha=a, gamma=2.0)
    ref = torch.stack([ref_sigmoid_focal(x[:, c], y[:, c], 2.0, a[c].item()) for c in range(3)]).mean()
    assert abs(ours.item() - ref.item()) < 1e-12


def test_ignore_index_multiclass_contributes_nothing():
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (4, 5, 5))
    t[:, :2] = 255
    loss = focal_loss(x, t, ignore_index=255, gamma=2.0)
    keep = t != 255
    ref = ref_softmax_focal(x.detach().movedim(1, -1)[keep], t[keep], 2.0, ignore_index=255)
    assert abs(loss.item() - ref.item()) < 1e-12
    loss.backward()
    assert x.grad[:, :, :2].abs().max() == 0
    assert x.grad[:, :, 2:].abs().max() > 0


def test_ignore_index_binary_and_all_ignored():
    x = torch.randn(10, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (10,)).double()
    y[:4] = -100
    loss = focal_loss(x, y, mode="binary", gamma=1.0)
    ref = ref_sigmoid_focal(x.detach()[4:], y[4:], 1.0)
    assert abs(loss.item() - ref.item()) < 1e-12
    loss.backward()
    assert x.grad[:4].abs().max() == 0
    # every position ignored: the mean is 0, not NaN, and the gradient is 0
    z = torch.randn(3, 2, requires_grad=True)
    out = focal_loss(z, torch.full((3,), -100))
    out.backward()
    assert out.item() == 0.0 and z.grad.abs().max() == 0


def test_reductions_and_shapes():
    x = torch.randn(3, 4, 5, 6)
    t = torch.randint(0, 4, (3, 5, 6))
    none = focal_loss(x, t, reduction="none")
    assert none.shape == (3, 5, 6)
    torch.testing.assert_close(focal_loss(x, t, reduction="sum"), none.sum())
    torch.testing.assert_close(focal_loss(x, t, reduction="mean"), none.mean())
    xb = torch.randn(3, 1, 5)
    assert focal_loss(xb, torch.randint(0, 2, (3, 1, 5)).float(), mode="binary", reduction="none").shape == (3, 1, 5)
    # a [B, 1, *] multiclass target is squeezed
    torch.testing.assert_close(focal_loss(x, t.unsqueeze(1)), focal_loss(x, t))


@pytest.mark.parametrize("shape", [(45,), (45, 2), (3, 5, 6), (3, 1, 5)])
def test_binary_reduction_none_keeps_the_input_shape(shape):
    # SPEC 12(a): [B, *] input gave [B, 1, *]; at gamma 0 it is BCE-with-logits elementwise
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randint(0, 2, shape)
    out = focal_loss(x, y, mode="binary", gamma=0.0, reduction="none")
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(x, y.double(), reduction="none"))
    assert FocalLoss(mode="binary", reduction="none")(x.float(), y).shape == shape


def test_from_probabilities_matches_logits():
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.randint(0, 3, (6,))
    assert abs(focal_loss(torch.softmax(x, 1), t, from_logits=False).item() - focal_loss(x, t).item()) < 1e-10
    xb = torch.randn(6, dtype=torch.float64)
    yb = torch.randint(0, 2, (6,)).double()
    got = focal_loss(torch.sigmoid(xb), yb, mode="binary", from_logits=False).item()
    assert abs(got - focal_loss(xb, yb, mode="binary").item()) < 1e-10


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(gamma=0.5),
        dict(gamma=2.0, weight=torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)),
        dict(gamma=1.5, label_smoothing=0.1, alpha=0.25),
        dict(gamma=2.0, reduction="none"),
        dict(gamma=0.5, reduction="sum", normalize="weights", alpha=0.3),
    ],
)
def test_gradcheck_multiclass(kwargs):
    x = torch.randn(3, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (3, 2, 2))
    t[0, 0, 0] = -100
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, t, **kwargs), (x,))


@pytest.mark.parametrize(
    "mode,kwargs",
    [
        ("binary", dict(gamma=0.5)),
        ("binary", dict(gamma=2.0, alpha=0.25, label_smoothing=0.1)),
        ("multilabel", dict(gamma=1.0, alpha=torch.tensor([0.2, 0.7], dtype=torch.float64), reduction="none")),
    ],
)
def test_gradcheck_sigmoid(mode, kwargs):
    shape = (4, 1, 3) if mode == "binary" else (4, 2, 3)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, shape).double()
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, y, mode=mode, **kwargs), (x,))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("v", [17.0, 100.0, 1e4])
def test_saturated_logits_are_finite_and_exact(gamma, v):
    # sigmoid: a confident correct and a confident wrong prediction at +-v, for both labels
    x = torch.tensor([v, -v, v, -v], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = focal_loss(x, y, mode="binary", gamma=gamma, reduction="none")
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all()
    # confident wrong: loss = softplus(v) ~ v, gradient magnitude ~ 1 (no vanishing)
    assert loss[2].item() == pytest.approx(v, rel=1e-6) and loss[3].item() == pytest.approx(v, rel=1e-6)
    # exact: d/dx [p^g softplus(x)] = p^g (p + g (1 - p) softplus(x)) -> 1 + 2 * 17 * e^-17 at v = 17, g = 2
    expected = 1.0 + gamma * v * math.exp(-v)
    assert x.grad[2].item() == pytest.approx(expected, rel=1e-6)
    assert x.grad[3].item() == pytest.approx(-expected, rel=1e-6)
    assert loss[0].item() == pytest.approx(0.0, abs=1e-7) and loss[1].item() == pytest.approx(0.0, abs=1e-7)
    # softmax: one logit at +v, target on it (correct) and off it (wrong)
    z = torch.tensor([[v, 0.0, -v], [v, 0.0, -v]], requires_grad=True)
    lm = focal_loss(z, torch.tensor([0, 2]), gamma=gamma, reduction="none")
    lm.sum().backward()
    assert torch.isfinite(lm).all() and torch.isfinite(z.grad).all()
    assert lm[1].item() == pytest.approx(2 * v, rel=1e-6)
    torch.testing.assert_close(z.grad[1], torch.tensor([1.0, 0.0, -1.0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_bf16_autocast_is_finite_and_close(mode):
    x = (torch.randn(4, 3, 8, 8) * 1e4) if mode == "multiclass" else torch.randn(4, 1, 8, 8) * 1e4
    t = torch.randint(0, 3, (4, 8, 8)) if mode == "multiclass" else torch.randint(0, 2, (4, 1, 8, 8)).float()
    w = torch.randn(x.shape[1], x.shape[1]) * 0.1
    xb = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = torch.einsum("bchw,cd->bdhw", xb, w.bfloat16()) if mode == "multiclass" else xb * 1.0
        loss = focal_loss(h, t, mode=mode, gamma=2.0)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(xb.grad.float()).all()
    ref = focal_loss(h.detach().double(), t, mode=mode, gamma=2.0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


@given(
    b=st.integers(1, 6),
    c=st.integers(2, 5),
    gamma=st.floats(0.0, 5.0),
    scale=st.floats(0.1, 50.0),
    seed=st.integers(0, 2**16),
)
def test_property_nonnegative_bounded_by_ce_and_permutation_invariant(b, c, gamma, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    t = torch.randint(0, c, (b,), generator=g)
    per = focal_loss(x, t, gamma=gamma, reduction="none")
    ce = F.cross_entropy(x, t, reduction="none")
    assert (per >= 0).all()
    assert (per <= ce + 1e-12).all()  # (1 - p)^gamma <= 1
    perm = torch.randperm(b, generator=g)
    assert math.isclose(focal_loss(x[perm], t[perm], gamma=gamma).item(), per.mean().item(), rel_tol=1e-12,
                        abs_tol=1e-300)


@given(n=st.integers(1, 20), seed=st.integers(0, 2**16), eps=st.floats(0.0, 1.0))
def test_property_gamma0_binary_is_bce(n, seed, eps):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64) * 10
    y = torch.randint(0, 2, (n,), generator=g).double()
    ours = focal_loss(x, y, mode="binary", gamma=0.0, label_smoothing=eps)
    ref = F.binary_cross_entropy_with_logits(x, y * (1 - eps) + eps / 2)
    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-10, abs_tol=1e-12)


def test_module_buffers_and_repr():
    loss = FocalLoss(weight=torch.tensor([0.2, 0.8]), gamma=1.0)
    assert "weight" in dict(loss.named_buffers())
    assert "gamma=1.0" in repr(loss)
    x = torch.randn(5, 2, dtype=torch.float64)
    t = torch.randint(0, 2, (5,))
    assert abs(loss(x, t).item() - ref_softmax_focal(x, t, 1.0, torch.tensor([0.2, 0.8])).item()) < 1e-6


def test_prior_bias():
    from medloss.losses import prior_bias

    for pi in (0.01, 0.3, 0.5):
        assert torch.sigmoid(torch.tensor(prior_bias(pi), dtype=torch.float64)).item() == pytest.approx(pi, rel=1e-12)
    assert prior_bias(0.01) == pytest.approx(-math.log(99.0), rel=1e-12)
    with pytest.raises(ValueError, match="prior"):
        prior_bias(1.0)


def test_tensor_alpha_is_the_deprecated_spelling_of_weight():
    x, t = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 3, (6,))
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    with pytest.warns(FutureWarning, match="as `weight`"):
        old = FocalLoss(alpha=w, gamma=1.0)
    torch.testing.assert_close(old(x, t), FocalLoss(weight=w, gamma=1.0)(x, t))
    torch.testing.assert_close(old(x, t), ref_softmax_focal(x, t, 1.0, w))
    with pytest.raises(ValueError, match="pass per-class weights once"):
        FocalLoss(alpha=w, weight=w)
    # the old module-returning factory still works for one release
    with pytest.warns(FutureWarning, match="CrossEntropyLoss"):
        module = cross_entropy_loss(weight=w)
    torch.testing.assert_close(module(x, t), F.cross_entropy(x, t, weight=w))
    torch.testing.assert_close(cross_entropy_loss(x, t, weight=w), F.cross_entropy(x, t, weight=w))


def test_scalar_alpha_times_weight():
    # multiclass: factor weight_c * (1 - alpha for class 0, alpha otherwise), in the reference's closed form
    x, t = torch.randn(7, 3, dtype=torch.float64), torch.randint(0, 3, (7,))
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    both = w * torch.tensor([0.75, 0.25, 0.25], dtype=torch.float64)
    torch.testing.assert_close(focal_loss(x, t, alpha=0.25, weight=w, gamma=2.0), ref_softmax_focal(x, t, 2.0, both))
    # binary [w_negative, w_positive] with alpha: BCE terms scaled by alpha * w_pos and (1 - alpha) * w_neg at gamma 0
    z, y = torch.randn(9, dtype=torch.float64), torch.randint(0, 2, (9,)).double()
    wb = torch.tensor([0.4, 3.0], dtype=torch.float64)
    expected = -(0.3 * 3.0 * y * F.logsigmoid(z) + 0.7 * 0.4 * (1 - y) * F.logsigmoid(-z)).mean()
    torch.testing.assert_close(focal_loss(z, y, mode="binary", alpha=0.3, weight=wb, gamma=0.0), expected)


def test_include_background_false():
    # multiclass: background pixels count nowhere (the mean is over the others), softmax over every class
    x, t = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randint(0, 3, (2, 4, 4))
    fg = t != 0
    ce = F.cross_entropy(x, t, reduction="none")
    torch.testing.assert_close(focal_loss(x, t, gamma=0.0, include_background=False), ce[fg].mean())
    # multilabel: channel 0 dropped
    y = torch.randint(0, 2, (2, 3, 4, 4)).double()
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    torch.testing.assert_close(focal_loss(x, y, mode="multilabel", gamma=0.0, include_background=False),
                               bce[:, 1:].mean())
    none = focal_loss(x, y, mode="multilabel", gamma=0.0, include_background=False, reduction="none")
    assert none.shape == x.shape and none[:, 0].abs().sum() == 0
    torch.testing.assert_close(none[:, 1:], bce[:, 1:])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0], ids=lambda g: f"gamma {g:g}")
@pytest.mark.parametrize("with_p", [False, True], ids=["from log p", "from p"])
def test_focal_terms_value_and_slope_against_autograd_of_the_closed_form(gamma, with_p):
    """value = -(1 - p)^gamma log p and slope = -d value / d log p, against float64 autograd of
    the closed form, from confident mistakes to p = 1 - 1e-12 (where the slope tends to 0 for
    gamma > 0), whether 1 - p comes from log p or from p itself (the ops' backward)."""
    from medloss.ops._terms import focal_terms, focal_value

    logp = -torch.logspace(-12, 1.5, 41, dtype=torch.float64)
    p = logp.exp() if with_p else None
    if p is not None:  # the contract: logp is the log of the very p given (as in the ops)
        logp = p.log()
    leaf = logp.clone().requires_grad_(True)
    expected = -((-torch.expm1(leaf)) ** gamma) * leaf
    (slope_expected,) = torch.autograd.grad(expected.sum(), leaf)
    p_before = None if p is None else p.clone()
    value, slope = focal_terms(logp, gamma, p=p)
    _, slope_only = focal_terms(logp, gamma, value=False, p=p)
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(focal_value(logp, gamma, p=p), expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(slope, -slope_expected, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(slope_only, -slope_expected, rtol=1e-9, atol=1e-15)
    if p is not None:  # the caller's probabilities are not modified
        assert torch.equal(p, p_before)
