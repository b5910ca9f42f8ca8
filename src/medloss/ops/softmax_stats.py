"""``torch.ops.medloss.softmax_stats``: per-class soft confusion counts of ``softmax(x)`` against class
indices, with one optional per-pixel term (focal, or Combo's weighted cross-entropy), and its backward.

Implementations (:mod:`medloss.ops.switch` chooses): the PyTorch one below, on any device; the C kernel
(:mod:`medloss.ops.cpu_kernel`) registered for CPU tensors; Triton (:mod:`medloss.ops.triton_softmax_stats`,
its own op). The defining formula: :func:`medloss.ops.reference.softmax_stats_reference`.

A loss ``L(TP, sum_p)`` of the counts has ``dL/dp_c = dL/dsum_p[c] + y_c dL/dTP[c]`` at every pixel; through the
softmax, ``dL/dx_j = p_j (w_j - sum_k p_k w_k)`` with ``w = dL/dp``. The focal term ``w_t f(log p_t)`` adds
``w_t slope (p_j - [j = t])``. The backward recomputes the softmax from the saved logits: the forward keeps
one byte of label per pixel beyond its inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import cpu_kernel
from ._terms import (
    check_logits,
    class_weight_at,
    compact_labels,
    count_bad,
    focal_by_class,
    n_positions,
    onehot_and_valid,
    weighted_ce_gradient,
    weighted_ce_value,
)
from .reference import TERM_FOCAL, TERM_NONE, TERM_WCE, softmax_stats_second_order

_NAME = "medloss::softmax_stats"


@torch.library.custom_op(_NAME, mutates_args=())
def softmax_stats(
    x: Tensor,
    target: Tensor,
    ignore_index: int | None,
    term: int,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    beta: float,
    sum_logits: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Soft confusion counts of ``softmax(x)`` against class indices, and one optional per-pixel term.

    Args: ``x`` ``[B, C, *]`` logits; ``target`` ``[B, *]`` integer labels (``ignore_index`` and out-of-range
    labels count nowhere); ``term``: ``TERM_NONE``, ``TERM_FOCAL`` (the sum over counted pixels of
    ``weight_t * -(1 - p_t)^gamma_t log p_t``, ``gamma_bg`` for class 0 and ``gamma_fg`` for the others) or
    ``TERM_WCE`` (Combo's weighted cross-entropy with ``beta``); ``sum_logits``: also return the sum of ``x``
    (finite whenever every logit is: the losses' finiteness check in eager mode, read in the same pass).

    Returns ``stats`` ``[B, 3, C]`` (TP, sum p, sum y per image and class, in ``x.dtype``), the term's sum
    (0-dim), ``n_bad`` (0-dim int64: labels neither in ``[0, C)`` nor ``ignore_index``), the labels as bytes
    ``[B, N]`` for the backward (255 = counted nowhere; ``[B, 0]`` from 255 classes up) and the logits' sum
    (0 without ``sum_logits``).
    """
    return _pytorch(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, sum_logits)


def _pytorch(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, sum_logits):
    check_logits(x, target, _NAME)
    b, c = x.shape[:2]
    t = target.reshape(b, -1)
    onehot, counted = onehot_and_valid(t, c, ignore_index, x.dtype)
    xv = x.reshape(b, c, -1)
    logp = torch.log_softmax(xv, 1)
    p = logp.exp()
    stats = torch.stack([(p * onehot).sum(-1), (p * counted.unsqueeze(1)).sum(-1), onehot.sum(-1)], 1)
    if term == TERM_FOCAL:
        lt = (logp * onehot).sum(1)  # log p_t, 0 where nothing counts
        value = focal_by_class(lt, onehot.select(1, 0), gamma_bg, gamma_fg, slope=False)
        value = (value * class_weight_at(weight, onehot, counted)).sum()
    elif term == TERM_WCE:
        value = (weighted_ce_value(xv, logp, p, onehot, beta) * counted).sum()
    else:
        value = x.new_zeros(())
    return (stats, value, count_bad(t, counted, ignore_index), compact_labels(t, c, ignore_index),
            x.sum() if sum_logits else x.new_zeros(()))


@softmax_stats.register_fake
def _(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, sum_logits=False):
    check_logits(x, target, _NAME)
    b, c = x.shape[:2]
    return (
        x.new_empty(b, 3, c),
        x.new_empty(()),
        x.new_empty((), dtype=torch.int64),
        x.new_empty(b, n_positions(x) if c < 255 else 0, dtype=torch.uint8),
        x.new_empty(()),
    )


def kernel_term(term: int, weight: Tensor | None, n_classes: int, gamma_bg: float, gamma_fg: float, beta: float):
    """The term's per-class weights and gammas as the C kernel reads them (float64 on the CPU)."""
    if term == TERM_FOCAL:
        w = torch.ones(n_classes, dtype=torch.float64) if weight is None else weight.detach().to("cpu", torch.float64)
        gammas = torch.full((n_classes,), float(gamma_fg), dtype=torch.float64)
        gammas[0] = float(gamma_bg)
        return w, gammas
    if term == TERM_WCE:
        return torch.tensor([beta, 1.0 - beta], dtype=torch.float64), None
    return None, None


@softmax_stats.register_kernel("cpu")
def _(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, sum_logits=False):
    if not cpu_kernel.usable(x):
        return _pytorch(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, sum_logits)
    check_logits(x, target, _NAME)
    b, c = x.shape[:2]
    term_w, gammas = kernel_term(term, weight, c, gamma_bg, gamma_fg, beta)
    r = cpu_kernel.softmax_pass(
        x.contiguous(), target.reshape(b, -1).long().contiguous(), None, ignore_index=ignore_index, stats=True,
        keep_labels=True, term=term, term_w=term_w, gamma=gammas,
    )
    labels8 = r.labels8
    if r.n_bad:  # the kernel marks bad labels 254: make them count nowhere in the backward too
        labels8.masked_fill_(labels8 == 254, 255)
    return (
        r.stats.to(x.dtype),
        torch.tensor(r.term, dtype=x.dtype),
        torch.tensor(r.n_bad, dtype=torch.int64),
        labels8,
        x.sum() if sum_logits else x.new_zeros(()),
    )


@torch.library.custom_op("medloss::softmax_stats_backward", mutates_args=())
def softmax_stats_backward(
    x: Tensor,
    target: Tensor,
    labels8: Tensor,
    ignore_index: int | None,
    term: int,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    beta: float,
    g_tp: Tensor,
    g_sum_p: Tensor,
    g_term: Tensor,
    cpu_kernel_on: bool,
) -> Tensor:
    """Gradient of ``softmax_stats`` with respect to ``x``, for incoming gradients of TP and sum p (``[B, C]``)
    and of the term (0-dim). ``labels8``: the forward's byte labels (or ``[B, 0]``: the target is read).
    ``cpu_kernel_on``: whether the C kernel was allowed when the forward ran: the backward follows that choice,
    whatever is in force when it runs."""
    return _pytorch_backward(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp,
                             g_sum_p, g_term)


def _pytorch_backward(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp, g_sum_p,
                      g_term):
    b, c = x.shape[:2]
    labels = labels8 if labels8.shape[-1] else target.reshape(b, -1)
    onehot, counted = onehot_and_valid(labels, c, ignore_index, x.dtype)
    xv = x.reshape(b, c, -1)
    logp = torch.log_softmax(xv, 1)
    p = logp.exp()
    g = g_term.to(x.dtype)
    dl_dp = g_sum_p.to(x.dtype).unsqueeze(-1) * counted.unsqueeze(1) + onehot * g_tp.to(x.dtype).unsqueeze(-1)
    grad = p * (dl_dp - (p * dl_dp).sum(1, keepdim=True))
    if term == TERM_FOCAL:  # w_t slope (p_j - [j = t])
        slope = focal_by_class((logp * onehot).sum(1), onehot.select(1, 0), gamma_bg, gamma_fg, slope=True)
        s = slope * class_weight_at(weight, onehot, counted) * g
        grad = grad + s.unsqueeze(1) * (p - onehot)
    elif term == TERM_WCE:
        grad = grad + weighted_ce_gradient(xv, p, onehot, beta) * (g * counted).unsqueeze(1)
    return grad.view_as(x)


@softmax_stats_backward.register_fake
def _(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp, g_sum_p, g_term,
      cpu_kernel_on):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@softmax_stats_backward.register_kernel("cpu")
def _(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp, g_sum_p, g_term,
      cpu_kernel_on):
    if not cpu_kernel.usable(x, enabled=cpu_kernel_on) or labels8.shape[-1] == 0:
        return _pytorch_backward(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp,
                                 g_sum_p, g_term)
    term_w, gammas = kernel_term(term, weight, x.shape[1], gamma_bg, gamma_fg, beta)
    r = cpu_kernel.softmax_pass(
        x.contiguous(), None, labels8=labels8.contiguous(), term=term, term_w=term_w, gamma=gammas, grad=True,
        u=g_sum_p, v=g_tp, g_term=float(g_term) if term != TERM_NONE else 0.0,
    )
    return r.grad.view_as(x)


def _setup(ctx, inputs, output):
    x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, _ = inputs
    ctx.args = (ignore_index, term, gamma_bg, gamma_fg, beta, cpu_kernel.native_kernels_available())
    ctx.mark_non_differentiable(output[2], output[3], output[4])
    ctx.save_for_backward(x, target, output[3], weight)


def _backward(ctx, g_stats, g_term, _g_bad, _g_labels, _g_sum):
    x, target, labels8, weight = ctx.saved_tensors
    ignore_index, term, gamma_bg, gamma_fg, beta, cpu_kernel_on = ctx.args
    g_stats = x.new_zeros(x.shape[0], 3, x.shape[1]) if g_stats is None else g_stats
    g_term = x.new_zeros(()) if g_term is None else g_term
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        grad = softmax_stats_second_order(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_stats,
                                          g_term)
    else:
        grad = softmax_stats_backward(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta,
                                      g_stats.select(1, 0).contiguous(), g_stats.select(1, 1).contiguous(), g_term,
                                      cpu_kernel_on)
    return grad, None, None, None, None, None, None, None, None


softmax_stats.register_autograd(_backward, setup_context=_setup)
