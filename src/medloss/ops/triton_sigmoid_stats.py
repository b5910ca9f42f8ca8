"""Triton kernels of the sigmoid region statistics (``TP``, ``sum p``, ``sum y`` per image and channel),
what the region losses compute in binary and multilabel mode, and of the sigmoid focal loss
(``FocalLoss`` in binary / multilabel mode).

Imported only when an op runs with the ``"triton"`` implementation. Forward, one launch: each program
reads ``BLOCK`` positions of one (image, channel) row and writes its partial sums; a sum over the tiles
in PyTorch finishes the reduction (no atomics, the same bits every run). Backward, one launch:
``dL/dx = sigmoid(x) sigmoid(-x) (y dL/dTP + dL/dsum_p)`` at counted positions, ``sigmoid(-x)`` rather
than ``1 - sigmoid(x)`` so that a saturated logit keeps its gradient.

The references: :func:`medloss.ops.reference.sigmoid_stats_reference` and ``sigmoid_focal_reference``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .reference import second_order_grads, sigmoid_focal_reference, sigmoid_stats_reference

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
    cv = valid.numel() // max(1, b * n)  # [B, 1, *] (binary) or [B, C, *] (multilabel), as the reference's views
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
        (grad,) = second_order_grads(lambda x_: sigmoid_stats_reference(x_, y, valid), (x,), (g_stats,))
        return grad, None, None
    return sigmoid_stats_triton_backward(x, y, valid, g_stats.select(1, 0), g_stats.select(1, 1)), None, None


sigmoid_stats_triton.register_autograd(_backward, setup_context=_setup)


# ------------------------------------------------------------------------------------- sigmoid focal
@triton.jit
def _log1p_small(u):
    """``log(1 + u)`` for ``u`` in [0, 1], exact for tiny ``u`` (Triton has no log1p)."""
    return tl.where(u < 1e-4, u * (1.0 - 0.5 * u), tl.log(1.0 + u))


@triton.jit
def _focal_side(log_v, v, gamma):
    """For one side (``log v`` = log p or log(1 - p), ``v`` its probability): ``-(1 - v)^gamma log v`` and its
    slope ``(1 - v)^gamma (1 - gamma v log v / (1 - v))``, with ``1 - v`` the other side's probability."""
    rest = 1.0 - v
    mod = tl.where(gamma == 0.0, 1.0, tl.exp(gamma * tl.log(tl.maximum(rest, 1e-30))))
    mod = tl.where(rest > 0.0, mod, tl.where(gamma == 0.0, 1.0, 0.0))
    ratio = tl.where(rest > 1e-3, log_v / tl.maximum(rest, 1e-30), -1.0 + 0.5 * log_v)
    return -mod * log_v, mod * (1.0 - gamma * v * ratio)


@triton.jit
def _focal_parts(x, y, counted, row, a_pos_ptr, a_neg_ptr, C, CA, gamma, smoothing):
    """Per position: the weights of the two sides, ``p``, ``1 - p`` and each side's value and slope."""
    p = tl.sigmoid(x)
    q = tl.sigmoid(-x)
    log_p = tl.minimum(x, 0.0) - _log1p_small(tl.exp(-tl.abs(x)))  # logsigmoid(x)
    log_q = tl.minimum(-x, 0.0) - _log1p_small(tl.exp(-tl.abs(x)))  # logsigmoid(-x)
    ys = y * (1.0 - smoothing) + 0.5 * smoothing
    channel = (row % C) % CA
    c_pos = tl.where(counted, ys * tl.load(a_pos_ptr + channel).to(tl.float32), 0.0)
    c_neg = tl.where(counted, (1.0 - ys) * tl.load(a_neg_ptr + channel).to(tl.float32), 0.0)
    value_pos, slope_pos = _focal_side(log_p, p, gamma)
    value_neg, slope_neg = _focal_side(log_q, q, gamma)
    return c_pos, c_neg, p, q, value_pos, slope_pos, value_neg, slope_neg


@triton.jit
def _sigmoid_focal_forward(x_ptr, y_ptr, m_ptr, a_pos_ptr, a_neg_ptr, out_ptr, part_ptr, N, C, CV, CA, n_tiles, gamma,
                           smoothing, HAS_VALID: tl.constexpr, PER_POS: tl.constexpr, BLOCK: tl.constexpr):
    row, pos, inside, x, _, counted = _row_tile(x_ptr, y_ptr, m_ptr, N, C, CV, HAS_VALID, BLOCK)
    y = tl.load(y_ptr + row * N + pos, mask=inside, other=0.0).to(tl.float32)
    c_pos, c_neg, _, _, value_pos, _, value_neg, _ = _focal_parts(x, y, counted, row, a_pos_ptr, a_neg_ptr, C, CA,
                                                                    gamma, smoothing)
    value = tl.where(counted, c_pos * value_pos + c_neg * value_neg, 0.0)
    if PER_POS:
        tl.store(out_ptr + row * N + pos, value, mask=inside)
    tl.store(part_ptr + row * n_tiles + tl.program_id(1), tl.sum(value, axis=0))


@triton.jit
def _sigmoid_focal_backward(x_ptr, y_ptr, m_ptr, a_pos_ptr, a_neg_ptr, g_ptr, grad_ptr, N, C, CV, CA, gamma, smoothing,
                            HAS_VALID: tl.constexpr, PER_POS: tl.constexpr, BLOCK: tl.constexpr):
    row, pos, inside, x, _, counted = _row_tile(x_ptr, y_ptr, m_ptr, N, C, CV, HAS_VALID, BLOCK)
    y = tl.load(y_ptr + row * N + pos, mask=inside, other=0.0).to(tl.float32)
    c_pos, c_neg, p, q, _, slope_pos, _, slope_neg = _focal_parts(x, y, counted, row, a_pos_ptr, a_neg_ptr, C, CA,
                                                                    gamma, smoothing)
    if PER_POS:
        g = tl.load(g_ptr + row * N + pos, mask=inside, other=0.0).to(tl.float32)
    else:
        g = tl.load(g_ptr).to(tl.float32)
    # d log p / dx = 1 - p, d log(1 - p) / dx = -p
    grad = tl.where(counted, g * (c_neg * slope_neg * p - c_pos * slope_pos * q), 0.0)
    tl.store(grad_ptr + row * N + pos, grad.to(grad_ptr.dtype.element_ty), mask=inside)


@triton_op("medloss::sigmoid_focal_triton", mutates_args={})
def sigmoid_focal_triton(x: Tensor, y: Tensor, valid: Tensor | None, a_pos: Tensor, a_neg: Tensor, gamma: float,
                         label_smoothing: float, per_position: bool) -> Tensor:
    """``torch.ops.medloss.sigmoid_focal`` on Triton (fp32): per position (``x``'s shape) or the sum."""
    xf, yf, mf, b, c, cv, n = _rows(x, y, valid)
    n_tiles = max(1, triton.cdiv(n, BLOCK))
    out = torch.zeros((b * c, n if per_position else 0), dtype=torch.float32, device=x.device)
    part = torch.zeros((b * c, n_tiles), dtype=torch.float32, device=x.device)
    a_pos, a_neg = a_pos.to(torch.float32).contiguous(), a_neg.to(torch.float32).contiguous()
    if b * c and n:
        wrap_triton(_sigmoid_focal_forward)[(b * c, n_tiles)](
            xf, yf, mf, a_pos, a_neg, out if per_position else part, part, n, c, cv, a_pos.numel(), n_tiles,
            float(gamma), float(label_smoothing), HAS_VALID=valid is not None, PER_POS=per_position, BLOCK=BLOCK)
    return out.view(x.shape) if per_position else part.sum()


@triton_op("medloss::sigmoid_focal_triton_backward", mutates_args={})
def sigmoid_focal_triton_backward(x: Tensor, y: Tensor, valid: Tensor | None, a_pos: Tensor, a_neg: Tensor,
                                  gamma: float, label_smoothing: float, grad_out: Tensor) -> Tensor:
    """Gradient of :func:`sigmoid_focal_triton` with respect to ``x`` from ``dL/dvalue`` (per position or 0-dim)."""
    xf, yf, mf, b, c, cv, n = _rows(x, y, valid)
    grad = torch.empty_like(xf)
    per_position = grad_out.dim() > 0
    g = grad_out.to(torch.float32).reshape(-1).contiguous()
    a_pos, a_neg = a_pos.to(torch.float32).contiguous(), a_neg.to(torch.float32).contiguous()
    if b * c and n:
        wrap_triton(_sigmoid_focal_backward)[(b * c, triton.cdiv(n, BLOCK))](
            xf, yf, mf, a_pos, a_neg, g, grad, n, c, cv, a_pos.numel(), float(gamma), float(label_smoothing),
            HAS_VALID=valid is not None, PER_POS=per_position, BLOCK=BLOCK)
    return grad.view(x.shape)


def _focal_setup(ctx, inputs, output) -> None:
    x, y, valid, a_pos, a_neg, gamma, label_smoothing, per_position = inputs
    ctx.args = (gamma, label_smoothing)
    ctx.save_for_backward(x, y, valid, a_pos, a_neg)


def _focal_backward(ctx, grad_out: Tensor):
    x, y, valid, a_pos, a_neg = ctx.saved_tensors
    gamma, label_smoothing = ctx.args
    none = (None,) * 7
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        def reference(x_: Tensor) -> Tensor:
            return sigmoid_focal_reference(x_, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out.dim() > 0)

        (grad,) = second_order_grads(reference, (x,), (grad_out,))
        return (grad, *none)
    return (sigmoid_focal_triton_backward(x, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out), *none)


sigmoid_focal_triton.register_autograd(_focal_backward, setup_context=_focal_setup)
