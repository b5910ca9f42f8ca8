"""``torch.ops.medloss.logit_link_nll``: the negative log-likelihood of the logit cumulative link model
(the ordinal losses' proportional-odds NLL), and its backward.

One implementation, PyTorch, on any device (per-sample work, ``[B]``-sized: nothing for a kernel to fuse).
The defining formula: :func:`medloss.ops.reference.logit_link_nll_reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import logit_link_nll_second_order


def _class_sum(y: Tensor, weights: Tensor, size: int) -> Tensor:
    """Per-class sums of ``weights`` over labels ``y`` ``[size]`` into fixed-size zeros (``bincount``'s output
    size depends on the data: CUDA would read the maximum on the host)."""
    return torch.zeros(size, dtype=weights.dtype, device=y.device).index_add_(0, y, weights)


@torch.library.custom_op("medloss::logit_link_nll", mutates_args=())
def logit_link_nll(f: Tensor, cutpoints_ext: Tensor, log_width: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample NLL of the logit cumulative link model ``[B]``, and ``sigmoid(a)``, ``sigmoid(-b)`` (``[B]``
    each: the backward's two factors, kept instead of recomputed; not differentiable).

    ``cutpoints_ext`` is ``[-inf, c_1, ..., c_{K-1}, +inf]`` and ``log_width`` the per-class
    ``log(1 - exp(-(c_{k+1} - c_k)))`` (0 for the open first and last classes). With ``a = c_y - f`` and
    ``b = c_{y+1} - f``, ``nll = -logsigmoid(b) - logsigmoid(-a) - log_width[y]``; the infinite ends make the
    open-interval terms vanish exactly. ``y`` holds grades in ``[0, K)``.
    """
    a = cutpoints_ext.gather(0, y) - f
    b = cutpoints_ext.gather(0, y + 1) - f
    nll = -(F.logsigmoid(b) + F.logsigmoid(-a) + log_width.gather(0, y))
    return nll, torch.sigmoid(a), torch.sigmoid(-b)


@logit_link_nll.register_fake
def _(f, cutpoints_ext, log_width, y):
    return torch.empty_like(f), torch.empty_like(f), torch.empty_like(f)


@torch.library.custom_op("medloss::logit_link_nll_backward", mutates_args=())
def logit_link_nll_backward(
    sig_a: Tensor, sig_neg_b: Tensor, y: Tensor, n_cutpoints: int, grad: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``logit_link_nll`` for the scores ``[B]``, the cutpoints ``[K + 1]`` and the log-widths
    ``[K]``: ``d nll / d a = sigmoid(a)``, ``d nll / d b = -sigmoid(-b)``, summed per class for the cutpoints."""
    ga, gb = grad * sig_a, grad * sig_neg_b
    grad_c = _class_sum(y, ga, n_cutpoints) - _class_sum(y + 1, gb, n_cutpoints)
    return gb - ga, grad_c, -_class_sum(y, grad, n_cutpoints - 1)


@logit_link_nll_backward.register_fake
def _(sig_a, sig_neg_b, y, n_cutpoints, grad):
    return torch.empty_like(grad), grad.new_empty(n_cutpoints), grad.new_empty(n_cutpoints - 1)


def _setup(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.save_for_backward(*inputs, output[1], output[2])


def _backward(ctx, grad, _g_sig_a, _g_sig_neg_b):
    f, cutpoints_ext, log_width, y, sig_a, sig_neg_b = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        return (*logit_link_nll_second_order(f, cutpoints_ext, log_width, y, grad), None)
    grad_f, grad_c, grad_w = logit_link_nll_backward(sig_a, sig_neg_b, y, cutpoints_ext.shape[0], grad)
    return grad_f, grad_c.to(cutpoints_ext.dtype), grad_w.to(log_width.dtype), None


logit_link_nll.register_autograd(_backward, setup_context=_setup)
