"""``torch.ops.medloss.sigmoid_stats``: per-channel soft confusion counts of ``sigmoid(x)`` against soft labels
(the region losses in binary / multilabel mode), and its backward.

Implementations: the PyTorch one below, on any device (the C kernel has none: this op is a few elementwise
passes); Triton (:mod:`medloss.ops.triton_sigmoid_stats`, its own op). The defining formula:
:func:`medloss.ops.reference.sigmoid_stats_reference`, which is also the PyTorch forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .reference import second_order_grads, sigmoid_stats_reference, sigmoid_views


@torch.library.custom_op("medloss::sigmoid_stats", mutates_args=())
def sigmoid_stats(x: Tensor, y: Tensor, valid: Tensor | None) -> Tensor:
    """Per image and channel soft TP / sum p / sum y ``[B, 3, C]`` of ``sigmoid(x)`` against ``y`` in [0, 1]
    (same shape as ``x``); positions where ``valid`` (``[B, 1, *]`` or ``[B, C, *]``) is False count nowhere."""
    torch._check(y.shape == x.shape, lambda: f"medloss::sigmoid_stats: y {list(y.shape)} vs x {list(x.shape)}")
    return sigmoid_stats_reference(x, y, valid)


@sigmoid_stats.register_fake
def _(x, y, valid):
    return x.new_empty(x.shape[0], 3, x.shape[1])


@torch.library.custom_op("medloss::sigmoid_stats_backward", mutates_args=())
def sigmoid_stats_backward(x: Tensor, y: Tensor, valid: Tensor | None, g_tp: Tensor, g_sum_p: Tensor) -> Tensor:
    """Gradient of ``sigmoid_stats``: ``p (1 - p) (y dL/dTP + dL/dsum_p)`` at counted positions, with ``1 - p``
    as ``sigmoid(-x)``: a saturated prediction (``p`` rounds to 1 in fp32 past x ~ 17) keeps its gradient."""
    xv, yv, m = sigmoid_views(x, y, valid)
    grad = yv * g_tp.to(x.dtype).unsqueeze(-1) + g_sum_p.to(x.dtype).unsqueeze(-1)
    if m is not None:
        grad = grad * m
    return (grad * torch.sigmoid(xv) * torch.sigmoid(-xv)).view_as(x)


@sigmoid_stats_backward.register_fake
def _(x, y, valid, g_tp, g_sum_p):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, g_stats):
    x, y, valid = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        (grad,) = second_order_grads(lambda x_: sigmoid_stats_reference(x_, y, valid), (x,), (g_stats,))
    else:
        grad = sigmoid_stats_backward(x, y, valid, g_stats.select(1, 0).contiguous(), g_stats.select(1, 1).contiguous())
    return grad, None, None


sigmoid_stats.register_autograd(_backward, setup_context=_setup)
