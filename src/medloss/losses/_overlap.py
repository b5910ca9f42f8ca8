"""Soft confusion statistics (TP, FP, FN) behind every overlap loss (soft-F1, Dice, Tversky, ...).

All overlap losses are functions of per-class soft counts

    TP_c = sum p_c y_c,   FP_c = sum p_c (1 - y_c),   FN_c = sum (1 - p_c) y_c

summed over the spatial dims (per image) or also over the batch. They are accumulated in fp32
or wider whatever the input dtype: fp16 sums of a 96^3 volume overflow (MONAI and smp return NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import (
    canonical_inputs,
    check_op_findings,
    check_probabilities,
    check_simplex,
    value_checks_active,
)
from ..ops.reference import TERM_FOCAL, TERM_NONE, TERM_WCE
from ..ops.switch import resolve as resolve_implementation
from ._common import upcast

#: most classes the Triton statistics kernel takes (more run the PyTorch implementation)
TRITON_MAX_CLASSES = 256


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


def counted_entries(valid: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """Per image (and channel, where ``valid`` has one per channel) whether any position is counted,
    expanded to ``shape`` (``[B, C]``); None when nothing is ignored."""
    if valid is None:
        return None
    any_counted = valid.reshape(valid.shape[0], valid.shape[1] if valid.ndim > 2 else 1, -1).any(-1)
    return any_counted.expand(shape)


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
# Fused statistics for logits: the ops torch.ops.medloss.softmax_stats / sigmoid_stats (medloss/ops/),
# one softmax / sigmoid pass forward and one backward that recomputes it.
#
# A loss L(TP, sum_p) of the per-class counts has dL/dp_c = dL/dsum_p[c] + y_c dL/dTP[c] at every
# pixel (FP = sum_p - TP and FN = sum_y - TP are formed outside, on the small [B, C] tensors, so
# autograd supplies the chain rule for any formula). Through the softmax this gives
#     dL/dx_j = p_j (U_j - S) + [j = t] p_t V_t,   U = dL/dsum_p, V = dL/dTP, S = sum_k p_k U_k + p_t V_t,
# two full passes over p. The optional per-pixel focal term -alpha_t (1 - p_t)^gamma log p_t adds
# w (p_j - [j = t]) with w its slope (see medloss.ops._terms.focal_terms), in the same passes.
# ---------------------------------------------------------------------------------------------


class SoftmaxStats:
    """Output of :func:`softmax_statistics`: per-class soft counts and the optional per-pixel term,
    kept as its sum ``term_total`` over ``term_count`` counted units (so that ranks can add both)."""

    def __init__(self, tp, sum_p, sum_y, term_total=None, n=None, term_count=None, counted=None):
        self.tp, self.sum_p, self.sum_y = tp, sum_p, sum_y
        self.term_total, self.term_count = term_total, term_count
        self.n = n  # counted positions, when a loss needs true negatives (MCCLoss)
        # per-image counts: True where the (image, class) entry has at least one counted position, [B, C]
        # (None: every entry has). An image whose every pixel is ignored counts in no mean.
        self.counted = counted

    def present(self, ignore_empty: bool = False) -> torch.Tensor | None:
        """The per-image entries a mean runs over (``[B, C]`` bool, or None for all of them): those with a
        counted position, and with ``ignore_empty`` only those whose ground truth is not empty."""
        present = self.counted
        if ignore_empty:
            nonempty = self.sum_y > 0
            present = nonempty if present is None else present & nonempty
        return present

    @property
    def focal(self) -> torch.Tensor | None:
        """The per-pixel term's mean over the counted units (0 when nothing is counted), or None."""
        if self.term_total is None:
            return None
        return self.term_total / self.term_count.clamp_min(1.0)

    @property
    def fp(self) -> torch.Tensor:
        return self.sum_p - self.tp

    @property
    def fn(self) -> torch.Tensor:
        return self.sum_y - self.tp


def softmax_statistics(
    x: torch.Tensor,
    t: torch.Tensor,
    valid: torch.Tensor | None,
    *,
    batch: bool = False,
    focal: tuple[torch.Tensor, float, float] | None = None,
    weighted_ce: float | None = None,
    ignore_index: int | None = None,
    check_finite_logits: bool = False,
) -> SoftmaxStats:
    """Per-class soft TP / sum_p / sum_y of ``softmax(x)`` against class indices ``t``, ``[B, C]``
    or ``[C]`` with ``batch``, plus optionally one per-pixel term over the counted pixels (``.focal``):

    - ``focal = (alpha, gamma_bg, gamma_fg)``: ``-alpha_t (1 - p_t)^gamma log p_t``
      with ``gamma_bg`` for class 0 and ``gamma_fg`` for the others, mean over counted pixels;
    - ``weighted_ce = beta``: Combo's ``-(beta log p_t + (1 - beta) sum_{c != t} log(1 - p_c))``,
      mean over counted pixels and classes.

    ``t`` is the user's target: pixels equal to ``ignore_index`` (or False in ``valid``) count
    nowhere; in eager mode (value checks on) any other label outside ``[0, C)`` is an error, and so
    is a non-finite logit with ``check_finite_logits`` (from the sum the op takes as it reads them).

    One op, ``torch.ops.medloss.softmax_stats`` (:mod:`medloss.ops.softmax_stats`), or its Triton twin on
    CUDA: the compiled kernel on CPU when it is installed, PyTorch operations elsewhere.
    """
    n_classes = x.shape[1]
    if valid is not None:  # positions already masked by the caller: mark them with a label no class has
        t = torch.where(valid, t, -1)
        ignore_index = -1
    term, weight, gamma_bg, gamma_fg, beta = TERM_NONE, None, 0.0, 0.0, 0.5
    if focal is not None:
        term, (weight, gamma_bg, gamma_fg) = TERM_FOCAL, focal
        weight = weight.to(dtype=x.dtype, device=x.device)
    elif weighted_ce is not None:
        term, beta = TERM_WCE, float(weighted_ce)
    checks = value_checks_active(x, t)
    check_logits = checks and check_finite_logits
    if resolve_implementation(x) == "triton" and n_classes <= TRITON_MAX_CLASSES:
        from ..ops.triton_softmax_stats import softmax_stats_triton

        stats, total, n_bad, logits_sum = softmax_stats_triton(
            x, t, -(2**62) if ignore_index is None else ignore_index, term, weight, float(gamma_bg), float(gamma_fg),
            beta)
        if not check_logits:  # as the other implementations: the sum only where the finiteness check reads it
            logits_sum = torch.zeros_like(logits_sum)
        stats, total = stats.to(x.dtype), total.to(x.dtype)
    else:
        stats, total, n_bad, _, logits_sum = torch.ops.medloss.softmax_stats(
            x, t, ignore_index, term, weight, float(gamma_bg), float(gamma_fg), beta, check_logits)
    if checks:
        check_op_findings(x, t, n_classes, ignore_index, n_bad, logits_sum)
    tp, sum_p, sum_y = stats.unbind(1)
    sum_y = sum_y.detach()
    term_total = term_count = None
    if focal is not None or weighted_ce is not None:
        # its mean runs over the counted pixels (x classes for the weighted CE)
        term_total, term_count = total, sum_y.sum() * (n_classes if weighted_ce is not None else 1)
    if batch:
        tp, sum_p, sum_y = tp.sum(0), sum_p.sum(0), sum_y.sum(0)
    return SoftmaxStats(tp, sum_p, sum_y, term_total, term_count=term_count)


def sigmoid_statistics(
    x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None, *, batch: bool = False
) -> SoftmaxStats:
    """Per-channel soft TP / sum_p / sum_y of ``sigmoid(x)`` against ``y`` in [0, 1]
    (``torch.ops.medloss.sigmoid_stats``: one pass forward, one backward)."""
    if resolve_implementation(x) == "triton":
        from ..ops.triton_sigmoid_stats import sigmoid_stats_triton

        stats = sigmoid_stats_triton(x, y, valid).to(x.dtype)
    else:
        stats = torch.ops.medloss.sigmoid_stats(x, y, valid)
    tp, sum_p, sum_y = stats.unbind(1)
    sum_y = sum_y.detach()
    if batch:
        tp, sum_p, sum_y = tp.sum(0), sum_p.sum(0), sum_y.sum(0)
    return SoftmaxStats(tp, sum_p, sum_y, None)
