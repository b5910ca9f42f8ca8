"""One conformance test: every op x every implementation available here x the SPEC's grid, values and
gradients against the op's float64 reference (:mod:`medloss.ops.reference`).

The grid: 2-D and 3-D images and [N, C] rows, C in {2, 4, 13, 117}, ignored pixels and absent classes,
class weights (the Unified family's delta: ``[1 - delta, delta, ...]``), gamma (one, and per class as the
asymmetric losses), Combo's beta, label smoothing, fp32 and bf16 logits, logits at +-1e4. The reference takes
the bf16-rounded values in float64; bf16 logits reach the PyTorch implementation and the C kernel as the
losses pass them (upcast to fp32), and the Triton kernels as bf16 (they read bf16 and accumulate in fp32).

Implementations: ``"pytorch"`` and, when it is built, ``"cpu_kernel"`` (which hands what it does not take,
e.g. 117 classes, to the PyTorch implementation), in this process; ``"triton"`` in a process of its own under
Triton's interpreter (``TRITON_INTERPRET=1`` must be set before Triton is imported), which runs this same
module with ``MEDLOSS_CONFORMANCE=triton`` (:func:`test_triton_through_the_interpreter`).

The references themselves are checked against PyTorch's own losses in ``test_reference_*`` below.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import medloss
from medloss.ops import reference
from medloss.ops.cpu_kernel import native_kernels_available
from medloss.ops.reference import TERM_FOCAL, TERM_NONE, TERM_WCE

ops = torch.ops.medloss
HERE = Path(__file__).resolve().parent
TRITON = os.environ.get("MEDLOSS_CONFORMANCE") == "triton"
if TRITON:
    IMPLEMENTATIONS = ["triton"]
else:
    IMPLEMENTATIONS = ["pytorch", "cpu_kernel"] if native_kernels_available() else ["pytorch"]
CLASSES = [2, 4, 13, 117]
SPATIAL = [(5, 6), (3, 4, 5)]
DTYPES = [torch.float32, torch.bfloat16]
IGNORE = -100


def _logits(shape, dtype, extreme, seed):
    """Logits of ``shape`` rounded to ``dtype`` and handed over as the losses hand them to the implementation
    (bf16 -> fp32, except to Triton), and the same values in float64 for the reference."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    if extreme:
        x = x.sign() * 1e4
    x = x.to(dtype)
    given = x.float() if dtype == torch.bfloat16 and not TRITON else x
    return given, x.double()


def _labels(shape, c, seed):
    """Labels with (by ``seed % 3``) nothing ignored, every third position ignored, or that and the last class
    absent."""
    g = torch.Generator().manual_seed(seed + 1)
    t = torch.randint(0, c, shape, generator=g)
    variant = seed % 3
    if variant == 2:
        t = t.clamp(max=c - 2)
    if variant:
        t.view(-1)[::3] = IGNORE
    return t


def _weights(c, kind):
    if kind == "delta":  # the Unified family's class weights: 1 - delta on the background, delta elsewhere
        return torch.tensor([0.4] + [0.6] * (c - 1), dtype=torch.float64)
    if kind == "random":
        return torch.rand(c, generator=torch.Generator().manual_seed(c), dtype=torch.float64) + 0.5
    return None


def _tolerance(expected, dtype=torch.float32):
    """fp32 arithmetic: 2e-5 relative to each entry, and 2e-5 of the largest entry absolute; a bf16 result
    (Triton's gradient of bf16 logits) 4e-3, its rounding."""
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    tol = 4e-3 if dtype == torch.bfloat16 else 2e-5
    return dict(rtol=tol, atol=tol * max(scale, 1e-6))


def _check(implementation, run, ref, inputs, ref_inputs, n_outputs, n_differentiable=1):
    """``run(*inputs)`` under ``implementation`` and ``ref(*ref_inputs)`` in float64: the first ``n_outputs``
    outputs, and the gradients of a random combination of them with respect to the first ``n_differentiable``
    inputs."""
    leaves = [v.clone().requires_grad_(True) for v in inputs[:n_differentiable]]
    leaves64 = [v.clone().requires_grad_(True) for v in ref_inputs[:n_differentiable]]
    with medloss.implementation(implementation):
        got = run(*leaves, *inputs[n_differentiable:])
    got = got if isinstance(got, tuple) else (got,)
    expected = ref(*leaves64, *ref_inputs[n_differentiable:])
    expected = expected if isinstance(expected, tuple) else (expected,)
    g = torch.Generator().manual_seed(99)
    weights = [torch.randn(e.shape, generator=g, dtype=torch.float64) for e in expected[:n_outputs]]
    for out, exp in zip(got[:n_outputs], expected, strict=False):
        torch.testing.assert_close(out.double(), exp.detach(), **_tolerance(exp))
    grads = torch.autograd.grad(sum((o * w.to(o.dtype)).sum() for o, w in zip(got, weights, strict=False)), leaves)
    expected_grads = torch.autograd.grad(sum((e * w).sum() for e, w in zip(expected, weights, strict=False)),
                                         leaves64)
    for leaf, grad, expected_grad in zip(leaves, grads, expected_grads, strict=True):
        assert grad.dtype == leaf.dtype
        torch.testing.assert_close(grad.double(), expected_grad, **_tolerance(expected_grad, grad.dtype))


# (term, weights, gamma_bg, gamma_fg, beta): none; focal with the Unified family's weights; the asymmetric
# losses' per-class gamma (0.5 on the background, plain CE elsewhere) with random weights; Combo's beta 0.7
STATS_TERMS = [(TERM_NONE, None, 0.0, 0.0, 0.5), (TERM_FOCAL, "delta", 2.0, 2.0, 0.5),
               (TERM_FOCAL, "random", 0.5, 0.0, 0.5), (TERM_WCE, None, 0.0, 0.0, 0.7)]
STATS_CASES = list(itertools.product(SPATIAL, CLASSES, DTYPES, [False, True], STATS_TERMS))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", range(len(STATS_CASES)))
def test_softmax_stats(implementation, case):
    spatial, c, dtype, extreme, (term, kind, gamma_bg, gamma_fg, beta) = STATS_CASES[case]
    x, x64 = _logits((2, c, *spatial), dtype, extreme, seed=case)
    t = _labels((2, *spatial), c, seed=case)
    w = _weights(c, kind)

    def run(x_, t_):
        w32 = None if w is None else w.float()
        if TRITON:
            stats, value, n_bad, _ = triton_softmax.softmax_stats_triton(x_, t_, IGNORE, term, w32, gamma_bg,
                                                                         gamma_fg, beta)
        else:
            stats, value, n_bad, _, _ = ops.softmax_stats(x_, t_, IGNORE, term, w32, gamma_bg, gamma_fg, beta)
        assert int(n_bad) == 0
        return stats, value

    def ref(x_, t_):
        return reference.softmax_stats_reference(x_, t_, IGNORE, term, w, gamma_bg, gamma_fg, beta)

    _check(implementation, run, ref, (x, t), (x64, t), 2)


# (weights, gamma_bg, gamma_fg, label_smoothing)
FOCAL_TERMS = [("delta", 2.0, 2.0, 0.0), ("random", 0.5, 0.0, 0.0), ("random", 0.0, 0.0, 0.1), (None, 2.0, 2.0, 0.1)]
FOCAL_CASES = list(itertools.product(SPATIAL + [()], CLASSES, DTYPES, [False, True], FOCAL_TERMS, [False, True]))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", range(len(FOCAL_CASES)))
def test_softmax_focal(implementation, case):
    spatial, c, dtype, extreme, (kind, gamma_bg, gamma_fg, smoothing), per_position = FOCAL_CASES[case]
    n = 2 if spatial else 11  # images [2, C, *] or rows [11, C]
    x, x64 = _logits((n, c, *spatial), dtype, extreme, seed=case)
    t = _labels((n, *spatial), c, seed=case)
    w = _weights(c, kind)

    def run(x_, t_):
        w32 = None if w is None else w.float()
        if TRITON:
            value, counts, n_bad, _ = triton_softmax.softmax_focal_triton(x_, t_, IGNORE, w32, gamma_bg, gamma_fg,
                                                                          smoothing, per_position)
        else:
            value, counts, n_bad, _ = ops.softmax_focal(x_, t_, IGNORE, w32, gamma_bg, gamma_fg, smoothing,
                                                        per_position)
        counted = t_[(t_ >= 0) & (t_ < c)]
        torch.testing.assert_close(counts.double(), torch.bincount(counted, minlength=c).double())
        assert int(n_bad) == 0
        return value

    def ref(x_, t_):
        return reference.softmax_focal_reference(x_, t_, IGNORE, w, gamma_bg, gamma_fg, smoothing, per_position)

    _check(implementation, run, ref, (x, t), (x64, t), 1)


MASKS = ["none", "shared", "per channel"]
SIGMOID_CASES = list(itertools.product(SPATIAL + [()], [1, 4], DTYPES, [False, True], MASKS))


def _sigmoid_inputs(case):
    spatial, c, dtype, extreme, mask = SIGMOID_CASES[case]
    n = 2 if spatial else 11
    x, x64 = _logits((n, c, *spatial), dtype, extreme, seed=case)
    g = torch.Generator().manual_seed(case + 7)
    y = torch.rand(x.shape, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(x.shape, generator=g) < 0.5, y.round(), y)  # hard and soft labels
    y = y.to(torch.bfloat16).double()  # soft labels the bf16 logits' dtype holds exactly (Triton reads y as x's)
    valid = None
    if mask != "none":
        valid = torch.rand(n, 1 if mask == "shared" else c, *spatial, generator=g) > 0.3
    return x, x64, y, valid


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", range(len(SIGMOID_CASES)))
def test_sigmoid_stats(implementation, case):
    x, x64, y, valid = _sigmoid_inputs(case)
    op = triton_sigmoid.sigmoid_stats_triton if TRITON else ops.sigmoid_stats
    _check(implementation, lambda x_, y_: op(x_, y_.to(x_.dtype), valid),
           lambda x_, y_: reference.sigmoid_stats_reference(x_, y_, valid), (x, y), (x64, y), 1)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", range(len(SIGMOID_CASES)))
@pytest.mark.parametrize("gamma, smoothing, per_position", [(0.0, 0.0, True), (2.0, 0.1, False), (0.5, 0.0, True)])
def test_sigmoid_focal(implementation, case, gamma, smoothing, per_position):
    x, x64, y, valid = _sigmoid_inputs(case)
    c = x.shape[1]
    a_pos = (torch.arange(c, dtype=torch.float64) + 1) / 8  # exact in bf16 too

    op = triton_sigmoid.sigmoid_focal_triton if TRITON else ops.sigmoid_focal

    def run(x_, y_):
        return op(x_, y_.to(x_.dtype), valid, a_pos.to(x_.dtype), (1 - a_pos).to(x_.dtype), gamma,
                                 smoothing, per_position)

    def ref(x_, y_):
        return reference.sigmoid_focal_reference(x_, y_, valid, a_pos, 1 - a_pos, gamma, smoothing, per_position)

    _check(implementation, run, ref, (x, y), (x64, y), 1)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("k", [2, 4, 13])
@pytest.mark.parametrize("extreme", [False, True])
def test_logit_link_nll(implementation, k, extreme):
    g = torch.Generator().manual_seed(k)
    f64 = torch.randn(40, generator=g, dtype=torch.float64) * (1e4 if extreme else 3)
    cut = torch.sort(torch.randn(k - 1, generator=g, dtype=torch.float64) * 2).values
    inf = torch.tensor([float("inf")], dtype=torch.float64)
    c_ext = torch.cat([-inf, cut, inf])
    width = torch.cat([torch.zeros(1, dtype=torch.float64), reference.log1mexp(-(cut[1:] - cut[:-1])),
                       torch.zeros(1, dtype=torch.float64)]) if k > 2 else torch.zeros(2, dtype=torch.float64)
    y = torch.randint(0, k, (40,), generator=g)
    op = triton_logit_link.logit_link_nll_triton if TRITON else ops.logit_link_nll
    _check(implementation, lambda f_, c_, w_, y_: op(f_, c_, w_, y_)[0],
           reference.logit_link_nll_reference, (f64.float(), c_ext.float(), width.float(), y),
           (f64, c_ext, width, y), 1, n_differentiable=3)


if TRITON:
    from medloss.ops import triton_logit_link
    from medloss.ops import triton_sigmoid_stats as triton_sigmoid
    from medloss.ops import triton_softmax_stats as triton_softmax


@pytest.mark.skipif(TRITON, reason="this is the Triton process")
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (pip install triton)")
def test_triton_through_the_interpreter():
    """This module's grid on the Triton kernels, in a process of its own under Triton's interpreter: every
    case collected there passes, none is skipped."""
    expected = len(STATS_CASES) + len(FOCAL_CASES) + len(SIGMOID_CASES) * 4 + 6  # and the ordinal op's 6
    env = {**os.environ, "TRITON_INTERPRET": "1", "MEDLOSS_CONFORMANCE": "triton"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)),
         "-k", "not reference and not interpreter"],
        env=env, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"{expected} passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


# ---------------------------------------------------------------- the references against PyTorch's losses
def test_reference_softmax_focal_at_gamma_0_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 5, (3, 4, 4), generator=g)
    t[0, 0] = IGNORE
    w = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    for smoothing in (0.0, 0.2):
        got = reference.softmax_focal_reference(x, t, IGNORE, w, 0.0, 0.0, smoothing, True)
        expected = F.cross_entropy(x, t, weight=w, ignore_index=IGNORE, label_smoothing=smoothing, reduction="none")
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_reference_softmax_stats_terms_against_their_formulas_written_out():
    """The focal term against -w_t (1 - p_t)^gamma log p_t from softmax probabilities, and Combo's term against
    -(beta log p_t + (1 - beta) sum_{c != t} log(1 - p_c)) from them, at moderate logits (where that is exact)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (2, 6), generator=g)
    p = torch.softmax(x, 1)
    onehot = F.one_hot(t, 4).transpose(1, 2).double()
    p_t = (p * onehot).sum(1)
    w = torch.tensor([0.4, 0.6, 0.6, 0.6], dtype=torch.float64)
    stats, focal = reference.softmax_stats_reference(x, t, None, TERM_FOCAL, w, 2.0, 2.0, 0.5)
    torch.testing.assert_close(focal, (-(w[t]) * (1 - p_t) ** 2 * p_t.log()).sum(), rtol=1e-12, atol=0)
    torch.testing.assert_close(stats, torch.stack([(p * onehot).sum(-1), p.sum(-1), onehot.sum(-1)], 1))
    _, wce = reference.softmax_stats_reference(x, t, None, TERM_WCE, None, 0.0, 0.0, 0.7)
    expected = -(0.7 * p_t.log() + 0.3 * ((1 - p).log() * (1 - onehot)).sum(1)).sum()
    torch.testing.assert_close(wce, expected, rtol=1e-12, atol=0)


def test_reference_sigmoid_focal_at_gamma_0_is_binary_cross_entropy():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)
    y = torch.rand(3, 2, 5, generator=g, dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    got = reference.sigmoid_focal_reference(x, y, None, one, one, 0.0, 0.0, True)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(x, y, reduction="none"), rtol=1e-12, atol=0)


def test_reference_focal_term_has_the_limit_gradient_at_saturation():
    """At p = 1 exactly (log p = 0) the focal term's derivative is its limit 0 for every gamma > 0, not NaN."""
    lt = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for gamma in (0.5, 1.0, 2.0):
        (grad,) = torch.autograd.grad(reference.focal_modulated_log(lt, gamma).sum(), lt)
        assert grad.tolist() == [0.0, 0.0, 0.0]
