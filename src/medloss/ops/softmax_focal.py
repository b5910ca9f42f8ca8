"""``torch.ops.medloss.softmax_focal``: the focal loss (and, at gamma 0, the cross-entropy) of
``softmax(x)`` for images ``[B, C, *]`` and rows ``[N, C]``, per position or summed, and its backward.

Implementations: the PyTorch one below, on any device; the C kernel (:mod:`medloss.ops.cpu_kernel`) for
summed images without label smoothing on CPU tensors; Triton (:mod:`medloss.ops.triton_softmax_stats`, its
own op). The defining formula: :func:`medloss.ops.reference.softmax_focal_reference`. The backward
recomputes the softmax from the saved logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import cpu_kernel
from ._terms import (
    check_logits,
    count_bad,
    focal_by_class,
    focal_terms,
    focal_value,
    onehot_and_valid,
    smoothed_target,
)
from .reference import TERM_FOCAL, counted_labels, second_order_grads, softmax_focal_reference
from .softmax_stats import kernel_term

_NAME = "medloss::softmax_focal"


@torch.library.custom_op(_NAME, mutates_args=())
def softmax_focal(
    x: Tensor,
    target: Tensor,
    ignore_index: int | None,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    label_smoothing: float,
    per_position: bool,
    sum_logits: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Focal loss of ``softmax(x)``: ``-w_t (1 - p_t)^gamma_t log p_t`` at each counted position (``gamma_bg``
    where the target is class 0, ``gamma_fg`` elsewhere); with ``label_smoothing`` (one gamma) the target is
    ``q = (1 - eps) onehot + eps / C``, weighted per class, and the loss ``-sum_c q_c w_c (1 - p_c)^gamma
    log p_c``.

    Returns the loss per position ``[B, *]`` (0 where nothing counts) if ``per_position``, else its sum
    (0-dim); the number of counted positions of each class ``[C]``; ``n_bad``; and the logits' sum with
    ``sum_logits`` (else 0).
    """
    return _pytorch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position, sum_logits)


def _logp_and_labels(x: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(log_softmax [B, C, N], labels [B, N] (0 where nothing counts), counted [B, N] in x.dtype, target
    [B, N])``; rows ``[N, C]`` are ``N`` images of one position."""
    b, c = x.shape[:2]
    t = target.reshape(b, -1)
    labels, counted = counted_labels(x, target, ignore_index)
    if x.dim() == 2:  # rows: torch's CPU log_softmax over a short last dim is 3x slower than its steps
        shifted = x - x.amax(1, keepdim=True)  # exact, as log_softmax's own shift (x - logsumexp is not at 1e4)
        logp = shifted - shifted.exp().sum(1, keepdim=True).log()
    else:
        logp = torch.log_softmax(x, 1)
    return logp.reshape(b, c, -1), labels, counted.to(x.dtype), t


def _focal_at_target(logp: Tensor, labels: Tensor, counted: Tensor, weight: Tensor | None, gamma_bg: float,
                     gamma_fg: float, *, slope: bool) -> Tensor:
    """The focal value (or with ``slope`` its slope) at each position's target ``[B, N]``, times ``w_t`` (0 where
    nothing counts): ``log p_t`` gathered, no one-hot."""
    lt = logp.gather(1, labels.unsqueeze(1)).squeeze(1) * counted
    w_t = counted if weight is None else weight.to(logp).gather(0, labels.reshape(-1)).view_as(counted) * counted
    return focal_by_class(lt, labels == 0, gamma_bg, gamma_fg, slope=slope) * w_t


def _pytorch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position, sum_logits):
    check_logits(x, target, _NAME)
    logp, labels, counted, t = _logp_and_labels(x, target, ignore_index)
    if label_smoothing == 0.0:
        value = _focal_at_target(logp, labels, counted, weight, gamma_bg, gamma_fg, slope=False)
    else:
        value_c = focal_value(logp, gamma_fg)
        onehot, _ = onehot_and_valid(labels, x.shape[1], None, x.dtype)
        value = (smoothed_target(onehot * counted.unsqueeze(1), counted, weight, label_smoothing) * value_c).sum(1)
    counts = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels.reshape(-1),
                                                                                 counted.reshape(-1))
    return ((value.view(target.shape) if per_position else value.sum()), counts,
            count_bad(t, counted, ignore_index), x.sum() if sum_logits else x.new_zeros(()))


@softmax_focal.register_fake
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position, sum_logits=False):
    check_logits(x, target, _NAME)
    out = x.new_empty(target.shape) if per_position else x.new_empty(())
    return out, x.new_empty(x.shape[1]), x.new_empty((), dtype=torch.int64), x.new_empty(())


def _in_cpu_kernel(x: Tensor, per_position: bool, label_smoothing: float, enabled: bool | None = None) -> bool:
    """Sums of images without smoothing run in the C kernel (one pass each way)."""
    return not per_position and label_smoothing == 0.0 and x.dim() > 2 and cpu_kernel.usable(x, enabled)


@softmax_focal.register_kernel("cpu")
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position, sum_logits=False):
    if not _in_cpu_kernel(x, per_position, label_smoothing):
        return _pytorch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position,
                        sum_logits)
    check_logits(x, target, _NAME)
    b, c = x.shape[:2]
    term_w, gammas = kernel_term(TERM_FOCAL, weight, c, gamma_bg, gamma_fg, 0.5)
    r = cpu_kernel.softmax_pass(
        x.contiguous(), target.reshape(b, -1).long().contiguous(), None, ignore_index=ignore_index, stats=True,
        term=TERM_FOCAL, term_w=term_w, gamma=gammas,
    )
    return (
        torch.tensor(r.term, dtype=x.dtype),
        r.stats[:, 2].sum(0).to(x.dtype),
        torch.tensor(r.n_bad, dtype=torch.int64),
        x.sum() if sum_logits else x.new_zeros(()),
    )


@torch.library.custom_op("medloss::softmax_focal_backward", mutates_args=())
def softmax_focal_backward(
    x: Tensor,
    target: Tensor,
    ignore_index: int | None,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    label_smoothing: float,
    grad_out: Tensor,
    cpu_kernel_on: bool,
) -> Tensor:
    """Gradient of ``softmax_focal`` (per-position ``grad_out`` ``[B, *]``, or 0-dim for the sum);
    ``cpu_kernel_on`` as for ``softmax_stats_backward``."""
    return _pytorch_backward(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out)


def _pytorch_backward(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out):
    b = x.shape[0]
    logp, labels, counted, _ = _logp_and_labels(x, target, ignore_index)
    p = logp.exp()
    g = grad_out.to(x.dtype)
    g = g.reshape(b, -1) if g.dim() else g
    if label_smoothing == 0.0:  # d/dx_j w_t f(log p_t) = w_t slope (p_j - [j = t])
        s = _focal_at_target(logp, labels, counted, weight, gamma_bg, gamma_fg, slope=True)
        s = (s * g).unsqueeze(1)
        grad = (p * s).scatter_add_(1, labels.unsqueeze(1), -s)  # one entry per position: no two writes meet
    else:  # sum_c q_c w_c slope_c (p_j - [j = c])
        _, slope_c = focal_terms(logp, gamma_fg, value=False)
        onehot, _ = onehot_and_valid(labels, x.shape[1], None, x.dtype)
        wq = smoothed_target(onehot * counted.unsqueeze(1), counted, weight, label_smoothing) * slope_c
        wq = wq * (g.unsqueeze(1) if g.dim() else g)
        grad = p * wq.sum(1, keepdim=True) - wq
    return grad.view_as(x)


@softmax_focal_backward.register_fake
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out, cpu_kernel_on):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@softmax_focal_backward.register_kernel("cpu")
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out, cpu_kernel_on):
    if not _in_cpu_kernel(x, grad_out.dim() > 0, label_smoothing, enabled=cpu_kernel_on):
        return _pytorch_backward(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out)
    b, c = x.shape[:2]
    term_w, gammas = kernel_term(TERM_FOCAL, weight, c, gamma_bg, gamma_fg, 0.5)
    zeros = torch.zeros(b, c, dtype=torch.float64)
    r = cpu_kernel.softmax_pass(
        x.contiguous(), target.reshape(b, -1).long().contiguous(), None, ignore_index=ignore_index,
        term=TERM_FOCAL, term_w=term_w, gamma=gammas, grad=True, u=zeros, v=zeros, g_term=float(grad_out),
    )
    return r.grad.view_as(x)


def _setup(ctx, inputs, output):
    x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing = inputs[:7]
    ctx.args = (ignore_index, gamma_bg, gamma_fg, label_smoothing, cpu_kernel.native_kernels_available())
    ctx.mark_non_differentiable(*output[1:])  # counts, n_bad, the logits' sum
    ctx.save_for_backward(x, target, weight)


def _backward(ctx, grad_out, _g_counts, _g_bad, _g_sum):
    x, target, weight = ctx.saved_tensors
    ignore_index, gamma_bg, gamma_fg, label_smoothing, cpu_kernel_on = ctx.args
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        def reference(x_: Tensor) -> Tensor:
            return softmax_focal_reference(x_, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing,
                                           grad_out.dim() > 0)

        (grad,) = second_order_grads(reference, (x,), (grad_out,))
    else:
        grad = softmax_focal_backward(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out,
                                      cpu_kernel_on)
    return grad, None, None, None, None, None, None, None, None


softmax_focal.register_autograd(_backward, setup_context=_setup)
