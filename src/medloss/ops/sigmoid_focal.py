"""``torch.ops.medloss.sigmoid_focal``: the sigmoid focal loss (binary / multilabel ``FocalLoss``; at gamma 0
the binary cross-entropy) per element or summed, and its backward.

Implementations: the PyTorch one below, on any device; Triton (:mod:`medloss.ops.triton_sigmoid_stats`, its
own op). The defining formula: :func:`medloss.ops.reference.sigmoid_focal_reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._terms import focal_terms, focal_value
from .reference import second_order_grads, sigmoid_focal_reference, sigmoid_focal_weights


@torch.library.custom_op("medloss::sigmoid_focal", mutates_args=())
def sigmoid_focal(
    x: Tensor,
    y: Tensor,
    valid: Tensor | None,
    a_pos: Tensor,
    a_neg: Tensor,
    gamma: float,
    label_smoothing: float,
    per_position: bool,
) -> Tensor:
    """Sigmoid focal loss ``-a_pos y (1 - p)^gamma log p - a_neg (1 - y) p^gamma log(1 - p)`` per element
    (``a_pos`` / ``a_neg`` per channel ``[C]`` or ``[1]``; positions where ``valid`` is False count nowhere),
    or its sum when not ``per_position``."""
    torch._check(y.shape == x.shape, lambda: f"medloss::sigmoid_focal: y {list(y.shape)} vs x {list(x.shape)}")
    xv, c_pos, c_neg = sigmoid_focal_weights(x, y, valid, a_pos, a_neg, label_smoothing)
    value_pos = focal_value(F.logsigmoid(xv), gamma)
    value_neg = focal_value(F.logsigmoid(-xv), gamma)
    raw = c_pos * value_pos + c_neg * value_neg
    return raw.view_as(x) if per_position else raw.sum()


@sigmoid_focal.register_fake
def _(x, y, valid, a_pos, a_neg, gamma, label_smoothing, per_position):
    return torch.empty_like(x) if per_position else x.new_empty(())


@torch.library.custom_op("medloss::sigmoid_focal_backward", mutates_args=())
def sigmoid_focal_backward(
    x: Tensor,
    y: Tensor,
    valid: Tensor | None,
    a_pos: Tensor,
    a_neg: Tensor,
    gamma: float,
    label_smoothing: float,
    grad_out: Tensor,
) -> Tensor:
    """Gradient of ``sigmoid_focal``: ``(c_neg slope_neg) p - (c_pos slope_pos) (1 - p)``, times ``grad_out``."""
    xv, c_pos, c_neg = sigmoid_focal_weights(x, y, valid, a_pos, a_neg, label_smoothing)
    log_p = F.logsigmoid(xv)
    log_q = F.logsigmoid(-xv)
    _, slope_pos = focal_terms(log_p, gamma, value=False)
    _, slope_neg = focal_terms(log_q, gamma, value=False)
    # d/dx log p = 1 - p = q, d/dx log q = -p
    grad = c_neg * slope_neg * log_p.exp() - c_pos * slope_pos * log_q.exp()
    g = grad_out.to(x.dtype)
    return (grad * (g.reshape(xv.shape) if g.dim() else g)).view_as(x)


@sigmoid_focal_backward.register_fake
def _(x, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    x, y, valid, a_pos, a_neg, gamma, label_smoothing, per_position = inputs
    ctx.args = (gamma, label_smoothing)
    ctx.save_for_backward(x, y, valid, a_pos, a_neg)


def _backward(ctx, grad_out):
    x, y, valid, a_pos, a_neg = ctx.saved_tensors
    gamma, label_smoothing = ctx.args
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        def reference(x_: Tensor) -> Tensor:
            return sigmoid_focal_reference(x_, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out.dim() > 0)

        (grad,) = second_order_grads(reference, (x,), (grad_out,))
    else:
        grad = sigmoid_focal_backward(x, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out)
    return grad, None, None, None, None, None, None, None


sigmoid_focal.register_autograd(_backward, setup_context=_setup)
