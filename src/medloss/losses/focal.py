"""Focal loss (Lin et al. 2017) for binary, multiclass and multilabel inputs, any spatial rank."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from .._distributed import all_reduce_sum, distributed_flag, require_process_group
from .._validation import (
    canonical_inputs,
    check_choice,
    check_class_vector,
    check_mode,
    check_number,
    check_op_findings,
    check_probabilities,
    check_reduction,
    check_simplex,
    value_checks_active,
)
from ..ops.switch import resolve as resolve_implementation
from ._common import fp32_island, upcast
from ._overlap import TRITON_MAX_CLASSES

NORMALIZERS = ("elements", "weights")


def _probabilities_to_logits(p: torch.Tensor, mode: str) -> torch.Tensor:
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


def _alpha_as_weight(
    alpha: float | torch.Tensor | None, weight: torch.Tensor | None, mode: str, *, stacklevel: int
) -> tuple[float | torch.Tensor | None, torch.Tensor | None]:
    """``(alpha, weight)`` with a per-class tensor ``alpha`` of the binary / multiclass modes moved to
    ``weight`` (its spelling in medloss < 0.2) and a FutureWarning; the multilabel mode keeps a
    tensor ``alpha`` (per-class alphas of the paper)."""
    if alpha is None or isinstance(alpha, (int, float)) or mode == "multilabel":
        return alpha, weight
    if weight is not None:
        raise ValueError("pass per-class weights once, as `weight` (a tensor `alpha` is its deprecated spelling)")
    warnings.warn(
        "per-class weights passed as `alpha` are deprecated and will be removed in medloss 0.3; "
        "pass them as `weight` (`alpha` is the focal paper's scalar class balance)",
        FutureWarning, stacklevel=stacklevel,
    )
    return None, alpha


def _resolve_alpha(
    alpha: float | torch.Tensor | None, weight: torch.Tensor | None, mode: str, num_channels: int
) -> tuple[float | None, torch.Tensor | None, torch.Tensor | None]:
    """Return (scalar alpha, per-class alpha of the multilabel mode, per-class weight).

    A per-class tensor passed as ``alpha`` in binary / multiclass mode is a class weight: it is
    taken as ``weight`` with a FutureWarning (the spelling of medloss < 0.2)."""
    alpha, weight = _alpha_as_weight(alpha, weight, mode, stacklevel=5)
    alpha_scalar = alpha_vec = None
    if alpha is not None and isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        alpha_scalar = check_number(alpha, "alpha", low=0.0, high=1.0)
    elif alpha is not None:
        alpha_vec = check_class_vector(alpha, "alpha", num_channels, low=0.0, high=1.0)
    if weight is not None:
        weight = check_class_vector(weight, "weight", 2 if mode == "binary" else num_channels, low=0.0)
    return alpha_scalar, alpha_vec, weight


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
    weight: torch.Tensor | None = None,
    include_background: bool = True,
    distributed: bool = False,
) -> torch.Tensor:
    r"""Focal loss, ``FL = -alpha_t (1 - p_t)^gamma log p_t`` (Lin et al., ICCV 2017).

    The functional form of :class:`FocalLoss` (same options, defaults and errors; no module is built).

    Args:
        input: logits (or probabilities with ``from_logits=False``) ``[B, C, *]``; binary: ``[B, 1, *]`` or ``[B, *]``.
        target: class indices ``[B, *]`` (multiclass) or 0 / 1 labels of the input's shape (binary, multilabel).
        mode, alpha, gamma, ignore_index, label_smoothing, reduction, normalize, from_logits, weight,
            include_background, distributed: as :class:`FocalLoss`.

    Returns:
        A scalar for ``reduction`` "mean" / "sum", otherwise the per-position loss: ``[B, *]`` in multiclass
        mode, the input's shape in binary and multilabel mode (zeros at ignored positions).

    Raises:
        ValueError: an option out of range (the message names it); a ``target`` of the wrong shape, labels outside
            ``[0, C - 1]`` other than ``ignore_index``, non-finite logits, probabilities outside [0, 1] with
            ``from_logits=False``; a ``weight`` of the wrong length.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> x, t = torch.randn(5, 3), torch.randint(0, 3, (5,))
        >>> torch.allclose(focal_loss(x, t, gamma=0.0), torch.nn.functional.cross_entropy(x, t))  # gamma 0: CE
        True
    """
    check_mode(mode)
    check_reduction(reduction)
    check_choice(normalize, "normalize", NORMALIZERS)
    if distributed:
        require_process_group("focal_loss")
    gamma = check_number(gamma, "gamma", low=0.0)
    label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    if mode == "multiclass":
        # the op counts bad labels (and sums the logits) as it reads them: a pass fewer than checking first
        x, t, _ = canonical_inputs(
            input, target, mode, ignore_index=ignore_index, check_labels=False, check_input_finite=not from_logits
        )
        alpha_scalar, _, weight = _resolve_alpha(alpha, weight, mode, x.shape[1])
        x = upcast(x)
        if not from_logits:
            x = _probabilities_to_logits(x, mode)
        valid = None
        if not include_background:  # background pixels count nowhere; the softmax keeps every channel
            valid = t != 0
        with fp32_island():
            return _softmax_focal_loss(
                x, t, valid, ignore_index=ignore_index, weight=_class_weight(alpha_scalar, weight, x),
                gammas=(gamma, gamma), label_smoothing=label_smoothing, reduction=reduction, normalize=normalize,
                distributed=distributed, check_finite_logits=from_logits,
            )
    x, t, ignored = canonical_inputs(input, target, mode, ignore_index=ignore_index)
    alpha_scalar, alpha_vec, weight = _resolve_alpha(alpha, weight, mode, x.shape[1])
    x = upcast(x)
    if not from_logits:
        x = _probabilities_to_logits(x, mode)
    valid = None if ignored is None else ~ignored
    if not include_background and mode == "multilabel" and x.shape[1] > 1:
        x, t = x[:, 1:], t[:, 1:]
        valid = None if valid is None else valid[:, 1:]
        alpha_vec = None if alpha_vec is None else alpha_vec[1:]
        weight = None if weight is None else weight[1:]
    a_pos, a_neg = _sigmoid_weights(alpha_scalar, alpha_vec, weight, x)
    with fp32_island():
        value = _sigmoid_focal_loss(x, t, valid, a_pos, a_neg, gamma, label_smoothing, reduction, normalize,
                                    distributed)
    if not include_background and mode == "multilabel" and reduction == "none" and input.shape[1] > 1:
        return torch.cat([torch.zeros_like(value[:, :1]), value], 1)  # channel 0 counts nowhere: zeros
    # binary input [B] or [B, *] was given a channel dim for the arithmetic; per-element losses keep the input's shape
    return value.reshape(input.shape) if reduction == "none" else value


def _class_weight(alpha_scalar: float | None, weight: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """Per-class factors of the multiclass focal loss: ``weight_c`` times, with a float alpha,
    ``1 - alpha`` for the background (class 0) and ``alpha`` for every other class."""
    w = None if weight is None else weight.to(device=x.device, dtype=x.dtype)
    if alpha_scalar is not None:
        a = torch.full((x.shape[1],), alpha_scalar, dtype=x.dtype, device=x.device)
        a[0] = 1.0 - alpha_scalar
        w = a if w is None else w * a
    return w


def _sigmoid_weights(
    alpha_scalar: float | None, alpha_vec: torch.Tensor | None, weight: torch.Tensor | None, x: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Factors of the positive and negative terms per channel (None: no weighting at all)."""
    if alpha_scalar is None and alpha_vec is None and weight is None:
        return None, None
    a_pos = x.new_ones(1) if alpha_scalar is None and alpha_vec is None else (
        x.new_full((1,), alpha_scalar) if alpha_vec is None else alpha_vec.to(x))
    a_neg = 1.0 - a_pos if (alpha_scalar is not None or alpha_vec is not None) else x.new_ones(1)
    if weight is not None:
        weight = weight.to(x)
        if x.shape[1] == 1 and weight.numel() == 2:  # binary [w_negative, w_positive]
            a_neg, a_pos = a_neg * weight[:1], a_pos * weight[1:]
        else:
            a_neg, a_pos = a_neg * weight, a_pos * weight
    return a_pos, a_neg


def _finish_reduction(value: torch.Tensor, denominator: torch.Tensor | None, reduction: str, distributed: bool,
                     floor: float) -> torch.Tensor:
    """``value`` (a sum) -> the loss: itself for "sum" / "none", ``value / denominator`` for "mean";
    with ``distributed``, sums and denominators of every rank (one all-reduce)."""
    if reduction == "none":
        return value
    if reduction == "sum":
        return all_reduce_sum(value) if distributed else value
    assert denominator is not None
    denominator = denominator.detach().to(value.dtype)
    if distributed:
        both = all_reduce_sum(torch.stack([value, denominator]))
        value, denominator = both[0], both[1]
    return value / denominator.clamp_min(floor)


def _softmax_focal_loss(
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
    distributed: bool = False,
    check_finite_logits: bool = False,
) -> torch.Tensor:
    """Multiclass focal loss of validated logits through ``torch.ops.medloss.softmax_focal``.

    ``t`` is the target as given (``ignore_index`` and, with ``valid``, the positions it marks
    False count nowhere; any other out-of-range label is an error in eager mode); ``gammas`` =
    (gamma of the background class 0, gamma of the others). The mean divides by the number of
    counted positions (``normalize="elements"``) or, with weights, by the sum of their ``w_t``;
    it is 0 when nothing is counted. ``check_finite_logits``: a non-finite logit is an error in eager
    mode, found from the sum the op takes as it reads them (the caller skipped that check).
    """
    if gammas[0] != gammas[1] and label_smoothing:
        raise ValueError("label smoothing is not supported with a class-dependent gamma")
    if valid is not None:  # positions already masked by the caller: mark them with a label no class has
        t = torch.where(valid, t, -1)
        ignore_index = -1
    checks = value_checks_active(x, t)
    if x.shape[1] <= TRITON_MAX_CLASSES and resolve_implementation(x) == "triton":
        from ..ops.triton_softmax_stats import softmax_focal_triton

        value, counts, n_bad, logits_sum = softmax_focal_triton(
            x, t, -(2**62) if ignore_index is None else ignore_index, weight, float(gammas[0]), float(gammas[1]),
            float(label_smoothing), reduction == "none")
        value = value.to(x.dtype)
        if not (checks and check_finite_logits):
            logits_sum = torch.zeros_like(logits_sum)
    else:
        value, counts, n_bad, logits_sum = torch.ops.medloss.softmax_focal(
            x, t, ignore_index, weight, float(gammas[0]), float(gammas[1]), float(label_smoothing),
            reduction == "none", checks and check_finite_logits,
        )
    if checks:
        check_op_findings(x, t, x.shape[1], ignore_index, n_bad, logits_sum)
    if reduction != "mean":
        return _finish_reduction(value, None, reduction, distributed, 1.0)
    counts = counts.detach()
    if normalize == "weights" and weight is not None:
        return _finish_reduction(value, (counts * weight.detach()).sum(), reduction, distributed,
                                torch.finfo(value.dtype).tiny)
    return _finish_reduction(value, counts.sum(), reduction, distributed, 1.0)


def _sigmoid_focal_loss(
    x: torch.Tensor,
    t: torch.Tensor,
    valid: torch.Tensor | None,
    a_pos: torch.Tensor | None,
    a_neg: torch.Tensor | None,
    gamma: float,
    label_smoothing: float,
    reduction: str,
    normalize: str,
    distributed: bool = False,
) -> torch.Tensor:
    """Binary / multilabel focal loss of validated logits through ``torch.ops.medloss.sigmoid_focal``;
    ``a_pos`` / ``a_neg``: per-channel factors of the positive / negative terms (None: 1)."""
    weighted = a_pos is not None
    if not weighted:
        a_pos = a_neg = x.new_ones(1)
    y = t if valid is None else t.masked_fill(~valid, 0)  # ignore_index values never reach the arithmetic
    if resolve_implementation(x) == "triton":
        from ..ops.triton_sigmoid_stats import sigmoid_focal_triton

        value = sigmoid_focal_triton(x, y, valid, a_pos.to(x), a_neg.to(x), float(gamma), float(label_smoothing),
                                     reduction == "none").to(x.dtype)
    else:
        value = torch.ops.medloss.sigmoid_focal(
            x, y, valid, a_pos.to(x), a_neg.to(x), float(gamma), float(label_smoothing), reduction == "none"
        )
    if reduction != "mean":
        return _finish_reduction(value, None, reduction, distributed, 1.0)
    if normalize == "weights" and weighted:
        yv = y.to(x.dtype)
        if label_smoothing:
            yv = yv * (1.0 - label_smoothing) + 0.5 * label_smoothing
        shape = (1, -1) + (1,) * (x.ndim - 2)
        weights = yv * a_pos.to(x).view(shape) + (1.0 - yv) * a_neg.to(x).view(shape)
        if valid is not None:
            weights = weights * valid
        return _finish_reduction(value, weights.sum(), reduction, distributed, torch.finfo(value.dtype).tiny)
    count = valid.expand_as(x).sum() if valid is not None else value.new_tensor(float(x.numel()))
    return _finish_reduction(value, count, reduction, distributed, 1.0)


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
        alpha: the paper's class balance. ``None`` (default): none. A float in [0, 1]: positives
            get ``alpha`` and negatives ``1 - alpha`` (binary / multilabel, RetinaNet uses 0.25);
            in multiclass mode class 0 (background) gets ``1 - alpha`` and every other class
            ``alpha``. In multilabel mode also a tensor ``[C]`` of per-class alphas in [0, 1].
        weight: per-class weights (any values >= 0, e.g. from :func:`class_weights`): ``[C]`` in
            multiclass and multilabel mode, ``[w_negative, w_positive]`` in binary mode; they
            multiply ``alpha_t``. (A tensor ``alpha`` in binary / multiclass mode is the deprecated
            spelling of ``weight``: FutureWarning.)
        include_background: keep class 0 (default True). False: pixels whose target is class 0
            count nowhere in multiclass mode (the softmax still runs over every class; MONAI's
            softmax runs over the remaining channels only), channel 0 is dropped in multilabel
            mode (its ``"none"`` entries are 0); no effect in binary mode.
        distributed: under ``torch.distributed`` (DDP), the mean over every rank's counted positions
            (default False: this rank's); see ``docs/distributed.md``.
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

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``; for ``"none"`` the per-position losses, ``[B, *]`` in
        multiclass mode and the input's shape in binary / multilabel mode (0 at ignored positions).

    Raises:
        ValueError: an option out of range (the message names it); a ``target`` of the wrong shape, labels outside
            ``[0, C - 1]`` other than ``ignore_index``, non-finite logits, probabilities outside [0, 1] with
            ``from_logits=False``; a ``weight`` of the wrong length.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
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
        weight: torch.Tensor | None = None,
        include_background: bool = True,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.include_background = bool(include_background)
        self.distributed = bool(distributed)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.ignore_index = ignore_index
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.reduction = check_reduction(reduction)
        self.normalize = check_choice(normalize, "normalize", NORMALIZERS)
        self.from_logits = bool(from_logits)
        self.alpha: Any
        self.weight: torch.Tensor | None
        alpha, weight = _alpha_as_weight(alpha, weight, mode, stacklevel=3)
        if alpha is None or isinstance(alpha, (int, float)):
            if alpha is not None:
                check_number(alpha, "alpha", low=0.0, high=1.0)
            self.alpha = alpha
        else:
            self.register_buffer("alpha", check_class_vector(alpha, "alpha", None, low=0.0, high=1.0))
        if weight is not None:
            size = 2 if mode == "binary" else None
            self.register_buffer("weight", check_class_vector(weight, "weight", size, low=0.0))
        else:
            self.weight = None

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distributed_flag(self)  # the error names the module the user built
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
            weight=self.weight,
            include_background=self.include_background,
            distributed=self.distributed,
        )

    def extra_repr(self) -> str:
        alpha = self.alpha if not isinstance(self.alpha, torch.Tensor) else self.alpha.tolist()
        return (
            f"mode={self.mode!r}, alpha={alpha}, gamma={self.gamma}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}, normalize={self.normalize!r}"
        )


class CrossEntropyLoss(FocalLoss):
    r"""Cross-entropy for every mode with PyTorch's weighted mean: :class:`FocalLoss` at gamma 0.

    .. math:: \mathcal{L} = -\frac{\sum_i w_{t_i} \log p_{t_i}}{\sum_i w_{t_i}}

    ``weight`` is per class (``[w_negative, w_positive]`` in binary mode) and the mean divides by
    the sum of the target weights, so multiclass results equal ``F.cross_entropy(weight=weight)``
    and binary ones ``F.binary_cross_entropy_with_logits`` (label smoothing included).

    Args:
        mode, weight, ignore_index, label_smoothing, reduction, from_logits, include_background, distributed:
            as :class:`FocalLoss` (defaults "multiclass", None, -100, 0.0, "mean", True, True, False).

    Returns:
        As :class:`FocalLoss`.

    Raises:
        ValueError / TypeError: as :class:`FocalLoss`, naming the argument.

    Examples:
        >>> x, t = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]), torch.tensor([0, 1])
        >>> w = torch.tensor([1.0, 2.0, 0.5])
        >>> torch.allclose(CrossEntropyLoss(weight=w)(x, t), torch.nn.functional.cross_entropy(x, t, weight=w))
        True
    """

    def __init__(
        self,
        *,
        mode: str = "multiclass",
        weight: torch.Tensor | None = None,
        ignore_index: int | None = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        from_logits: bool = True,
        include_background: bool = True,
        distributed: bool = False,
    ) -> None:
        super().__init__(
            mode=mode, weight=weight, gamma=0.0, ignore_index=ignore_index, label_smoothing=label_smoothing,
            reduction=reduction, normalize="weights", from_logits=from_logits, include_background=include_background,
            distributed=distributed,
        )

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, "
                f"reduction={self.reduction!r}")


def cross_entropy_loss(
    input: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    *,
    mode: str = "multiclass",
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    from_logits: bool = True,
    include_background: bool = True,
    distributed: bool = False,
) -> Any:
    r"""Cross-entropy with PyTorch's weighted mean, ``-sum_i w_{t_i} log p_{t_i} / sum_i w_{t_i}``: the
    functional form of :class:`CrossEntropyLoss` (:func:`focal_loss` at gamma 0, weights normalising the mean).

    Called without tensors it returns the module, as medloss < 0.2 did (deprecated: FutureWarning;
    use :class:`CrossEntropyLoss`).

    Args:
        input: logits (or probabilities with ``from_logits=False``) ``[B, C, *]``; binary: ``[B, *]``.
        target: class indices ``[B, *]`` (multiclass) or 0 / 1 labels of the input's shape.
        mode, weight, ignore_index, label_smoothing, reduction, from_logits, include_background, distributed:
            as :class:`FocalLoss`.

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the per-position losses for ``"none"``.

    Raises:
        ValueError: an option out of range, targets outside ``[0, C - 1]`` other than ``ignore_index``,
            non-finite logits (the message names the argument).
        TypeError: only one of ``input`` and ``target`` given, or an integer ``input``.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> x, t = torch.randn(5, 3), torch.randint(0, 3, (5,))
        >>> torch.allclose(cross_entropy_loss(x, t), torch.nn.functional.cross_entropy(x, t))
        True
    """
    options = dict(mode=mode, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                   reduction=reduction, from_logits=from_logits, include_background=include_background,
                   distributed=distributed)
    if input is None and target is None:
        warnings.warn(
            "cross_entropy_loss(...) returning a module is deprecated and will be removed in medloss 0.3; "
            "use CrossEntropyLoss(...) for the module or cross_entropy_loss(input, target, ...) for the value",
            FutureWarning, stacklevel=2,
        )
        return CrossEntropyLoss(**options)
    if input is None or target is None:
        raise TypeError("cross_entropy_loss needs both `input` and `target` (or neither: deprecated module form)")
    if distributed:
        require_process_group("cross_entropy_loss")
    return focal_loss(input, target, gamma=0.0, normalize="weights", **options)


def prior_bias(prior: float = 0.01) -> float:
    """Initial bias of a sigmoid output so that it starts at probability ``prior``: ``log(prior / (1 - prior))``.

    RetinaNet (Lin et al. 2017) initialises the classification bias to ``-log((1 - pi) / pi)`` with
    ``pi = 0.01`` so that rare positives do not drown in the loss of the many easy negatives in the
    first iterations: ``nn.init.constant_(head.bias, prior_bias(0.01))``.

    Args:
        prior: the starting probability, in (0, 1) (default 0.01).

    Returns:
        The bias, a float.

    Raises:
        ValueError: ``prior`` outside (0, 1).
        TypeError: ``prior`` not a real number.

    Examples:
        >>> round(prior_bias(0.01), 4)  # log(0.01 / 0.99)
        -4.5951
    """
    prior = check_number(prior, "prior", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    return math.log(prior / (1.0 - prior))
