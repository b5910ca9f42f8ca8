"""Soft confusion statistics (TP, FP, FN) behind every overlap loss (soft-F1, Dice, Tversky, ...).

All overlap losses are functions of per-class soft counts

    TP_c = sum p_c y_c,   FP_c = sum p_c (1 - y_c),   FN_c = sum (1 - p_c) y_c

summed over the spatial dims (per image) or also over the batch. They are accumulated in fp32
or wider whatever the input dtype: fp16 sums of a 96^3 volume overflow (MONAI and smp return NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import canonical_inputs, check_probabilities, check_simplex
from ._common import upcast


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
