"""Soft confusion statistics (TP, FP, FN) behind every overlap loss (soft-F1, Dice, Tversky, ...).

All overlap losses are functions of per-class soft counts

    TP_c = sum p_c y_c,   FP_c = sum p_c (1 - y_c),   FN_c = sum (1 - p_c) y_c

summed over the spatial dims (per image) or also over the batch. They are accumulated in fp32
or wider whatever the input dtype: fp16 sums of a 96^3 volume overflow (MONAI and smp return NaN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _native
from .._validation import canonical_inputs, check_probabilities, check_simplex
from ._common import (
    class_lookup,
    focal_modulated_log,
    focal_terms_by_class,
    log1mexp,
    second_order_grads,
    softmax_channels,
    upcast,
)


def probabilities_and_targets(
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    from_logits: bool = True,
    ignore_index: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate and return ``(probs, onehot, mask)``, all ``[B, C, *]`` in fp32 or wider.

    Binary mode gives one channel (the positive class). ``mask`` is ``[B, 1, *]`` (1 = counted)
    or ``None`` when nothing is ignored. Probabilities come from softmax (multiclass) or sigmoid
    (binary / multilabel) when ``from_logits`` is true, and are validated otherwise.
    """
    x, t, ignored = canonical_inputs(input, target, mode, ignore_index=ignore_index)
    x = upcast(x)
    mask = None if ignored is None else ~ignored
    if mode == "multiclass":
        probs = torch.softmax(x, 1) if from_logits else check_simplex(x, "input", dim=1)
        idx = t.long() if mask is None else t.long().masked_fill(~mask, 0)
        onehot = F.one_hot(idx, x.shape[1]).movedim(-1, 1).to(probs.dtype)
        if mask is not None:
            mask = mask.unsqueeze(1)
            onehot = onehot * mask
    else:
        probs = torch.sigmoid(x) if from_logits else check_probabilities(x, "input")
        onehot = t.to(probs.dtype)
        if mask is not None:
            # binary: mask is [B, 1, *]; multilabel: [B, C, *], one entry per (position, class)
            onehot = onehot.masked_fill(~mask, 0.0)
    if mask is not None:
        mask = mask.to(probs.dtype)
    return probs, onehot, mask


def soft_confusion(
    probs: torch.Tensor,
    onehot: torch.Tensor,
    dims: tuple[int, ...],
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft ``(TP, FP, FN)`` summed over ``dims``; masked positions (mask 0) count nowhere.

    ``onehot`` must already be zero at masked positions (as :func:`probabilities_and_targets` returns it).
    """
    p = probs if mask is None else probs * mask
    tp = (p * onehot).sum(dims)
    fp = p.sum(dims) - tp
    fn = onehot.sum(dims) - tp
    return tp, fp, fn


# ---------------------------------------------------------------------------------------------
# Fused statistics for logits: one softmax / sigmoid pass, hand-written backward.
#
# A loss L(TP, sum_p) of the per-class counts has dL/dp_c = dL/dsum_p[c] + y_c dL/dTP[c] at every
# pixel (FP = sum_p - TP and FN = sum_y - TP are formed outside, on the small [B, C] tensors, so
# autograd supplies the chain rule for any formula). Through the softmax this gives
#     dL/dx_j = p_j (U_j - S) + [j = t] p_t V_t,   U = dL/dsum_p, V = dL/dTP, S = sum_k p_k U_k + p_t V_t,
# two full passes over p. The optional per-pixel focal term -alpha_t (1 - p_t)^gamma log p_t adds
# w (p_j - [j = t]) with w its slope (see focal_terms), in the same passes.
# ---------------------------------------------------------------------------------------------


class SoftmaxStats:
    """Output of :func:`softmax_statistics`: per-class soft counts and the optional focal mean."""

    def __init__(self, tp, sum_p, sum_y, focal):
        self.tp, self.sum_p, self.sum_y, self.focal = tp, sum_p, sum_y, focal

    @property
    def fp(self) -> torch.Tensor:
        return self.sum_p - self.tp

    @property
    def fn(self) -> torch.Tensor:
        return self.sum_y - self.tp


def _per_image_class_sums(
    t: torch.Tensor, weights: torch.Tensor, counts_weights: torch.Tensor | None, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and class: the sum of ``weights`` and of ``counts_weights`` (or the pixel count)
    over the pixels of each class, ``[B, C]`` each.

    ``scatter_add_`` along rows parallelises over rows only, so long images are first cut into
    row chunks of >= 8192 pixels (4-5x faster than a ``bincount`` per image for 3-D volumes).
    """
    b, n = t.shape
    k = 1
    while n % (2 * k) == 0 and n // (2 * k) >= 8192 and b * k < 64:
        k *= 2
    tc = t.reshape(b * k, n // k)

    def sums(w: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(b * k, n_classes, dtype=weights.dtype, device=t.device)
        return out.scatter_add_(1, tc, w.reshape(b * k, n // k)).view(b, k, n_classes).sum(1)

    ones = torch.ones((), dtype=weights.dtype, device=t.device).expand(b, n)
    return sums(weights), sums(ones if counts_weights is None else counts_weights)


def softmax_statistics_reference(
    x: torch.Tensor, t: torch.Tensor, valid: torch.Tensor | None, batch: bool, term: tuple | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the fused softmax statistics compute, in plain differentiable PyTorch operations:
    ``(TP, sum_p, sum_y, term)``. The fused Functions differentiate it for second derivatives.

    ``t``: class indices ``[B, *]`` (any value where ``valid`` is False); ``term``: None,
    ``("focal", alpha [C], gamma [C], scale)`` (``scale * sum alpha_t * -(1 - p_t)^gamma_t log p_t``)
    or ``("wce", beta, scale)`` (``scale * sum -(beta log p_t + (1 - beta) sum_{c != t} log(1 - p_c))``),
    both over the counted pixels.
    """
    b, c = x.shape[:2]
    logp = torch.log_softmax(x.reshape(b, c, -1), 1)
    p = logp.exp()
    tt = t.reshape(b, -1).long()
    m = None if valid is None else valid.reshape(b, -1).to(p.dtype)
    if m is not None:
        tt = tt * (m > 0)
    onehot = F.one_hot(tt, c).transpose(1, 2).to(p.dtype)
    if m is not None:
        onehot = onehot * m.unsqueeze(1)
        p = p * m.unsqueeze(1)
    tp, sum_p, sum_y = (p * onehot).sum(-1), p.sum(-1), onehot.sum(-1)
    if batch:
        tp, sum_p, sum_y = tp.sum(0), sum_p.sum(0), sum_y.sum(0)
    value = x.new_zeros(())
    if term is not None:
        lt = logp.gather(1, tt.unsqueeze(1)).squeeze(1)
        if term[0] == "focal":
            _, alpha, gamma, scale = term
            per_pixel = class_lookup(alpha.to(x), tt) * focal_modulated_log(lt, class_lookup(gamma.to(x), tt))
        else:
            _, beta, scale = term
            others = (log1mexp(logp.clamp(max=-torch.finfo(x.dtype).tiny)) * (1.0 - onehot)).sum(1)
            per_pixel = -(beta * lt + (1.0 - beta) * others)
        value = (per_pixel if m is None else per_pixel * m).sum() * scale
    return tp, sum_p, sum_y, value


class _SoftmaxStatsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t1, valid, batch, focal):  # type: ignore[override]
        b, c = x.shape[:2]
        p = softmax_channels(x)
        pv = p.view(b, c, -1)
        t = t1.view(b, -1)
        vflat = None if valid is None else valid.reshape(b, 1, -1).to(p.dtype)
        sum_p = (pv.sum(-1) if vflat is None else torch.bmm(pv, vflat.transpose(1, 2)).squeeze(-1))
        pt = pv.gather(1, t.unsqueeze(1)).squeeze(1)  # p of the target class, [B, N]
        w_pt = pt if vflat is None else pt * vflat.view(b, -1)
        tp, sum_y = _per_image_class_sums(t, w_pt, None if vflat is None else vflat.view(b, -1), c)
        slope = None
        focal_value = p.new_zeros(())
        if focal is not None:
            alpha, gamma_bg, gamma_fg, scale = focal
            lt = torch.log(pt)
            # log p_t from the logits where the softmax underflows (p_t < 1e-30): rare, so a subset
            if float(pt.min()) < 1e-30:
                deep = torch.nonzero(pt.view(-1) < 1e-30).squeeze(1)
                xs = x.reshape(b, c, -1).transpose(1, 2).reshape(-1, c)[deep]
                lt.view(-1)[deep] = xs.gather(1, t.reshape(-1)[deep].unsqueeze(1)).squeeze(1) - torch.logsumexp(xs, 1)
            value, slope = focal_terms_by_class(lt, t, gamma_bg, gamma_fg)
            weight = class_lookup(alpha.to(p.dtype) * scale, t)
            if vflat is not None:
                weight = weight * vflat.view(b, -1)
            focal_value = torch.dot(value.reshape(-1), weight.reshape(-1))
            slope = slope.mul_(weight)
        ctx.batch = batch
        ctx.term = None if focal is None else ("focal", focal[0], _gamma_vector(c, focal[1], focal[2]), focal[3])
        ctx.save_for_backward(p, t1, pt, slope, vflat, x, valid)
        ctx.mark_non_differentiable(sum_y)
        if batch:
            tp, sum_p, sum_y = tp.sum(0), sum_p.sum(0), sum_y.sum(0)
        return tp, sum_p, sum_y, focal_value

    @staticmethod
    def backward(ctx, g_tp, g_sum_p, _g_sum_y, g_focal):  # type: ignore[override]
        p, t1, pt, slope, vflat, x, valid = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
            return (*second_order_grads(
                lambda x_: softmax_statistics_reference(x_, t1, valid, ctx.batch, ctx.term), (x,),
                (g_tp, g_sum_p, None, g_focal if ctx.term is not None else None),
            ), None, None, None, None)
        return _SoftmaxStatsFunction._first_order(ctx, p, t1, pt, slope, vflat, g_tp, g_sum_p, g_focal)

    @staticmethod
    @torch.no_grad()
    def _first_order(ctx, p, t1, pt, slope, vflat, g_tp, g_sum_p, g_focal):
        b, c = p.shape[:2]
        pv = p.view(b, c, -1)
        t = t1.view(b, -1)
        if ctx.batch:
            g_tp, g_sum_p = g_tp.expand(b, c), g_sum_p.expand(b, c)
        u = g_sum_p.to(p.dtype)
        v_t = g_tp.to(p.dtype).gather(1, t)  # [B, HW]
        # S = sum_k p_k U_k + p_t V_t, per pixel
        s = torch.bmm(u.unsqueeze(1), pv).squeeze(1).addcmul_(pt, v_t)
        pixel = s.neg_()
        on_target = pt * v_t
        if slope is not None:
            g = float(g_focal)
            pixel.add_(slope, alpha=g)
            on_target.sub_(slope, alpha=g)
        if vflat is not None:
            m = vflat.view(b, -1)
            pixel.mul_(m)
            on_target.mul_(m)
            u_term = u.unsqueeze(-1) * vflat  # [B, C, HW]
            grad = pv * (u_term + pixel.unsqueeze(1))
        else:
            grad = (pixel.unsqueeze(1) + u.unsqueeze(-1)).mul_(pv)
        grad.scatter_add_(1, t.unsqueeze(1), on_target.unsqueeze(1))
        return grad.view_as(p), None, None, None, None


def _gamma_vector(n_classes: int, gamma_bg: float, gamma_fg: float) -> torch.Tensor:
    """Per-class focusing parameters: ``gamma_bg`` for class 0 (background), ``gamma_fg`` for the others."""
    gammas = torch.full((n_classes,), float(gamma_fg), dtype=torch.float64)
    gammas[0] = float(gamma_bg)
    return gammas


class _BadLabels(Exception):
    """Labels outside [0, C) met by the kernel: the caller validates and reports them."""


class _NonFinite(Exception):
    """Non-finite sums from the kernel (non-finite logits)."""


class _NativeSoftmaxStatsFunction(torch.autograd.Function):
    """:class:`_SoftmaxStatsFunction` in the compiled kernel (``medloss/_kernels.c``): the forward
    reads the logits and the labels once and writes only the ``[B, 3, C]`` sums (and the labels
    as bytes for the backward); the backward recomputes the softmax and writes the gradient in
    one more pass. ``term`` is ``(kind, per-class weights, per-class gammas, pixels per unit)``
    or None; its sum is divided by ``counted pixels x pixels per unit`` (0: a plain sum)."""

    @staticmethod
    def forward(ctx, x, t, valid, ignore_index, batch, term):  # type: ignore[override]
        kind, term_w, gamma, units = term if term is not None else (_native.TERM_NONE, None, None, 0)
        r = _native.softmax_pass(
            x, t, valid, ignore_index=ignore_index, stats=True, keep_labels=True, term=kind, term_w=term_w, gamma=gamma
        )
        if r.n_bad:
            raise _BadLabels
        # non-finite logits (NaN, +-inf) reach every sum: the caller falls back to the PyTorch path,
        # which produces its own value or error
        if not (math.isfinite(float(r.stats.sum())) and math.isfinite(r.term)):
            raise _NonFinite
        scale = 1.0
        if units:
            counted = float(r.stats[:, 2].sum())
            scale = 1.0 / (counted * units) if counted > 0 else 0.0
        ctx.batch, ctx.term, ctx.scale = batch, (kind, term_w, gamma), scale
        ctx.n_classes = x.shape[1]
        ctx.save_for_backward(x, r.labels8)
        stats = r.stats.to(x.dtype)
        tp, sum_p, sum_y = stats.unbind(1)
        ctx.mark_non_differentiable(sum_y)
        if batch:
            tp, sum_p, sum_y = tp.sum(0), sum_p.sum(0), sum_y.sum(0)
        return tp, sum_p, sum_y, torch.tensor(r.term * scale, dtype=x.dtype)

    @staticmethod
    def backward(ctx, g_tp, g_sum_p, _g_sum_y, g_term):  # type: ignore[override]
        x, labels8 = ctx.saved_tensors
        kind, term_w, gamma = ctx.term
        if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
            valid = labels8 < ctx.n_classes  # the kernel marks ignored pixels with labels >= C
            term = None
            if kind == _native.TERM_FOCAL:
                term = ("focal", term_w, gamma, ctx.scale)
            elif kind == _native.TERM_WCE:
                term = ("wce", float(term_w[0]), ctx.scale)
            reference = lambda x_: softmax_statistics_reference(x_, labels8, valid, ctx.batch, term)  # noqa: E731
            grads = second_order_grads(reference, (x,), (g_tp, g_sum_p, None, g_term if term is not None else None))
            return grads[0], None, None, None, None, None
        with torch.no_grad():
            return _NativeSoftmaxStatsFunction._first_order(ctx, x, labels8, g_tp, g_sum_p, g_term)

    @staticmethod
    def _first_order(ctx, x, labels8, g_tp, g_sum_p, g_term):
        b, c = x.shape[:2]
        if ctx.batch:
            g_tp, g_sum_p = g_tp.expand(b, c), g_sum_p.expand(b, c)
        kind, term_w, gamma = ctx.term
        r = _native.softmax_pass(
            x, None, labels8=labels8, term=kind, term_w=term_w, gamma=gamma, grad=True, u=g_sum_p, v=g_tp,
            g_term=float(g_term) * ctx.scale if kind != _native.TERM_NONE else 0.0,
        )
        return r.grad, None, None, None, None, None


def _native_term(
    n_classes: int, focal: tuple[torch.Tensor, float, float, str] | None, weighted_ce: float | None
) -> tuple | None:
    if focal is not None:
        alpha, gamma_bg, gamma_fg, reduction = focal
        gammas = _gamma_vector(n_classes, gamma_bg, gamma_fg)
        return (_native.TERM_FOCAL, alpha.detach().to("cpu", torch.float64), gammas, 1 if reduction == "mean" else 0)
    if weighted_ce is not None:
        beta = float(weighted_ce)
        return (_native.TERM_WCE, torch.tensor([beta, 1.0 - beta], dtype=torch.float64), None, n_classes)
    return None


def softmax_statistics(
    x: torch.Tensor,
    t: torch.Tensor,
    valid: torch.Tensor | None,
    *,
    batch: bool = False,
    focal: tuple[torch.Tensor, float, float, str] | None = None,
    weighted_ce: float | None = None,
    ignore_index: int | None = None,
    labels_checked: bool = True,
) -> SoftmaxStats | None:
    """Per-class soft TP / sum_p / sum_y of ``softmax(x)`` against class indices ``t``, ``[B, C]``
    or ``[C]`` with ``batch``, plus optionally one per-pixel term over the counted pixels (``.focal``):

    - ``focal = (alpha, gamma_bg, gamma_fg, "mean" | "sum")``: ``-alpha_t (1 - p_t)^gamma log p_t``
      with ``gamma_bg`` for class 0 and ``gamma_fg`` for the others, mean over counted pixels or sum;
    - ``weighted_ce = beta``: Combo's ``-(beta log p_t + (1 - beta) sum_{c != t} log(1 - p_c))``,
      mean over counted pixels and classes, computed by the compiled kernel only: ``.focal`` is
      None when it did not run (the caller then computes the term itself).

    With ``labels_checked`` (default), ``t`` holds valid indices (0 at ignored positions, which
    ``valid`` marks False). Otherwise ``t`` is the user's target: pixels equal to ``ignore_index``
    count nowhere, and None is returned when the compiled kernel cannot run or finds a label out
    of range (the caller validates and reports it).

    Everything in one softmax pass; gradients written by hand. CPU float32 / float64 logits with
    2-32 classes run in the compiled kernel when it is installed, others in PyTorch operations.
    """
    # contiguous: the passes below view [B, C, *] as [B, C, N] (channels_last / permuted inputs are copied once)
    x = x.contiguous()
    valid = None if valid is None else valid.contiguous()
    if _native.usable(x):
        term = _native_term(x.shape[1], focal, weighted_ce)
        try:
            tp, sum_p, sum_y, term_value = _NativeSoftmaxStatsFunction.apply(
                x, t.long().contiguous(), valid, ignore_index, batch, term
            )
            return SoftmaxStats(tp, sum_p, sum_y, term_value if term is not None else None)
        except (_BadLabels, _NonFinite):
            pass
    if not labels_checked:
        return None
    spec = None
    if focal is not None:
        alpha, gamma_bg, gamma_fg, reduction = focal
        n = t.numel() if valid is None else int(valid.sum())
        scale = (1.0 / n if n else 0.0) if reduction == "mean" else 1.0
        spec = (alpha.to(x.dtype), gamma_bg, gamma_fg, scale)
    t1 = t.long().unsqueeze(1).contiguous()
    tp, sum_p, sum_y, focal_value = _SoftmaxStatsFunction.apply(x, t1, valid, batch, spec)
    return SoftmaxStats(tp, sum_p, sum_y, focal_value if focal is not None else None)


class _SigmoidStatsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, valid, batch):  # type: ignore[override]
        b, c = x.shape[:2]
        p = torch.sigmoid(x)
        yv = y.reshape(b, c, -1).to(p.dtype)
        pv = p.view(b, c, -1)
        if valid is not None:
            m = valid.reshape(b, -1 if valid.shape[1] == c else 1, pv.shape[-1]).to(p.dtype)
            m = m.expand(b, c, -1) if m.shape[1] == 1 else m.reshape(b, c, -1)
            pv = pv * m
            yv = yv * m
        else:
            m = None
        tp = (pv * yv).sum(-1)
        sum_p = pv.sum(-1)
        sum_y = yv.sum(-1)
        ctx.batch = batch
        ctx.save_for_backward(p, yv, m, x)
        ctx.mark_non_differentiable(sum_y)
        if batch:
            tp, sum_p, sum_y = tp.sum(0), sum_p.sum(0), sum_y.sum(0)
        return tp, sum_p, sum_y

    @staticmethod
    def backward(ctx, g_tp, g_sum_p, _g_sum_y):  # type: ignore[override]
        p, yv, m, x = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
            def reference(x_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                pv = torch.sigmoid(x_).reshape(yv.shape)
                pv = pv if m is None else pv * m
                tp, sum_p = (pv * yv).sum(-1), pv.sum(-1)
                return (tp.sum(0), sum_p.sum(0)) if ctx.batch else (tp, sum_p)

            return (*second_order_grads(reference, (x,), (g_tp, g_sum_p)), None, None, None)
        with torch.no_grad():
            return _SigmoidStatsFunction._first_order(ctx, p, yv, m, g_tp, g_sum_p)

    @staticmethod
    def _first_order(ctx, p, yv, m, g_tp, g_sum_p):
        b, c = p.shape[:2]
        if ctx.batch:
            g_tp, g_sum_p = g_tp.expand(b, c), g_sum_p.expand(b, c)
        pv = p.view(b, c, -1)
        grad = yv * g_tp.unsqueeze(-1).to(p.dtype)
        grad.add_(g_sum_p.unsqueeze(-1).to(p.dtype))
        if m is not None:
            grad.mul_(m)
        grad.mul_(pv).mul_(1.0 - pv)
        return grad.view_as(p), None, None, None


def sigmoid_statistics(
    x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None, *, batch: bool = False
) -> SoftmaxStats:
    """Per-channel soft TP / sum_p / sum_y of ``sigmoid(x)`` against ``y`` in [0, 1]."""
    valid = None if valid is None else valid.contiguous()
    tp, sum_p, sum_y = _SigmoidStatsFunction.apply(x.contiguous(), y.contiguous(), valid, batch)
    return SoftmaxStats(tp, sum_p, sum_y, None)
