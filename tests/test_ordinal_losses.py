"""Ordinal losses against closed forms (SciPy CDFs, float64) and coral-pytorch's CORN formula."""

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm

from medloss.losses import CDWCELoss, CORNLoss, CumulativeLinkLoss, SquaredEMDLoss

CDFS = {
    "logit": lambda x: 1 / (1 + np.exp(-x)),
    "probit": norm.cdf,
    "cloglog": lambda x: -np.expm1(-np.exp(x)),
}


def closed_form_probs(cutpoints: np.ndarray, f: np.ndarray, link: str) -> np.ndarray:
    cum = CDFS[link](cutpoints[None, :] - f[:, None])
    return np.diff(np.concatenate([np.zeros((len(f), 1)), cum, np.ones((len(f), 1))], 1), axis=1)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("learn", [False, True])
def test_probabilities_equal_closed_form_and_sum_to_one(link, k, learn):
    loss = CumulativeLinkLoss(k, link=link, learn_cutpoints=learn, scale=6.0).double()
    f = torch.linspace(-6, 6, 25, dtype=torch.float64)
    p = loss.class_probabilities(f)
    ref = closed_form_probs(loss.cutpoints.detach().numpy(), f.numpy(), link)
    np.testing.assert_allclose(p.detach().numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(p.sum(1).detach().numpy(), 1.0, atol=1e-12)
    y = torch.arange(25) % k
    nll = CumulativeLinkLoss(k, link=link, scale=6.0, reduction="none").double()(f, y)
    c = CumulativeLinkLoss(k, scale=6.0).cutpoints.double().numpy()
    ref_nll = [mp_nll(c, fi, yi, link) for fi, yi in zip(f.tolist(), y.tolist(), strict=True)]
    np.testing.assert_allclose(nll.numpy(), ref_nll, rtol=1e-10)
    assert torch.equal(loss.predict(f), torch.from_numpy(ref.argmax(1)))


def mp_nll(cutpoints, f, y, link):
    """-log(F(b) - F(a)) at 400 significant digits (mpmath): no cancellation in the tails."""
    mpmath.mp.dps = 400
    cdf, sf = {
        "logit": (lambda x: 1 / (1 + mpmath.exp(-x)), lambda x: 1 / (1 + mpmath.exp(x))),
        "probit": (lambda x: mpmath.ncdf(x), lambda x: mpmath.ncdf(-x)),
        "cloglog": (lambda x: -mpmath.expm1(-mpmath.exp(x)), lambda x: mpmath.exp(-mpmath.exp(x))),
    }[link]
    k = len(cutpoints) + 1
    a = None if y == 0 else mpmath.mpf(cutpoints[y - 1]) - f
    b = None if y == k - 1 else mpmath.mpf(cutpoints[y]) - f
    upper_cdf = mpmath.mpf(1) if b is None else cdf(b)
    if upper_cdf < 0.5:  # lower tail: F(b) - F(a) has no cancellation
        p = upper_cdf - (0 if a is None else cdf(a))
    else:  # upper tail: S(a) - S(b)
        p = (1 if a is None else sf(a)) - (0 if b is None else sf(b))
    return float(-mpmath.log(p))


def test_fixed_cutpoints_layout_including_k2():
    torch.testing.assert_close(CumulativeLinkLoss(5).cutpoints, torch.tensor([-10.0, -10 / 3, 10 / 3, 10.0]))
    torch.testing.assert_close(CumulativeLinkLoss(3, scale=4.0).cutpoints, torch.tensor([-2.0, 2.0]))
    assert CumulativeLinkLoss(2).cutpoints.tolist() == [0.0]
    # K = 2, logit link: P(y = 1) = sigmoid(f), so the NLL is binary cross-entropy on the score
    f = torch.randn(40, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (40,))
    ours = CumulativeLinkLoss(2)(f, y)
    assert ours.item() == pytest.approx(F.binary_cross_entropy_with_logits(f, y.double()).item(), rel=1e-12)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_gradcheck_scores_and_cutpoints(link):
    loss = CumulativeLinkLoss(4, link=link, learn_cutpoints=True, scale=4.0).double()
    f = (torch.randn(12, dtype=torch.float64) * 2).requires_grad_()
    y = torch.arange(12) % 4
    first = loss.first_cutpoint.detach().clone().requires_grad_()
    raw = (loss.raw_gaps.detach() + 0.3 * torch.randn(2, dtype=torch.float64)).requires_grad_()

    def fn(scores, first_cutpoint, raw_gaps):
        params = {"first_cutpoint": first_cutpoint, "raw_gaps": raw_gaps}
        return torch.func.functional_call(loss, params, (scores, y))

    assert torch.autograd.gradcheck(fn, (f, first, raw))


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_extreme_scores_finite_and_no_saturation(link):
    loss = CumulativeLinkLoss(4, link=link, reduction="none")
    f = torch.tensor([-1e4, 1e4, -30.0, 30.0], requires_grad=True)
    y = torch.tensor([3, 0, 3, 0])  # confidently wrong in both directions
    value = loss(f, y)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(f.grad).all()
    assert (f.grad[[0, 2]] < 0).all() and (f.grad[[1, 3]] > 0).all()  # still pushing the right way
    margin = 1e4 + 10.0  # distance from the score to the nearest cutpoint of the true class
    if link == "logit":
        assert value[0].item() == pytest.approx(margin, rel=1e-6)
        assert f.grad[0].item() == pytest.approx(-1.0, abs=1e-6)
        assert value[2].item() == pytest.approx(40.0, rel=1e-6)  # spacecutter: 34.54 (clamped), grad 0
    elif link == "probit":
        assert value[0].item() == pytest.approx(margin**2 / 2 + math.log(margin * math.sqrt(2 * math.pi)), rel=1e-6)
        assert f.grad[0].item() == pytest.approx(-margin, rel=1e-4)
    else:  # cloglog: -log(1 - F(x)) = exp(x) on the upper side, linear continuation above 50
        assert value[2].item() == pytest.approx(math.exp(40.0), rel=1e-5)
        assert value[1].item() == pytest.approx(margin, rel=1e-6)


def test_learned_cutpoints_are_parameters_and_stay_ordered_under_huge_steps():
    torch.manual_seed(0)
    loss = CumulativeLinkLoss(5, learn_cutpoints=True)
    assert {n for n, _ in loss.named_parameters()} == {"first_cutpoint", "raw_gaps"}
    before = loss.cutpoints.detach().clone()
    scores = torch.nn.Parameter(torch.randn(64))
    y = torch.randint(0, 5, (64,))
    opt = torch.optim.SGD([scores, *loss.parameters()], lr=1e4)
    for _ in range(50):
        opt.zero_grad()
        loss(scores, y).backward()
        opt.step()
        c = loss.cutpoints.detach()
        # ordered; increments strictly positive; every grade keeps a positive probability
        assert torch.isfinite(c).all() and (c[1:] >= c[:-1]).all()
        assert (torch.nn.functional.softplus(loss.raw_gaps) + 1e-4 > 0).all()
        assert (loss.log_class_probabilities(scores.detach()) > -math.inf).all()
        assert torch.isfinite(loss(scores, y))
    assert not torch.allclose(loss.cutpoints.detach(), before)  # the optimizer did move them


def test_class_weights_and_ignore_index():
    f = torch.randn(30, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    w = torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)
    per = CumulativeLinkLoss(3, reduction="none").double()(f, y)
    weighted = CumulativeLinkLoss(3, weight=w).double()(f, y)
    assert weighted.item() == pytest.approx(((per * w[y]).sum() / w[y].sum()).item(), rel=1e-12)
    y_ign = y.clone()
    y_ign[:10] = -100
    got = CumulativeLinkLoss(3).double()(f, y_ign)
    assert got.item() == pytest.approx(per[10:].mean().item(), rel=1e-12)


BAD = [
    ("K < 2", lambda: CumulativeLinkLoss(1), ValueError, r"num_classes.*>= 2"),
    ("grade out of range", lambda: CumulativeLinkLoss(3)(torch.zeros(2), torch.tensor([0, 3])), ValueError, r"target.*\[0, 2\]"),
    ("negative grade", lambda: CumulativeLinkLoss(3)(torch.zeros(2), torch.tensor([0, -2])), ValueError, r"target"),
    ("one score per class", lambda: CumulativeLinkLoss(3)(torch.zeros(2, 3), torch.tensor([0, 1])), ValueError, r"one score per sample.*\[2, 3\]"),
    ("float grades", lambda: CumulativeLinkLoss(3)(torch.zeros(2), torch.tensor([0.0, 1.0])), TypeError, r"target.*integer"),
    ("unknown link", lambda: CumulativeLinkLoss(3, link="cauchit"), ValueError, r"link.*'logit'"),
    ("NaN scores", lambda: CumulativeLinkLoss(3)(torch.tensor([float("nan"), 0.0]), torch.tensor([0, 1])), ValueError, r"input.*NaN"),
    ("length mismatch", lambda: CumulativeLinkLoss(3)(torch.zeros(3), torch.tensor([0, 1])), ValueError, r"target.*B = 3"),
    ("empty", lambda: CumulativeLinkLoss(3)(torch.zeros(0), torch.zeros(0, dtype=torch.long)), ValueError, r"empty"),
    ("CORN width", lambda: CORNLoss(4)(torch.zeros(2, 4), torch.tensor([0, 1])), ValueError, r"\[B, 3\]"),
    ("CDW-CE alpha", lambda: CDWCELoss(alpha=0.0), ValueError, r"alpha"),
]


@pytest.mark.parametrize("desc,call,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(desc, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_cdw_ce_formula_stability_and_gradcheck():
    x = torch.randn(9, 5, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (9,))
    p = torch.softmax(x, 1)
    d = (torch.arange(5).unsqueeze(0) - y.unsqueeze(1)).abs().double()
    for alpha in (1.0, 2.0, 5.0):
        ref = -(d**alpha * torch.log(1 - p)).sum(1).mean()
        assert CDWCELoss(alpha=alpha)(x, y).item() == pytest.approx(ref.item(), rel=1e-10)
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: CDWCELoss(5)(z, y), (xg,))
    # a confident wrong logit: log(1 - p) ~ -(margin); finite where a naive form gives NaN / inf
    for big in (100.0, 1e4):
        z = torch.tensor([[big, 0.0, 0.0]], requires_grad=True)
        out = CDWCELoss(alpha=1.0)(z, torch.tensor([2]))
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(z.grad).all()
        assert out.item() == pytest.approx(2 * (big - math.log(2)), rel=1e-5)


def test_squared_emd_closed_form():
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (7,))
    cdf = torch.softmax(x, 1).cumsum(1)
    true = (torch.arange(4).unsqueeze(0) >= y.unsqueeze(1)).double()
    assert SquaredEMDLoss()(x, y).item() == pytest.approx(((cdf - true) ** 2).sum(1).mean().item(), rel=1e-12)
    point_mass = torch.full((1, 4), -1e4)
    point_mass[0, 3] = 1e4
    assert SquaredEMDLoss()(point_mass, torch.tensor([0])).item() == pytest.approx(3.0)
    assert torch.autograd.gradcheck(lambda z: SquaredEMDLoss()(z, y), (x.clone().requires_grad_(),))


def test_corn_equals_coral_pytorch_formula_and_readout():
    k = 5
    x = torch.randn(20, k - 1, dtype=torch.float64)
    y = torch.randint(0, k, (20,))
    # coral-pytorch corn_loss: per task, BCE on the subset y > task - 1, summed, / total subset size
    total, count = 0.0, 0
    for task in range(k - 1):
        mask = y > task - 1
        if mask.any():
            lab = (y[mask] > task).double()
            total += F.binary_cross_entropy_with_logits(x[mask, task], lab, reduction="sum").item()
            count += int(mask.sum())
    assert CORNLoss(k)(x, y).item() == pytest.approx(total / count, rel=1e-12)
    probs = CORNLoss(k).class_probabilities(x)
    torch.testing.assert_close(probs.sum(1), torch.ones(20, dtype=torch.float64))
    assert (probs >= -1e-12).all()
    survival = torch.cumprod(torch.sigmoid(x), 1)
    assert torch.equal(CORNLoss(k).predict(x), (survival > 0.5).sum(1))
    # K = 2: a single logit
    assert CORNLoss(2)(x[:, 0], y.clamp(max=1)).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(x[:, 0], y.clamp(max=1).double()).item(), rel=1e-12)


def test_corn_reduction_none_is_each_samples_sum_over_its_tasks():
    """CORN's reduction="none": sample i's binary cross-entropies summed over the tasks k <= y_i it takes part in
    (written out task by task here), 0 for an ignored sample; "sum" is their sum, "mean" divides by the pairs."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)  # K = 4 grades, 3 conditional tasks
    y = torch.tensor([0, 1, 2, 3, -100, 2])
    expected = torch.zeros(6, dtype=torch.float64)
    pairs = 0
    for i in range(6):
        if y[i] < 0:
            continue
        for k in range(3):
            if y[i] >= k:  # task k: P(y > k | y > k - 1), trained on samples with y > k - 1
                label = torch.tensor(float(y[i] > k), dtype=torch.float64)
                expected[i] += F.binary_cross_entropy_with_logits(x[i, k], label)
                pairs += 1
    got = CORNLoss(4, reduction="none")(x, y)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    assert CORNLoss(4, reduction="sum")(x, y).item() == pytest.approx(expected.sum().item(), rel=1e-12)
    assert CORNLoss(4)(x, y).item() == pytest.approx(expected.sum().item() / pairs, rel=1e-12)
