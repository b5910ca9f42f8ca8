"""Triton kernels of the softmax region statistics (``TP``, ``sum p``, ``sum y`` per image and class) and
of the per-pixel term computed beside them: what Dice, Jaccard, Tversky, Focal Tversky, Generalized Dice,
MCC (no term), the Unified family and Hybrid (the focal term) and Combo (its weighted cross-entropy)
compute from the logits.

Imported only when an op runs with the ``"triton"`` implementation (Triton is never a hard dependency).
Registered with ``torch.library.triton_op`` + ``wrap_triton``, so ``torch.compile`` sees the kernels.

- forward, one launch: each program reads a tile of ``BLOCK_N`` pixels x all classes of one image once
  (logits and labels), takes the softmax in fp32 and writes its partial sums ``[3, C]``, its partial sum
  of the term, its count of labels outside ``[0, C)`` and ``ignore_index``, and its sum of the logits;
  a sum over the tiles in PyTorch (``[B, tiles, 3, C]``, small) finishes the reduction. No atomics: the
  same input gives the same bits.
- backward, one launch: reads the logits and labels once more, recomputes the softmax and writes
  ``dL/dx_j = p_j (U_j - S) + [j = t] p_t V_t`` plus the term's gradient once, with ``U = dL/dsum_p``,
  ``V = dL/dTP`` and ``S = sum_k p_k U_k + p_t V_t`` (counted pixels; 0 elsewhere).

Terms (``TERM``, as :mod:`medloss.ops.reference`): 0 none; 1 focal, ``sum w_t -(1 - p_t)^gamma_t log p_t`` with
``gamma_bg`` for class 0 and ``gamma_fg`` for the others, ``1 - p_t`` as the sum of the other
probabilities (exact for a confident pixel); 2 Combo's weighted cross-entropy
``sum -(beta log p_t + (1 - beta) sum_{c != t} log(1 - p_c))``, the log of the one class with
``p > 1/2`` taken from the log-sum-exp of the others (finite for any logit); 3 the focal loss with label
smoothing ``eps`` (passed as ``beta``), ``sum_c q_c w_c -(1 - p_c)^gamma log p_c`` with
``q_c = eps / C + (1 - eps) [c = t]`` and one gamma (``gamma_fg``).

The reference these are tested against: :mod:`medloss.ops.reference`.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .reference import second_order_grads, softmax_focal_reference, softmax_stats_second_order

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
    return cls, in_c, in_n, mask, offsets, x, t, valid, p, hit, peak, e


@triton.jit
def _log_target(x, peak, e, hit, valid):
    """``log p_t`` of each counted pixel (0 elsewhere), in log space: no log of a rounded ``p``, and
    ``(x_t - max) - log sum`` (not ``x_t - (max + log sum)``, which rounds at large logits)."""
    shifted = tl.sum(tl.where(hit, x - peak[None, :], 0.0), axis=0)
    return tl.where(valid, shifted - tl.log(tl.where(valid, tl.sum(e, axis=0), 1.0)), 0.0)


@triton.jit
def _focal_factors(p, hit, valid, t, w_ptr, l_t, gamma_bg, gamma_fg):
    """Per counted pixel: ``w_t``, ``gamma_t``, ``p_t``, ``q = 1 - p_t`` (the other classes' sum) and
    ``(1 - p_t)^gamma_t``."""
    p_t = tl.sum(tl.where(hit, p, 0.0), axis=0)
    q = tl.sum(tl.where(hit, 0.0, p), axis=0)
    gamma = tl.where(t == 0, gamma_bg, gamma_fg)
    mod = tl.where(gamma == 0.0, 1.0, tl.exp(gamma * tl.log(tl.maximum(q, 1e-30))))
    mod = tl.where(q > 0.0, mod, tl.where(gamma == 0.0, 1.0, 0.0))
    w = tl.load(w_ptr + tl.where(valid, t, 0), mask=valid, other=0.0).to(tl.float32)
    return w, gamma, p_t, q, mod


@triton.jit
def _wce_parts(x, p, mask, hit, valid, peak, log_s):
    """Combo's ``sum_{c != t} log(1 - p_c)`` per pixel, and what its gradient needs: the one class with
    ``p > 1/2`` (``big``), ``log(1 - p_big)`` from the log-sum-exp of the other logits, and the softmax of
    the other classes (``others``, 0 at ``big``)."""
    big = (p > 0.5) & mask
    m2 = tl.max(tl.where(big | ~mask, float("-inf"), x), axis=0)
    m2 = tl.where(m2 == float("-inf"), 0.0, m2)  # one class only: no other logit
    ex = tl.exp(tl.where(big | ~mask, float("-inf"), x - m2[None, :]))
    rest = tl.sum(ex, axis=0)
    log_q_big = (m2 - peak) + tl.log(tl.where(rest > 0.0, rest, 1.0)) - log_s
    log_q = tl.where(big, log_q_big[None, :], tl.log(1.0 - tl.where(big, 0.0, p)))
    total = tl.sum(tl.where(mask & ~hit & valid[None, :], log_q, 0.0), axis=0)
    others = ex / tl.where(rest > 0.0, rest, 1.0)[None, :]
    return total, big, others


@triton.jit
def _smoothed_focal(x, p, mask, hit, valid, peak, e, cls, w_ptr, C, gamma, eps):
    """Term 3, per class and pixel: the smoothed, weighted target ``q_c w_c`` (0 where nothing counts), the
    focal value ``-(1 - p_c)^gamma log p_c`` and its slope ``-d value / d log p_c``. ``1 - p`` of the one
    class with ``p > 1/2`` is the sum of the others (exact for a confident class)."""
    s = tl.where(valid, tl.sum(e, axis=0), 1.0)
    lp = tl.where(mask, (x - peak[None, :]) - tl.log(s)[None, :], 0.0)
    big = (p > 0.5) & mask
    rest = tl.sum(tl.where(big, 0.0, p), axis=0)
    q = tl.where(big, rest[None, :], 1.0 - p)
    mod = tl.where(gamma == 0.0, 1.0, tl.exp(gamma * tl.log(tl.maximum(q, 1e-30))))
    mod = tl.where(q > 0.0, mod, tl.where(gamma == 0.0, 1.0, 0.0))
    ratio = tl.where(q > 1e-3, lp / tl.maximum(q, 1e-30), -1.0 + 0.5 * lp)
    slope = mod * (1.0 - gamma * p * ratio)
    w = tl.load(w_ptr + cls, mask=cls < C, other=0.0).to(tl.float32)
    qw = tl.where(mask & valid[None, :], (eps / C + (1.0 - eps) * hit.to(tl.float32)) * w[:, None], 0.0)
    return qw, -mod * lp, slope


@triton.jit
def _stats_forward(x_ptr, t_ptr, w_ptr, part_ptr, term_ptr, pos_ptr, bad_ptr, sum_ptr, C, N, n_tiles, ignore_index,
                   gamma_bg, gamma_fg, beta, TERM: tl.constexpr, PER_POS: tl.constexpr, C_PAD: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    cls, in_c, in_n, mask, _, x, t, valid, p, hit, peak, e = _softmax_tile(x_ptr, t_ptr, C, N, ignore_index, C_PAD,
                                                                           BLOCK_N)
    bad = in_n & (t != ignore_index) & ~valid
    part = tl.program_id(0) * n_tiles + tl.program_id(1)
    base = part_ptr + part * 3 * C
    tl.store(base + cls, tl.sum(tl.where(hit, p, 0.0), axis=1), mask=in_c)
    tl.store(base + C + cls, tl.sum(p, axis=1), mask=in_c)
    tl.store(base + 2 * C + cls, tl.sum(hit.to(tl.float32), axis=1), mask=in_c)
    tl.store(bad_ptr + part, tl.sum(bad.to(tl.int32), axis=0))
    tl.store(sum_ptr + part, tl.sum(tl.sum(tl.where(mask, x, 0.0), axis=1), axis=0))
    if TERM != 0:
        l_t = _log_target(x, peak, e, hit, valid)
        if TERM == 1:
            w, gamma, p_t, q, mod = _focal_factors(p, hit, valid, t, w_ptr, l_t, gamma_bg, gamma_fg)
            value = -w * mod * l_t
        elif TERM == 3:
            qw, focal, _ = _smoothed_focal(x, p, mask, hit, valid, peak, e, cls, w_ptr, C, gamma_fg, beta)
            value = tl.sum(qw * focal, axis=0)
        else:
            log_s = tl.log(tl.where(valid, tl.sum(e, axis=0), 1.0))
            log_q_sum, _, _ = _wce_parts(x, p, mask, hit, valid, peak, log_s)
            value = -(beta * l_t + (1.0 - beta) * log_q_sum)
        value = tl.where(valid, value, 0.0)
        tl.store(term_ptr + part, tl.sum(value, axis=0))
        if PER_POS:  # the term at each pixel (FocalLoss(reduction="none"))
            pix = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
            tl.store(pos_ptr + tl.program_id(0) * N + pix, value, mask=in_n)


@triton.jit
def _stats_backward(x_ptr, t_ptr, w_ptr, g_tp_ptr, g_sp_ptr, g_term_ptr, grad_ptr, C, N, ignore_index, gamma_bg,
                    gamma_fg, beta, TERM: tl.constexpr, PER_POS: tl.constexpr, C_PAD: tl.constexpr,
                    BLOCK_N: tl.constexpr):
    cls, in_c, in_n, mask, offsets, x, t, valid, p, hit, peak, e = _softmax_tile(x_ptr, t_ptr, C, N, ignore_index,
                                                                                 C_PAD, BLOCK_N)
    b = tl.program_id(0)
    u = tl.load(g_sp_ptr + b * C + cls, mask=in_c, other=0.0).to(tl.float32)
    v = tl.load(g_tp_ptr + b * C + cls, mask=in_c, other=0.0).to(tl.float32)
    pv = tl.where(hit, p * v[:, None], 0.0)  # p_t V_t in the true class's row
    s = tl.sum(p * u[:, None], axis=0) + tl.sum(pv, axis=0)
    grad = p * (u[:, None] - s[None, :]) + pv
    if TERM != 0:
        if PER_POS:
            pix = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
            g = tl.load(g_term_ptr + b * N + pix, mask=in_n, other=0.0).to(tl.float32)
        else:
            g = tl.load(g_term_ptr).to(tl.float32)
        y = hit.to(tl.float32)
        l_t = _log_target(x, peak, e, hit, valid)
        if TERM == 1:
            w, gamma, p_t, q, mod = _focal_factors(p, hit, valid, t, w_ptr, l_t, gamma_bg, gamma_fg)
            # slope = -d value / d log p_t = (1 - p)^gamma (1 - gamma p log p / (1 - p)); the ratio's series
            # -1 + log p / 2 near p = 1, where (1 - p) underflows
            ratio = tl.where(q > 1e-3, l_t / tl.maximum(q, 1e-30), -1.0 + 0.5 * l_t)
            slope = mod * (1.0 - gamma * p_t * ratio)
            grad += (g * w * slope)[None, :] * (p - y)
        elif TERM == 3:  # sum_c q_c w_c slope_c (p_j - [j = c])
            qw, _, slope_c = _smoothed_focal(x, p, mask, hit, valid, peak, e, cls, w_ptr, C, gamma_fg, beta)
            wq = qw * slope_c * g
            grad += p * tl.sum(wq, axis=0)[None, :] - wq
        else:
            log_s = tl.log(tl.where(valid, tl.sum(e, axis=0), 1.0))
            _, big, others = _wce_parts(x, p, mask, hit, valid, peak, log_s)
            bigf = big.to(tl.float32)
            r = tl.where(big | ~mask, 0.0, p / (1.0 - tl.where(big, 0.0, p)))  # p_c / (1 - p_c), small classes
            r_rest = tl.sum(tl.where(hit, 0.0, r), axis=0)
            p_big = tl.sum(p * bigf, axis=0)
            big_not_t = tl.sum(tl.where(hit, 0.0, bigf), axis=0)
            d_others = p * r_rest[None, :] + (big_not_t * p_big)[None, :] * (others - bigf) - r * (1.0 - y)
            grad += g * (beta * (p - y) - (1.0 - beta) * d_others)
    grad = tl.where(valid[None, :], grad, 0.0)
    tl.store(grad_ptr + offsets, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _flat(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, int, int, int]:
    b, c, n = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    return x.reshape(b, c, n).contiguous(), t.reshape(b, n).contiguous(), b, c, n


def _term_weight(weight: Tensor | None, c: int, like: Tensor) -> Tensor:
    return torch.ones(c, dtype=torch.float32, device=like.device) if weight is None else (
        weight.to(device=like.device, dtype=torch.float32).contiguous())


def _forward(x: Tensor, target: Tensor, ignore_index: int, term: int, weight: Tensor | None, gamma_bg: float,
             gamma_fg: float, beta: float, per_position: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One launch of the forward kernel: per tile the statistics ``[B, tiles, 3, C]``, the term's sum, the
    bad-label count and the logits' sum; the term per pixel ``[B, N]`` with ``per_position``."""
    xf, tf, b, c, n = _flat(x, target)
    c_pad, block_n = _tile(c)
    n_tiles = max(1, triton.cdiv(n, block_n))
    part = torch.zeros((b, n_tiles, 3, c), dtype=torch.float32, device=x.device)
    term_part = torch.zeros((b, n_tiles), dtype=torch.float32, device=x.device)
    per_pixel = torch.zeros((b, n if per_position else 0), dtype=torch.float32, device=x.device)
    bad = torch.zeros((b, n_tiles), dtype=torch.int32, device=x.device)
    total = torch.zeros((b, n_tiles), dtype=torch.float32, device=x.device)
    if b and n:
        wrap_triton(_stats_forward)[(b, n_tiles)](
            xf, tf, _term_weight(weight, c, x), part, term_part, per_pixel if per_position else term_part, bad, total,
            c, n, n_tiles, ignore_index, float(gamma_bg), float(gamma_fg), float(beta), TERM=term,
            PER_POS=per_position, C_PAD=c_pad, BLOCK_N=block_n)
    return part, term_part, per_pixel, bad, total


@triton_op("medloss::softmax_stats_triton", mutates_args={})
def softmax_stats_triton(x: Tensor, target: Tensor, ignore_index: int, term: int, weight: Tensor | None,
                         gamma_bg: float, gamma_fg: float, beta: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(stats [B, 3, C] fp32, term sum (0-dim fp32), n_bad (0-dim int64), logits_sum (0-dim fp32))`` of
    ``softmax(x)`` against the class indices ``target`` ``[B, *]``; pixels labelled ``ignore_index`` or
    outside ``[0, C)`` count nowhere (the latter are counted in ``n_bad``). ``term``, ``weight`` (the focal
    term's ``w`` per class), ``gamma_bg``, ``gamma_fg``, ``beta``: as ``torch.ops.medloss.softmax_stats``."""
    part, term_part, _, bad, total = _forward(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, False)
    return part.sum(1), term_part.sum(), bad.sum().to(torch.int64), total.sum()


@triton_op("medloss::softmax_stats_triton_backward", mutates_args={})
def softmax_stats_triton_backward(x: Tensor, target: Tensor, ignore_index: int, term: int, weight: Tensor | None,
                                  gamma_bg: float, gamma_fg: float, beta: float, g_tp: Tensor, g_sum_p: Tensor,
                                  g_term: Tensor) -> Tensor:
    """Gradient of :func:`softmax_stats_triton` with respect to ``x`` (``x.shape``, ``x.dtype``), from
    ``dL/dTP`` and ``dL/dsum_p`` ``[B, C]`` and ``dL/dterm`` (0-dim)."""
    xf, tf, b, c, n = _flat(x, target)
    c_pad, block_n = _tile(c)
    grad = torch.empty_like(xf)
    if b and n:
        wrap_triton(_stats_backward)[(b, triton.cdiv(n, block_n))](
            xf, tf, _term_weight(weight, c, x), g_tp.to(torch.float32).contiguous(),
            g_sum_p.to(torch.float32).contiguous(), g_term.to(torch.float32).reshape(1), grad, c, n, ignore_index,
            float(gamma_bg), float(gamma_fg), float(beta), TERM=term, PER_POS=False, C_PAD=c_pad, BLOCK_N=block_n)
    return grad.view(x.shape)


def _setup(ctx, inputs, output) -> None:
    x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta = inputs
    ctx.save_for_backward(x, target, weight)
    ctx.args = (ignore_index, term, gamma_bg, gamma_fg, beta)


def _backward(ctx, g_stats: Tensor, g_term: Tensor, g_bad: Tensor, g_sum: Tensor):
    x, target, weight = ctx.saved_tensors
    ignore_index, term, gamma_bg, gamma_fg, beta = ctx.args
    g_stats = x.new_zeros(x.shape[0], 3, x.shape[1]) if g_stats is None else g_stats
    g_term = x.new_zeros(()) if g_term is None else g_term
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        grad = softmax_stats_second_order(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_stats,
                                          g_term)
        return grad, None, None, None, None, None, None, None
    grad = softmax_stats_triton_backward(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta,
                                         g_stats.select(1, 0), g_stats.select(1, 1), g_term)
    return grad, None, None, None, None, None, None, None


softmax_stats_triton.register_autograd(_backward, setup_context=_setup)


# ----------------------------------------------------------------------------------------- focal rows
def _images(x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``[N, C]`` (classification) as one image of ``N`` pixels; images as they are."""
    return (x.t().unsqueeze(0), target.unsqueeze(0)) if x.ndim == 2 else (x, target)


def _focal_term(label_smoothing: float) -> tuple[int, float]:
    """The kernels' term and its ``beta`` argument: 1 (focal) or 3 (focal with smoothing ``eps``)."""
    return (3, float(label_smoothing)) if label_smoothing else (1, 0.5)


@triton_op("medloss::softmax_focal_triton", mutates_args={})
def softmax_focal_triton(x: Tensor, target: Tensor, ignore_index: int, weight: Tensor | None, gamma_bg: float,
                         gamma_fg: float, label_smoothing: float,
                         per_position: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The focal loss ``-w_t (1 - p_t)^gamma_t log p_t`` of ``softmax(x)`` (``x`` ``[B, C, *]`` or rows
    ``[N, C]``) as ``torch.ops.medloss.softmax_focal`` (with ``label_smoothing``, one gamma: ``gamma_fg``):
    ``(value, counts [C], n_bad, logits_sum)``, ``value`` per position (``target``'s shape, 0 where nothing is
    counted) with ``per_position``, else its sum; fp32. The same two kernels as the statistics (term 1, or 3
    with smoothing)."""
    xi, ti = _images(x, target)
    term, eps = _focal_term(label_smoothing)
    part, term_part, per_pixel, bad, total = _forward(xi, ti, ignore_index, term, weight, gamma_bg, gamma_fg, eps,
                                                      per_position)
    value = per_pixel.reshape(target.shape) if per_position else term_part.sum()
    return value, part[:, :, 2].sum((0, 1)), bad.sum().to(torch.int64), total.sum()


@triton_op("medloss::softmax_focal_triton_backward", mutates_args={})
def softmax_focal_triton_backward(x: Tensor, target: Tensor, ignore_index: int, weight: Tensor | None,
                                  gamma_bg: float, gamma_fg: float, label_smoothing: float, per_position: bool,
                                  g_value: Tensor) -> Tensor:
    """Gradient of :func:`softmax_focal_triton` with respect to ``x``, from ``dL/dvalue`` (per position or 0-dim)."""
    xi, ti = _images(x, target)
    xf, tf, b, c, n = _flat(xi, ti)
    c_pad, block_n = _tile(c)
    grad = torch.empty_like(xf)
    zeros = torch.zeros((b, c), dtype=torch.float32, device=x.device)
    g = g_value.to(torch.float32).reshape(b, n).contiguous() if per_position else g_value.to(torch.float32).reshape(1)
    term, eps = _focal_term(label_smoothing)
    if b and n:
        wrap_triton(_stats_backward)[(b, triton.cdiv(n, block_n))](
            xf, tf, _term_weight(weight, c, x), zeros, zeros, g, grad, c, n, ignore_index, float(gamma_bg),
            float(gamma_fg), eps, TERM=term, PER_POS=per_position, C_PAD=c_pad, BLOCK_N=block_n)
    grad = grad.view(xi.shape)
    return grad[0].t() if x.ndim == 2 else grad


def _focal_setup(ctx, inputs, output) -> None:
    x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position = inputs
    ctx.save_for_backward(x, target, weight)
    ctx.args = (ignore_index, gamma_bg, gamma_fg, label_smoothing, per_position)


def _focal_backward(ctx, g_value: Tensor, g_counts: Tensor, g_bad: Tensor, g_sum: Tensor):
    x, target, weight = ctx.saved_tensors
    ignore_index, gamma_bg, gamma_fg, label_smoothing, per_position = ctx.args
    none = (None,) * 7
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        def reference(x_: Tensor) -> Tensor:
            return softmax_focal_reference(x_, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing,
                                           per_position)

        (grad,) = second_order_grads(reference, (x,), (g_value,))
        return (grad, *none)
    grad = softmax_focal_triton_backward(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing,
                                         per_position, g_value)
    return (grad, *none)


softmax_focal_triton.register_autograd(_focal_backward, setup_context=_focal_setup)
