"""Machinery shared by the losses: second derivatives of the fused ops, the focal modulating
terms in log space, fp32 islands."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import torch

LN2 = math.log(2.0)

Reference = Callable[..., "torch.Tensor | tuple[torch.Tensor, ...]"]


def second_order_grads(
    reference: Reference, inputs: tuple[torch.Tensor | None, ...], grad_outputs: tuple[torch.Tensor | None, ...]
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of ``reference(*inputs)`` with ``create_graph=True``: the backward of a fused op
    when autograd must differentiate it once more (``create_graph=True``: gradient penalties,
    double backprop).

    The fused backwards (``medloss._ops``) write the gradient with in-place operations and no
    graph; a second derivative instead differentiates ``reference``, the loss's defining formula in
    plain differentiable PyTorch operations, applied to the op's original inputs (saved tensors
    that were inputs keep their autograd history). Returns one entry per input (None where an
    input needs no gradient).
    """
    wanted = [x for x in inputs if x is not None and x.requires_grad]
    if not wanted:
        return tuple(None for _ in inputs)
    outputs = reference(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=True) if g is not None and o.requires_grad]
    grads = torch.autograd.grad(
        [o for o, _ in pairs], wanted, [g.to(o.dtype).expand_as(o) for o, g in pairs],
        create_graph=True, allow_unused=True,
    )
    it = iter(grads)
    return tuple(next(it) if x is not None and x.requires_grad else None for x in inputs)


def focal_modulated_log(logp: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """``-(1 - p)^gamma log p`` from ``log p`` in plain differentiable operations: the reference
    form of :func:`focal_terms` for second derivatives (``1 - p`` from ``-expm1``). ``gamma`` may
    be a tensor broadcasting against ``logp``; where it is 0 the factor is exactly 1."""
    if isinstance(gamma, (int, float)) and gamma == 0.0:
        return -logp
    one_minus_p = -torch.expm1(logp)
    if isinstance(gamma, torch.Tensor):
        # the pow sees 1 where gamma is 0, so 0^0 at p = 1 leaves no 0 * inf in its derivative
        off = gamma == 0
        factor = torch.where(off, 1.0, torch.where(off, 1.0, one_minus_p).pow(gamma))
    else:
        factor = one_minus_p.pow(gamma)
    return -factor * logp


@contextmanager
def fp32_island():
    """Disable autocast: the loss arithmetic runs in fp32 (or float64) whatever the caller uses."""
    with torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():  # pragma: no cover - no GPU on CI
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16 / bf16 -> fp32; fp32 and float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate everywhere (Maechler 2012).

    Each branch is evaluated only where it is used (the other gets a harmless placeholder), so
    no infinite intermediate leaks into the gradient through ``where``.
    """
    near_zero = x > -LN2
    a = torch.log(-torch.expm1(torch.where(near_zero, x, -LN2)))
    b = torch.log1p(-torch.exp(torch.where(near_zero, -LN2, x)))
    return torch.where(near_zero, a, b)


def focal_modulator(logp: torch.Tensor, gamma: float, *, p: torch.Tensor | None = None) -> torch.Tensor:
    """``(1 - p)^gamma`` (``gamma > 0``) from ``l = log p`` (<= 0): ``1 - p`` from ``-expm1(l)``,
    exact near ``p = 1``. ``p``: the probabilities whose log ``logp`` is, when the caller has them:
    ``1 - p`` is then as exact as ``-expm1(log p)`` of the same ``p`` (Sterbenz: exact for
    ``p >= 1/2``), one transcendental pass fewer. A fresh tensor."""
    one_minus_p = torch.expm1(logp).neg_() if p is None else torch.rsub(p, 1.0)
    if gamma == 1.0:
        return one_minus_p
    return one_minus_p.square_() if gamma == 2.0 else one_minus_p.pow_(gamma)


def focal_value(logp: torch.Tensor, gamma: float, *, p: torch.Tensor | None = None) -> torch.Tensor:
    """``-(1 - p)^gamma log p`` from ``l = log p`` (<= 0), the value half of :func:`focal_terms`
    (a forward pass needs no slope), with :func:`focal_modulator` (``p`` as there)."""
    if gamma == 0.0:
        return -logp
    return focal_modulator(logp, gamma, p=p).mul_(logp).neg_()


def focal_terms(
    logp: torch.Tensor, gamma: float, *, value: bool = True, p: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Focal term and its slope, from log-probabilities ``l = log p`` (<= 0).

    Returns ``value = -(1 - p)^gamma * l`` and ``slope = -d value / d l
    = (1 - p)^gamma * (1 - gamma * p * l / (1 - p))``.

    ``1 - p`` comes from ``-expm1(l)`` and the ratio ``l / (1 - p)`` from its series
    ``-1 + l/2`` near ``p = 1``, so both stay finite for every gamma >= 0 at confident correct
    predictions, where the naive ``(1 - p) ** gamma`` has an infinite derivative (gamma < 1).
    ``slope >= 0`` everywhere. ``value=False``: the slope alone (a backward pass), value None.
    ``p``: the probabilities themselves when the caller has them (``logp`` then being their log):
    ``1 - p`` is then taken from them, which is as exact as ``-expm1(log p)`` of the same ``p``, and
    two transcendental passes are saved (``p`` is not modified).
    """
    # log_softmax / logsigmoid outputs are <= 0 exactly (no clamp needed)
    if gamma == 0.0:
        return (-logp if value else None), torch.ones_like(logp)
    if p is not None and not value:  # a backward's slope from p in 3-5 passes, p and logp untouched:
        # ((1 - p) - gamma p l) (1 - p)^(gamma - 1), both terms of the first factor >= 0 (no cancellation);
        # for gamma < 1 the power is unbounded at p = 1, where the first factor is 0: 1 - p is floored at
        # the smallest normal float there (1 - p of a float p is 0 or >= half an ulp of 1 anyway)
        one_minus_p = torch.rsub(p, 1.0)
        inner = torch.addcmul(one_minus_p, p, logp, value=-gamma)
        if gamma == 1.0:
            return None, inner
        if gamma == 2.0:
            return None, inner.mul_(one_minus_p)
        if gamma < 1.0:
            one_minus_p.clamp_min_(torch.finfo(p.dtype).tiny)
        return None, inner.mul_(one_minus_p.pow_(gamma - 1.0))
    if p is None:
        one_minus_p = torch.expm1(logp).neg_()
        p = torch.exp(logp)  # not 1 - (1 - p): that loses the small p of confident negatives in fp32
    else:
        one_minus_p = 1.0 - p
        p = p.clone()  # modified in place below
    if gamma >= 1.0:
        # (1 - p)^(gamma - 1) is bounded here: slope = (1-p)^g - g p (1-p)^(g-1) log p
        if gamma == 1.0:
            mod_m1 = None
        elif gamma == 2.0:
            mod_m1 = one_minus_p
        else:
            mod_m1 = one_minus_p.pow(gamma - 1.0)
        modulator = one_minus_p if mod_m1 is None else one_minus_p * mod_m1
        correction = p.mul_(logp).mul_(gamma)
        if mod_m1 is not None:
            correction.mul_(mod_m1)
        return ((modulator * logp).neg_() if value else None), modulator - correction
    # gamma < 1: (1 - p)^(gamma - 1) is unbounded as p -> 1; use the ratio log p / (1 - p), which
    # tends to -1 (expm1 keeps 1 - p exact for tiny |log p|). At p = 1 exactly the modulator is 0,
    # so the clamped ratio there does not matter.
    modulator = one_minus_p.pow(gamma)
    ratio = logp / one_minus_p.clamp_min_(torch.finfo(logp.dtype).tiny)
    v = (modulator * logp).neg_() if value else None
    slope = p.mul_(ratio).mul_(-gamma).add_(1.0).mul_(modulator)  # in place: no fresh allocations
    return v, slope


def class_lookup(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``values[target]`` for a per-class vector and an index tensor of any shape ``[B, *]``,
    through ``gather`` (4x faster than advanced indexing on CPU)."""
    b = target.shape[0] if target.ndim else 1
    flat = target.reshape(b, -1)
    return values.reshape(1, -1).expand(b, -1).gather(1, flat).reshape(target.shape)


def safe_pow(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """``base ** exponent`` for ``base >= 0`` with a zero (not infinite) gradient at ``base = 0``
    when ``exponent < 1``: the focal Tversky losses at a perfect prediction."""
    if exponent >= 1.0:
        return base.clamp_min(0.0).pow(exponent)
    positive = base > 0
    tiny = torch.finfo(base.dtype).tiny
    return torch.where(positive, torch.where(positive, base, 1.0).clamp_min(tiny).pow(exponent), 0.0)


