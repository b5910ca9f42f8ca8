"""Triton kernels of the sigmoid region statistics (``TP``, ``sum p``, ``sum y`` per image and channel):
what the region losses compute in binary and multilabel mode.

Imported only when an op runs with the ``"triton"`` implementation. Forward, one launch: each program
reads ``BLOCK`` positions of one (image, channel) row and writes its partial sums; a sum over the tiles
in PyTorch finishes the reduction (no atomics, the same bits every run). Backward, one launch:
``dL/dx = sigmoid(x) sigmoid(-x) (y dL/dTP + dL/dsum_p)`` at counted positions, ``sigmoid(-x)`` rather
than ``1 - sigmoid(x)`` so that a saturated logit keeps its gradient.

The reference: ``torch.ops.medloss.sigmoid_stats``'s defining formula (:mod:`medloss._ops`).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

BLOCK = 1024


@triton.jit
def _row_tile(x_ptr, y_ptr, m_ptr, N, C, CV, HAS_VALID: tl.constexpr, BLOCK: tl.constexpr):
    """One tile of row ``program_id(0)`` (= image * C + channel): logits, labels and counted mask."""
    row = tl.program_id(0)
    pos = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = pos < N
    x = tl.load(x_ptr + row * N + pos, mask=inside, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + row * N + pos, mask=inside, other=0.0).to(tl.float32)
    counted = inside
    if HAS_VALID:  # [B, 1, N] (binary) or [B, C, N] (multilabel)
        b = row // C
        v_row = b * CV + (row % C) % CV
        counted = counted & (tl.load(m_ptr + v_row * N + pos, mask=inside, other=0) != 0)
    return row, pos, inside, x, tl.where(counted, y, 0.0), counted


@triton.jit
def _sigmoid_forward(x_ptr, y_ptr, m_ptr, part_ptr, N, C, CV, n_tiles, HAS_VALID: tl.constexpr,
                     BLOCK: tl.constexpr):
    row, _, _, x, y, counted = _row_tile(x_ptr, y_ptr, m_ptr, N, C, CV, HAS_VALID, BLOCK)
    p = tl.where(counted, tl.sigmoid(x), 0.0)
    base = part_ptr + (row * n_tiles + tl.program_id(1)) * 3
    tl.store(base, tl.sum(p * y, axis=0))
    tl.store(base + 1, tl.sum(p, axis=0))
    tl.store(base + 2, tl.sum(y, axis=0))


@triton.jit
def _sigmoid_backward(x_ptr, y_ptr, m_ptr, g_tp_ptr, g_sp_ptr, grad_ptr, N, C, CV, HAS_VALID: tl.constexpr,
                      BLOCK: tl.constexpr):
    row, pos, inside, x, y, counted = _row_tile(x_ptr, y_ptr, m_ptr, N, C, CV, HAS_VALID, BLOCK)
    g = y * tl.load(g_tp_ptr + row).to(tl.float32) + tl.load(g_sp_ptr + row).to(tl.float32)
    grad = tl.where(counted, tl.sigmoid(x) * tl.sigmoid(-x) * g, 0.0)
    tl.store(grad_ptr + row * N + pos, grad.to(grad_ptr.dtype.element_ty), mask=inside)


def _rows(x: Tensor, y: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor, int, int, int, int]:
    b, c = x.shape[0], x.shape[1]
    n = math.prod(x.shape[2:])
    xf = x.reshape(b * c, -1).contiguous()
    yf = y.reshape(b * c, -1).contiguous()
    if valid is None:
        return xf, yf, xf, b, c, 1, n
    cv = valid.shape[1] if valid.ndim > 2 else 1
    return xf, yf, valid.reshape(b * cv, -1).to(torch.uint8).contiguous(), b, c, cv, n


@triton_op("medloss::sigmoid_stats_triton", mutates_args={})
def sigmoid_stats_triton(x: Tensor, y: Tensor, valid: Tensor | None) -> Tensor:
    """``torch.ops.medloss.sigmoid_stats`` on Triton: ``[B, 3, C]`` fp32."""
    xf, yf, mf, b, c, cv, n = _rows(x, y, valid)
    n_tiles = max(1, triton.cdiv(n, BLOCK))
    part = torch.zeros((b * c, n_tiles, 3), dtype=torch.float32, device=x.device)
    if b * c and n:
        wrap_triton(_sigmoid_forward)[(b * c, n_tiles)](xf, yf, mf, part, n, c, cv, n_tiles,
                                                         HAS_VALID=valid is not None, BLOCK=BLOCK)
    return part.sum(1).reshape(b, c, 3).transpose(1, 2).contiguous()


@triton_op("medloss::sigmoid_stats_triton_backward", mutates_args={})
def sigmoid_stats_triton_backward(x: Tensor, y: Tensor, valid: Tensor | None, g_tp: Tensor, g_sum_p: Tensor) -> Tensor:
    """Gradient of :func:`sigmoid_stats_triton` with respect to ``x`` from ``dL/dTP``, ``dL/dsum_p`` ``[B, C]``."""
    xf, yf, mf, b, c, cv, n = _rows(x, y, valid)
    grad = torch.empty_like(xf)
    if b * c and n:
        wrap_triton(_sigmoid_backward)[(b * c, triton.cdiv(n, BLOCK))](
            xf, yf, mf, g_tp.to(torch.float32).contiguous(), g_sum_p.to(torch.float32).contiguous(), grad, n, c, cv,
            HAS_VALID=valid is not None, BLOCK=BLOCK)
    return grad.view(x.shape)


def _setup(ctx, inputs, output) -> None:
    x, y, valid = inputs
    ctx.save_for_backward(x, y, valid)


def _backward(ctx, g_stats: Tensor):
    x, y, valid = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        from .._ops import sigmoid_stats_reference
        from ..losses._common import second_order_grads

        (grad,) = second_order_grads(lambda x_: sigmoid_stats_reference(x_, y, valid), (x,), (g_stats,))
        return grad, None, None
    return sigmoid_stats_triton_backward(x, y, valid, g_stats.select(1, 0), g_stats.select(1, 1)), None, None


sigmoid_stats_triton.register_autograd(_backward, setup_context=_setup)
