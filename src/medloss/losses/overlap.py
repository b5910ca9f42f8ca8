"""Overlap (region) losses for segmentation: Dice, Tversky, Focal Tversky, Combo.

All are functions of per-class soft counts TP, FP, FN (see ``_overlap.py``), summed over the
spatial dims of each image (or over the whole batch with ``batch=True``), computed from one
softmax / sigmoid pass with a hand-written backward, in fp32 or wider whatever the input dtype.

Empty ground truth: with the default smoothing (``smooth_nr = smooth_dr = 1e-5``, as MONAI) a
class absent from an image's ground truth scores 0 when the prediction is empty as well and
about 1 when it predicts any foreground: false positives on an empty mask are penalised, and
the gradient stays finite. (smp instead returns 0 with zero gradient, which ignores them.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .._validation import check_choice, check_number
from ..ops.reference import weighted_ce_reference
from ._common import fp32_island, safe_pow
from ._overlap import SoftmaxStats, probabilities_and_targets
from ._region import (
    RegionLoss,
    RegionOptions,
    check_per_image_reduction,
    check_process_group,
    finish_per_image,
    global_reduction,
    prepare_segmentation,
    reduce_classes,
    region_and_term_means,
    region_loss,
    region_options,
    region_per_image,
    region_statistics,
    segmentation_statistics,
    with_counted_images,
)
from ._region import all_reduce_statistics as all_reduce_statistics
from .focal import _sigmoid_focal_loss

_REGION_ARGS = """
    Args:
        mode: ``"multiclass"`` (default; softmax, integer target ``[B, *]``), ``"binary"`` (one
            sigmoid channel, the foreground) or ``"multilabel"`` (a sigmoid per channel).
        include_background: keep channel 0 in the loss (default True, as MONAI); the softmax
            always runs over every channel.
        from_logits: logits (default) or probabilities (validated; the counts use them as given,
            so an empty prediction of an empty class scores exactly 0).
        ignore_index: target value whose pixels count in no TP / FP / FN (default -100). An image
            with no counted pixel counts in no mean (and is 0 with ``reduction="none"``).
        batch: sum the counts over the whole batch before the ratio (default False: per image).
        weight: per-class weights ``[C]``; the mean becomes ``sum w_c L_c / sum w_c``.
        smooth_nr, smooth_dr: added to numerator and denominator (default 1e-5 each).
        reduction: ``"mean"`` (default) over images and classes, ``"sum"``, or ``"none"`` for
            the per-class losses ``[B, C]`` (``[C]`` with ``batch``).
        ignore_empty: leave out (image, class) pairs whose ground truth is empty (default False:
            they count, scoring ~0 for an empty prediction and ~1 with false positives).
        average: ``"macro"`` (default: one ratio per class, then the mean) or ``"micro"`` (the
            counts summed over the classes first, one ratio per image: kornia's default;
            ``weight`` then weights each class's counts). ``reduction="none"`` gives ``[B]``.
        distributed: under ``torch.distributed`` (DDP), the loss of the whole distributed batch on
            every rank (default False: this rank's shard only). Only the per-class counts are
            all-reduced (differentiably); after DDP's gradient averaging the gradients equal one
            process's on the concatenated batch. ``reduction="none"`` stays per rank.
"""

_INPUTS = """
    Args:
        input: logits (or probabilities with ``from_logits=False``) ``[B, C, *]``; binary: ``[B, 1, *]`` or ``[B, *]``.
        target: class indices ``[B, *]`` (multiclass) or 0 / 1 labels of the input's shape (binary, multilabel)."""

_REGION_RETURNS = """
    Returns:
        The loss: a scalar for ``reduction`` ``"mean"`` / ``"sum"``; with ``"none"`` the per-class losses
        ``[B, C]`` (``[C]`` with ``batch``, ``[B]`` with ``average="micro"``), 0 where nothing is counted.

    Raises:
        ValueError: an option out of range (the message names it); a ``target`` of the wrong shape or with
            labels outside ``[0, C - 1]`` other than ``ignore_index``; non-finite logits; probabilities outside
            [0, 1] with ``from_logits=False``; a ``weight`` of the wrong length.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.
"""


_OPTIONS_LINE = ("        **options: ``mode``, ``include_background``, ``from_logits``, ``ignore_index``, ``batch``,\n"
                 "            ``weight``, ``smooth_nr``, ``smooth_dr``, ``reduction``, ``ignore_empty``, ``average``,\n"
                 "            ``distributed``: as :class:`{cls}`.\n")


def _twin_doc(cls_name: str, formula: str, extra: str, example: str, returns: str = _REGION_RETURNS,
              options: str = _OPTIONS_LINE) -> str:
    """The docstring of a functional twin: its formula, its inputs, its options (those of ``cls_name``)."""
    return (f"{formula}\n\n    The functional form of :class:`{cls_name}` (same options, defaults and errors; "
            f"no module is built).\n{_INPUTS}\n{extra}{options.format(cls=cls_name)}{returns}\n"
            f"    Examples:\n{example}")


# ------------------------------------------------------------------------------------------------- Dice, Jaccard

def _dice_index_terms(s: SoftmaxStats, smooth_nr: float, smooth_dr: float, jaccard: bool = False) -> torch.Tensor:
    """``1 - (2 TP + s_nr) / (sum p + sum y + s_dr)`` per image and class (``2 TP + FP + FN = sum p + sum y``:
    the same ratio with fewer operations to differentiate); ``jaccard``: ``2 (sum p + sum y - TP)`` below."""
    total = s.sum_p + s.sum_y
    if jaccard:
        total = 2.0 * (total - s.tp)
    return 1.0 - (2.0 * s.tp + smooth_nr) / (total + smooth_dr)


def _squared_statistics(input: torch.Tensor, target: torch.Tensor, o: RegionOptions) -> SoftmaxStats:
    """Counts with V-Net's denominator ``sum p^2 + sum y^2``: no fused op, plain differentiable operations."""
    probs, onehot, mask = probabilities_and_targets(
        input, target, o.mode, from_logits=o.from_logits, ignore_index=o.ignore_index
    )
    dims = tuple(range(2, probs.ndim))
    dims = (0, *dims) if o.batch else dims
    with fp32_island():
        p = probs if mask is None else probs * mask
        counts = SoftmaxStats((p * onehot).sum(dims), (p * p).sum(dims), (onehot * onehot).sum(dims), None)
    return with_counted_images(counts, mask, softmax=o.mode == "multiclass", batch=o.batch)


def _dice(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, squared_pred: bool, jaccard: bool
          ) -> torch.Tensor:
    if squared_pred:
        check_process_group(o)
        s = _squared_statistics(input, target, o)
    else:
        s = region_statistics(input, target, o)
    return region_loss(s, lambda v: _dice_index_terms(v, o.smooth_nr, o.smooth_dr, jaccard), o)


def dice_loss(input: torch.Tensor, target: torch.Tensor, *, squared_pred: bool = False, jaccard: bool = False,
              **options: Any) -> torch.Tensor:
    return _dice(input, target, region_options("dice_loss", **options), bool(squared_pred), bool(jaccard))


dice_loss.__doc__ = _twin_doc(
    "DiceLoss", "Soft Dice loss per class, ``1 - (2 TP + s_nr) / (2 TP + FP + FN + s_dr)`` (Milletari et al. 2016).",
    "        squared_pred: V-Net's denominator ``sum p^2 + sum y^2`` (default False).\n"
    "        jaccard: the soft Jaccard form (default False).\n",
    "        >>> probs = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])  # TP 1, FP 1, FN 1 per class\n"
    "        >>> dice_loss(probs, torch.tensor([[1, 1, 0, 0]]), from_logits=False, smooth_nr=0.0, smooth_dr=0.0)\n"
    "        tensor(0.5000)\n",
)


class DiceLoss(RegionLoss):
    __doc__ = r"""Soft Dice loss (Milletari et al., V-Net, 2016), per class:

    .. math:: \mathcal{L}_c = 1 - \frac{2\,TP_c + s_{nr}}{2\,TP_c + FP_c + FN_c + s_{dr}}

    ``squared_pred=True`` takes the denominator of V-Net's paper, ``sum p^2 + sum y^2``;
    ``jaccard=True`` the soft Jaccard (IoU) form ``1 - (2 TP + s_nr) / (2 (sum p + sum y - TP) + s_dr)``
    (both as MONAI's ``DiceLoss``; :class:`JaccardLoss` is smp's form of the latter). The module
    stores its validated options and calls :func:`dice_loss`'s computation.
""" + _REGION_ARGS + """        squared_pred: square probabilities and labels in the denominator (default False).
        jaccard: the soft Jaccard form instead of Dice (default False).
""" + _REGION_RETURNS + """
    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0], [0.0, 1.0]], [[-2.0, 1.0], [0.0, -1.0]]]).unsqueeze(0)
        >>> target = torch.tensor([[[0, 1], [0, 0]]])
        >>> round(DiceLoss()(logits, target).item(), 4)
        0.2192
"""

    def __init__(self, *, squared_pred: bool = False, jaccard: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.squared_pred = bool(squared_pred)
        self.jaccard = bool(jaccard)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _dice(input, target, self.options, self.squared_pred, self.jaccard)

    def per_class(self, s: SoftmaxStats) -> torch.Tensor:
        """The loss of each image and class from its counts."""
        return _dice_index_terms(s, self.smooth_nr, self.smooth_dr, self.jaccard)

    def extra_repr(self) -> str:
        extra = "".join(f", {k}=True" for k in ("squared_pred", "jaccard") if getattr(self, k))
        return super().extra_repr() + extra


def _jaccard_index_terms(s: SoftmaxStats, smooth_nr: float, smooth_dr: float) -> torch.Tensor:
    """``1 - (TP + s_nr) / (TP + FP + FN + s_dr)`` per image and class."""
    return 1.0 - (s.tp + smooth_nr) / (s.sum_p + s.sum_y - s.tp + smooth_dr)


def _jaccard(input: torch.Tensor, target: torch.Tensor, o: RegionOptions) -> torch.Tensor:
    return region_loss(region_statistics(input, target, o), lambda v: _jaccard_index_terms(v, o.smooth_nr, o.smooth_dr),
                       o)


def jaccard_loss(input: torch.Tensor, target: torch.Tensor, **options: Any) -> torch.Tensor:
    return _jaccard(input, target, region_options("jaccard_loss", **options))


jaccard_loss.__doc__ = _twin_doc(
    "JaccardLoss", "Soft Jaccard (IoU) loss per class, ``1 - (TP + s_nr) / (TP + FP + FN + s_dr)``.", "",
    "        >>> probs = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])  # 1 - 1 / 3 per class\n"
    "        >>> jaccard_loss(probs, torch.tensor([[1, 1, 0, 0]]), from_logits=False, smooth_nr=0.0, smooth_dr=0.0)\n"
    "        tensor(0.6667)\n",
)


class JaccardLoss(RegionLoss):
    __doc__ = r"""Soft Jaccard (IoU) loss (as smp's ``JaccardLoss``), per class:

    .. math:: \mathcal{L}_c = 1 - \frac{TP_c + s_{nr}}{TP_c + FP_c + FN_c + s_{dr}}

    smp computes it over the whole batch (``batch=True``), with ``smooth_nr = 0`` and an absent
    class scoring 0 (``ignore_empty=True`` here leaves it out of the mean instead). The module calls
    :func:`jaccard_loss`'s computation.
""" + _REGION_ARGS + _REGION_RETURNS + """
    Examples:
        >>> probs = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])
        >>> JaccardLoss(from_logits=False, smooth_nr=0.0, smooth_dr=0.0)(probs, torch.tensor([[1, 1, 0, 0]]))
        tensor(0.6667)
"""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _jaccard(input, target, self.options)


# ------------------------------------------------------------------------------------------------- Generalized Dice

W_TYPES = ("square", "simple", "uniform")


def _generalized_dice_weights(sum_y: torch.Tensor, w_type: str) -> torch.Tensor:
    """Class weights of the Generalized Dice loss from the ground-truth volumes ``[..., C]``
    (no gradient); an absent class takes the largest finite weight along the last dim."""
    sum_y = sum_y.detach()
    if w_type == "uniform":
        return torch.ones_like(sum_y)
    present = sum_y > 0
    safe = torch.where(present, sum_y, 1.0)
    w = torch.where(present, (safe * safe if w_type == "square" else safe).reciprocal(), 0.0)
    return torch.where(present, w, w.amax(-1, keepdim=True))


def _generalized_dice_terms(s: SoftmaxStats, w_type: str, smooth_nr: float, smooth_dr: float) -> torch.Tensor:
    """``1 - (2 sum_c w_c TP_c + s_nr) / (sum_c w_c (sum p_c + sum y_c) + s_dr)`` of each image ``[B, 1]``."""
    with fp32_island():
        w = _generalized_dice_weights(s.sum_y, w_type)
        numerator = 2.0 * (w * s.tp).sum(-1, keepdim=True) + smooth_nr
        return 1.0 - numerator / ((w * (s.sum_p + s.sum_y)).sum(-1, keepdim=True) + smooth_dr)


def _generalized_dice(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, w_type: str) -> torch.Tensor:
    s = region_statistics(input, target, o)
    if o.distributed and o.batch:
        s = all_reduce_statistics(s)
    if not o.include_background and o.mode != "binary" and s.tp.shape[-1] > 1:  # before the weights are formed
        s = SoftmaxStats(s.tp[..., 1:], s.sum_p[..., 1:], s.sum_y[..., 1:], counted=s.counted)
    loss = _generalized_dice_terms(s, w_type, o.smooth_nr, o.smooth_dr).reshape(-1, 1)
    counted = None if s.counted is None else s.counted.any(-1, keepdim=True)  # images with a counted pixel
    if o.distributed and not o.batch and o.reduction != "none":  # the mean over every rank's images
        return global_reduction(loss, o.reduction, mode=o.mode, present=counted)
    out = reduce_classes(loss, reduction=o.reduction, mode=o.mode, present=counted)
    return out.reshape(-1) if o.reduction == "none" else out


def _reject_class_weighting(owner: str, options: dict[str, Any]) -> None:
    """Generalized Dice's class weights come from the volumes: no ``weight``, ``ignore_empty`` or ``average``."""
    for name in ("weight", "ignore_empty", "average"):
        if name in options:
            raise TypeError(f"{owner} takes no `{name}`: its class weights come from the ground-truth volumes "
                            "(`w_type`)")


def _generalized_dice_options(owner: str, w_type: str, options: dict[str, Any]) -> tuple[RegionOptions, str]:
    _reject_class_weighting(owner, options)
    return region_options(owner, **options), check_choice(w_type, "w_type", W_TYPES)


def generalized_dice_loss(input: torch.Tensor, target: torch.Tensor, *, w_type: str = "square",
                          **options: Any) -> torch.Tensor:
    o, w_type = _generalized_dice_options("generalized_dice_loss", w_type, options)
    return _generalized_dice(input, target, o, w_type)


generalized_dice_loss.__doc__ = _twin_doc(
    "GeneralizedDiceLoss", "Generalized Dice loss per image, ``1 - (2 sum_c w_c TP_c + s_nr) / "
    "(sum_c w_c (sum p_c + sum y_c) + s_dr)``, ``w_c = 1 / (sum y_c)^2`` (Sudre et al. 2017).",
    "        w_type: ``\"square\"`` (default), ``\"simple\"`` or ``\"uniform\"`` class weights.\n",
    "        >>> probs = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])  # equal volumes: as Dice\n"
    "        >>> generalized_dice_loss(probs, torch.tensor([[1, 1, 0, 0]]), from_logits=False, smooth_nr=0.0,\n"
    "        ...                       smooth_dr=0.0)\n"
    "        tensor(0.5000)\n",
    _REGION_RETURNS.replace(
        "the per-class losses\n        ``[B, C]`` (``[C]`` with ``batch``, ``[B]`` with ``average=\"micro\"``)",
        "the loss of\n        each image ``[B]`` (``[1]`` with ``batch``)"),
    "        **options: ``mode``, ``include_background``, ``from_logits``, ``ignore_index``, ``batch``,\n"
    "            ``smooth_nr``, ``smooth_dr``, ``reduction``, ``distributed``: as :class:`{cls}`.\n",
)


class GeneralizedDiceLoss(RegionLoss):
    __doc__ = r"""Generalized Dice loss (Sudre et al., "Generalised Dice overlap as a deep learning loss
    function for highly unbalanced segmentations", DLMIA 2017), per image:

    .. math:: \mathcal{L} = 1 - \frac{2 \sum_c w_c TP_c + s_{nr}}{\sum_c w_c (\sum p_c + \sum y_c) + s_{dr}},
        \quad w_c = 1 / (\sum y_c)^2

    ``w_type``: ``"square"`` (default, the paper), ``"simple"`` (``1 / sum y_c``) or ``"uniform"``
    (1). A class absent from the ground truth has an infinite weight; it gets the largest finite
    weight of the image (of the batch with ``batch=True``) instead, as MONAI does, so a prediction
    on it is still penalised. With every class absent the loss is ``1 - s_nr / s_dr``. The module
    calls :func:`generalized_dice_loss`'s computation.

    Args:
        w_type: class weighting, as above.
        mode, include_background, from_logits, ignore_index, batch, smooth_nr, smooth_dr: as
            :class:`DiceLoss` (channel 0 is dropped before the weights are formed). It takes no
            ``weight``, ``ignore_empty`` or ``average``: its class weights come from the volumes.
        reduction: ``"mean"`` (default) or ``"sum"`` over images, or ``"none"`` (``[B]``; ``[1]``
            with ``batch``).
        distributed: the loss of the whole distributed batch on every rank (as :class:`DiceLoss`).

    Returns:
        The loss: a scalar, or the loss of each image ``[B]`` with ``reduction="none"``.

    Raises:
        ValueError: an unknown ``w_type`` or ``reduction``; inputs as :class:`DiceLoss`.
        TypeError: ``weight``, ``ignore_empty`` or ``average`` passed.

    Examples:
        >>> x = torch.tensor([[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
        >>> t = torch.tensor([[1, 0, 0], [1, 1, 0]])
        >>> round(GeneralizedDiceLoss(smooth_nr=1e-4, smooth_dr=1e-4)(x, t).item(), 6)
        0.414507
    """

    def __init__(self, *, w_type: str = "square", **kwargs: Any) -> None:
        _reject_class_weighting("GeneralizedDiceLoss", kwargs)
        super().__init__(**kwargs)
        self.w_type = check_choice(w_type, "w_type", W_TYPES)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _generalized_dice(input, target, self.options, self.w_type)

    def extra_repr(self) -> str:
        return f"w_type={self.w_type!r}, mode={self.mode!r}, batch={self.batch}, reduction={self.reduction!r}"


# ------------------------------------------------------------------------------------------------- MCC

def _mcc_statistics(input: torch.Tensor, target: torch.Tensor, o: RegionOptions) -> SoftmaxStats:
    """The counts with ``n``, the counted pixels per image (and channel in the sigmoid modes), for
    ``TN = N - sum p - sum y + TP``; the input validated once."""
    s = region_statistics(input, target, o)
    if o.mode == "multiclass":  # each counted pixel is in one class's sum y
        s.n = s.sum_y.sum(-1, keepdim=True).expand_as(s.tp)
        return s
    channels = s.tp.shape[-1]
    t = target.reshape(target.shape[0], channels, -1)  # binary [B, *] or [B, 1, *]; multilabel [B, C, *]
    counted = t.new_ones(t.shape, dtype=s.tp.dtype) if o.ignore_index is None else (
        (t != o.ignore_index).to(s.tp.dtype))
    s.n = (counted.sum((0, 2)) if o.batch else counted.sum(2)).expand_as(s.tp)
    return s


def _mcc_terms(s: SoftmaxStats, smooth_nr: float, smooth_dr: float) -> torch.Tensor:
    """``1 - MCC`` per image and class from the counts (``s.n`` the counted pixels)."""
    fp, fn = s.fp, s.fn
    tn = s.n - s.sum_p - s.sum_y + s.tp
    numerator = s.tp * tn - fp * fn + smooth_nr
    denominator = torch.sqrt((s.tp + fp) * (s.tp + fn) * (tn + fp) * (tn + fn) + smooth_dr)
    loss = torch.where((fp == 0) & (fn == 0), 0.0, 1.0 - numerator / denominator)
    # A ground truth with no positive (or no negative) leaves MCC undefined; the formula above would
    # give 1 with a zero gradient whatever the prediction. Chicco & Jurman's limits instead: MCC = 1
    # for a prediction with no error, -1 for all wrong, here linearly between: 1 - MCC = 2 FP / N
    # (no positive) or 2 FN / N (no negative), so false positives on an empty mask get a gradient.
    n = s.n.clamp_min(torch.finfo(s.n.dtype).tiny)
    loss = torch.where(s.sum_y == 0, 2.0 * fp / n, loss)
    return torch.where(s.sum_y == s.n, 2.0 * fn / n, loss)


def _mcc(input: torch.Tensor, target: torch.Tensor, o: RegionOptions) -> torch.Tensor:
    return region_loss(_mcc_statistics(input, target, o), lambda v: _mcc_terms(v, o.smooth_nr, o.smooth_dr), o)


def _mcc_options(owner: str, smooth_nr: float, smooth_dr: float, options: dict[str, Any]) -> RegionOptions:
    o = region_options(owner, smooth_nr=smooth_nr, smooth_dr=smooth_dr, **options)
    if o.average != "macro":  # a micro MCC would need the true negatives of the summed classes
        raise ValueError(f"`average` must be 'macro' for {owner}; got {o.average!r}")
    return o


def mcc_loss(input: torch.Tensor, target: torch.Tensor, *, smooth_nr: float = 0.0, smooth_dr: float = 1e-5,
             **options: Any) -> torch.Tensor:
    return _mcc(input, target, _mcc_options("mcc_loss", smooth_nr, smooth_dr, options))


mcc_loss.__doc__ = _twin_doc(
    "MCCLoss", "Matthews correlation coefficient loss per class, ``1 - (TP TN - FP FN + s_nr) / "
    "sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN) + s_dr)`` (Abhishek & Hamarneh 2021).",
    "        smooth_nr, smooth_dr: default 0 and 1e-5 (MONAI's).\n",
    "        >>> x = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])\n"
    "        >>> round(mcc_loss(x, torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]]), mode=\"binary\").item(), 6)\n"
    "        0.733197\n",
)


class MCCLoss(RegionLoss):
    __doc__ = r"""Matthews correlation coefficient loss (Abhishek & Hamarneh, "Matthews Correlation
    Coefficient Loss for Deep Convolutional Networks: Application to Skin Lesion Segmentation",
    ISBI 2021), per class:

    .. math:: \mathcal{L}_c = 1 - \frac{TP\,TN - FP\,FN + s_{nr}}
        {\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN) + s_{dr}}}

    with soft counts over the counted pixels (``TN = N - TP - FP - FN``). A perfect prediction
    (``FP = FN = 0``) scores 0 even when a factor of the denominator is 0, as MONAI's
    ``MCCLoss`` (whose defaults ``smooth_nr = 0``, ``smooth_dr = 1e-5`` are used here). smp's
    ``MCCLoss`` is binary only, over the whole batch (``batch=True``), and adds its ``eps`` to each
    count instead. The loss lies in [0, 2]. ``average`` must be ``"macro"``.
""" + _REGION_ARGS.replace("(default 1e-5 each)", "(default 0 and 1e-5)") + _REGION_RETURNS + """
    Examples:
        >>> x = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])
        >>> round(MCCLoss(mode="binary")(x, torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])).item(), 6)
        0.733197
"""

    def __init__(self, *, smooth_nr: float = 0.0, smooth_dr: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(smooth_nr=smooth_nr, smooth_dr=smooth_dr, **kwargs)
        if self.average != "macro":
            raise ValueError(f"`average` must be 'macro' for MCCLoss; got {self.average!r}")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _mcc(input, target, self.options)


# ------------------------------------------------------------------------------------------------- Tversky

def _tversky_index(s: SoftmaxStats, alpha: float, beta: float, smooth_nr: float, smooth_dr: float) -> torch.Tensor:
    """``TI = (TP + s_nr) / (TP + alpha FP + beta FN + s_dr)`` per image and class."""
    return (s.tp + smooth_nr) / (s.tp + alpha * s.fp + beta * s.fn + smooth_dr)


def _focal_tversky_terms(s: SoftmaxStats, alpha: float, beta: float, gamma: float, smooth_nr: float,
                        smooth_dr: float) -> torch.Tensor:
    """``(1 - TI)^gamma`` per image and class (``gamma = 1``: the Tversky loss)."""
    d = 1.0 - _tversky_index(s, alpha, beta, smooth_nr, smooth_dr)
    return d if gamma == 1.0 else safe_pow(d, gamma)


def _tversky(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, alpha: float, beta: float,
             gamma: float = 1.0) -> torch.Tensor:
    return region_loss(region_statistics(input, target, o),
                       lambda v: _focal_tversky_terms(v, alpha, beta, gamma, o.smooth_nr, o.smooth_dr), o)


def tversky_loss(input: torch.Tensor, target: torch.Tensor, *, alpha: float = 0.3, beta: float = 0.7,
                 **options: Any) -> torch.Tensor:
    o = region_options("tversky_loss", **options)
    return _tversky(input, target, o, check_number(alpha, "alpha", low=0.0), check_number(beta, "beta", low=0.0))


tversky_loss.__doc__ = _twin_doc(
    "TverskyLoss", "Tversky loss per class, ``1 - (TP + s_nr) / (TP + alpha FP + beta FN + s_dr)`` "
    "(Salehi et al. 2017).",
    "        alpha, beta: weights of FP and FN (default 0.3, 0.7).\n",
    "        >>> half = torch.full((1, 2, 4), 0.5)  # class 1: TP 1, FP 1, FN 1 -> 1 - 1 / (1 + 0.3 + 0.7)\n"
    "        >>> tversky_loss(half, torch.tensor([[0, 0, 1, 1]]), from_logits=False, smooth_nr=0.0, smooth_dr=0.0)\n"
    "        tensor(0.5000)\n",
)


class TverskyLoss(RegionLoss):
    __doc__ = r"""Tversky loss (Salehi et al., "Tversky loss function for image segmentation using 3D
    fully convolutional deep networks", 2017), per class:

    .. math:: TI_c = \frac{TP_c + s_{nr}}{TP_c + \alpha FP_c + \beta FN_c + s_{dr}},\quad
        \mathcal{L}_c = 1 - TI_c

    ``alpha`` weights false positives, ``beta`` false negatives (defaults 0.3, 0.7: recall
    matters more for small lesions); ``alpha = beta = 0.5`` is the Dice loss. The module calls
    :func:`tversky_loss`'s computation.
""" + _REGION_ARGS + """        alpha, beta: weights of FP and FN (default 0.3, 0.7).
""" + _REGION_RETURNS + """
    Examples:
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # perfect: every Tversky index is 1
        >>> TverskyLoss(from_logits=False)(probs, torch.tensor([[0, 0, 1, 1]]))
        tensor(0.)
        >>> half = torch.full((1, 2, 4), 0.5)  # class 1: TP 1, FP 1, FN 1 -> 1 - 1 / (1 + 0.3 + 0.7)
        >>> loss = TverskyLoss(from_logits=False, smooth_nr=0.0, smooth_dr=0.0, reduction="none")
        >>> loss(half, torch.tensor([[0, 0, 1, 1]]))
        tensor([[0.5000, 0.5000]])
"""
    gamma = 1.0

    def __init__(self, *, alpha: float = 0.3, beta: float = 0.7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.beta = check_number(beta, "beta", low=0.0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _tversky(input, target, self.options, self.alpha, self.beta, self.gamma)

    def tversky_index(self, s: SoftmaxStats) -> torch.Tensor:
        """The Tversky index of each image and class from its counts."""
        return _tversky_index(s, self.alpha, self.beta, self.smooth_nr, self.smooth_dr)


def focal_tversky_loss(input: torch.Tensor, target: torch.Tensor, *, alpha: float = 0.3, beta: float = 0.7,
                       gamma: float = 0.75, **options: Any) -> torch.Tensor:
    o = region_options("focal_tversky_loss", **options)
    return _tversky(input, target, o, check_number(alpha, "alpha", low=0.0), check_number(beta, "beta", low=0.0),
                    check_number(gamma, "gamma", low=0.0, low_inclusive=False))


focal_tversky_loss.__doc__ = _twin_doc(
    "FocalTverskyLoss", "Focal Tversky loss per class, ``(1 - TI)^gamma`` (Abraham & Khan 2019; ``gamma`` is the "
    "exponent itself).",
    "        alpha, beta: weights of FP and FN (default 0.3, 0.7).\n        gamma: exponent > 0 (default 0.75).\n",
    "        >>> half = torch.full((1, 2, 4), 0.5)  # 1 - TI = 0.5 for both classes; 0.5 ** 0.75\n"
    "        >>> focal_tversky_loss(half, torch.tensor([[0, 0, 1, 1]]), from_logits=False, smooth_nr=0.0,\n"
    "        ...                    smooth_dr=0.0)\n"
    "        tensor(0.5946)\n",
)


class FocalTverskyLoss(TverskyLoss):
    __doc__ = r"""Focal Tversky loss (Abraham & Khan, "A Novel Focal Tversky Loss Function with Improved
    Attention U-Net for Lesion Segmentation", ISBI 2019), per class ``(1 - TI_c)^gamma``.

    Convention: ``gamma`` is the exponent itself, default 0.75. The paper writes
    ``(1 - TI)^{1/gamma}`` and recommends gamma = 4/3, i.e. the same exponent 0.75. An exponent
    below 1 focuses on hard (low-TI) classes; the gradient at a perfect prediction is 0, not inf.
    The module calls :func:`focal_tversky_loss`'s computation.
""" + _REGION_ARGS + """        alpha, beta: weights of FP and FN (default 0.3, 0.7).
        gamma: exponent > 0 (default 0.75).
""" + _REGION_RETURNS + """
    Examples:
        >>> half = torch.full((1, 2, 4), 0.5)  # 1 - TI = 0.5 for both classes; 0.5 ** 0.75
        >>> FocalTverskyLoss(from_logits=False, smooth_nr=0.0, smooth_dr=0.0)(half, torch.tensor([[0, 0, 1, 1]]))
        tensor(0.5946)
"""

    def __init__(self, *, gamma: float = 0.75, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = check_number(gamma, "gamma", low=0.0, low_inclusive=False)


# ------------------------------------------------------------------------------------------------- Combo

def _sigmoid_weighted_ce(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, beta: float
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid modes (binary / multilabel): the weighted CE's sum and its number of counted entries."""
    x, y, valid, _ = prepare_segmentation(input, target, o.mode, from_logits=o.from_logits,
                                          ignore_index=o.ignore_index)
    with fp32_island():
        # -(beta y log p + (1 - beta)(1 - y) log(1 - p)): the sigmoid focal op at gamma 0 (one op, one kernel
        # each way on every implementation)
        b = x.new_tensor([beta])
        total = _sigmoid_focal_loss(x, y, valid, b, 1.0 - b, 0.0, 0.0, "sum", "elements")
        count = valid.expand_as(x).sum() if valid is not None else x.new_tensor(float(x.numel()))
        return total, count.to(total.dtype)


def _weighted_ce_per_image(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, beta: float) -> torch.Tensor:
    """The weighted cross-entropy's mean over the counted pixels and classes of each image ``[B]`` (0 for an
    image with none): the sigmoid focal op at gamma 0 per element, or the softmax form per pixel."""
    x, t, valid, _ = prepare_segmentation(input, target, o.mode, from_logits=o.from_logits,
                                          ignore_index=o.ignore_index)
    b, c = x.shape[:2]
    with fp32_island():
        if o.mode != "multiclass":
            bt = x.new_tensor([beta])
            values = _sigmoid_focal_loss(x, t, valid, bt, 1.0 - bt, 0.0, 0.0, "none", "elements")
            counted = torch.ones_like(x) if valid is None else valid.expand_as(x).to(x.dtype)
        else:
            xv = x.reshape(b, c, -1)
            onehot = F.one_hot(t.reshape(b, -1), c).transpose(1, 2).to(x.dtype)
            values = weighted_ce_reference(xv, torch.log_softmax(xv, 1), onehot, beta)
            counted = torch.ones_like(values) if valid is None else valid.reshape(b, -1).to(x.dtype)
            counted = counted * c  # the mean runs over pixels and classes
        total = (values.reshape(b, -1) * (counted.reshape(b, -1) > 0)).sum(1)
        return total / counted.reshape(b, -1).sum(1).clamp_min(1.0)


def _combo(input: torch.Tensor, target: torch.Tensor, o: RegionOptions, alpha: float, beta: float) -> torch.Tensor:
    def dice(v: SoftmaxStats) -> torch.Tensor:
        return _dice_index_terms(v, o.smooth_nr, o.smooth_dr)

    per_image = o.reduction != "mean"  # then the cross-entropy is taken per image below, not by the statistics
    # softmax modes: the cross-entropy comes from the same pass as the Dice counts
    s = region_statistics(input, target, o, weighted_ce=None if per_image else beta)
    with fp32_island():
        if per_image:  # the Dice term over each image's classes, the cross-entropy within it
            dice_per_image = region_per_image(s, dice, o)
            losses = alpha * _weighted_ce_per_image(input, target, o, beta) - (1.0 - alpha) * (1.0 - dice_per_image)
            return finish_per_image(losses, o.reduction, o.distributed)
        if s.term_total is None:
            s.term_total, s.term_count = _sigmoid_weighted_ce(input, target, o, beta)
        dice_mean, wce_mean = region_and_term_means(s, dice, o)
    return alpha * wce_mean - (1.0 - alpha) * (1.0 - dice_mean)


def _combo_arguments(owner: str, alpha: float, beta: float, o: RegionOptions) -> tuple[float, float]:
    check_per_image_reduction(o.reduction, o.batch, owner)
    return check_number(alpha, "alpha", low=0.0, high=1.0), check_number(beta, "beta", low=0.0, high=1.0)


def combo_loss(input: torch.Tensor, target: torch.Tensor, *, alpha: float = 0.5, beta: float = 0.5,
               **options: Any) -> torch.Tensor:
    o = region_options("combo_loss", **options)
    return _combo(input, target, o, *_combo_arguments("combo_loss", alpha, beta, o))


_COMBO_RETURNS = """
    Returns:
        The loss: a scalar for ``reduction`` ``"mean"`` / ``"sum"``; the loss of each image ``[B]`` with ``"none"``.

    Raises:
        ValueError: an option out of range, or ``reduction`` other than ``"mean"`` with ``batch=True`` (no
            per-image losses); inputs as :class:`DiceLoss`.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.
"""

combo_loss.__doc__ = _twin_doc(
    "ComboLoss", "Combo loss, ``alpha L_wCE - (1 - alpha) DSC`` (Taghanaki et al. 2019).",
    "        alpha: weight of the cross-entropy term (default 0.5).\n"
    "        beta: weight of the foreground part of the cross-entropy (default 0.5).\n",
    "        >>> onehot = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # perfect: 0.5 * ~0 - 0.5 * 1\n"
    "        >>> round(combo_loss(onehot, torch.tensor([[0, 0, 1, 1]]), from_logits=False).item(), 4)\n"
    "        -0.5\n",
    _COMBO_RETURNS,
)


class ComboLoss(RegionLoss):
    __doc__ = r"""Combo loss (Taghanaki et al., "Combo loss: Handling input and output imbalance in
    multi-organ segmentation", CMIG 2019):

    .. math:: \mathcal{L} = \alpha\, \mathcal{L}_{wCE} - (1 - \alpha)\, \mathrm{DSC},\quad
        \mathcal{L}_{wCE} = -\mathrm{mean}\big(\beta\, y \log p + (1 - \beta)(1 - y) \log(1 - p)\big)

    ``alpha`` mixes the two terms, ``beta`` weights false negatives against false positives in
    the weighted cross-entropy (``beta > 0.5`` penalises missed foreground more). The mean runs
    over pixels and classes (one-hot ``y``; ``log p`` and ``log(1 - p)`` from the logits, never
    clipped); ``DSC`` is the soft Dice coefficient averaged over classes and images. The loss lies
    in ``[-(1 - alpha), inf)``: it is negative for good predictions, as in the paper. (A formula in
    circulation misplaces a parenthesis and applies alpha inside the cross-entropy; the official Keras code
    sums the cross-entropy over channels instead of averaging.) The module calls
    :func:`combo_loss`'s computation.

    Args:
        alpha: weight of the cross-entropy term (default 0.5).
        beta: weight of the positive (foreground) part of the cross-entropy (default 0.5).
        mode, include_background, from_logits, ignore_index, batch, weight, smooth_nr, smooth_dr, ignore_empty,
            average: as :class:`DiceLoss`; they apply to the Dice term (the cross-entropy covers every channel).
        reduction: ``"mean"`` (default: the cross-entropy's mean over every counted pixel and class, the Dice
            term's over images and classes), ``"none"`` (the loss of each image ``[B]``, its cross-entropy
            averaged within the image) or ``"sum"`` (of those).
        distributed: under ``torch.distributed`` (DDP), the loss of the whole distributed batch on
            every rank (default False); see :class:`DiceLoss` and ``docs/distributed.md``.
""" + _COMBO_RETURNS + """
    Examples:
        >>> onehot = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # perfect: 0.5 * ~0 - 0.5 * 1
        >>> round(ComboLoss(from_logits=False)(onehot, torch.tensor([[0, 0, 1, 1]])).item(), 4)
        -0.5
    """

    def __init__(self, *, alpha: float = 0.5, beta: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha, self.beta = _combo_arguments("ComboLoss", alpha, beta, self.options)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _combo(input, target, self.options, self.alpha, self.beta)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, " + super().extra_repr()


__all__ = [
    "ComboLoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "MCCLoss",
    "TverskyLoss",
    "combo_loss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "jaccard_loss",
    "mcc_loss",
    "segmentation_statistics",
    "tversky_loss",
]
