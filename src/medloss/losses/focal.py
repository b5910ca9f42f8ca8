"""Focal loss (Lin et al. 2017) for binary, multiclass and multilabel inputs, any spatial rank."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .._validation import (
    canonical_inputs,
    check_choice,
    check_class_indices,
    check_class_vector,
    check_mode,
    check_number,
    check_probabilities,
    check_reduction,
    check_simplex,
    value_checks_active,
)
from ._common import fp32_island, upcast

NORMALIZERS = ("elements", "weights")


def probabilities_to_logits(p: torch.Tensor, mode: str) -> torch.Tensor:
    """Turn validated probabilities into logits that reproduce them.

    There is no exact identity for a probability of exactly 0 or 1, so probabilities are clipped
    to ``[eps, 1 - eps]`` (``eps`` = machine epsilon of the dtype, logits of about +-15.9 in fp32)
    first. Pass logits (``from_logits=True``) for exact losses at saturated predictions.
    """
    eps = torch.finfo(p.dtype).eps
    if mode == "multiclass":
        check_simplex(p, "input", dim=1)
        return torch.log(p.clamp_min(eps))
    check_probabilities(p, "input")
    return torch.logit(p, eps=eps)


def _resolve_alpha(
    alpha: float | torch.Tensor | None, mode: str, num_channels: int
) -> tuple[float | None, torch.Tensor | None]:
    """Return (scalar alpha, per-class vector): at most one of them is set."""
    if alpha is None:
        return None, None
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        return check_number(alpha, "alpha", low=0.0, high=1.0), None
    if mode == "binary":  # [weight of negatives, weight of positives]
        return None, check_class_vector(alpha, "alpha", 2, low=0.0)
    high = 1.0 if mode == "multilabel" else None
    return None, check_class_vector(alpha, "alpha", num_channels, low=0.0, high=high)


def focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str = "multiclass",
    alpha: float | torch.Tensor | None = None,
    gamma: float = 2.0,
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    normalize: str = "elements",
    from_logits: bool = True,
) -> torch.Tensor:
    r"""Focal loss, ``FL = -alpha_t (1 - p_t)^gamma log p_t`` (Lin et al., ICCV 2017).

    See :class:`FocalLoss` for the arguments. Returns a scalar for ``reduction`` "mean" / "sum",
    otherwise the per-position loss: ``[B, *]`` in multiclass mode, the input's shape in binary and
    multilabel mode (zeros at ignored positions).
    """
    check_mode(mode)
    check_reduction(reduction)
    check_choice(normalize, "normalize", NORMALIZERS)
    gamma = check_number(gamma, "gamma", low=0.0)
    label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    if mode == "multiclass":
        # the op counts bad labels as it reads them (one pass fewer than checking them first)
        x, t, _ = canonical_inputs(input, target, mode, ignore_index=ignore_index, check_labels=False)
        alpha_scalar, alpha_vec = _resolve_alpha(alpha, mode, x.shape[1])
        x = upcast(x)
        if not from_logits:
            x = probabilities_to_logits(x, mode)
        with fp32_island():
            return softmax_focal_loss(
                x, t, None, ignore_index=ignore_index, weight=_class_alpha(alpha_scalar, alpha_vec, x),
                gammas=(gamma, gamma), label_smoothing=label_smoothing, reduction=reduction, normalize=normalize,
            )
    x, t, ignored = canonical_inputs(input, target, mode, ignore_index=ignore_index)
    alpha_scalar, alpha_vec = _resolve_alpha(alpha, mode, x.shape[1])
    x = upcast(x)
    if not from_logits:
        x = probabilities_to_logits(x, mode)
    if alpha_vec is not None:
        alpha_vec = alpha_vec.to(device=x.device, dtype=x.dtype)
    valid = None if ignored is None else ~ignored
    with fp32_island():
        value = _sigmoid_focal(x, t, valid, alpha_scalar, alpha_vec, gamma, label_smoothing, reduction, normalize)
    # binary input [B] or [B, *] was given a channel dim for the arithmetic; per-element losses keep the input's shape
    return value.reshape(input.shape) if reduction == "none" else value


def _class_alpha(alpha_scalar: float | None, alpha_vec: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """Per-class weights of the multiclass focal loss: a float alpha gives the background (class 0)
    ``1 - alpha`` and every other class ``alpha``."""
    if alpha_scalar is not None:
        w = torch.full((x.shape[1],), alpha_scalar, dtype=x.dtype, device=x.device)
        w[0] = 1.0 - alpha_scalar
        return w
    return None if alpha_vec is None else alpha_vec.to(device=x.device, dtype=x.dtype)


def softmax_focal_loss(
    x: torch.Tensor,
    t: torch.Tensor,
    valid: torch.Tensor | None,
    *,
    ignore_index: int | None,
    weight: torch.Tensor | None,
    gammas: tuple[float, float],
    label_smoothing: float,
    reduction: str,
    normalize: str = "elements",
) -> torch.Tensor:
    """Multiclass focal loss of validated logits through ``torch.ops.medloss.softmax_focal``.

    ``t`` is the target as given (``ignore_index`` and, with ``valid``, the positions it marks
    False count nowhere; any other out-of-range label is an error in eager mode); ``gammas`` =
    (gamma of the background class 0, gamma of the others). The mean divides by the number of
    counted positions (``normalize="elements"``) or, with weights, by the sum of their ``w_t``;
    it is 0 when nothing is counted.
    """
    if gammas[0] != gammas[1] and label_smoothing:
        raise ValueError("label smoothing is not supported with a class-dependent gamma")
    if valid is not None:  # positions already masked by the caller: mark them with a label no class has
        t = torch.where(valid, t, -1)
        ignore_index = -1
    value, counts, n_bad = torch.ops.medloss.softmax_focal(
        x, t, ignore_index, weight, float(gammas[0]), float(gammas[1]), float(label_smoothing), reduction == "none"
    )
    if value_checks_active() and bool(n_bad):
        check_class_indices(t, "target", x.shape[1], ignore_index)  # raises, naming the labels found
    if reduction != "mean":
        return value
    counts = counts.detach()
    if normalize == "weights" and weight is not None:
        return value / (counts * weight.detach()).sum().clamp_min(torch.finfo(value.dtype).tiny)
    return value / counts.sum().clamp_min(1.0)


def _sigmoid_focal(
    x: torch.Tensor,
    t: torch.Tensor,
    valid: torch.Tensor | None,
    alpha_scalar: float | None,
    alpha_vec: torch.Tensor | None,
    gamma: float,
    label_smoothing: float,
    reduction: str,
    normalize: str,
) -> torch.Tensor:
    """Binary / multilabel focal loss of validated logits through ``torch.ops.medloss.sigmoid_focal``."""
    if alpha_scalar is not None:
        a_pos = x.new_full((1,), alpha_scalar)
        a_neg = 1.0 - a_pos
    elif alpha_vec is not None and x.shape[1] == 1 and alpha_vec.numel() == 2:  # binary [w_neg, w_pos]
        a_neg, a_pos = alpha_vec[:1], alpha_vec[1:]
    elif alpha_vec is not None:
        a_pos, a_neg = alpha_vec, 1.0 - alpha_vec
    else:
        a_pos = a_neg = x.new_ones(1)
    y = t if valid is None else t.masked_fill(~valid, 0)  # ignore_index values never reach the arithmetic
    value = torch.ops.medloss.sigmoid_focal(
        x, y, valid, a_pos.to(x), a_neg.to(x), float(gamma), float(label_smoothing), reduction == "none"
    )
    if reduction != "mean":
        return value
    if normalize == "weights" and (alpha_scalar is not None or alpha_vec is not None):
        yv = y.to(x.dtype)
        if label_smoothing:
            yv = yv * (1.0 - label_smoothing) + 0.5 * label_smoothing
        shape = (1, -1) + (1,) * (x.ndim - 2)
        weights = yv * a_pos.to(x).view(shape) + (1.0 - yv) * a_neg.to(x).view(shape)
        if valid is not None:
            weights = weights * valid
        return value / weights.sum().clamp_min(torch.finfo(value.dtype).tiny)
    count = valid.expand_as(x).sum() if valid is not None else x.numel()
    return value / (count.clamp_min(1) if isinstance(count, torch.Tensor) else count)


class FocalLoss(nn.Module):
    r"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

    .. math:: \mathrm{FL}(p_t) = -\alpha_t (1 - p_t)^\gamma \log p_t

    with ``log p_t`` from ``log_softmax`` (multiclass) or ``logsigmoid`` (binary / multilabel).
    ``gamma = 0`` and ``alpha = None`` give exactly ``F.cross_entropy`` /
    ``F.binary_cross_entropy_with_logits``; the gradient is written by hand and stays finite for
    every ``gamma >= 0`` and logits anywhere in [-1e4, 1e4] (fp32, bf16 autocast).

    Args:
        mode: ``"binary"`` (input ``[B, 1, *]`` or ``[B, *]``, target of the same size in {0, 1}),
            ``"multiclass"`` (input ``[B, C, *]``, integer target ``[B, *]``; the default) or
            ``"multilabel"`` (input and target ``[B, C, *]``). ``*`` is 0-3 spatial dims.
        alpha: class balance. ``None`` (default): no weighting. A float in [0, 1]: positives get
            ``alpha`` and negatives ``1 - alpha`` (binary / multilabel, RetinaNet uses 0.25); in
            multiclass mode class 0 (background) gets ``1 - alpha`` and every other class
            ``alpha``. A 1-D tensor: per-class weights of length C in multiclass mode (any values
            >= 0, e.g. from :func:`class_weights`); ``[w_negative, w_positive]`` in binary mode;
            per-class positive weights in [0, 1] (negatives ``1 - alpha_c``) in multilabel mode.
        gamma: focusing parameter >= 0 (default 2.0).
        ignore_index: target value whose positions contribute nothing to the loss, its mean or
            its gradient (default -100, as PyTorch); ``None`` disables the check.
        label_smoothing: in [0, 1], PyTorch's convention: each of the K classes gets ``eps / K``
            and the target ``1 - eps + eps / K`` (K = 2 for sigmoid outputs). Default 0.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        normalize: how ``"mean"`` divides. ``"elements"`` (default): by the number of non-ignored
            positions (RetinaNet / torchvision). ``"weights"``: by the sum of ``alpha_t`` over
            them, as ``F.cross_entropy(weight=...)`` does. If every position is ignored the mean
            is 0 (not NaN).
        from_logits: ``True`` (default) for raw logits; ``False`` for probabilities (validated,
            then clipped to ``[eps, 1 - eps]`` before the log).

    Example:
        >>> loss = FocalLoss(gamma=2.0)
        >>> logits = torch.randn(4, 3, 8, 8, requires_grad=True)
        >>> target = torch.randint(0, 3, (4, 8, 8))
        >>> loss(logits, target).backward()
    """

    def __init__(
        self,
        *,
        mode: str = "multiclass",
        alpha: float | torch.Tensor | None = None,
        gamma: float = 2.0,
        ignore_index: int | None = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        normalize: str = "elements",
        from_logits: bool = True,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.ignore_index = ignore_index
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.reduction = check_reduction(reduction)
        self.normalize = check_choice(normalize, "normalize", NORMALIZERS)
        self.from_logits = bool(from_logits)
        self.alpha: Any
        if alpha is None or isinstance(alpha, (int, float)):
            if alpha is not None:
                check_number(alpha, "alpha", low=0.0, high=1.0)
            self.alpha = alpha
        else:
            size = 2 if mode == "binary" else None
            vec = check_class_vector(alpha, "alpha", size, low=0.0, high=1.0 if mode == "multilabel" else None)
            self.register_buffer("alpha", vec)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(
            input,
            target,
            mode=self.mode,
            alpha=self.alpha,
            gamma=self.gamma,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            normalize=self.normalize,
            from_logits=self.from_logits,
        )

    def extra_repr(self) -> str:
        alpha = self.alpha if not isinstance(self.alpha, torch.Tensor) else self.alpha.tolist()
        return (
            f"mode={self.mode!r}, alpha={alpha}, gamma={self.gamma}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}, normalize={self.normalize!r}"
        )


def cross_entropy_loss(
    *,
    mode: str = "multiclass",
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    from_logits: bool = True,
) -> FocalLoss:
    """Cross-entropy for every mode, with PyTorch's weighted mean: a :class:`FocalLoss` with gamma 0.

    ``weight`` is per class (``[w_negative, w_positive]`` in binary mode) and the mean divides by
    the sum of the target weights, so multiclass results equal ``F.cross_entropy(weight=weight)``
    and binary ones ``F.binary_cross_entropy_with_logits`` (label smoothing included).
    """
    return FocalLoss(
        mode=mode,
        alpha=weight,
        gamma=0.0,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        normalize="weights",
        from_logits=from_logits,
    )


def prior_bias(prior: float = 0.01) -> float:
    """Initial bias of a sigmoid output so that it starts at probability ``prior``: ``log(prior / (1 - prior))``.

    RetinaNet (Lin et al. 2017) initialises the classification bias to ``-log((1 - pi) / pi)`` with
    ``pi = 0.01`` so that rare positives do not drown in the loss of the many easy negatives in the
    first iterations: ``nn.init.constant_(head.bias, prior_bias(0.01))``.
    """
    prior = check_number(prior, "prior", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    return math.log(prior / (1.0 - prior))
