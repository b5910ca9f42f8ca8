"""Run by tests/test_triton.py in a process of its own with TRITON_INTERPRET=1 (Triton's interpreter runs the
kernels on CPU tensors): the Triton softmax statistics against the float64 reference formula, and the number
of kernel launches of each loss that uses them. Prints one line per case; exits non-zero on a failure."""

import itertools
import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import torch  # noqa: E402
import triton.runtime.interpreter as interpreter  # noqa: E402

import medloss  # noqa: E402
from medloss.losses import (  # noqa: E402
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    ComboLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    HybridFocalLoss,
    JaccardLoss,
    MCCLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    SymmetricUnifiedFocalLoss,
    TverskyLoss,
)
from medloss.ops.reference import softmax_stats_reference  # noqa: E402
from medloss.ops.triton_sigmoid_stats import sigmoid_focal_triton, sigmoid_stats_triton  # noqa: E402
from medloss.ops.triton_softmax_stats import softmax_focal_triton, softmax_stats_triton  # noqa: E402

LAUNCHES = {"n": 0}
_call = interpreter.GridExecutor.__call__


def _counting_call(self, *args, **kwargs):
    LAUNCHES["n"] += 1
    return _call(self, *args, **kwargs)


interpreter.GridExecutor.__call__ = _counting_call


def case(spatial, c, dtype, ignored, absent, extreme, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *spatial, generator=g, dtype=torch.float64) * 3
    if extreme:
        x = x.sign() * 1e4
    t = torch.randint(0, c, (2, *spatial), generator=g)
    if absent:
        t = t.clamp(max=max(0, c - 2))  # the last class absent from the target
    if ignored:
        t.view(2, -1)[:, ::3] = -100
    return x.to(dtype), t


TERMS = [(0, 0.0, 0.0, 0.5, False), (1, 0.0, 0.0, 0.5, True), (1, 0.5, 0.5, 0.5, False), (1, 2.0, 0.0, 0.5, True),
         (2, 0.0, 0.0, 0.5, False), (2, 0.0, 0.0, 0.3, False)]  # (term, gamma_bg, gamma_fg, beta, class weights)


def check(spatial, c, dtype, ignored, absent, extreme, seed, term, gamma_bg, gamma_fg, beta, weighted):
    x, t = case(spatial, c, dtype, ignored, absent, extreme, seed)
    x64 = x.double().requires_grad_(True)
    weight = None
    if weighted:
        weight = torch.rand(c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.5
    expected, value = softmax_stats_reference(x64, t, -100, term, weight, gamma_bg, gamma_fg, beta)
    g = torch.Generator().manual_seed(seed + 1)
    g_stats = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    g_value = float(torch.randn((), generator=g, dtype=torch.float64))
    (expected_grad,) = torch.autograd.grad((expected * g_stats).sum() + g_value * value, x64)
    if bool(expected_grad.isnan().any()):
        # autograd of the formula is NaN where (1 - p_t)^gamma (gamma < 1) meets an exactly saturated p_t = 1;
        # there the PyTorch implementation's hand-written gradient (its limit, 0) is the float64 reference
        xp = x.double().requires_grad_(True)
        with medloss.implementation("pytorch"):
            out = torch.ops.medloss.softmax_stats(xp, t, -100, term, weight, gamma_bg, gamma_fg, beta)
            (limit,) = torch.autograd.grad((out[0] * g_stats).sum() + g_value * out[1], xp)
        expected_grad = torch.where(expected_grad.isnan(), limit, expected_grad)
    xt = x.clone().requires_grad_(True)
    stats, total, n_bad, _ = softmax_stats_triton(xt, t, -100, term, None if weight is None else weight.float(),
                                                  gamma_bg, gamma_fg, beta)
    (grad,) = torch.autograd.grad((stats * g_stats.float()).sum() + g_value * total, xt)
    torch.testing.assert_close(stats.double(), expected.detach(), rtol=2e-5, atol=2e-4)
    if term:
        torch.testing.assert_close(total.double(), value.detach(), rtol=2e-5, atol=2e-4)
    scale = expected_grad.abs().max().item() + 1e-30
    tol = 5e-3 if dtype == torch.bfloat16 else 2e-5
    torch.testing.assert_close(grad.double(), expected_grad, rtol=tol, atol=tol * scale)
    assert grad.dtype == x.dtype and int(n_bad) == 0


def check_focal(shape, c, dtype, ignored, extreme, gammas, weighted, per_position, seed):
    """The focal rows / images op against ``-w_t (1 - p_t)^gamma_t log p_t`` in float64 (formula written out here)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    if extreme:
        x = x.sign() * 1e4
    t = torch.randint(0, c, (shape[0], *shape[2:]), generator=g)
    if ignored:
        t.view(-1)[::4] = -100
    x = x.to(dtype)
    w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5 if weighted else torch.ones(c, dtype=torch.float64)
    valid = t != -100
    tt = torch.where(valid, t, 0)
    x64 = x.double().requires_grad_(True)
    lt = torch.log_softmax(x64, 1).gather(1, tt.unsqueeze(1)).squeeze(1)
    gamma = torch.where(tt == 0, gammas[0], gammas[1]).double()
    q = -torch.expm1(lt)
    factor = torch.where(gamma == 0, 1.0, torch.where(q > 0, q, 1.0) ** gamma * (q > 0))
    value = w[tt] * -factor * lt * valid
    expected = value if per_position else value.sum()
    g_out = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    (expected_grad,) = torch.autograd.grad((expected * g_out).sum(), x64)
    if bool(expected_grad.isnan().any()):  # (1 - p)^gamma (gamma < 1) at an exactly saturated p: the limit 0
        with medloss.implementation("pytorch"):
            xp = x.double().requires_grad_(True)
            out = torch.ops.medloss.softmax_focal(xp, t, -100, w if weighted else None, float(gammas[0]),
                                                  float(gammas[1]), 0.0, per_position)[0]
            (limit,) = torch.autograd.grad((out * g_out).sum(), xp)
        expected_grad = torch.where(expected_grad.isnan(), limit, expected_grad)
    xt = x.clone().requires_grad_(True)
    got, counts, n_bad, _ = softmax_focal_triton(xt, t, -100, w.float() if weighted else None, float(gammas[0]),
                                                 float(gammas[1]), per_position)
    (grad,) = torch.autograd.grad((got * g_out.float()).sum(), xt)
    torch.testing.assert_close(got.double(), expected.detach(), rtol=2e-5, atol=2e-4)
    torch.testing.assert_close(counts.double(), torch.bincount(t[valid], minlength=c).double())
    scale = expected_grad.abs().max().item() + 1e-30
    tol = 5e-3 if dtype == torch.bfloat16 else 2e-5
    torch.testing.assert_close(grad.double(), expected_grad, rtol=tol, atol=tol * scale)
    assert grad.shape == x.shape and int(n_bad) == 0


def check_sigmoid(shape, per_channel_valid, soft, extreme, dtype, seed):
    """The sigmoid statistics op against ``sum p y``, ``sum p``, ``sum y`` over counted positions in float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    if extreme:
        x = x.sign() * 1e4
    y = torch.rand(*shape, generator=g, dtype=torch.float64) if soft else torch.randint(0, 2, shape, generator=g)
    y = y.to(dtype).double()  # the labels the op reads
    valid_shape = shape if per_channel_valid else (shape[0], 1, *shape[2:])
    valid = torch.rand(*valid_shape, generator=g) > 0.3
    x = x.to(dtype)
    x64 = x.double().requires_grad_(True)
    m = valid.expand(shape).double()
    prob = torch.sigmoid(x64) * m
    ym = y * m
    dims = tuple(range(2, len(shape)))

    def total(v):  # over the positions of each (image, channel); rows [N, C] have one position each
        return v.sum(dims) if dims else v

    expected = torch.stack([total(prob * ym), total(prob), total(ym)], 1)
    g_stats = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    (expected_grad,) = torch.autograd.grad((expected * g_stats).sum(), x64)
    xt = x.clone().requires_grad_(True)
    stats = sigmoid_stats_triton(xt, y.to(dtype), valid)
    (grad,) = torch.autograd.grad((stats * g_stats.float()).sum(), xt)
    torch.testing.assert_close(stats.double(), expected.detach(), rtol=2e-5, atol=1e-4)
    tol = 5e-3 if dtype == torch.bfloat16 else 2e-5
    scale = expected_grad.abs().max().item() + 1e-30
    torch.testing.assert_close(grad.double(), expected_grad, rtol=tol, atol=tol * scale)


def check_sigmoid_focal(shape, per_channel_valid, soft, extreme, dtype, seed):
    """The sigmoid focal op against ``-a+ y (1 - p)^g log p - a- (1 - y) p^g log(1 - p)`` in float64."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g, dtype=torch.float64) * 3)
    if extreme:
        x = x.sign() * 40  # past fp32's sigmoid saturation (exp(-40) underflows 1 - p)
    y = torch.rand(*shape, generator=g, dtype=torch.float64) if soft else torch.randint(0, 2, shape, generator=g)
    x, y = x.to(dtype), y.to(dtype)
    valid = torch.rand(*(shape if per_channel_valid else (shape[0], 1, *shape[2:])), generator=g) > 0.3
    c = shape[1]
    a_pos = torch.rand(c, generator=g, dtype=torch.float64) + 0.2
    a_neg = torch.rand(c, generator=g, dtype=torch.float64) + 0.2
    for gamma, smoothing, per_position in ((2.0, 0.0, False), (0.5, 0.1, True), (0.0, 0.0, True)):
        x64 = x.double().requires_grad_(True)
        ys = y.double() * (1 - smoothing) + 0.5 * smoothing
        view = (1, c) + (1,) * (len(shape) - 2)
        m = valid.expand(shape).double()
        lp, lq = torch.nn.functional.logsigmoid(x64), torch.nn.functional.logsigmoid(-x64)
        q, p = torch.sigmoid(-x64), torch.sigmoid(x64)
        value = m * (ys * a_pos.view(view) * -(q**gamma) * lp + (1 - ys) * a_neg.view(view) * -(p**gamma) * lq)
        expected = value if per_position else value.sum()
        g_out = torch.randn(expected.shape, generator=g, dtype=torch.float64)
        (expected_grad,) = torch.autograd.grad((expected * g_out).sum(), x64)
        xt = x.clone().requires_grad_(True)
        got = sigmoid_focal_triton(xt, y, valid, a_pos.float(), a_neg.float(), gamma, smoothing, per_position)
        (grad,) = torch.autograd.grad((got * g_out.float()).sum(), xt)
        torch.testing.assert_close(got.double(), expected.detach(), rtol=2e-5, atol=1e-4)
        tol = 5e-3 if dtype == torch.bfloat16 else 2e-5
        scale = expected_grad.abs().max().item() + 1e-30
        torch.testing.assert_close(grad.double(), expected_grad, rtol=tol, atol=tol * scale)


def main() -> int:
    n = 0
    grid = itertools.product([(9, 7), (4, 5, 3)], [2, 4, 13, 117], [torch.float32, torch.bfloat16],
                             [False, True], [False, True], [False, True], TERMS)
    for seed, (spatial, c, dtype, ignored, absent, extreme, term) in enumerate(grid):
        check(spatial, c, dtype, ignored, absent, extreme, seed, *term)
        n += 1
    print(f"conformance: {n} cases equal the float64 reference")
    n = 0
    grid = itertools.product([(2, 4, 9, 7), (1, 13, 4, 5, 3), (37, 5), (6, 117)], [torch.float32, torch.bfloat16],
                             [False, True], [False, True], [(0.0, 0.0), (2.0, 2.0), (0.5, 0.5), (2.0, 0.0)],
                             [False, True], [False, True])
    for seed, (shape, dtype, ignored, extreme, gammas, weighted, per_position) in enumerate(grid):
        check_focal(shape, shape[1], dtype, ignored, extreme, gammas, weighted, per_position, seed)
        n += 1
    print(f"focal conformance: {n} cases equal the float64 formula")
    n = 0
    grid = itertools.product([(2, 1, 9, 7), (2, 3, 4, 5, 3), (3, 1, 2000), (11, 4)], [False, True], [False, True],
                             [False, True], [torch.float32, torch.bfloat16])
    for seed, (shape, per_channel, soft, extreme, dtype) in enumerate(grid):
        if per_channel or shape[1] == 1:
            check_sigmoid(shape, per_channel, soft, extreme, dtype, seed)
            check_sigmoid_focal(shape, per_channel, soft, extreme, dtype, seed)
            n += 1
    print(f"sigmoid conformance: {n} x 2 cases equal the float64 formulas")
    # bad labels are counted, ignore_index is not
    x, t = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    t[0, 0, :3] = torch.tensor([7, -100, -5])
    assert int(softmax_stats_triton(x, t, -100, 0, None, 0.0, 0.0, 0.5)[2]) == 2
    # determinism: the same bits twice
    x, t = case((16, 16), 4, torch.float32, True, False, False, 0)
    a = softmax_stats_triton(x, t, -100, 2, None, 0.0, 0.0, 0.7)
    b = softmax_stats_triton(x, t, -100, 2, None, 0.0, 0.0, 0.7)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    # launches per forward + backward of each loss running on the kernels
    x, t = case((16, 16), 4, torch.float32, True, False, False, 1)
    for loss in (DiceLoss(), JaccardLoss(), TverskyLoss(), FocalTverskyLoss(), GeneralizedDiceLoss(), MCCLoss(),
                 DiceLoss(batch=True), ComboLoss(), SymmetricFocalTverskyLoss(), AsymmetricFocalTverskyLoss(),
                 SymmetricUnifiedFocalLoss(), AsymmetricUnifiedFocalLoss(), HybridFocalLoss(), FocalLoss(),
                 CrossEntropyLoss(), SymmetricFocalLoss(), AsymmetricFocalLoss()):
        xs = x.clone().requires_grad_(True)
        with medloss.implementation("triton"):
            LAUNCHES["n"] = 0
            loss(xs, t).backward()
            launches = LAUNCHES["n"]
        with medloss.implementation("pytorch"):
            xr = x.clone().requires_grad_(True)
            expected = loss(xr, t)
            expected.backward()
        torch.testing.assert_close(xs.grad, xr.grad, rtol=1e-4, atol=1e-6)
        assert launches == 2, (type(loss).__name__, launches)
        print(f"launches: {type(loss).__name__} forward + backward = {launches}")
    # second derivatives (create_graph=True) come from the defining formula, as on the other implementations
    x64 = case((5, 4), 3, torch.float64, True, False, False, 2)[0].requires_grad_(True)
    t = case((5, 4), 3, torch.float64, True, False, False, 2)[1]
    for loss in (DiceLoss(), ComboLoss(), AsymmetricUnifiedFocalLoss(), FocalLoss(gamma=2.0)):
        second = {}
        for name in ("triton", "pytorch"):
            with medloss.implementation(name):
                (g,) = torch.autograd.grad(loss(x64, t), x64, create_graph=True)
                (second[name],) = torch.autograd.grad((g * g).sum(), x64)
        torch.testing.assert_close(second["triton"], second["pytorch"], rtol=1e-5, atol=1e-8)
    xb64 = torch.randn(2, 1, 5, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64).requires_grad_(True)
    tb64 = (torch.rand(2, 1, 5, 4, generator=torch.Generator().manual_seed(8)) > 0.5).double()
    second = {}
    for name in ("triton", "pytorch"):
        with medloss.implementation(name):
            (g,) = torch.autograd.grad(DiceLoss(mode="binary")(xb64, tb64), xb64, create_graph=True)
            (second[name],) = torch.autograd.grad((g * g).sum(), xb64)
    torch.testing.assert_close(second["triton"], second["pytorch"], rtol=1e-5, atol=1e-8)
    print("second derivatives: equal the PyTorch implementation's")
    xb = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    tb = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6)) > 0.5).float()
    for loss in (DiceLoss(mode="binary"), TverskyLoss(mode="multilabel"), MCCLoss(mode="binary"),
                 FocalLoss(mode="binary"), FocalLoss(mode="multilabel", reduction="none")):
        xs = xb.clone().requires_grad_(True)
        with medloss.implementation("triton"):
            LAUNCHES["n"] = 0
            loss(xs, tb).sum().backward()
            launches = LAUNCHES["n"]
        assert launches == 2, (type(loss).__name__, launches)
        print(f"launches: {type(loss).__name__}({loss.mode}) forward + backward = {launches}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
