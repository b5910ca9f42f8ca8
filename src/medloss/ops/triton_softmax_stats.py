"""Triton kernels of the softmax region statistics (``TP``, ``sum p``, ``sum y`` per image and class):
what Dice, Jaccard, Tversky, Focal Tversky, Generalized Dice and MCC compute from the logits.

Imported only when an op runs with the ``"triton"`` implementation (Triton is never a hard dependency).
Registered with ``torch.library.triton_op`` + ``wrap_triton``, so ``torch.compile`` sees the kernels.

- forward, one launch: each program reads a tile of ``BLOCK_N`` pixels x all classes of one image once
  (logits and labels), takes the softmax in fp32 and writes its partial sums ``[3, C]``, its count of
  labels outside ``[0, C)`` and ``ignore_index``, and its sum of the logits; a sum over the tiles in
  PyTorch (``[B, tiles, 3, C]``, small) finishes the reduction. No atomics: the same input gives the same
  bits.
- backward, one launch: reads the logits and labels once more, recomputes the softmax and writes
  ``dL/dx_j = p_j (U_j - S) + [j = t] p_t V_t`` once, with ``U = dL/dsum_p``, ``V = dL/dTP`` and
  ``S = sum_k p_k U_k + p_t V_t`` (counted pixels; 0 elsewhere).

The reference these are tested against: :func:`medloss.losses._overlap.softmax_statistics_reference`.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

#: elements of one tile (classes x pixels): bounds the registers a program uses whatever C is
TILE = 4096
#: most classes one tile holds (a tile then covers 16 pixels)
MAX_CLASSES = 256


def _tile(c: int) -> tuple[int, int]:
    c_pad = triton.next_power_of_2(max(c, 2))
    return c_pad, max(16, TILE // c_pad)


@triton.jit
def _softmax_tile(x_ptr, t_ptr, C, N, ignore_index, C_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """One tile: all classes x ``BLOCK_N`` pixels of image ``program_id(0)``; its softmax in fp32 (0 at
    pixels not counted: ignored, out of range or past the end)."""
    b = tl.program_id(0)
    cls = tl.arange(0, C_PAD)
    pix = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    in_c = cls < C
    in_n = pix < N
    mask = in_c[:, None] & in_n[None, :]
    offsets = b * C * N + cls[:, None] * N + pix[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=float("-inf")).to(tl.float32)
    t = tl.load(t_ptr + b * N + pix, mask=in_n, other=ignore_index)
    valid = in_n & (t >= 0) & (t < C)
    peak = tl.where(in_n, tl.max(x, axis=0), 0.0)  # pixels past the end: no -inf - -inf
    e = tl.where(mask, tl.exp(x - peak[None, :]), 0.0)
    p = e / tl.where(in_n, tl.sum(e, axis=0), 1.0)[None, :]
    p = tl.where(valid[None, :], p, 0.0)
    hit = (cls[:, None] == t[None, :]) & valid[None, :]
    return cls, in_c, in_n, mask, offsets, x, t, valid, p, hit


@triton.jit
def _stats_forward(x_ptr, t_ptr, part_ptr, bad_ptr, sum_ptr, C, N, n_tiles, ignore_index,
                   C_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    cls, in_c, in_n, mask, _, x, t, valid, p, hit = _softmax_tile(x_ptr, t_ptr, C, N, ignore_index, C_PAD, BLOCK_N)
    bad = in_n & (t != ignore_index) & ~valid
    part = tl.program_id(0) * n_tiles + tl.program_id(1)
    base = part_ptr + part * 3 * C
    tl.store(base + cls, tl.sum(tl.where(hit, p, 0.0), axis=1), mask=in_c)
    tl.store(base + C + cls, tl.sum(p, axis=1), mask=in_c)
    tl.store(base + 2 * C + cls, tl.sum(hit.to(tl.float32), axis=1), mask=in_c)
    tl.store(bad_ptr + part, tl.sum(bad.to(tl.int32), axis=0))
    tl.store(sum_ptr + part, tl.sum(tl.sum(tl.where(mask, x, 0.0), axis=1), axis=0))


@triton.jit
def _stats_backward(x_ptr, t_ptr, g_tp_ptr, g_sp_ptr, grad_ptr, C, N, ignore_index,
                    C_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    cls, in_c, _, mask, offsets, _, _, valid, p, hit = _softmax_tile(x_ptr, t_ptr, C, N, ignore_index, C_PAD,
                                                                     BLOCK_N)
    b = tl.program_id(0)
    u = tl.load(g_sp_ptr + b * C + cls, mask=in_c, other=0.0).to(tl.float32)
    v = tl.load(g_tp_ptr + b * C + cls, mask=in_c, other=0.0).to(tl.float32)
    pv = tl.where(hit, p * v[:, None], 0.0)  # p_t V_t in the true class's row
    s = tl.sum(p * u[:, None], axis=0) + tl.sum(pv, axis=0)
    grad = tl.where(valid[None, :], p * (u[:, None] - s[None, :]) + pv, 0.0)
    tl.store(grad_ptr + offsets, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _flat(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, int, int, int]:
    b, c, n = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    return x.reshape(b, c, n).contiguous(), t.reshape(b, n).contiguous(), b, c, n


@triton_op("medloss::softmax_stats_triton", mutates_args={})
def softmax_stats_triton(x: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(stats [B, 3, C] in fp32, n_bad (0-dim int64), logits_sum (0-dim fp32))`` of ``softmax(x)``
    against the class indices ``target`` ``[B, *]``; pixels labelled ``ignore_index`` or outside
    ``[0, C)`` count nowhere (the latter are counted in ``n_bad``)."""
    xf, tf, b, c, n = _flat(x, target)
    c_pad, block_n = _tile(c)
    n_tiles = max(1, triton.cdiv(n, block_n))
    part = torch.empty((b, n_tiles, 3, c), dtype=torch.float32, device=x.device)
    bad = torch.empty((b, n_tiles), dtype=torch.int32, device=x.device)
    total = torch.empty((b, n_tiles), dtype=torch.float32, device=x.device)
    if b:
        wrap_triton(_stats_forward)[(b, n_tiles)](xf, tf, part, bad, total, c, n, n_tiles, ignore_index,
                                                   C_PAD=c_pad, BLOCK_N=block_n)
    return part.sum(1), bad.sum().to(torch.int64), total.sum()


@triton_op("medloss::softmax_stats_triton_backward", mutates_args={})
def softmax_stats_triton_backward(x: Tensor, target: Tensor, ignore_index: int, g_tp: Tensor,
                                  g_sum_p: Tensor) -> Tensor:
    """Gradient of :func:`softmax_stats_triton` with respect to ``x`` (``x.shape``, ``x.dtype``), from
    ``dL/dTP`` and ``dL/dsum_p`` ``[B, C]``."""
    xf, tf, b, c, n = _flat(x, target)
    c_pad, block_n = _tile(c)
    grad = torch.empty_like(xf)
    if b and n:
        wrap_triton(_stats_backward)[(b, triton.cdiv(n, block_n))](
            xf, tf, g_tp.to(torch.float32).contiguous(), g_sum_p.to(torch.float32).contiguous(), grad, c, n,
            ignore_index, C_PAD=c_pad, BLOCK_N=block_n)
    return grad.view(x.shape)


def _setup(ctx, inputs, output) -> None:
    x, target, ignore_index = inputs
    ctx.save_for_backward(x, target)
    ctx.ignore_index = ignore_index


def _backward(ctx, g_stats: Tensor, g_bad: Tensor, g_sum: Tensor):
    x, target = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        from ..losses._common import second_order_grads
        from ..losses._overlap import softmax_statistics_reference

        def reference(x_: Tensor) -> Tensor:
            valid = (target != ctx.ignore_index) & (target >= 0) & (target < x_.shape[1])
            tp, sum_p, sum_y, _ = softmax_statistics_reference(x_, target, valid, False)
            return torch.stack([tp, sum_p, sum_y], 1)

        (grad,) = second_order_grads(reference, (x,), (g_stats,))
        return grad, None, None
    grad = softmax_stats_triton_backward(x, target, ctx.ignore_index, g_stats.select(1, 0), g_stats.select(1, 1))
    return grad, None, None


softmax_stats_triton.register_autograd(_backward, setup_context=_setup)
