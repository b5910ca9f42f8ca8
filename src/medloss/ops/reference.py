"""The defining formula of every fused op, once, in plain differentiable PyTorch operations.

Each function here computes what its op computes, from the op's own arguments, with autograd doing the
differentiation. It is the op's meaning: every implementation (PyTorch, the C kernel, Triton) is tested
against it in float64 (``tests/test_conformance.py``), and every implementation's backward
differentiates it when autograd asks for a second derivative (``create_graph=True``:
:func:`second_order_grads`). Speed is no concern here; exactness for any logit is.

The terms are written once each: the focal term :func:`focal_modulated_log`, Combo's weighted
cross-entropy :func:`weighted_ce_reference`, the soft counts in :func:`softmax_stats_reference` and
:func:`sigmoid_stats_reference`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LN2 = math.log(2.0)

#: kinds of per-pixel term computed beside the softmax statistics (the C kernel's numbering)
TERM_NONE, TERM_FOCAL, TERM_WCE = 0, 1, 2

Reference = Callable[..., "Tensor | tuple[Tensor, ...]"]


def second_order_grads(
    reference: Reference, inputs: tuple[Tensor | None, ...], grad_outputs: tuple[Tensor | None, ...]
) -> tuple[Tensor | None, ...]:
    """Gradients of ``reference(*inputs)`` with ``create_graph=True``: the backward of a fused op when
    autograd must differentiate it once more (gradient penalties, double backprop).

    The fused backwards write the gradient without a graph; a second derivative instead differentiates
    ``reference``, the op's defining formula, applied to the op's original inputs (saved tensors that
    were inputs keep their autograd history). Returns one entry per input (None where an input needs
    no gradient).
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


def focal_modulated_log(logp: Tensor, gamma: float | Tensor) -> Tensor:
    """The focal term ``-(1 - p)^gamma log p`` from ``log p`` (``1 - p`` from ``-expm1``). ``gamma`` may be a
    tensor broadcasting against ``logp``; where it is 0 the factor is exactly 1. At an exactly saturated
    ``p = 1`` the factor is 0 with derivative 0, the limit of the term's derivative there (``(1 - p)^gamma``
    alone has an infinite derivative for ``gamma < 1``, and autograd would give ``0 * inf``)."""
    if isinstance(gamma, (int, float)) and gamma == 0.0:
        return -logp
    one_minus_p = -torch.expm1(logp)
    inside = one_minus_p > 0
    # the pow never sees 0: a placeholder 1 where p = 1 (or gamma = 0), whose derivative is then dropped
    powered = torch.where(inside, one_minus_p, 1.0).pow(gamma)
    factor = torch.where(inside, powered, 0.0)
    if isinstance(gamma, Tensor):
        factor = torch.where(gamma == 0, 1.0, factor)
    return -factor * logp


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate everywhere (Maechler 2012). Each branch is evaluated
    only where it is used (the other gets a harmless placeholder), so no infinite intermediate leaks into
    the gradient through ``where``."""
    near_zero = x > -LN2
    a = torch.log(-torch.expm1(torch.where(near_zero, x, -LN2)))
    b = torch.log1p(-torch.exp(torch.where(near_zero, -LN2, x)))
    return torch.where(near_zero, a, b)


def class_lookup(values: Tensor, target: Tensor) -> Tensor:
    """``values[target]`` for a per-class vector and an index tensor of any shape ``[B, *]``."""
    b = target.shape[0] if target.ndim else 1
    flat = target.reshape(b, -1)
    return values.reshape(1, -1).expand(b, -1).gather(1, flat).reshape(target.shape)


def counted_labels(x: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """``(labels, counted)`` ``[B, N]`` of a target ``[B, *]`` for logits ``[B, C, *]``: a position counts
    when its label is in ``[0, C)`` and is not ``ignore_index``; ``labels`` is 0 where it does not."""
    t = target.reshape(target.shape[0], -1)
    counted = (t >= 0) & (t < x.shape[1])
    if ignore_index is not None:
        counted = counted & (t != ignore_index)
    return torch.where(counted, t, 0).long(), counted


def weighted_ce_reference(x: Tensor, logp: Tensor, onehot: Tensor, beta: float) -> Tensor:
    """Combo's weighted cross-entropy at each pixel ``[B, N]``, ``-(beta log p_t + (1 - beta) sum_{c != t}
    log(1 - p_c))``, of logits ``x`` ``[B, C, N]`` (``logp`` their log-softmax). ``log(1 - p_c)`` is
    ``log1mexp(log p_c)``, except at each pixel's most likely class, whose ``log p`` may round to 0: there the
    log-sum-exp of the other logits minus that of all (exact for any logit)."""
    c = x.shape[1]
    top = F.one_hot(x.argmax(1), c).transpose(1, 2).bool()
    log_q_top = torch.logsumexp(x.masked_fill(top, float("-inf")), 1) - torch.logsumexp(x, 1)
    log_q = torch.where(top, log_q_top.unsqueeze(1), log1mexp(torch.where(top, -1.0, logp)))
    return -(beta * (logp * onehot).sum(1) + (1.0 - beta) * (log_q * (1.0 - onehot)).sum(1))


def _focal_gammas(like: Tensor, labels: Tensor, gamma_bg: float, gamma_fg: float) -> float | Tensor:
    """``gamma_bg`` where the label is class 0, ``gamma_fg`` elsewhere (a float when they agree)."""
    if gamma_bg == gamma_fg:
        return gamma_fg
    return torch.where(labels == 0, gamma_bg, gamma_fg).to(like.dtype)


def softmax_stats_reference(x: Tensor, target: Tensor, ignore_index: int | None, term: int, weight: Tensor | None,
                            gamma_bg: float, gamma_fg: float, beta: float) -> tuple[Tensor, Tensor]:
    """``medloss::softmax_stats``: ``(stats, value)``, ``stats`` ``[B, 3, C]`` the soft TP, sum p and sum y of
    ``softmax(x)`` per image and class over the counted positions, ``value`` the term's sum over them
    (``TERM_FOCAL``: ``w_t * -(1 - p_t)^gamma_t log p_t``, ``gamma_bg`` where the target is class 0;
    ``TERM_WCE``: :func:`weighted_ce_reference`; ``TERM_NONE``: 0)."""
    b, c = x.shape[:2]
    xv = x.reshape(b, c, -1)
    logp = torch.log_softmax(xv, 1)
    labels, counted = counted_labels(x, target, ignore_index)
    m = counted.to(x.dtype)
    onehot = F.one_hot(labels, c).transpose(1, 2).to(x.dtype) * m.unsqueeze(1)
    p = logp.exp() * m.unsqueeze(1)
    stats = torch.stack([(p * onehot).sum(-1), p.sum(-1), onehot.sum(-1)], 1)
    if term == TERM_FOCAL:
        lt = logp.gather(1, labels.unsqueeze(1)).squeeze(1)
        w_t = 1.0 if weight is None else class_lookup(weight.to(x), labels)
        per_pixel = w_t * focal_modulated_log(lt, _focal_gammas(x, labels, gamma_bg, gamma_fg))
    elif term == TERM_WCE:
        per_pixel = weighted_ce_reference(xv, logp, onehot, beta)
    else:
        return stats, x.new_zeros(())
    return stats, (per_pixel * m).sum()


def softmax_stats_second_order(x: Tensor, target: Tensor, ignore_index: int | None, term: int,
                               weight: Tensor | None, gamma_bg: float, gamma_fg: float, beta: float,
                               g_stats: Tensor, g_term: Tensor) -> Tensor | None:
    """The gradient of ``softmax_stats`` for incoming ``g_stats`` ``[B, 3, C]`` and ``g_term``, with a graph:
    what every implementation's backward returns when autograd differentiates it again."""
    (grad,) = second_order_grads(
        lambda x_: softmax_stats_reference(x_, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta),
        (x,), (g_stats, g_term))
    return grad


def softmax_focal_reference(x: Tensor, target: Tensor, ignore_index: int | None, weight: Tensor | None,
                            gamma_bg: float, gamma_fg: float, label_smoothing: float, per_position: bool) -> Tensor:
    """``medloss::softmax_focal``'s value: ``-w_t (1 - p_t)^gamma_t log p_t`` at each counted position of
    ``x`` ``[B, C, *]`` or rows ``[N, C]``; with ``label_smoothing`` ``eps`` (one gamma) the target is
    ``q = (1 - eps) onehot + eps / C`` and the value ``-sum_c q_c w_c (1 - p_c)^gamma log p_c``. Per position
    (the target's shape, 0 where nothing counts) or summed."""
    b, c = x.shape[:2]
    logp = torch.log_softmax(x.reshape(b, c, -1), 1)
    labels, counted = counted_labels(x, target, ignore_index)
    m = counted.to(x.dtype)
    w = torch.ones(c, dtype=x.dtype, device=x.device) if weight is None else weight.to(x)
    if label_smoothing == 0.0:
        lt = logp.gather(1, labels.unsqueeze(1)).squeeze(1)
        value = class_lookup(w, labels) * focal_modulated_log(lt, _focal_gammas(x, labels, gamma_bg, gamma_fg)) * m
    else:
        onehot = F.one_hot(labels, c).transpose(1, 2).to(x.dtype)
        q = onehot * (1.0 - label_smoothing) + label_smoothing / c
        value = (q * w.view(1, -1, 1) * focal_modulated_log(logp, gamma_fg)).sum(1) * m
    return value.reshape(target.shape) if per_position else value.sum()


def sigmoid_views(x: Tensor, y: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """``x`` and ``y`` as ``[B, C, N]`` (``y`` in ``x``'s dtype) and the mask as ``[B, 1 or C, N]``."""
    b, c = x.shape[:2]
    xv = x.reshape(b, c, -1)
    yv = y.reshape(b, c, -1).to(x.dtype)
    m = None if valid is None else valid.reshape(b, -1, xv.shape[-1]).to(x.dtype)
    return xv, yv, m


def sigmoid_stats_reference(x: Tensor, y: Tensor, valid: Tensor | None) -> Tensor:
    """``medloss::sigmoid_stats``: soft TP, sum p and sum y ``[B, 3, C]`` of ``sigmoid(x)`` against ``y`` in
    [0, 1] per image and channel, over the positions where ``valid`` (``[B, 1 or C, *]``) is True."""
    xv, yv, m = sigmoid_views(x, y, valid)
    p = torch.sigmoid(xv)
    if m is not None:
        p, yv = p * m, yv * m
    return torch.stack([(p * yv).sum(-1), p.sum(-1), yv.sum(-1)], 1)


def sigmoid_focal_weights(x: Tensor, y: Tensor, valid: Tensor | None, a_pos: Tensor, a_neg: Tensor,
                          label_smoothing: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, c_pos, c_neg)`` as ``[B, C, N]``: the weights of ``log p`` and ``log(1 - p)`` at each element
    (alpha per channel, the soft label after PyTorch's smoothing with K = 2, and the mask)."""
    xv, yv, m = sigmoid_views(x, y, valid)
    if label_smoothing:
        yv = yv * (1.0 - label_smoothing) + 0.5 * label_smoothing
    c_pos = yv * a_pos.to(x.dtype).view(1, -1, 1)
    c_neg = (1.0 - yv) * a_neg.to(x.dtype).view(1, -1, 1)
    if m is not None:
        c_pos, c_neg = c_pos * m, c_neg * m
    return xv, c_pos, c_neg


def sigmoid_focal_reference(x: Tensor, y: Tensor, valid: Tensor | None, a_pos: Tensor, a_neg: Tensor, gamma: float,
                            label_smoothing: float, per_position: bool) -> Tensor:
    """``medloss::sigmoid_focal``: ``-a_pos y (1 - p)^gamma log p - a_neg (1 - y) p^gamma log(1 - p)`` per
    element of ``sigmoid(x)`` (0 where ``valid`` is False), or its sum."""
    xv, c_pos, c_neg = sigmoid_focal_weights(x, y, valid, a_pos, a_neg, label_smoothing)
    raw = c_pos * focal_modulated_log(F.logsigmoid(xv), gamma) + c_neg * focal_modulated_log(F.logsigmoid(-xv), gamma)
    return raw.view_as(x) if per_position else raw.sum()


def logit_link_nll_reference(f: Tensor, cutpoints_ext: Tensor, log_width: Tensor, y: Tensor) -> Tensor:
    """``medloss::logit_link_nll``'s NLL ``[B]``: ``-logsigmoid(b) - logsigmoid(-a) - log_width[y]`` with
    ``a = c_y - f`` and ``b = c_{y+1} - f`` (``cutpoints_ext`` ``[-inf, c_1, ..., +inf]``)."""
    a = cutpoints_ext.gather(0, y) - f
    b = cutpoints_ext.gather(0, y + 1) - f
    return -(F.logsigmoid(b) + F.logsigmoid(-a) + log_width.gather(0, y))


def logit_link_nll_second_order(f: Tensor, cutpoints_ext: Tensor, log_width: Tensor, y: Tensor,
                                grad: Tensor) -> tuple[Tensor | None, ...]:
    """The gradients of ``logit_link_nll`` for the scores, cutpoints and log-widths, with a graph: what every
    implementation's backward returns when autograd differentiates it again."""
    return second_order_grads(lambda f_, c_, w_: logit_link_nll_reference(f_, c_, w_, y),
                              (f, cutpoints_ext, log_width), (grad,))
