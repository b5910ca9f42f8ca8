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

from .._distributed import distributed_flag
from .._validation import (
    canonical_inputs,
    check_choice,
    check_class_vector,
    check_mode,
    check_number,
    check_reduction,
)
from ._common import fp32_island, safe_pow, upcast
from ._overlap import SoftmaxStats
from .focal import softmax_focal_loss
from .overlap import (
    all_reduce_statistics,
    check_per_image_reduction,
    finish_per_image,
    global_reduction,
    prepare_segmentation,
    reduce_classes,
    region_and_term_means,
    region_per_image,
    segmentation_statistics,
)

UNIFIED_MODES = ("binary", "multiclass")


def _delta_weights(delta: float, n_classes: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # no indexed write: a factory and a where run on every device, fake CUDA included
    background = torch.arange(n_classes, device=device) == 0
    return torch.full((n_classes,), delta, dtype=dtype, device=device).masked_fill(background, 1.0 - delta)


def lambda_from_weight(weight: Any, lambda_: float, name: str, *, per_class: bool) -> tuple[float, Any]:
    """``(lambda_, per-class weight)``: a number passed as ``weight`` is the mixing lambda of
    medloss < 0.2 (FutureWarning); ``weight`` now means per-class weights, which only the losses
    with ``per_class`` take."""
    if weight is None:
        return lambda_, None
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        warnings.warn(
            f"{name}(weight=<number>) is deprecated and will be removed in medloss 0.3: the mixing lambda is "
            "`lambda_`; `weight` is reserved for per-class weights", FutureWarning, stacklevel=3,
        )
        return weight, None
    if not per_class:
        raise ValueError(f"{name} takes no per-class `weight` (`delta` weights the classes); "
                         "the mixing lambda is `lambda_`")
    return lambda_, weight


def modified_tversky_index(s: SoftmaxStats, delta: float, smooth_nr: float, smooth_dr: float) -> torch.Tensor:
    """``(TP + e) / (TP + delta FN + (1 - delta) FP + e)`` per image and class, its denominator formed as
    ``delta sum y + (1 - delta) sum p + e`` (TP's share cancels: fewer operations, no difference taken)."""
    return (s.tp + smooth_nr) / (s.sum_y * delta + s.sum_p * (1.0 - delta) + smooth_dr)


def focal_tversky_terms(s: SoftmaxStats, delta: float, gamma: float, smooth_nr: float, smooth_dr: float,
                        asymmetric: bool) -> torch.Tensor:
    """Per image and class ``(1 - mTI)^(1 - gamma)``; the background unmodulated if ``asymmetric``."""
    d = 1.0 - modified_tversky_index(s, delta, smooth_nr, smooth_dr)
    terms = safe_pow(d, 1.0 - gamma)
    if asymmetric:
        terms = torch.cat([d[..., :1], terms[..., 1:]], -1)
    return terms


class _ChannelZeroBackground(nn.Module):
    """Arguments and statistics shared by the losses that treat channel 0 as the background."""

    def __init__(
        self,
        *,
        mode: str = "multiclass",
        from_logits: bool = True,
        ignore_index: int | None = -100,
        batch: bool = False,
        smooth_nr: float = 1e-7,
        smooth_dr: float = 1e-7,
        reduction: str = "mean",
        distributed: bool = False,
        smooth: float | None = None,
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.mode = check_choice(check_mode(mode), "mode", UNIFIED_MODES)
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index
        self.batch = bool(batch)
        if smooth is not None:
            warnings.warn(f"{type(self).__name__}(smooth=...) is deprecated and will be removed in medloss 0.3; pass "
                          "smooth_nr= and smooth_dr= (the numerator's and the denominator's term, as every region "
                          "loss)", FutureWarning, stacklevel=3)
            smooth_nr = smooth_dr = smooth
        self.smooth_nr = check_number(smooth_nr, "smooth_nr", low=0.0)
        self.smooth_dr = check_number(smooth_dr, "smooth_dr", low=0.0)
        self.reduction = check_reduction(reduction)

    def _stats(self, input, target, focal=None) -> SoftmaxStats:
        distributed_flag(self)
        return segmentation_statistics(
            input, target, self.mode, from_logits=self.from_logits, ignore_index=self.ignore_index,
            batch=self.batch, binary_as_two_classes=True, focal=focal,
        )

    def _softmax_focal(self, input: torch.Tensor, target: torch.Tensor, weight_of: Callable[..., torch.Tensor],
                       gammas: tuple[float, float], reduction: str) -> torch.Tensor:
        """The softmax focal loss of the two-channel (binary) or C-channel softmax with the class weights
        ``weight_of(C, dtype, device)`` and ``gammas`` (background, others), reduced by ``reduction``."""
        if self.mode == "multiclass" and self.from_logits:
            # labels counted and logits summed by the op as it reads them (a pass fewer each)
            x, t, _ = canonical_inputs(input, target, "multiclass", ignore_index=self.ignore_index, check_labels=False,
                                       check_input_finite=False)
            x, valid, ignore_index, checked = upcast(x), None, self.ignore_index, False
        else:
            x, t, valid, _ = prepare_segmentation(
                input, target, self.mode, from_logits=self.from_logits, ignore_index=self.ignore_index,
                binary_as_two_classes=True,
            )
            ignore_index, checked = None, True
        weight = weight_of(x.shape[1], x.dtype, x.device)
        with fp32_island():
            return softmax_focal_loss(
                x, t, valid, ignore_index=ignore_index, weight=weight, gammas=gammas, label_smoothing=0.0,
                reduction=reduction, distributed=self.distributed and reduction != "none",
                check_finite_logits=not checked,
            )

    def _per_image(self, input: torch.Tensor, target: torch.Tensor, s: SoftmaxStats,
                   per_class: Callable[[SoftmaxStats], torch.Tensor], weight_of: Callable[..., torch.Tensor],
                   gammas: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(region, focal)`` of each image ``[B]``: the Focal Tversky terms averaged over its classes and the
        focal term over its counted pixels (reduction "none" / "sum")."""
        region = region_per_image(s, per_class)
        focal = self._softmax_focal(input, target, weight_of, gammas, "none")
        return region, focal.reshape(focal.shape[0], -1).sum(1) / s.sum_y.sum(-1).clamp_min(1.0)

    def _finish(self, losses: torch.Tensor) -> torch.Tensor:
        return finish_per_image(losses, self.reduction, self.distributed)


class _UnifiedBase(_ChannelZeroBackground):
    asymmetric = False

    def __init__(self, *, delta: float, gamma: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delta = check_number(delta, "delta", low=0.0, high=1.0)
        self.gamma = check_number(gamma, "gamma", low=0.0)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, delta={self.delta}, gamma={self.gamma}, reduction={self.reduction!r}"


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
"""


class SymmetricFocalLoss(_UnifiedBase):
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

    def __init__(self, *, delta: float = 0.7, gamma: float = 2.0, **kwargs) -> None:
        super().__init__(delta=delta, gamma=gamma, **kwargs)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distributed_flag(self)
        gammas = (self.gamma, 0.0 if self.asymmetric else self.gamma)
        return self._softmax_focal(input, target, lambda c, dtype, device: _delta_weights(self.delta, c, dtype, device),
                                   gammas, self.reduction)


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


_FT_ARGS = """
    Args:
        delta: weight of false negatives, 1 - delta of false positives (default 0.7).
        gamma: the exponent is ``1 - gamma`` (default 0.75, exponent 0.25).
        mode, from_logits, ignore_index: as :class:`SymmetricFocalLoss`.
        batch: counts over the whole batch instead of per image (default False).
        smooth_nr, smooth_dr: ``s_nr`` and ``s_dr`` of mTI (default 1e-7 each, the official value; ``smooth``
            is the deprecated spelling of both). An image with no pixel of a class and no predicted mass for it
            has mTI = 1 (loss 0); predicted mass on an empty class gives mTI ~ 0 (loss ~ 1, false positives
            penalised).
        reduction: ``"mean"`` over images and classes (default), ``"sum"``, ``"none"`` (``[B, C]``).
        distributed: under ``torch.distributed`` (DDP), the loss of the whole distributed batch on
            every rank (default False); see ``docs/distributed.md``.
"""


class SymmetricFocalTverskyLoss(_UnifiedBase):
    __doc__ = ("Symmetric Focal Tversky loss of the Unified Focal family (Yeung et al. 2022), the mean over images "
               "and classes of\n\n    ``(1 - mTI_c)^(1 - gamma)``, ``mTI_c = (TP_c + s_nr) / (TP_c + delta FN_c + "
               "(1 - delta) FP_c + s_dr)``\n\n    (the exponent is ``1 - gamma``, as the paper and its code have it; "
               ":class:`FocalTverskyLoss` raises to ``gamma``).\n" + _FT_ARGS + """
    Examples:
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # perfect: mTI = 1 for both classes
        >>> SymmetricFocalTverskyLoss(from_logits=False)(probs, torch.tensor([[0, 0, 1, 1]]))
        tensor(0.)
""")

    def __init__(self, *, delta: float = 0.7, gamma: float = 0.75, **kwargs) -> None:
        super().__init__(delta=delta, gamma=gamma, **kwargs)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = self._stats(input, target)
        if self.distributed and self.batch:
            s = all_reduce_statistics(s)  # the whole distributed batch's counts
        terms = focal_tversky_terms(s, self.delta, self.gamma, self.smooth_nr, self.smooth_dr, self.asymmetric)
        present = s.present()  # images with no counted pixel count in no mean
        if self.distributed and not self.batch and self.reduction != "none":
            return global_reduction(terms, self.reduction, present=present)  # over every rank's images
        return reduce_classes(terms, reduction=self.reduction, present=present)


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


class SymmetricUnifiedFocalLoss(_UnifiedBase):
    __doc__ = r"""Symmetric Unified Focal loss: ``lambda_ x SymmetricFocalTversky + (1 - lambda_) x
    SymmetricFocal``, both with the same ``delta`` and ``gamma`` (module docstring for the formulas).
    One softmax pass computes both halves; the backward is written by hand.

    Args:
        lambda_: the paper's lambda, the share of the Focal Tversky half (default 0.5). (A number
            passed as ``weight`` is its deprecated spelling: FutureWarning.)
        delta: class / error weighting shared by both halves (default 0.6).
        gamma: focusing parameter shared by both halves (default 0.5).
        mode, from_logits, ignore_index, batch, smooth_nr, smooth_dr, distributed: as the halves.
        reduction: ``"mean"`` (default: the Focal Tversky half over images and classes, the Focal half over every
            counted pixel), ``"none"`` (the loss of each image ``[B]``, its Focal half averaged within the image)
            or ``"sum"`` (of those); with ``batch=True`` only ``"mean"`` (ValueError).

    Examples:
        >>> x, t = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> ft = SymmetricFocalTverskyLoss(delta=0.6, gamma=0.5)(x, t)
        >>> fo = SymmetricFocalLoss(delta=0.6, gamma=0.5)(x, t)
        >>> torch.allclose(SymmetricUnifiedFocalLoss(lambda_=0.5)(x, t), 0.5 * ft + 0.5 * fo)
        True
    """

    def __init__(
        self, *, lambda_: float = 0.5, delta: float = 0.6, gamma: float = 0.5, weight: Any = None, **kwargs
    ) -> None:
        super().__init__(delta=delta, gamma=gamma, **kwargs)
        lambda_, _ = lambda_from_weight(weight, lambda_, type(self).__name__, per_class=False)
        self.lambda_ = check_number(lambda_, "lambda_", low=0.0, high=1.0)
        check_per_image_reduction(self.reduction, self.batch, type(self).__name__)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = 2 if self.mode == "binary" else input.shape[1]
        alpha = _delta_weights(self.delta, n_classes, torch.float64, input.device)
        gammas = (self.gamma, 0.0 if self.asymmetric else self.gamma)
        per_image = self.reduction != "mean"  # then the focal term is taken per image below, not by the statistics
        s = self._stats(input, target, focal=None if per_image else (alpha, gammas[0], gammas[1]))

        def per_class(c: SoftmaxStats) -> torch.Tensor:
            return focal_tversky_terms(c, self.delta, self.gamma, self.smooth_nr, self.smooth_dr, self.asymmetric)

        if per_image:
            ft, focal = self._per_image(input, target, s, per_class,
                                        lambda c, dtype, device: _delta_weights(self.delta, c, dtype, device), gammas)
            return self._finish(self.lambda_ * ft + (1.0 - self.lambda_) * focal)
        ft, focal = region_and_term_means(s, per_class, batch=self.batch, distributed=self.distributed)
        return self.lambda_ * ft + (1.0 - self.lambda_) * focal

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, " + super().extra_repr()


class AsymmetricUnifiedFocalLoss(SymmetricUnifiedFocalLoss):
    __doc__ = (SymmetricUnifiedFocalLoss.__doc__ or "").replace("Symmetric", "Asymmetric")
    asymmetric = True


class HybridFocalLoss(_ChannelZeroBackground):
    r"""Hybrid Focal loss (Yeung et al. 2021): ``lambda_ x Focal + (1 - lambda_) x FocalTversky`` (here ``lambda_``
    weights the Focal half; in the Unified losses it weights the Focal Tversky half, as each paper has it).

    The Focal half is the softmax focal loss ``-alpha_t (1 - p_t)^{gamma_f} log p_t`` (mean over
    pixels) and the Focal Tversky half ``(1 - TI_c)^{gamma_t}`` with ``TI_c = (TP + s_nr) / (TP + alpha_t FP +
    beta_t FN + s_dr)`` (``smooth_nr``, ``smooth_dr``), mean over images and classes, each with its own
    parameters. One softmax pass; hand-written backward.

    Args:
        lambda_: the share of the Focal half (default 0.5; a number passed as ``weight`` is its
            deprecated spelling: FutureWarning).
        weight: per-class weights ``[C]`` for the Focal half, or None (default; ``focal_alpha``
            is its deprecated spelling).
        focal_gamma: gamma of the Focal half (default 2.0).
        tversky_alpha, tversky_beta: weights of FP and FN (default 0.3, 0.7).
        tversky_gamma: exponent of the Focal Tversky half (default 0.75).
        mode, from_logits, ignore_index, batch, smooth_nr, smooth_dr, distributed: as
            :class:`SymmetricUnifiedFocalLoss`.
        reduction: as :class:`SymmetricUnifiedFocalLoss`.

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
        weight: Any = None,
        focal_gamma: float = 2.0,
        tversky_alpha: float = 0.3,
        tversky_beta: float = 0.7,
        tversky_gamma: float = 0.75,
        focal_alpha: torch.Tensor | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_per_image_reduction(self.reduction, self.batch, "HybridFocalLoss")
        lambda_, weight = lambda_from_weight(weight, lambda_, "HybridFocalLoss", per_class=True)
        if focal_alpha is not None:
            if weight is not None:
                raise ValueError("pass per-class weights once, as `weight` (`focal_alpha` is its deprecated spelling)")
            warnings.warn("HybridFocalLoss(focal_alpha=...) is deprecated and will be removed in medloss 0.3; "
                          "pass per-class weights as `weight`", FutureWarning, stacklevel=2)
            weight = focal_alpha
        self.lambda_ = check_number(lambda_, "lambda_", low=0.0, high=1.0)
        self.focal_gamma = check_number(focal_gamma, "focal_gamma", low=0.0)
        self.tversky_alpha = check_number(tversky_alpha, "tversky_alpha", low=0.0)
        self.tversky_beta = check_number(tversky_beta, "tversky_beta", low=0.0)
        self.tversky_gamma = check_number(tversky_gamma, "tversky_gamma", low=0.0, low_inclusive=False)
        self.weight: torch.Tensor | None
        if weight is not None:
            self.register_buffer("weight", check_class_vector(weight, "weight", None, low=0.0))
        else:
            self.weight = None

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = 2 if self.mode == "binary" else input.shape[1]
        alpha = torch.ones(n_classes, dtype=torch.float64) if self.weight is None else self.weight
        if alpha.numel() != n_classes:
            raise ValueError(f"`weight` must have length {n_classes}; got {alpha.numel()}")
        per_image = self.reduction != "mean"  # then the focal term is taken per image below, not by the statistics
        s = self._stats(input, target, focal=None if per_image else (alpha, self.focal_gamma, self.focal_gamma))
        if per_image:
            ft, focal = self._per_image(input, target, s, self._focal_tversky_terms,
                                        lambda c, dtype, device: alpha.to(dtype=dtype, device=device),
                                        (self.focal_gamma, self.focal_gamma))
            return self._finish(self.lambda_ * focal + (1.0 - self.lambda_) * ft)
        ft, focal = region_and_term_means(s, self._focal_tversky_terms, batch=self.batch, distributed=self.distributed)
        return self.lambda_ * focal + (1.0 - self.lambda_) * ft

    def _focal_tversky_terms(self, s: SoftmaxStats) -> torch.Tensor:
        ti = (s.tp + self.smooth_nr) / (s.tp + self.tversky_alpha * s.fp + self.tversky_beta * s.fn + self.smooth_dr)
        return safe_pow(1.0 - ti, self.tversky_gamma)


__all__ = [
    "AsymmetricFocalLoss",
    "AsymmetricFocalTverskyLoss",
    "AsymmetricUnifiedFocalLoss",
    "HybridFocalLoss",
    "SymmetricFocalLoss",
    "SymmetricFocalTverskyLoss",
    "SymmetricUnifiedFocalLoss",
]
