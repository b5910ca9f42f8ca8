r"""The Unified Focal loss family (Yeung et al., "Unified Focal loss: Generalising Dice and cross
entropy-based losses to handle class imbalanced medical image segmentation", CMIG 2022) and the
Hybrid Focal loss (Yeung et al. 2021), for C classes with channel 0 the background.

Definitions follow the official implementation (github.com/mlyg/unified-focal-loss), generalised
from binary to C classes, with ``p`` the softmax (binary mode: the softmax of ``[0, x]``, i.e.
``[1 - sigmoid(x), sigmoid(x)]``) and ``CE_c = -y_c log p_c`` from ``log_softmax`` (the official
code clips probabilities to [1e-7, 1 - 1e-7] first, which freezes the gradient of confident
mistakes). Per image and class, with ``s_nr = smooth_nr`` and ``s_dr = smooth_dr`` (official 1e-7 each):

    mTI_c = (TP_c + s_nr) / (TP_c + delta FN_c + (1 - delta) FP_c + s_dr)

- Symmetric Focal:   mean over pixels of (1-delta)(1-p_0)^gamma CE_0 + sum_{c>=1} delta (1-p_c)^gamma CE_c
- Asymmetric Focal:  the same without the focal factor on the rare classes (delta CE_c)
- Symmetric Focal Tversky:  mean over images and classes of (1 - mTI_c)^(1 - gamma)
- Asymmetric Focal Tversky: background (1 - mTI_0), rare classes (1 - mTI_c)^(1 - gamma)
- Unified: lambda_ x [Focal Tversky] + (1 - lambda_) x [Focal], same symmetry, delta and gamma

With gamma = 0 and delta = 0.5 the Focal Tversky part is the Dice loss and the Focal part half the
cross-entropy. Known divergences of other code, documented rather than copied: the official code
puts its ``weight`` (lambda, ``lambda_`` here) on the Focal Tversky half and MONAI's
``AsymmetricUnifiedFocalLoss`` on the Focal half (identical at the default 0.5), MONAI defaults
delta to 0.7 and applies no sigmoid although its docstring says so, and the official code indexes
channels as ``y_pred[:,:,:,0]``, wrong for 3-D volumes (inputs here are channel-first for every
rank).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._validation import canonical_inputs, check_choice, check_class_vector, check_mode, check_number, check_reduction
from ._common import fp32_island, safe_pow, upcast
from ._overlap import SoftmaxStats
from ._region import (
    RegionLoss,
    RegionOptions,
    check_per_image_reduction,
    check_process_group,
    finish_per_image,
    prepare_segmentation,
    region_and_term_means,
    region_loss,
    region_options,
    region_per_image,
    region_statistics,
)
from .focal import _softmax_focal_loss
from .overlap import _focal_tversky_terms

UNIFIED_MODES = ("binary", "multiclass")
#: the official code's smoothing of mTI
UNIFIED_SMOOTH = 1e-7


def _delta_weights(delta: float, n_classes: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # no indexed write: a factory and a where run on every device, fake CUDA included
    background = torch.arange(n_classes, device=device) == 0
    return torch.full((n_classes,), delta, dtype=dtype, device=device).masked_fill(background, 1.0 - delta)


def _lambda_from_weight(weight: Any, lambda_: float, name: str) -> tuple[float, Any]:
    """``(lambda_, per-class weight)``: a number passed as ``weight`` is the mixing lambda of medloss < 0.2
    (FutureWarning); ``weight`` now means per-class weights."""
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        warnings.warn(
            f"{name}(weight=<number>) is deprecated and will be removed in medloss 0.3: the mixing lambda is "
            "`lambda_`; `weight` is reserved for per-class weights", FutureWarning, stacklevel=4,
        )
        return weight, None
    return lambda_, weight


def _smooth_terms(owner: str, smooth: float | None, smooth_nr: float, smooth_dr: float) -> tuple[float, float]:
    """``smooth`` (medloss < 0.2) is both terms, with a FutureWarning."""
    if smooth is None:
        return smooth_nr, smooth_dr
    warnings.warn(f"{owner}(smooth=...) is deprecated and will be removed in medloss 0.3; pass smooth_nr= and "
                  "smooth_dr= (the numerator's and the denominator's term, as every region loss)", FutureWarning,
                  stacklevel=4)
    return smooth, smooth


def _unified_options(owner: str, smooth: float | None = None, *, asymmetric: bool = False,
                    smooth_nr: float = UNIFIED_SMOOTH, smooth_dr: float = UNIFIED_SMOOTH, **options: Any
                    ) -> RegionOptions:
    """The region options of the Unified family: binary or multiclass, a binary input seen as ``[1 - p, p]``."""
    smooth_nr, smooth_dr = _smooth_terms(owner, smooth, smooth_nr, smooth_dr)
    o = region_options(owner, modes=UNIFIED_MODES, two_class_binary=True, smooth_nr=smooth_nr, smooth_dr=smooth_dr,
                       **options)
    if asymmetric and o.average == "micro":
        raise ValueError(f"{owner} needs average='macro': its background term differs from the others, and "
                         "'micro' sums the classes into one")
    return o


def _modified_tversky_index(s: SoftmaxStats, delta: float, smooth_nr: float, smooth_dr: float) -> torch.Tensor:
    """``(TP + e) / (TP + delta FN + (1 - delta) FP + e)`` per image and class, its denominator formed as
    ``delta sum y + (1 - delta) sum p + e`` (TP's share cancels: fewer operations, no difference taken)."""
    return (s.tp + smooth_nr) / (s.sum_y * delta + s.sum_p * (1.0 - delta) + smooth_dr)


def _unified_focal_tversky_terms(s: SoftmaxStats, delta: float, gamma: float, smooth_nr: float, smooth_dr: float,
                                asymmetric: bool) -> torch.Tensor:
    """Per image and class ``(1 - mTI)^(1 - gamma)``; the background unmodulated if ``asymmetric``."""
    d = 1.0 - _modified_tversky_index(s, delta, smooth_nr, smooth_dr)
    terms = safe_pow(d, 1.0 - gamma)
    if asymmetric:
        terms = torch.cat([d[..., :1], terms[..., 1:]], -1)
    return terms


WeightOf = Callable[[int, torch.dtype, torch.device], torch.Tensor]


def _softmax_focal(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, weight_of: WeightOf,
                   gammas: tuple[float, float], reduction: str) -> torch.Tensor:
    """The softmax focal loss of the two-channel (binary) or C-channel softmax with the class weights
    ``weight_of(C, dtype, device)`` and ``gammas`` (background, others), reduced by ``reduction``."""
    if o.mode == "multiclass" and o.from_logits:
        # labels counted and logits summed by the op as it reads them (a pass fewer each)
        x, t, _ = canonical_inputs(input, target, "multiclass", ignore_index=o.ignore_index, check_labels=False,
                                   check_input_finite=False)
        x, valid, ignore_index, checked = upcast(x), None, o.ignore_index, False
    else:
        x, t, valid, _ = prepare_segmentation(input, target, o.mode, from_logits=o.from_logits,
                                              ignore_index=o.ignore_index, binary_as_two_classes=True)
        ignore_index, checked = None, True
    weight = weight_of(x.shape[1], x.dtype, x.device)
    with fp32_island():
        return _softmax_focal_loss(
            x, t, valid, ignore_index=ignore_index, weight=weight, gammas=gammas, label_smoothing=0.0,
            reduction=reduction, distributed=o.distributed and reduction != "none", check_finite_logits=not checked,
        )


def _compound(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, per_class: Callable[..., torch.Tensor],
              focal_weight_of: WeightOf, gammas: tuple[float, float], region_share: float) -> torch.Tensor:
    """``region_share x region + (1 - region_share) x focal``: the region term's mean over images and classes and
    the focal term's over counted pixels from one softmax pass, or (reduction "none" / "sum") per image."""
    n_classes = 2 if o.mode == "binary" else input.shape[1]
    if o.reduction == "mean":
        alpha = focal_weight_of(n_classes, torch.float64, input.device)
        s = region_statistics(input, target, o, focal=(alpha, gammas[0], gammas[1]))
        region, focal = region_and_term_means(s, per_class, o)
        return region_share * region + (1.0 - region_share) * focal
    s = region_statistics(input, target, o)
    region = region_per_image(s, per_class, o)
    focal = _softmax_focal(input, target, o, focal_weight_of, gammas, "none")
    focal = focal.reshape(focal.shape[0], -1).sum(1) / s.sum_y.sum(-1).clamp_min(1.0)  # within each image
    return finish_per_image(region_share * region + (1.0 - region_share) * focal, o.reduction, o.distributed)


def _focal_tversky_per_class(o: RegionOptions, delta: float, gamma: float, asymmetric: bool
                             ) -> Callable[[SoftmaxStats], torch.Tensor]:
    return lambda v: _unified_focal_tversky_terms(v, delta, gamma, o.smooth_nr, o.smooth_dr, asymmetric)


# ------------------------------------------------------------------------------------------------ the focal losses

def _check_delta_gamma(delta: float, gamma: float) -> tuple[float, float]:
    return check_number(delta, "delta", low=0.0, high=1.0), check_number(gamma, "gamma", low=0.0)


class _PixelOptions:
    """The options of the family's two Focal losses (pixel losses: no counts, so no region options)."""

    def __init__(self, owner: str, mode: str = "multiclass", from_logits: bool = True,
                 ignore_index: int | None = -100, reduction: str = "mean", distributed: bool = False,
                 **ignored: Any) -> None:
        for name in ignored:
            if name not in _IGNORED_BY_FOCAL:
                raise TypeError(f"{owner}() got an unexpected keyword argument '{name}'")
            warnings.warn(f"{owner} ignores `{name}` (a pixel loss has no region counts); passing it is deprecated "
                          "and will be an error in medloss 0.3", FutureWarning, stacklevel=4)
        self.owner = owner
        self.mode = check_choice(check_mode(mode), "mode", UNIFIED_MODES)
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        self.distributed = bool(distributed)


# accepted by medloss < 0.2 though they did nothing there
_IGNORED_BY_FOCAL = ("batch", "smooth", "smooth_nr", "smooth_dr")


def _focal(input: torch.Tensor, target: torch.Tensor, o: Any, delta: float, gamma: float, asymmetric: bool
           ) -> torch.Tensor:
    if o.distributed:
        check_process_group(o)
    gammas = (gamma, 0.0 if asymmetric else gamma)
    return _softmax_focal(input, target, o, lambda c, dtype, device: _delta_weights(delta, c, dtype, device),
                          gammas, o.reduction)


_FOCAL_ARGS = """
    Args:
        delta: weight of the rare classes, 1 - delta for the background (default 0.7).
        gamma: focusing exponent >= 0 (default 2.0).
        mode: ``"multiclass"`` (default; channel 0 = background) or ``"binary"`` (one logit,
            treated as the two-channel softmax ``[1 - p, p]``; hard labels).
        from_logits: logits (default) or probabilities.
        ignore_index: target value whose pixels count nowhere (default -100).
        reduction: ``"mean"`` over pixels (default), ``"sum"``, or ``"none"`` (``[B, *]``).
        distributed: under ``torch.distributed`` (DDP), the mean / sum over every rank's pixels
            (default False: this rank's); see ``docs/distributed.md``.

    The region options (``batch``, ``smooth_nr``, ``smooth_dr``, ...) do not apply to this pixel loss.

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the per-pixel losses ``[B, *]`` for ``"none"``
        (0 at ignored pixels).

    Raises:
        ValueError: ``delta`` outside [0, 1], ``gamma`` < 0, an unknown ``mode`` or ``reduction``; labels
            outside ``[0, C - 1]`` other than ``ignore_index``; non-finite logits.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.
"""

_INPUTS = """
        input: logits (or probabilities with ``from_logits=False``) ``[B, C, *]``, channel 0 the background;
            binary: one logit ``[B, 1, *]`` or ``[B, *]``.
        target: class indices ``[B, *]`` (binary: 0 / 1 labels)."""


def _twin_doc(cls_name: str, summary: str, example: str, args: str) -> str:
    """A functional twin's docstring: its summary, inputs and options (the class's, whose Args follow)."""
    a, b = args.split("    Args:\n", 1)
    return (f"{summary}\n\n    The functional form of :class:`{cls_name}` (same options, defaults and errors; no "
            f"module is built).\n{a}    Args:{_INPUTS}\n{b}\n    Examples:\n{example}")


def symmetric_focal_loss(input: torch.Tensor, target: torch.Tensor, *, delta: float = 0.7, gamma: float = 2.0,
                         **options: Any) -> torch.Tensor:
    delta, gamma = _check_delta_gamma(delta, gamma)
    return _focal(input, target, _PixelOptions("symmetric_focal_loss", **options), delta, gamma, False)


def asymmetric_focal_loss(input: torch.Tensor, target: torch.Tensor, *, delta: float = 0.7, gamma: float = 2.0,
                          **options: Any) -> torch.Tensor:
    delta, gamma = _check_delta_gamma(delta, gamma)
    return _focal(input, target, _PixelOptions("asymmetric_focal_loss", **options), delta, gamma, True)


class SymmetricFocalLoss(nn.Module):
    __doc__ = ("Symmetric Focal loss of the Unified Focal family (Yeung et al. 2022), the mean over counted "
               "pixels of\n\n    ``(1 - delta) (1 - p_0)^gamma CE_0 + sum_{c >= 1} delta (1 - p_c)^gamma CE_c``, "
               "``CE_c = -y_c log p_c``\n\n    (``gamma`` is the focal exponent itself, as in :class:`FocalLoss`).\n"
               + _FOCAL_ARGS
               + """
    Examples:
        >>> x, t = torch.zeros(1, 2, 4), torch.tensor([[0, 0, 1, 1]])  # p = 1/2: (1 - 1/2)^2 * log 2 * (0.3 + 0.7) / 2
        >>> SymmetricFocalLoss()(x, t)
        tensor(0.0866)
""")
    asymmetric = False

    def __init__(self, *, delta: float = 0.7, gamma: float = 2.0, mode: str = "multiclass", from_logits: bool = True,
                 ignore_index: int | None = -100, reduction: str = "mean", distributed: bool = False,
                 **deprecated: Any) -> None:
        super().__init__()
        self.delta, self.gamma = _check_delta_gamma(delta, gamma)
        o = _PixelOptions(type(self).__name__, mode=mode, from_logits=from_logits, ignore_index=ignore_index,
                          reduction=reduction, distributed=distributed, **deprecated)
        self.mode, self.from_logits, self.ignore_index = o.mode, o.from_logits, o.ignore_index
        self.reduction, self.distributed = o.reduction, o.distributed
        self.owner = type(self).__name__

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _focal(input, target, self, self.delta, self.gamma, self.asymmetric)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, delta={self.delta}, gamma={self.gamma}, reduction={self.reduction!r}"


class AsymmetricFocalLoss(SymmetricFocalLoss):
    __doc__ = ("Asymmetric Focal loss of the Unified Focal family (Yeung et al. 2022), the mean over counted pixels "
               "of\n\n    ``(1 - delta) (1 - p_0)^gamma CE_0 + sum_{c >= 1} delta CE_c``: the focal factor on the "
               "background only.\n" + _FOCAL_ARGS + """
    Examples:
        >>> x, t = torch.zeros(1, 2, 4), torch.tensor([[0, 0, 1, 1]])  # 0.3 (1/2)^2 log 2 and 0.7 log 2
        >>> AsymmetricFocalLoss()(x, t)
        tensor(0.2686)
""")
    asymmetric = True


symmetric_focal_loss.__doc__ = _twin_doc(
    "SymmetricFocalLoss", "Symmetric Focal loss, the mean over counted pixels of ``(1 - delta) (1 - p_0)^gamma CE_0 + "
    "sum_{c >= 1} delta (1 - p_c)^gamma CE_c``.",
    "        >>> x, t = torch.zeros(1, 2, 4), torch.tensor([[0, 0, 1, 1]])  # (1 - 1/2)^2 log 2 (0.3 + 0.7) / 2\n"
    "        >>> symmetric_focal_loss(x, t)\n        tensor(0.0866)\n", _FOCAL_ARGS)
asymmetric_focal_loss.__doc__ = _twin_doc(
    "AsymmetricFocalLoss", "Asymmetric Focal loss, the mean over counted pixels of ``(1 - delta) (1 - p_0)^gamma "
    "CE_0 + sum_{c >= 1} delta CE_c``.",
    "        >>> x, t = torch.zeros(1, 2, 4), torch.tensor([[0, 0, 1, 1]])  # 0.3 (1/2)^2 log 2 and 0.7 log 2\n"
    "        >>> asymmetric_focal_loss(x, t)\n        tensor(0.2686)\n", _FOCAL_ARGS)


# ------------------------------------------------------------------------------------------------ region losses

class _UnifiedRegionLoss(RegionLoss):
    """The region options of the family: binary or multiclass, a binary input seen as ``[1 - p, p]``, mTI's
    smoothing 1e-7 (the official value); ``smooth`` is the deprecated spelling of both smoothing terms."""

    modes = UNIFIED_MODES
    two_class_binary = True
    asymmetric = False

    def __init__(self, *, smooth_nr: float = UNIFIED_SMOOTH, smooth_dr: float = UNIFIED_SMOOTH,
                 smooth: float | None = None, **kwargs: Any) -> None:
        smooth_nr, smooth_dr = _smooth_terms(type(self).__name__, smooth, smooth_nr, smooth_dr)
        super().__init__(smooth_nr=smooth_nr, smooth_dr=smooth_dr, **kwargs)
        if self.asymmetric and self.average == "micro":
            _unified_options(type(self).__name__, asymmetric=True, average="micro")  # raises the error


_UNIFIED_REGION_OPTIONS = """        mode, from_logits, ignore_index: as :class:`SymmetricFocalLoss`.
        batch: counts over the whole batch instead of per image (default False).
        include_background, weight, ignore_empty, average: as :class:`DiceLoss` (channel 0, the background,
            is kept by default; ``average="micro"`` only in the symmetric losses).
        smooth_nr, smooth_dr: ``s_nr`` and ``s_dr`` of mTI (default 1e-7 each, the official value; ``smooth``
            is the deprecated spelling of both). An image with no pixel of a class and no predicted mass for it
            has mTI = 1 (loss 0); predicted mass on an empty class gives mTI ~ 0 (loss ~ 1, false positives
            penalised).
        distributed: under ``torch.distributed`` (DDP), the loss of the whole distributed batch on
            every rank (default False); see ``docs/distributed.md``.
"""

_FT_ARGS = """
    Args:
        delta: weight of false negatives, 1 - delta of false positives (default 0.7).
        gamma: the exponent is ``1 - gamma`` (default 0.75, exponent 0.25).
""" + _UNIFIED_REGION_OPTIONS + """\
        reduction: ``"mean"`` over images and classes (default), ``"sum"``, ``"none"`` (``[B, C]``).

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the per-class losses ``[B, C]`` for ``"none"`` (``[C]``
        with ``batch``, ``[B]`` with ``average="micro"``).

    Raises:
        ValueError: ``delta`` outside [0, 1], ``gamma`` < 0, an unknown ``mode``, ``reduction`` or ``average``
            (``"micro"`` in the asymmetric loss); inputs as :class:`DiceLoss`.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.
"""


def _focal_tversky(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, delta: float, gamma: float,
                   asymmetric: bool) -> torch.Tensor:
    return region_loss(region_statistics(input, target, o), _focal_tversky_per_class(o, delta, gamma, asymmetric), o)


def symmetric_focal_tversky_loss(input: torch.Tensor, target: torch.Tensor, *, delta: float = 0.7,
                                 gamma: float = 0.75, **options: Any) -> torch.Tensor:
    delta, gamma = _check_delta_gamma(delta, gamma)
    return _focal_tversky(input, target, _unified_options("symmetric_focal_tversky_loss", **options), delta, gamma,
                          False)


def asymmetric_focal_tversky_loss(input: torch.Tensor, target: torch.Tensor, *, delta: float = 0.7,
                                  gamma: float = 0.75, **options: Any) -> torch.Tensor:
    delta, gamma = _check_delta_gamma(delta, gamma)
    o = _unified_options("asymmetric_focal_tversky_loss", asymmetric=True, **options)
    return _focal_tversky(input, target, o, delta, gamma, True)


class SymmetricFocalTverskyLoss(_UnifiedRegionLoss):
    __doc__ = ("Symmetric Focal Tversky loss of the Unified Focal family (Yeung et al. 2022), the mean over images "
               "and classes of\n\n    ``(1 - mTI_c)^(1 - gamma)``, ``mTI_c = (TP_c + s_nr) / (TP_c + delta FN_c + "
               "(1 - delta) FP_c + s_dr)``\n\n    (the exponent is ``1 - gamma``, as the paper and its code have it; "
               ":class:`FocalTverskyLoss` raises to ``gamma``).\n" + _FT_ARGS + """
    Examples:
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # perfect: mTI = 1 for both classes
        >>> SymmetricFocalTverskyLoss(from_logits=False)(probs, torch.tensor([[0, 0, 1, 1]]))
        tensor(0.)
""")

    def __init__(self, *, delta: float = 0.7, gamma: float = 0.75, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta, self.gamma = _check_delta_gamma(delta, gamma)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _focal_tversky(input, target, self.options, self.delta, self.gamma, self.asymmetric)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, gamma={self.gamma}, " + super().extra_repr()


class AsymmetricFocalTverskyLoss(SymmetricFocalTverskyLoss):
    __doc__ = ("Asymmetric Focal Tversky loss of the Unified Focal family (Yeung et al. 2022), per image the mean "
               "over classes of\n\n    ``1 - mTI_0`` (background, no exponent) and ``(1 - mTI_c)^(1 - gamma)`` for "
               "``c >= 1``\n\n    (mTI as :class:`SymmetricFocalTverskyLoss`; the exponent is ``1 - gamma``).\n"
               + _FT_ARGS + """
    Examples:
        >>> half = torch.full((1, 2, 4), 0.5)  # mTI = 1/2 for both: (1/2 + (1/2) ** 0.25) / 2 = 0.67045
        >>> loss = AsymmetricFocalTverskyLoss(from_logits=False, smooth_nr=0.0, smooth_dr=0.0)
        >>> loss(half, torch.tensor([[0, 0, 1, 1]]))
        tensor(0.6704)
""")
    asymmetric = True


symmetric_focal_tversky_loss.__doc__ = _twin_doc(
    "SymmetricFocalTverskyLoss", "Symmetric Focal Tversky loss, the mean over images and classes of "
    "``(1 - mTI_c)^(1 - gamma)``.",
    "        >>> half = torch.full((1, 2, 4), 0.5)  # mTI = 1/2 for both classes: (1/2) ** 0.25\n"
    "        >>> symmetric_focal_tversky_loss(half, torch.tensor([[0, 0, 1, 1]]), from_logits=False, smooth_nr=0.0,\n"
    "        ...                              smooth_dr=0.0)\n        tensor(0.8409)\n", _FT_ARGS)
asymmetric_focal_tversky_loss.__doc__ = _twin_doc(
    "AsymmetricFocalTverskyLoss", "Asymmetric Focal Tversky loss: ``1 - mTI_0`` for the background, "
    "``(1 - mTI_c)^(1 - gamma)`` for the others, averaged.",
    "        >>> half = torch.full((1, 2, 4), 0.5)  # (1/2 + (1/2) ** 0.25) / 2\n"
    "        >>> asymmetric_focal_tversky_loss(half, torch.tensor([[0, 0, 1, 1]]), from_logits=False, smooth_nr=0.0,\n"
    "        ...                               smooth_dr=0.0)\n        tensor(0.6704)\n", _FT_ARGS)


# ------------------------------------------------------------------------------------------------ compound losses

_COMPOUND_RETURNS = """
    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the loss of each image ``[B]`` for ``"none"``.

    Raises:
        ValueError: an option out of range (the message names it), or ``reduction`` other than ``"mean"`` with
            ``batch=True``; inputs as :class:`DiceLoss`.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.
"""


def _unified(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, lambda_: float, delta: float,
             gamma: float, asymmetric: bool) -> torch.Tensor:
    return _compound(input, target, o, _focal_tversky_per_class(o, delta, gamma, asymmetric),
                     lambda c, dtype, device: _delta_weights(delta, c, dtype, device),
                     (gamma, 0.0 if asymmetric else gamma), lambda_)


def _unified_arguments(owner: str, lambda_: float, delta: float, gamma: float, weight: Any, asymmetric: bool,
                       options: dict[str, Any]) -> tuple[RegionOptions, float, float, float]:
    lambda_, weight = _lambda_from_weight(weight, lambda_, owner)
    o = _unified_options(owner, asymmetric=asymmetric, weight=weight, **options)
    check_per_image_reduction(o.reduction, o.batch, owner)
    return o, check_number(lambda_, "lambda_", low=0.0, high=1.0), *_check_delta_gamma(delta, gamma)


def symmetric_unified_focal_loss(input: torch.Tensor, target: torch.Tensor, *, lambda_: float = 0.5,
                                 delta: float = 0.6, gamma: float = 0.5, weight: Any = None, **options: Any
                                 ) -> torch.Tensor:
    o, lambda_, delta, gamma = _unified_arguments("symmetric_unified_focal_loss", lambda_, delta, gamma, weight,
                                                  False, options)
    return _unified(input, target, o, lambda_, delta, gamma, False)


def asymmetric_unified_focal_loss(input: torch.Tensor, target: torch.Tensor, *, lambda_: float = 0.5,
                                  delta: float = 0.6, gamma: float = 0.5, weight: Any = None, **options: Any
                                  ) -> torch.Tensor:
    o, lambda_, delta, gamma = _unified_arguments("asymmetric_unified_focal_loss", lambda_, delta, gamma, weight,
                                                  True, options)
    return _unified(input, target, o, lambda_, delta, gamma, True)


_UNIFIED_ARGS = """
    Args:
        lambda_: the paper's lambda, the share of the Focal Tversky half (default 0.5). (A number
            passed as ``weight`` is its deprecated spelling: FutureWarning.)
        delta: class / error weighting shared by both halves (default 0.6).
        gamma: focusing parameter shared by both halves (default 0.5).
""" + _UNIFIED_REGION_OPTIONS.replace("as :class:`DiceLoss`", "as :class:`DiceLoss`, on the Focal Tversky half") + """\
        reduction: ``"mean"`` (default: the Focal Tversky half over images and classes, the Focal half over every
            counted pixel), ``"none"`` (the loss of each image ``[B]``, its Focal half averaged within the image)
            or ``"sum"`` (of those); with ``batch=True`` only ``"mean"`` (ValueError).
""" + _COMPOUND_RETURNS


class SymmetricUnifiedFocalLoss(_UnifiedRegionLoss):
    __doc__ = r"""Symmetric Unified Focal loss: ``lambda_ x SymmetricFocalTversky + (1 - lambda_) x
    SymmetricFocal``, both with the same ``delta`` and ``gamma`` (module docstring for the formulas).
    One softmax pass computes both halves; the backward is written by hand.
""" + _UNIFIED_ARGS + """
    Examples:
        >>> x, t = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> ft = SymmetricFocalTverskyLoss(delta=0.6, gamma=0.5)(x, t)
        >>> fo = SymmetricFocalLoss(delta=0.6, gamma=0.5)(x, t)
        >>> torch.allclose(SymmetricUnifiedFocalLoss(lambda_=0.5)(x, t), 0.5 * ft + 0.5 * fo)
        True
    """

    def __init__(self, *, lambda_: float = 0.5, delta: float = 0.6, gamma: float = 0.5, weight: Any = None,
                 **kwargs: Any) -> None:
        lambda_, weight = _lambda_from_weight(weight, lambda_, type(self).__name__)
        super().__init__(weight=weight, **kwargs)
        self.lambda_ = check_number(lambda_, "lambda_", low=0.0, high=1.0)
        self.delta, self.gamma = _check_delta_gamma(delta, gamma)
        check_per_image_reduction(self.reduction, self.batch, type(self).__name__)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _unified(input, target, self.options, self.lambda_, self.delta, self.gamma, self.asymmetric)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, delta={self.delta}, gamma={self.gamma}, " + super().extra_repr()


class AsymmetricUnifiedFocalLoss(SymmetricUnifiedFocalLoss):
    __doc__ = (SymmetricUnifiedFocalLoss.__doc__ or "").replace("Symmetric", "Asymmetric")
    asymmetric = True


_UNIFIED_TWIN_EXAMPLE = """        >>> x, t = torch.zeros(1, 2, 4), torch.tensor([[0, 0, 1, 1]])  # p = 1/2 everywhere
        >>> # gamma = 0: Focal Tversky half 1 - mTI = 1/2, Focal half log 2 (0.4 + 0.6) / 2
        >>> {name}(x, t, gamma=0.0, smooth_nr=0.0, smooth_dr=0.0)
        tensor(0.4233)
"""
symmetric_unified_focal_loss.__doc__ = _twin_doc(
    "SymmetricUnifiedFocalLoss", "Symmetric Unified Focal loss, ``lambda_ x SymmetricFocalTversky + (1 - lambda_) x "
    "SymmetricFocal``.", _UNIFIED_TWIN_EXAMPLE.format(name="symmetric_unified_focal_loss"), _UNIFIED_ARGS)
asymmetric_unified_focal_loss.__doc__ = _twin_doc(
    "AsymmetricUnifiedFocalLoss", "Asymmetric Unified Focal loss, ``lambda_ x AsymmetricFocalTversky + (1 - lambda_) "
    "x AsymmetricFocal``.", _UNIFIED_TWIN_EXAMPLE.format(name="asymmetric_unified_focal_loss"), _UNIFIED_ARGS)


def _hybrid_focal_weight(owner: str, focal_weight: Any, focal_alpha: Any) -> torch.Tensor | None:
    if focal_alpha is not None:
        if focal_weight is not None:
            raise ValueError("pass the Focal half's class weights once, as `focal_weight` (`focal_alpha` is its "
                             "deprecated spelling)")
        warnings.warn(f"{owner}(focal_alpha=...) is deprecated and will be removed in medloss 0.3; pass the Focal "
                      "half's class weights as `focal_weight`", FutureWarning, stacklevel=4)
        focal_weight = focal_alpha
    return None if focal_weight is None else check_class_vector(focal_weight, "focal_weight", None, low=0.0)


def _hybrid_numbers(lambda_: float, focal_gamma: float, tversky_alpha: float, tversky_beta: float,
                    tversky_gamma: float) -> tuple[float, float, float, float, float]:
    return (check_number(lambda_, "lambda_", low=0.0, high=1.0), check_number(focal_gamma, "focal_gamma", low=0.0),
            check_number(tversky_alpha, "tversky_alpha", low=0.0), check_number(tversky_beta, "tversky_beta", low=0.0),
            check_number(tversky_gamma, "tversky_gamma", low=0.0, low_inclusive=False))


def _hybrid(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, focal_weight: torch.Tensor | None,
            lambda_: float, focal_gamma: float, tversky_alpha: float, tversky_beta: float, tversky_gamma: float
            ) -> torch.Tensor:
    n_classes = 2 if o.mode == "binary" else input.shape[1]
    if focal_weight is not None and focal_weight.numel() != n_classes:
        raise ValueError(f"`focal_weight` must have length {n_classes}; got {focal_weight.numel()}")

    def focal_weight_of(c: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        w = torch.ones(c, dtype=dtype, device=device) if focal_weight is None else focal_weight
        return w.to(dtype=dtype, device=device)

    def per_class(v: SoftmaxStats) -> torch.Tensor:
        return _focal_tversky_terms(v, tversky_alpha, tversky_beta, tversky_gamma, o.smooth_nr, o.smooth_dr)

    # lambda_ is the Focal half's share here: the region share is 1 - lambda_
    return _compound(input, target, o, per_class, focal_weight_of, (focal_gamma, focal_gamma), 1.0 - lambda_)


def hybrid_focal_loss(input: torch.Tensor, target: torch.Tensor, *, lambda_: float = 0.5, focal_weight: Any = None,
                      focal_gamma: float = 2.0, tversky_alpha: float = 0.3, tversky_beta: float = 0.7,
                      tversky_gamma: float = 0.75, weight: Any = None, focal_alpha: Any = None, **options: Any
                      ) -> torch.Tensor:
    lambda_, weight = _lambda_from_weight(weight, lambda_, "hybrid_focal_loss")
    focal_weight = _hybrid_focal_weight("hybrid_focal_loss", focal_weight, focal_alpha)
    o = _unified_options("hybrid_focal_loss", weight=weight, **options)
    check_per_image_reduction(o.reduction, o.batch, "hybrid_focal_loss")
    numbers = _hybrid_numbers(lambda_, focal_gamma, tversky_alpha, tversky_beta, tversky_gamma)
    return _hybrid(input, target, o, focal_weight, *numbers)


_HYBRID_ARGS = """
    Args:
        lambda_: the share of the Focal half (default 0.5; a number passed as ``weight`` is its
            deprecated spelling: FutureWarning).
        focal_weight: per-class weights ``[C]`` of the Focal half, its ``alpha_t`` (default None: 1 each;
            ``focal_alpha`` is its deprecated spelling).
        focal_gamma: gamma of the Focal half (default 2.0).
        tversky_alpha, tversky_beta: weights of FP and FN (default 0.3, 0.7).
        tversky_gamma: exponent of the Focal Tversky half (default 0.75).
""" + _UNIFIED_REGION_OPTIONS.replace("as :class:`DiceLoss`", "as :class:`DiceLoss`, on the Focal Tversky half") + """\
        reduction: as :class:`SymmetricUnifiedFocalLoss`.
""" + _COMPOUND_RETURNS


class HybridFocalLoss(_UnifiedRegionLoss):
    __doc__ = r"""Hybrid Focal loss (Yeung et al. 2021): ``lambda_ x Focal + (1 - lambda_) x FocalTversky``
    (here ``lambda_`` weights the Focal half; in the Unified losses it weights the Focal Tversky half, as each
    paper has it).

    The Focal half is the softmax focal loss ``-alpha_t (1 - p_t)^{gamma_f} log p_t`` (mean over
    pixels, ``alpha_t`` from ``focal_weight``) and the Focal Tversky half ``(1 - TI_c)^{gamma_t}`` with
    ``TI_c = (TP + s_nr) / (TP + alpha_t FP + beta_t FN + s_dr)`` (``smooth_nr``, ``smooth_dr``), mean over
    images and classes, each with its own parameters. One softmax pass; hand-written backward.
""" + _HYBRID_ARGS + """
    Examples:
        >>> x, t = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> from medloss.losses import FocalLoss, FocalTverskyLoss
        >>> focal = FocalLoss(gamma=2.0)(x, t)
        >>> tversky = FocalTverskyLoss(alpha=0.3, beta=0.7, gamma=0.75, smooth_nr=1e-7, smooth_dr=1e-7)(x, t)
        >>> torch.allclose(HybridFocalLoss(lambda_=0.5)(x, t), 0.5 * focal + 0.5 * tversky)
        True
    """

    def __init__(
        self,
        *,
        lambda_: float = 0.5,
        focal_weight: Any = None,
        focal_gamma: float = 2.0,
        tversky_alpha: float = 0.3,
        tversky_beta: float = 0.7,
        tversky_gamma: float = 0.75,
        weight: Any = None,
        focal_alpha: Any = None,
        **kwargs: Any,
    ) -> None:
        lambda_, weight = _lambda_from_weight(weight, lambda_, "HybridFocalLoss")
        super().__init__(weight=weight, **kwargs)
        check_per_image_reduction(self.reduction, self.batch, "HybridFocalLoss")
        focal_weight = _hybrid_focal_weight("HybridFocalLoss", focal_weight, focal_alpha)
        (self.lambda_, self.focal_gamma, self.tversky_alpha, self.tversky_beta,
         self.tversky_gamma) = _hybrid_numbers(lambda_, focal_gamma, tversky_alpha, tversky_beta, tversky_gamma)
        self.focal_weight: torch.Tensor | None
        if focal_weight is not None:
            self.register_buffer("focal_weight", focal_weight)
        else:
            self.focal_weight = None

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _hybrid(input, target, self.options, self.focal_weight, self.lambda_, self.focal_gamma,
                       self.tversky_alpha, self.tversky_beta, self.tversky_gamma)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, focal_gamma={self.focal_gamma}, " + super().extra_repr()


hybrid_focal_loss.__doc__ = _twin_doc(
    "HybridFocalLoss", "Hybrid Focal loss, ``lambda_ x Focal + (1 - lambda_) x FocalTversky``.",
    """        >>> x, t = torch.zeros(1, 2, 4), torch.tensor([[0, 0, 1, 1]])  # p = 1/2 everywhere:
        >>> # Focal half (1/2)^2 log 2 = 0.17329, Focal Tversky half (1 - 1/2)^0.75 = 0.59460: their mean
        >>> hybrid_focal_loss(x, t, smooth_nr=0.0, smooth_dr=0.0)
        tensor(0.3839)
""", _HYBRID_ARGS)


__all__ = [
    "AsymmetricFocalLoss",
    "AsymmetricFocalTverskyLoss",
    "AsymmetricUnifiedFocalLoss",
    "HybridFocalLoss",
    "SymmetricFocalLoss",
    "SymmetricFocalTverskyLoss",
    "SymmetricUnifiedFocalLoss",
    "asymmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "asymmetric_unified_focal_loss",
    "hybrid_focal_loss",
    "symmetric_focal_loss",
    "symmetric_focal_tversky_loss",
    "symmetric_unified_focal_loss",
]
