"""The custom ops behind the losses (``torch.ops.medloss.*``): torch.library.opcheck (schema,
fake implementation, registered autograd, AOT dispatch), values against plain float64 formulas,
and the CPU kernel against the PyTorch implementation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.library import opcheck

import medloss
from medloss.ops import softmax_focal, softmax_stats
from medloss.ops.cpu_kernel import native_kernels_available
from medloss.ops.reference import TERM_FOCAL, TERM_NONE, TERM_WCE

NATIVE = [True, False] if native_kernels_available() else [False]


def _path_id(native) -> str:
    return "kernel" if native else "pytorch"


ops = torch.ops.medloss


def _images(dtype=torch.float64, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, 4, 5, generator=g, dtype=dtype)
    t = torch.randint(0, c, (2, 4, 5), generator=g)
    t[0, 0, :3] = -100
    return x, t


def _reference_stats(x, t, ignore_index=-100):
    """TP, sum p, sum y per image and class from softmax and a one-hot target, in float64."""
    p = torch.softmax(x.double(), 1)
    valid = (t != ignore_index).double()
    onehot = F.one_hot(t.clamp(min=0), x.shape[1]).movedim(-1, 1).double() * valid.unsqueeze(1)
    dims = tuple(range(2, x.ndim))
    return torch.stack([(p * onehot).sum(dims), (p * valid.unsqueeze(1)).sum(dims), onehot.sum(dims)], 1)


def _reference_focal(x, t, gamma, weight=None, ignore_index=-100):
    logp = torch.log_softmax(x.double(), 1)
    valid = t != ignore_index
    tt = t.clamp(min=0)
    lt = logp.gather(1, tt.unsqueeze(1)).squeeze(1)
    w = 1.0 if weight is None else weight.double()[tt]
    return (-(w * (1 - lt.exp()) ** gamma * lt) * valid).sum()


@pytest.mark.parametrize("native", NATIVE, ids=_path_id)
@pytest.mark.parametrize("term", [TERM_NONE, TERM_FOCAL, TERM_WCE], ids=["none", "focal", "wce"])
def test_softmax_stats_opcheck(native, term):
    x, t = _images()
    x.requires_grad_(True)
    weight = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64) if term == TERM_FOCAL else None
    with medloss.implementation("auto" if native else "pytorch"):
        opcheck(ops.softmax_stats, (x, t, -100, term, weight, 2.0, 0.5, 0.7, True))


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
def test_softmax_stats_values(native):
    x, t = _images()
    weight = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    with medloss.implementation("auto" if native else "pytorch"):
        stats, term, n_bad, labels8, _ = ops.softmax_stats(x, t, -100, TERM_FOCAL, weight, 2.0, 2.0, 0.5)
    torch.testing.assert_close(stats, _reference_stats(x, t))
    torch.testing.assert_close(term, _reference_focal(x, t, 2.0, weight))
    assert int(n_bad) == 0
    expected8 = t.clamp(min=0).reshape(2, -1).to(torch.uint8)
    expected8[t.reshape(2, -1) == -100] = 255
    assert torch.equal(labels8, expected8)


@pytest.mark.parametrize("native", NATIVE, ids=_path_id)
@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "all counted"])
@pytest.mark.parametrize("c", [2, 3, 5, 14, 15], ids=lambda c: f"{c} classes")
def test_softmax_stats_gradient_of_the_counts(native, ignored, c):
    """The counts' backward (no per-pixel term) against float64 autograd of softmax and one-hot sums, with
    and without ignored pixels."""
    x, t = _images(seed=11, c=c)
    if not ignored:
        t = t.clamp(min=0)
    grad, expected = _op_and_reference_gradients(x, t, native, seed=12)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-13)


def _op_and_reference_gradients(x, t, native, *, seed, term=TERM_NONE, beta=0.5, reference_term=None):
    """Gradients of ``sum(stats * G) + 0.3 term`` (``G`` random, seeded) through the op (``native``: one of
    ``PATHS``) and through float64 autograd of the reference counts plus ``reference_term(x, t)``."""
    g_stats = torch.randn(2, 3, x.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("auto" if native else "pytorch"):
        stats, value, *_ = ops.softmax_stats(xa, t, -100, term, None, 0.0, 0.0, beta)
        ((stats * g_stats).sum() + 0.3 * value).backward()
    xr = x.clone().requires_grad_(True)
    loss = (_reference_stats(xr, t) * g_stats).sum()
    if reference_term is not None:
        loss = loss + 0.3 * reference_term(xr, t)
    loss.backward()
    return xa.grad, xr.grad


@pytest.mark.parametrize("term", [TERM_NONE, TERM_FOCAL, TERM_WCE], ids=["none", "focal", "wce"])
@pytest.mark.parametrize("native", NATIVE, ids=_path_id)
def test_a_retained_graph_gives_the_same_gradient_twice(native, term):
    """What the forward saves is read, never written, by the backward: a retained graph's second backward
    gives the float64 reference gradient again; the byte labels are not differentiable."""
    x, t = _images(seed=13)
    g_stats = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("auto" if native else "pytorch"):
        stats, value, _, labels8, _ = ops.softmax_stats(xa, t, -100, term, None, 2.0, 2.0, 0.7)
    assert not labels8.requires_grad  # for the backward only: differentiating it is an error, not a silent zero
    loss = (stats * g_stats).sum() + 0.3 * value
    xr = x.clone().requires_grad_(True)
    ref = (_reference_stats(xr, t) * g_stats).sum()
    if term == TERM_FOCAL:
        ref = ref + 0.3 * _reference_focal(xr, t, 2.0)
    elif term == TERM_WCE:
        ref = ref + 0.3 * _reference_wce(xr, t, 0.7)
    (expected,) = torch.autograd.grad(ref, xr)
    for _ in range(2):
        (grad,) = torch.autograd.grad(loss, xa, retain_graph=True)
        torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("native", NATIVE, ids=_path_id)
def test_softmax_stats_sums_the_logits_when_asked(native):
    """The op's last output is the sum of the logits with ``sum_logits`` (0 without): what the losses'
    eager finiteness check reads instead of a pass of its own."""
    x, t = _images()
    with medloss.implementation("auto" if native else "pytorch"):
        *_, total = ops.softmax_stats(x.requires_grad_(True), t, -100, TERM_NONE, None, 0.0, 0.0, 0.5, True)
        *_, nothing = ops.softmax_stats(x, t, -100, TERM_NONE, None, 0.0, 0.0, 0.5, False)
    torch.testing.assert_close(total, x.detach().sum(), rtol=1e-12, atol=1e-12)
    assert float(nothing) == 0.0


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
@pytest.mark.parametrize("name", ["DiceLoss", "ComboLoss", "AsymmetricUnifiedFocalLoss", "HybridFocalLoss",
                                  "AsymmetricFocalLoss", "FocalLoss"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["counted", "ignored"])
def test_non_finite_logits_are_an_error_on_every_path(native, name, bad, where):
    """The finiteness check of the losses built on ``softmax_stats`` and ``softmax_focal`` (the op's sum
    of the logits, then an exact count): NaN / +Inf / -Inf anywhere, an ignored pixel included, through the kernel and the
    PyTorch implementation; huge finite logits whose sum overflows are no error."""
    from medloss import losses

    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    t = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(4))
    t[1, 2, 2] = -100
    x[1, 0, 2, 2 if where == "ignored" else 1] = bad
    loss = getattr(losses, name)()
    with medloss.implementation("auto" if native else "pytorch"), pytest.raises(ValueError, match=r"`input` contains non-finite values"):
        loss(x.requires_grad_(True), t)
    with medloss.implementation("auto" if native else "pytorch"), medloss.value_checks(False):
        value = loss(x, t)  # unchecked (as under torch.compile): no error from inside the op either
    if math.isnan(bad):
        assert torch.isnan(value)
    huge = torch.full((2, 2, 4, 4), 3e38)
    huge[:, 0] = -3e38
    with medloss.implementation("auto" if native else "pytorch"):
        assert torch.isfinite(losses.DiceLoss()(huge.requires_grad_(True), torch.ones(2, 4, 4, dtype=torch.long)))


def _reference_focal_by_class(x, t, gamma_bg, gamma_fg, weight, ignore_index=-100, per_position=False):
    """sum over counted pixels of w_t * -(1 - p_t)^gamma_t log p_t, gamma_bg where t = 0, in float64
    autograd (``per_position``: each pixel's term, 0 where nothing is counted)."""
    logp = torch.log_softmax(x, 1)
    valid = t != ignore_index
    tt = t.clamp(min=0)
    lt = logp.gather(1, tt.unsqueeze(1)).squeeze(1)
    gamma = torch.where(tt == 0, gamma_bg, gamma_fg).to(x.dtype)
    # (1 - p)^gamma with its derivative's limit at p = 1 (0: the product with log p = 0 vanishes) for gamma < 1
    one_minus_p = -torch.expm1(lt)
    powered = torch.where(one_minus_p > 0, one_minus_p, 1.0) ** gamma
    modulator = torch.where(gamma == 0, torch.ones_like(lt), torch.where(one_minus_p > 0, powered, 0.0))
    terms = -(weight.to(x.dtype)[tt] * modulator * lt) * valid
    return terms if per_position else terms.sum()


# background / other class weights (the Unified family's), with every gamma pairing the losses use
# and one they do not; with ignored pixels and without
@pytest.mark.parametrize("gammas", [(2.0, 2.0), (0.5, 0.0), (2.0, 0.5), (0.0, 0.0)], ids=str)
@pytest.mark.parametrize("weight", [[0.4, 0.6, 0.6], [1.0, 1.0, 1.0], [0.2, 1.0, 3.0]], ids=str)
@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "all counted"])
def test_softmax_stats_focal_term_and_gradient_pytorch_path(gammas, weight, ignored):
    x, t = _images()
    if not ignored:
        t = t.clamp(min=0)
    w = torch.tensor(weight, dtype=torch.float64)
    g_stats = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("pytorch"):
        stats, term, *_ = ops.softmax_stats(xa, t, -100, TERM_FOCAL, w, *gammas, 0.5)
        ((stats * g_stats).sum() + 0.7 * term).backward()
    xr = x.clone().requires_grad_(True)
    ref_stats = _reference_stats(xr, t)
    ref_term = _reference_focal_by_class(xr, t, *gammas, w)
    ((ref_stats * g_stats).sum() + 0.7 * ref_term).backward()
    torch.testing.assert_close(term, ref_term.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xr.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
@pytest.mark.parametrize("scale", [3.0, 30.0, 300.0], ids=lambda s: f"logits x{s:g}")
def test_softmax_stats_focal_term_float32_tiny_and_underflowing_p_t(native, scale):
    """float32 logits whose target probabilities reach 1e-30 (x30) and underflow to 0 (x300), with
    ignored pixels: the focal term equals float64 log-softmax arithmetic (log p_t comes from the log-softmax,
    never from the log of a probability)."""
    x, t = _images(dtype=torch.float32, seed=4)
    x = x * scale
    w = torch.tensor([0.4, 0.6, 0.6])
    with medloss.implementation("auto" if native else "pytorch"):
        _, term, *_ = ops.softmax_stats(x, t, -100, TERM_FOCAL, w, 0.5, 0.0, 0.5)
    expected = _reference_focal_by_class(x.double(), t, 0.5, 0.0, w.double())
    torch.testing.assert_close(term.double(), expected, rtol=2e-6, atol=0)


@pytest.mark.parametrize("scale", [1.0, 10.0, 30.0, 300.0], ids=lambda s: f"logits x{s:g}")
def test_softmax_stats_focal_gradient_when_target_probabilities_vanish(scale):
    """The focal term's gradient on the PyTorch implementation against float64 autograd of log-softmax, from
    moderate logits (x1: smallest p_t 0.016) to target probabilities of 4e-16 (x10), 7e-47 (x30) and an
    underflow to 0 (x300)."""
    x, t = _images(seed=16)
    x = x * scale
    w = torch.tensor([0.4, 0.6, 0.6], dtype=torch.float64)
    g_stats = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("pytorch"):
        stats, term, *_ = ops.softmax_stats(xa, t, -100, TERM_FOCAL, w, 0.5, 2.0, 0.5)
    (grad,) = torch.autograd.grad((stats * g_stats).sum() + 0.7 * term, xa)
    xr = x.clone().requires_grad_(True)
    ref = (_reference_stats(xr, t) * g_stats).sum() + 0.7 * _reference_focal_by_class(xr, t, 0.5, 2.0, w)
    (expected,) = torch.autograd.grad(ref, xr)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


def _reference_wce(x, t, beta, ignore_index=-100):
    """sum over counted pixels of -(beta log p_t + (1 - beta) sum_{c != t} log(1 - p_c)), with
    log(1 - p_c) = logsumexp_{j != c} x_j - logsumexp x in float64: exact for any logit."""
    x = x.double()
    lse = torch.logsumexp(x, 1)
    valid = t != ignore_index
    tt = t.clamp(min=0)
    total = torch.zeros_like(lse)
    for c in range(x.shape[1]):
        others = x.clone()
        others[:, c] = float("-inf")
        log1m = torch.logsumexp(others, 1) - lse
        total = total + torch.where(tt == c, beta * (x[:, c] - lse), (1 - beta) * log1m)
    return -(total * valid).sum()


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("scale", [1.0, 10.0, 30.0, 300.0], ids=lambda s: f"logits x{s:g}")
@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "all counted"])
@pytest.mark.parametrize("c", [2, 3, 4, 7], ids=lambda c: f"{c} classes")
@pytest.mark.parametrize("beta", [0.7, 0.5], ids=lambda b: f"beta {b}")
def test_softmax_stats_weighted_ce_term(native, dtype, scale, ignored, c, beta):
    """Combo's term against float64 log-sum-exp arithmetic, from moderate logits to confident
    mistakes whose probabilities leave float range (x300)."""
    x, t = _images(dtype=dtype, seed=5, c=c)
    x = x * scale
    if not ignored:
        t = t.clamp(min=0)
    with medloss.implementation("auto" if native else "pytorch"):
        _, term, *_ = ops.softmax_stats(x, t, -100, TERM_WCE, None, 0.0, 0.0, beta)
    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(term.double(), _reference_wce(x, t, beta), rtol=rtol, atol=0)


@pytest.mark.parametrize("native", NATIVE, ids=_path_id)
@pytest.mark.parametrize("scale", [1.0, 10.0, 30.0, 300.0], ids=lambda s: f"logits x{s:g}")
@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "all counted"])
@pytest.mark.parametrize("c", [2, 3, 4, 7], ids=lambda c: f"{c} classes")
def test_softmax_stats_weighted_ce_gradient(native, scale, ignored, c):
    """The op's backward (counts and Combo's term together) against float64 autograd of the
    log-sum-exp reference, from moderate logits to probabilities that leave float range."""
    x, t = _images(seed=6, c=c)
    x = x * scale
    if not ignored:
        t = t.clamp(min=0)
    grad, expected = _op_and_reference_gradients(
        x, t, native, seed=7, term=TERM_WCE, beta=0.7, reference_term=lambda x_, t_: _reference_wce(x_, t_, 0.7)
    )
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 10.0], ids=lambda s: f"logits x{s:g}")
@pytest.mark.parametrize("c", [2, 4, 7], ids=lambda c: f"{c} classes")
def test_softmax_stats_weighted_ce_gradient_float32_pytorch_path(scale, c):
    """float32 logits with confident right and wrong classes (1 - p down to
    ~1e-20): the gradient as exact as float32 softmax allows, against float64 autograd."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, c, 16, 16, generator=g) * scale
    t = torch.randint(0, c, (2, 16, 16), generator=g)
    x[0, 0, :8] += 5.0 * scale  # class 0 confident: right where t == 0, wrong elsewhere
    g_stats = torch.randn(2, 3, c, generator=g, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("pytorch"):
        stats, term, *_ = ops.softmax_stats(xa, t, -100, TERM_WCE, None, 0.0, 0.0, 0.7)
        ((stats.double() * g_stats).sum() + 0.3 * term.double()).backward()
    xr = x.double().requires_grad_(True)
    ((_reference_stats(xr, t) * g_stats).sum() + 0.3 * _reference_wce(xr, t, 0.7)).backward()
    torch.testing.assert_close(xa.grad.double(), xr.grad, rtol=1e-4, atol=1e-6)


def test_weighted_ce_gradient_of_a_confident_wrong_class():
    """A wrong class 60 logits ahead (``1 - p`` ~ 1e-26, ``dL/dp`` ~ 1e26): the fused form (which
    applies here) shifts it to 0, and the gradient matches float64 log-sum-exp autograd to 1e-9."""
    x, t = _images(seed=18)
    x[:, 0] += 60.0  # class 0: confident, wrong wherever t != 0
    grad, expected = _op_and_reference_gradients(
        x, t, False, seed=19, term=TERM_WCE, beta=0.7,
        reference_term=lambda x_, t_: _reference_wce(x_, t_, 0.7),
    )
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not native_kernels_available(), reason="needs the compiled kernels (no C compiler at install)")
def test_backward_follows_the_kernel_choice_of_its_forward(monkeypatch):
    """A graph built inside ``implementation("pytorch")`` is differentiated by the PyTorch path even when
    ``backward()`` runs after the block (as benchmarks and training loops do), and the other way round."""
    from medloss.ops import cpu_kernel as _native

    calls = []
    real = _native.softmax_pass

    def counting(*args, **kwargs):
        calls.append(kwargs.get("grad", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(_native, "softmax_pass", counting)
    x, t = _images(dtype=torch.float32)
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("pytorch"):
        stats, term, *_ = ops.softmax_stats(xa, t, -100, TERM_FOCAL, None, 2.0, 2.0, 0.5)
        total, _, _, *_ = ops.softmax_focal(xa, t, -100, None, 2.0, 2.0, 0.0, False)
    (stats.sum() + term + total).backward()
    assert calls == []
    xb = x.clone().requires_grad_(True)
    stats, term, *_ = ops.softmax_stats(xb, t, -100, TERM_FOCAL, None, 2.0, 2.0, 0.5)
    total, _, _, *_ = ops.softmax_focal(xb, t, -100, None, 2.0, 2.0, 0.0, False)
    with medloss.implementation("pytorch"):
        (stats.sum() + term + total).backward()
    assert calls == [False, False, True, True]  # both forwards, then both backwards, in the kernel
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6)  # and the two paths agree


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
def test_softmax_stats_counts_bad_labels_and_counts_them_nowhere(native):
    x, t = _images()
    bad = t.clone()
    bad[1, 2, 2], bad[1, 3, 3] = 3, -7  # out of range, not ignore_index
    ignored = bad.clone()
    ignored[1, 2, 2] = ignored[1, 3, 3] = -100
    with medloss.implementation("auto" if native else "pytorch"):
        stats, _, n_bad, *_ = ops.softmax_stats(x, bad, -100, TERM_NONE, None, 0.0, 0.0, 0.5)
    assert int(n_bad) == 2
    torch.testing.assert_close(stats, _reference_stats(x, ignored))


def test_softmax_stats_ignore_index_inside_the_class_range():
    """ignore_index = 0 (ignore the background): those pixels count nowhere, class 0 has no TP."""
    x, t = _images()
    t = t.clamp(min=0)
    with medloss.implementation("pytorch"):
        stats, _, n_bad, *_ = ops.softmax_stats(x, t, 0, TERM_NONE, None, 0.0, 0.0, 0.5)
    masked = torch.where(t == 0, -100, t)
    torch.testing.assert_close(stats, _reference_stats(x, masked))
    assert int(n_bad) == 0


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
@pytest.mark.parametrize("per_position", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_focal_opcheck(native, per_position, smoothing):
    x, t = _images()
    x.requires_grad_(True)
    gammas = (2.0, 2.0) if smoothing else (2.0, 0.0)
    with medloss.implementation("auto" if native else "pytorch"):
        opcheck(ops.softmax_focal, (x, t, -100, torch.tensor([0.3, 0.7, 0.7], dtype=torch.float64), *gammas,
                                    smoothing, per_position, True))


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
def test_softmax_focal_values(native):
    x, t = _images()
    with medloss.implementation("auto" if native else "pytorch"):
        total, counts, n_bad, *_ = ops.softmax_focal(x, t, -100, None, 1.5, 1.5, 0.0, False)
    torch.testing.assert_close(total, _reference_focal(x, t, 1.5))
    valid = t[t != -100]
    torch.testing.assert_close(counts, torch.bincount(valid, minlength=3).double())
    assert int(n_bad) == 0


@pytest.mark.parametrize("gammas", [(2.0, 2.0), (0.5, 0.0), (2.0, 0.5)], ids=str)
@pytest.mark.parametrize("weight", [None, [0.4, 0.6, 0.6], [0.2, 1.0, 3.0]], ids=str)
@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "all counted"])
@pytest.mark.parametrize("per_position", [False, True], ids=["sum", "per position"])
def test_softmax_focal_value_and_gradient_pytorch_path(gammas, weight, ignored, per_position):
    """The focal op's PyTorch path (per-class gammas, background / other and general class weights,
    every pixel counted or not) against float64 autograd of log-softmax arithmetic."""
    x, t = _images(seed=9)
    if not ignored:
        t = t.clamp(min=0)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("pytorch"):
        out, *_ = ops.softmax_focal(xa, t, -100, w, *gammas, 0.0, per_position)
        g_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
        (out * g_out).sum().backward()
    xr = x.clone().requires_grad_(True)
    ref = _reference_focal_by_class(xr, t, *gammas, torch.ones(3, dtype=torch.float64) if w is None else w,
                                    per_position=per_position)
    (ref * g_out).sum().backward()
    torch.testing.assert_close(out, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xr.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
@pytest.mark.parametrize("scale", [3.0, 30.0, 300.0], ids=lambda s: f"logits x{s:g}")
def test_softmax_focal_float32_tiny_and_underflowing_p_t(native, scale):
    """As the statistics op's test above, for the focal op: value and gradient of float32 logits whose
    target probabilities reach 1e-30 or underflow, against float64 (log p_t from the softmax while
    every p_t is a normal float, from the logits otherwise; the slope's limit below)."""
    x, t = _images(dtype=torch.float32, seed=4)
    x = x * scale
    w = torch.tensor([0.4, 0.6, 0.6])
    xa = x.clone().requires_grad_(True)
    with medloss.implementation("auto" if native else "pytorch"):
        total, *_ = ops.softmax_focal(xa, t, -100, w, 0.5, 0.0, 0.0, False)
        total.backward()
    xr = x.double().requires_grad_(True)
    expected = _reference_focal_by_class(xr, t, 0.5, 0.0, w.double())
    expected.backward()
    torch.testing.assert_close(total.double(), expected.detach(), rtol=2e-6, atol=0)
    torch.testing.assert_close(xa.grad.double(), xr.grad, rtol=1e-4, atol=1e-6)


def test_softmax_focal_with_smoothing_at_gamma_0_is_cross_entropy():
    x, t = _images()
    xa, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with medloss.implementation("pytorch"):
        total, counts, _, *_ = ops.softmax_focal(xa, t, -100, None, 0.0, 0.0, 0.1, False)
    expected = F.cross_entropy(xr, t, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(counts, torch.bincount(t[t >= 0], minlength=3).double())
    total.backward()
    expected.backward()
    torch.testing.assert_close(xa.grad, xr.grad)


@pytest.mark.parametrize("masked", [False, True])
def test_sigmoid_ops_opcheck(masked):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (2, 3, 4, 4), generator=g).double()
    valid = torch.rand(2, 1, 4, 4, generator=g) > 0.2 if masked else None
    opcheck(ops.sigmoid_stats, (x, y, valid))
    a = torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64)
    for per_position in (False, True):
        opcheck(ops.sigmoid_focal, (x, y, valid, a, 1.0 - a, 2.0, 0.1, per_position))


def test_sigmoid_focal_at_gamma_0_is_binary_cross_entropy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)
    y = torch.rand(3, 2, 5, generator=g, dtype=torch.float64)  # soft labels
    one = torch.ones(1, dtype=torch.float64)
    value = ops.sigmoid_focal(x, y, None, one, one, 0.0, 0.0, True)
    torch.testing.assert_close(value, F.binary_cross_entropy_with_logits(x, y, reduction="none"))


def test_ops_stay_on_the_input_device_without_host_syncs():
    """Fake CUDA tensors: every op's forward runs its fake implementation and needs no host data."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 3, 8, 8, device="cuda")
        t = torch.empty(2, 8, 8, dtype=torch.long, device="cuda")
        stats, term, n_bad, labels8, _ = ops.softmax_stats(x, t, -100, TERM_WCE, None, 0.0, 0.0, 0.5)
        assert stats.device.type == "cuda" and stats.shape == (2, 3, 3) and labels8.shape == (2, 64)
        value, counts, _, *_ = ops.softmax_focal(x, t, -100, None, 2.0, 2.0, 0.0, True)
        assert value.shape == (2, 8, 8) and value.device.type == "cuda"
        assert ops.sigmoid_stats(x, x, None).shape == (2, 3, 3)


def test_pytorch_implementations_make_no_host_sync_on_cuda():
    """The PyTorch implementations (what a GPU runs) on fake CUDA tensors: any .item() / .numpy()
    / data-dependent branch would raise here."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 3, 8, 8, device="cuda")
        t = torch.empty(2, 8, 8, dtype=torch.long, device="cuda")
        w = torch.empty(3, device="cuda")
        g = torch.empty(2, 3, device="cuda")
        for term in (TERM_NONE, TERM_FOCAL, TERM_WCE):
            stats, total, n_bad, labels8, _ = softmax_stats._pytorch(x, t, -100, term, w, 2.0, 0.0, 0.5, True)
            assert labels8.shape == (2, 64) and labels8.dtype == torch.uint8
            grad = softmax_stats._pytorch_backward(x, t, labels8, -100, term, w, 2.0, 0.0, 0.5, g, g, total)
            assert grad.shape == x.shape and grad.device.type == "cuda"
        for smoothing in (0.0, 0.1):
            for per_position in (False, True):
                value, counts, n_bad, _ = softmax_focal._pytorch(x, t, -100, w, 2.0, 2.0, smoothing, per_position, True)
                grad = softmax_focal._pytorch_backward(x, t, -100, w, 2.0, 2.0, smoothing, value)
                assert grad.shape == x.shape and grad.device.type == "cuda"


def test_the_pytorch_implementations_have_no_cpu_only_branch():
    """What a GPU runs without Triton is what the CPU runs without the C kernel: no branch in the ops' PyTorch
    implementations asks for the device (the C kernel is registered for CPU tensors apart)."""
    import inspect

    from medloss.ops import _terms, logit_link_nll, reference, sigmoid_focal, sigmoid_stats

    for module in (_terms, reference, softmax_stats, softmax_focal, sigmoid_stats, sigmoid_focal, logit_link_nll):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and name != "_":  # "_": the fake and C-kernel registrations
                assert "device.type" not in inspect.getsource(fn), f"{module.__name__}.{name}"


def _meta_inputs(entry, mode):
    if entry.output == "score":
        return torch.empty(6, 1, device="meta"), torch.empty(6, dtype=torch.long, device="meta")
    if entry.n_outputs(3) == 2:
        return torch.empty(6, 2, device="meta"), torch.empty(6, dtype=torch.long, device="meta")
    if "ordinal" in entry.tasks:
        return torch.empty(6, 3, device="meta"), torch.empty(6, dtype=torch.long, device="meta")
    if "detection" in entry.tasks:
        return torch.empty(2, 4, device="meta"), torch.empty(2, 4, device="meta")
    if mode == "binary":
        return torch.empty(2, 1, 8, 8, device="meta"), torch.empty(2, 1, 8, 8, device="meta")
    return torch.empty(2, 3, 8, 8, device="meta"), torch.empty(2, 8, 8, dtype=torch.long, device="meta")


def _loss_cases():
    from medloss.losses import available_losses

    for entry in available_losses():
        modes = ["multiclass", "binary"] if entry.accepts("mode") and not {"ordinal", "detection"} & set(entry.tasks) else [None]
        for mode in modes:
            yield pytest.param(entry, mode, id=f"{entry.name}-{mode or 'default'}")


@pytest.mark.parametrize("entry,mode", list(_loss_cases()))
def test_every_loss_runs_on_the_input_device_without_host_sync(entry, mode):
    """Forward and backward of every registered loss on ``meta`` tensors (no data: any .item(),
    .numpy(), float(tensor) or CPU-only step raises) with value checks off, which is what a
    training step runs under torch.compile or ``medloss.value_checks(False)``."""
    from medloss.losses import get_loss

    if "ordinal" in entry.tasks:
        loss = get_loss(entry.name, num_classes=3)
    else:
        loss = get_loss(entry.name) if mode is None else get_loss(entry.name, mode=mode)
    loss = loss.to("meta")
    x, t = _meta_inputs(entry, mode)
    x.requires_grad_(True)
    with medloss.value_checks(False):
        value = loss(x, t)
        value.backward()
    assert value.device.type == "meta" and x.grad.device.type == "meta" and x.grad.shape == x.shape


def test_logit_link_nll_opcheck_and_value():
    """The cumulative-link (logit) NLL op: opcheck, and the value -log(sigmoid(b) - sigmoid(a))."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(9, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([-1.0, 0.2, 1.5], dtype=torch.float64)
    c_ext = torch.cat([torch.tensor([-float("inf")], dtype=torch.float64), c,
                       torch.tensor([float("inf")], dtype=torch.float64)]).requires_grad_(True)
    widths = c[1:] - c[:-1]
    log_width = torch.cat([torch.zeros(1, dtype=torch.float64), torch.log1p(-torch.exp(-widths)),
                           torch.zeros(1, dtype=torch.float64)]).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 2])
    opcheck(ops.logit_link_nll, (f, c_ext, log_width, y))
    nll = ops.logit_link_nll(f, c_ext, log_width, y)[0]
    upper = torch.sigmoid(c_ext[y + 1] - f)
    lower = torch.sigmoid(c_ext[y] - f)
    torch.testing.assert_close(nll, -torch.log(upper - lower))


@pytest.mark.parametrize("per_position", [False, True])
def test_softmax_focal_rows_opcheck_and_value(per_position):
    """Rows [N, C] (classification) take their own layout; the value is still the focal formula."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, 1, -100, 2, 0, 1])
    w = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    opcheck(ops.softmax_focal, (x, t, -100, w, 2.0, 0.5, 0.0, per_position))
    value, counts, n_bad, *_ = ops.softmax_focal(x, t, -100, w, 2.0, 2.0, 0.0, False)
    torch.testing.assert_close(value, _reference_focal(x.detach().unsqueeze(-1), t.unsqueeze(-1), 2.0, w))
    torch.testing.assert_close(counts, torch.tensor([2.0, 2.0, 1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("n_classes", [40, 300])  # past the slice loops (32) and past byte labels (255)
def test_many_classes_take_the_general_paths(n_classes):
    """Dice and focal values and gradients against plain float64 autograd formulas when the class
    count leaves the kernel, the per-class slice loops and the byte labels behind."""
    from medloss.losses import DiceLoss, FocalLoss

    g = torch.Generator().manual_seed(n_classes)
    x = torch.randn(2, n_classes, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, n_classes, (2, 3, 4), generator=g)
    t[0, 0, 0] = -100
    valid = (t != -100).double()
    onehot = F.one_hot(t.clamp(min=0), n_classes).movedim(-1, 1).double() * valid.unsqueeze(1)

    def naive_dice(z):
        p = torch.softmax(z, 1) * valid.unsqueeze(1)
        tp, sp, sy = (p * onehot).sum((2, 3)), p.sum((2, 3)), onehot.sum((2, 3))
        return (1 - (2 * tp + 1e-5) / (sp + sy + 1e-5)).mean()

    def naive_focal(z):
        lt = (torch.log_softmax(z, 1) * onehot).sum(1)
        return (-(1 - lt.exp()) ** 2 * lt * valid).sum() / valid.sum()

    for ours, naive in ((DiceLoss(), naive_dice), (FocalLoss(gamma=2.0), naive_focal)):
        (g_ours,) = torch.autograd.grad(ours(x, t), x)
        (g_ref,) = torch.autograd.grad(naive(x), x)
        torch.testing.assert_close(ours(x, t), naive(x))
        torch.testing.assert_close(g_ours, g_ref)


def _segmentation_losses():
    """The segmentation losses built on the fused ops (the train-time calibration losses are plain PyTorch
    operations: their graph keeps what autograd keeps, docs/calibration.md says how much)."""
    from medloss.losses import available_losses

    return [e.name for e in available_losses() if "segmentation" in e.tasks and e.accepts("mode")
            and not e.factory.__module__.endswith(".calibrating")]


@pytest.mark.parametrize("native", NATIVE, ids=lambda n: "kernel" if n else "pytorch")
@pytest.mark.parametrize("name", _segmentation_losses())
def test_autograd_keeps_a_byte_per_pixel_beyond_the_inputs(name, native):
    """The memory budget of every registered segmentation loss (the registry is the list), multiclass logits:
    what the autograd graph keeps between forward and backward, beyond the logits and the target, is one byte
    per pixel (the labels) and a few [B, C]-sized counts (1 KiB here), on either implementation."""
    from medloss.losses import get_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=g, requires_grad=True)
    t = torch.randint(0, 4, (2, 32, 32), generator=g)
    storages: dict[int, int] = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    loss_fn = get_loss(name, mode="multiclass")
    with medloss.implementation("auto" if native else "pytorch"), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(x, t)
    for ptr in (x.untyped_storage().data_ptr(), t.untyped_storage().data_ptr()):
        storages.pop(ptr, None)
    beyond = sum(storages.values())
    assert beyond <= t.numel() + 1024, (name, beyond)
    loss.backward()
    assert torch.isfinite(x.grad).all()
