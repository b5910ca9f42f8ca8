"""Triton kernels of the cumulative link (logit) NLL, ``torch.ops.medloss.logit_link_nll``'s twin for CUDA / ROCm
tensors (the ordinal losses' proportional-odds NLL).

Imported only when the op runs with the ``"triton"`` implementation. Registered with ``torch.library.triton_op``
+ ``wrap_triton``, so ``torch.compile`` sees the kernels.

- forward, one launch: per sample ``a = c_y - f``, ``b = c_{y+1} - f``, ``nll = -logsigmoid(b) - logsigmoid(-a) -
  log_width[y]`` and the backward's two factors ``sigmoid(a)``, ``sigmoid(-b)`` (the infinite end cutpoints make
  the open classes' terms vanish exactly);
- backward, one launch: the scores' gradient per sample and, per block of samples, its partial sums of the
  cutpoints' and log-widths' gradients per class, which a sum over the blocks in PyTorch finishes (no atomics:
  the same input gives the same bits).

The reference: :func:`medloss.ops.reference.logit_link_nll_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .reference import logit_link_nll_second_order

#: samples per program
BLOCK = 1024


@triton.jit
def _log1p(x):
    """``log(1 + x)`` for ``x >= 0``, exact to rounding for tiny ``x`` (``log(u) x / (u - 1)``, ``u = 1 + x``)."""
    u = 1.0 + x
    return tl.where(u == 1.0, x, tl.log(u) * (x / tl.where(u == 1.0, 1.0, u - 1.0)))


@triton.jit
def _logsigmoid(z):
    """``log sigmoid(z) = min(z, 0) - log(1 + exp(-|z|))``, finite for every finite ``z``, 0 at ``+inf``."""
    return tl.minimum(z, 0.0) - _log1p(tl.exp(-tl.abs(z)))


@triton.jit
def _forward(f_ptr, c_ptr, w_ptr, y_ptr, nll_ptr, sa_ptr, snb_ptr, B, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < B
    f = tl.load(f_ptr + i, mask=m, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + i, mask=m, other=0)
    a = tl.load(c_ptr + y, mask=m, other=0.0).to(tl.float32) - f
    b = tl.load(c_ptr + y + 1, mask=m, other=0.0).to(tl.float32) - f
    w = tl.load(w_ptr + y, mask=m, other=0.0).to(tl.float32)
    nll = -(_logsigmoid(b) + _logsigmoid(-a) + w)
    tl.store(nll_ptr + i, nll, mask=m)
    tl.store(sa_ptr + i, tl.exp(_logsigmoid(a)), mask=m)
    tl.store(snb_ptr + i, tl.exp(_logsigmoid(-b)), mask=m)


@triton.jit
def _backward(sa_ptr, snb_ptr, y_ptr, g_ptr, gf_ptr, gc_ptr, gw_ptr, B, K1, K1_PAD: tl.constexpr,
              BLOCK: tl.constexpr):
    blk = tl.program_id(0)
    i = blk * BLOCK + tl.arange(0, BLOCK)
    m = i < B
    g = tl.load(g_ptr + i, mask=m, other=0.0).to(tl.float32)
    ga = g * tl.load(sa_ptr + i, mask=m, other=0.0).to(tl.float32)
    gb = g * tl.load(snb_ptr + i, mask=m, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + i, mask=m, other=-2)  # masked samples match no class
    tl.store(gf_ptr + i, gb - ga, mask=m)
    k = tl.arange(0, K1_PAD)
    at_y = k[None, :] == y[:, None]  # [BLOCK, K + 1 padded]
    at_y1 = k[None, :] == (y + 1)[:, None]
    gc = tl.sum(tl.where(at_y, ga[:, None], 0.0), axis=0) - tl.sum(tl.where(at_y1, gb[:, None], 0.0), axis=0)
    gw = -tl.sum(tl.where(at_y, g[:, None], 0.0), axis=0)
    tl.store(gc_ptr + blk * K1 + k, gc, mask=k < K1)
    tl.store(gw_ptr + blk * K1 + k, gw, mask=k < K1 - 1)


@triton_op("medloss::logit_link_nll_triton", mutates_args={})
def logit_link_nll_triton(f: Tensor, cutpoints_ext: Tensor, log_width: Tensor,
                          y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(nll, sigmoid(a), sigmoid(-b))``, each ``[B]`` fp32, as ``torch.ops.medloss.logit_link_nll``."""
    n = f.shape[0]
    nll, sig_a, sig_neg_b = (torch.empty(n, dtype=torch.float32, device=f.device) for _ in range(3))
    if n:
        wrap_triton(_forward)[(triton.cdiv(n, BLOCK),)](
            f.contiguous(), cutpoints_ext.contiguous(), log_width.contiguous(), y.contiguous(), nll, sig_a, sig_neg_b,
            n, BLOCK=BLOCK)
    return nll, sig_a, sig_neg_b


@triton_op("medloss::logit_link_nll_triton_backward", mutates_args={})
def logit_link_nll_triton_backward(sig_a: Tensor, sig_neg_b: Tensor, y: Tensor, n_cutpoints: int,
                                   grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients for the scores ``[B]``, the cutpoints ``[K + 1]`` and the log-widths ``[K]``, as
    ``torch.ops.medloss.logit_link_nll_backward``."""
    n = sig_a.shape[0]
    blocks = max(1, triton.cdiv(n, BLOCK))
    grad_f = torch.empty(n, dtype=torch.float32, device=sig_a.device)
    part_c = torch.zeros((blocks, n_cutpoints), dtype=torch.float32, device=sig_a.device)
    part_w = torch.zeros((blocks, n_cutpoints), dtype=torch.float32, device=sig_a.device)
    if n:
        wrap_triton(_backward)[(blocks,)](
            sig_a, sig_neg_b, y.contiguous(), grad.to(torch.float32).contiguous(), grad_f, part_c, part_w, n,
            n_cutpoints, K1_PAD=triton.next_power_of_2(n_cutpoints), BLOCK=BLOCK)
    return grad_f, part_c.sum(0), part_w.sum(0)[: n_cutpoints - 1]


def _setup(ctx, inputs, output) -> None:
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.save_for_backward(*inputs, output[1], output[2])


def _grad(ctx, grad: Tensor, _g_sig_a: Tensor, _g_sig_neg_b: Tensor):
    f, cutpoints_ext, log_width, y, sig_a, sig_neg_b = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        return (*logit_link_nll_second_order(f, cutpoints_ext, log_width, y, grad), None)
    grad_f, grad_c, grad_w = logit_link_nll_triton_backward(sig_a, sig_neg_b, y, cutpoints_ext.shape[0], grad)
    return grad_f.to(f.dtype), grad_c.to(cutpoints_ext.dtype), grad_w.to(log_width.dtype), None


logit_link_nll_triton.register_autograd(_grad, setup_context=_setup)
