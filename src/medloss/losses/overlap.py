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

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._distributed import all_reduce_sum, all_reduce_sums, distributed_flag
from .._validation import (
    canonical_inputs,
    check_choice,
    check_class_vector,
    check_mode,
    check_number,
    check_reduction,
    value_checks_active,
)
from ..ops.reference import weighted_ce_reference
from ._common import fp32_island, safe_pow, upcast
from ._overlap import (
    SoftmaxStats,
    counted_entries,
    probabilities_and_targets,
    sigmoid_statistics,
    soft_confusion,
    softmax_statistics,
)
from .focal import probabilities_to_logits, sigmoid_focal_loss

AVERAGES = ("macro", "micro")


def prepare_segmentation(
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    from_logits: bool,
    ignore_index: int | None,
    binary_as_two_classes: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
    """Validate and return ``(logits, target, valid, softmax)``, logits in fp32 or wider.

    ``softmax`` is True for multiclass input (target: class indices, ignored positions set to 0)
    and, with ``binary_as_two_classes``, for binary input turned into the two-channel logits
    ``[0, x]`` (softmax of which is ``[1 - sigmoid(x), sigmoid(x)]``). Otherwise the target is a
    float tensor of the input's shape for per-channel sigmoids. ``valid`` marks counted positions.
    """
    x, t, ignored = canonical_inputs(input, target, mode, ignore_index=ignore_index)
    x = upcast(x)
    if not from_logits:
        x = probabilities_to_logits(x, mode)
    valid = None if ignored is None else ~ignored
    if mode == "multiclass":
        return x, t.long() if valid is None else t.long().masked_fill(~valid, 0), valid, True
    if mode == "binary" and binary_as_two_classes:
        t = t.reshape(x.shape[0], *x.shape[2:])
        if valid is not None:
            valid = valid.reshape(t.shape)
            t = t.masked_fill(~valid, 0)
        check_hard_binary_target(t)
        return torch.cat([torch.zeros_like(x), x], 1), t.long(), valid, True
    y = t.to(x.dtype)
    if valid is not None:
        y = y.masked_fill(~valid, 0.0)
    return x, y, valid, False


def check_hard_binary_target(t: torch.Tensor) -> None:
    """The two-class view ``[1 - p, p]`` of a binary input needs labels in {0, 1} (eager value check)."""
    if value_checks_active(t) and torch.is_floating_point(t) and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("binary `target` must hold hard labels in {0, 1} for this loss (no soft labels)")


def probability_statistics(
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    ignore_index: int | None,
    batch: bool,
    binary_as_two_classes: bool = False,
) -> SoftmaxStats:
    """Soft TP / sum_p / sum_y of probabilities taken as they are (``from_logits=False``), in plain
    PyTorch operations: an empty prediction of an empty class counts exactly 0, which a round trip
    through clipped logits would not (0.98 Dice loss on an empty 64x64 mask in fp32)."""
    probs, onehot, mask = probabilities_and_targets(input, target, mode, from_logits=False, ignore_index=ignore_index)
    if mode == "binary" and binary_as_two_classes:
        check_hard_binary_target(onehot)
        background = 1.0 - onehot if mask is None else (1.0 - onehot) * mask
        probs, onehot = torch.cat([1.0 - probs, probs], 1), torch.cat([background, onehot], 1)
    dims = tuple(range(2, probs.ndim))
    with fp32_island():
        tp, fp, fn = soft_confusion(probs, onehot, (0, *dims) if batch else dims, mask)
    s = SoftmaxStats(tp, tp + fp, (tp + fn).detach(), None)
    return with_counted_images(s, mask, softmax=mode == "multiclass" or binary_as_two_classes, batch=batch)


def segmentation_statistics(
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    from_logits: bool = True,
    ignore_index: int | None = -100,
    batch: bool = False,
    binary_as_two_classes: bool = False,
    focal: tuple[torch.Tensor, float, float] | None = None,
    weighted_ce: float | None = None,
) -> SoftmaxStats:
    """Per-class soft TP / FP / FN (``[B, C]``, or ``[C]`` with ``batch``) and optionally a per-pixel
    term in ``.focal`` (its mean; ``.term_total`` / ``.term_count`` its sum and count): the focal term
    (``focal = (alpha per class, gamma_bg, gamma_fg)``) or Combo's weighted cross-entropy
    (``weighted_ce = beta``; None if not computed).

    Examples:
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # [B, C, N]
        >>> s = segmentation_statistics(probs, torch.tensor([[0, 1]]), "multiclass", from_logits=False)
        >>> s.tp, s.fp, s.fn
        (tensor([[0.9000, 0.8000]]), tensor([[0.2000, 0.1000]]), tensor([[0.1000, 0.2000]]))
    """
    if not from_logits:
        counts = probability_statistics(
            input, target, mode, ignore_index=ignore_index, batch=batch, binary_as_two_classes=binary_as_two_classes
        )
        if focal is None and weighted_ce is None:
            return counts
        # the log terms need log p: from probabilities clipped at machine epsilon (no exact identity at 0 or 1)
        prepared = prepare_segmentation(
            input, target, mode, from_logits=False, ignore_index=ignore_index,
            binary_as_two_classes=binary_as_two_classes,
        )
        term = statistics_of_prepared(*prepared, batch=batch, focal=focal, weighted_ce=weighted_ce)
        counts.term_total, counts.term_count = term.term_total, term.term_count
        return counts
    if mode == "multiclass":
        # the op counts bad labels as it reads them (one pass fewer than checking them first)
        x, t, _ = canonical_inputs(
            input, target, mode, ignore_index=ignore_index, check_labels=False, check_input_finite=False
        )
        with fp32_island():
            s = softmax_statistics(
                upcast(x), t, None, batch=batch, focal=focal, weighted_ce=weighted_ce, ignore_index=ignore_index,
                check_finite_logits=True,
            )
        return with_counted_images(s, None, softmax=True, batch=batch)
    prepared = prepare_segmentation(
        input, target, mode, from_logits=from_logits, ignore_index=ignore_index,
        binary_as_two_classes=binary_as_two_classes,
    )
    return statistics_of_prepared(*prepared, batch=batch, focal=focal, weighted_ce=weighted_ce)


def with_counted_images(s: SoftmaxStats, valid: torch.Tensor | None, *, softmax: bool, batch: bool) -> SoftmaxStats:
    """Mark in ``s.counted`` the per-image entries with at least one counted position (not with ``batch``).
    Softmax counts: an image's label counts add up to its counted pixels; per-channel sigmoids: from ``valid``."""
    if not batch:
        s.counted = (s.sum_y.sum(-1, keepdim=True) > 0).expand_as(s.sum_y) if softmax else counted_entries(
            valid, s.sum_y.shape)
    return s


def statistics_of_prepared(
    x: torch.Tensor,
    t: torch.Tensor,
    valid: torch.Tensor | None,
    softmax: bool,
    *,
    batch: bool = False,
    focal: tuple[torch.Tensor, float, float] | None = None,
    weighted_ce: float | None = None,
) -> SoftmaxStats:
    """:func:`segmentation_statistics` of inputs already validated by :func:`prepare_segmentation`."""
    with fp32_island():
        if not softmax:
            s = sigmoid_statistics(x, t, valid, batch=batch)
        else:
            s = softmax_statistics(x, t, valid, batch=batch, focal=focal, weighted_ce=weighted_ce)
    return with_counted_images(s, valid, softmax=softmax, batch=batch)


class _RegionLoss(nn.Module):
    """Shared arguments and reduction of the per-class region losses."""

    def __init__(
        self,
        *,
        mode: str = "multiclass",
        include_background: bool = True,
        from_logits: bool = True,
        ignore_index: int | None = -100,
        batch: bool = False,
        weight: torch.Tensor | None = None,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        ignore_empty: bool = False,
        average: str = "macro",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.ignore_empty = bool(ignore_empty)
        self.average = check_choice(average, "average", AVERAGES)
        self.distributed = bool(distributed)
        self.include_background = bool(include_background)
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index
        self.batch = bool(batch)
        self.smooth_nr = check_number(smooth_nr, "smooth_nr", low=0.0)
        self.smooth_dr = check_number(smooth_dr, "smooth_dr", low=0.0)
        self.reduction = check_reduction(reduction)
        if weight is not None:
            self.register_buffer("weight", check_class_vector(weight, "weight", None, low=0.0))
        else:
            self.weight = None

    def per_class(self, s: SoftmaxStats) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def statistics(self, input: torch.Tensor, target: torch.Tensor) -> SoftmaxStats:
        return segmentation_statistics(
            input, target, self.mode, from_logits=self.from_logits, ignore_index=self.ignore_index, batch=self.batch
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distributed_flag(self)
        s = self.statistics(input, target)
        if self.distributed and self.batch:
            s = all_reduce_statistics(s)  # the whole distributed batch's counts, then one ratio
        if self.average == "micro":
            # one ratio of the counts summed over the (weighted, included) classes, per image
            counted = None if s.counted is None else s.counted.any(-1)
            s = micro_statistics(s, weight=self.weight, include_background=self.include_background, mode=self.mode)
            s.counted = counted
            loss = self.per_class(s).unsqueeze(-1)
            present = s.present(self.ignore_empty)
            kwargs: dict[str, Any] = {"mode": self.mode, "present": None if present is None else present.unsqueeze(-1)}
        else:
            loss = self.per_class(s)
            kwargs = {"weight": self.weight, "include_background": self.include_background, "mode": self.mode,
                      "present": s.present(self.ignore_empty)}
        if self.distributed and not self.batch and self.reduction != "none":
            return global_reduction(loss, self.reduction, **kwargs)  # per image: the mean over every rank's images
        out = reduce_classes(loss, reduction=self.reduction, **kwargs)
        return out.squeeze(-1) if self.average == "micro" and self.reduction == "none" else out

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, include_background={self.include_background}, batch={self.batch}, "
                f"smooth_nr={self.smooth_nr}, smooth_dr={self.smooth_dr}, reduction={self.reduction!r}")


def all_reduce_statistics(s: SoftmaxStats) -> SoftmaxStats:
    """The counts summed over every rank (one all-reduce; ``n`` too when a loss keeps it)."""
    parts = [s.tp, s.sum_p, s.sum_y] + ([s.n] if s.n is not None else [])
    total = all_reduce_sums(*parts)
    return SoftmaxStats(total[0], total[1], total[2].detach(), n=None if s.n is None else total[3].detach())


def _sum_and_count(loss: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``reduce_classes`` sum of ``loss`` and of its (weighted) entries: the two halves of its mean."""
    total = reduce_classes(loss, reduction="sum", **kwargs)
    return total, reduce_classes(torch.ones_like(loss), reduction="sum", **kwargs).detach()


def global_reduction(loss: torch.Tensor, reduction: str, **kwargs: Any) -> torch.Tensor:
    """``reduce_classes`` over every rank's entries: the sum, or the (weighted) mean of all of them."""
    if reduction == "sum":
        return all_reduce_sum(reduce_classes(loss, reduction="sum", **kwargs))
    total, count = all_reduce_sums(*_sum_and_count(loss, **kwargs))
    return total / count.clamp_min(torch.finfo(count.dtype).tiny)  # nothing counted anywhere: 0


def region_and_term_means(
    s: SoftmaxStats, per_class: Callable[[SoftmaxStats], torch.Tensor], *, batch: bool, distributed: bool,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of a per-class region loss (``reduce_classes``) and of the per-pixel term carried by
    ``s`` (focal / weighted CE), over this rank's batch or, with ``distributed``, over the whole
    distributed batch: the counts (``batch``) or the per-image sums, and the term's sum and count,
    travel in one all-reduce."""
    kwargs.setdefault("present", s.present())  # images with no counted pixel count in no mean
    if not distributed:
        return reduce_classes(per_class(s), reduction="mean", **kwargs), s.focal
    if batch:
        tp, sum_p, sum_y, total, count = all_reduce_sums(s.tp, s.sum_p, s.sum_y, s.term_total, s.term_count)
        region = reduce_classes(per_class(SoftmaxStats(tp, sum_p, sum_y.detach())), reduction="mean", **kwargs)
    else:
        loss_total, loss_count, total, count = all_reduce_sums(
            *_sum_and_count(per_class(s), **kwargs), s.term_total, s.term_count
        )
        region = loss_total / loss_count.clamp_min(torch.finfo(loss_count.dtype).tiny)
    return region, total / count.detach().clamp_min(1.0)  # nothing counted anywhere: 0


def region_per_image(s: SoftmaxStats, per_class: Callable[[SoftmaxStats], torch.Tensor], **kwargs: Any) -> torch.Tensor:
    """A per-class region loss averaged over the classes of each image ``[B]`` (``reduce_classes``'s weights,
    background and ``present`` rules; 0 for an image with no class counted)."""
    kwargs.setdefault("present", s.present())
    loss = per_class(s)
    total = reduce_classes(loss, reduction="none", **kwargs).sum(-1)
    count = reduce_classes(torch.ones_like(loss), reduction="none", **kwargs).sum(-1).detach()
    return total / count.clamp_min(torch.finfo(count.dtype).tiny)


def check_per_image_reduction(reduction: str, batch: bool, name: str) -> None:
    """A loss that adds a region and a pixel term reduces per image; ``batch=True`` pools the counts first."""
    if batch and reduction != "mean":
        raise ValueError(f"{name}(reduction={reduction!r}) reduces the per-image losses, and batch=True has none (its "
                         "counts pool the whole batch): use batch=False, or reduction='mean'")


def finish_per_image(values: torch.Tensor, reduction: str, distributed: bool) -> torch.Tensor:
    """Per-image losses ``[B]`` -> ``"none"`` (this rank's, as every loss) or their ``"sum"`` (every rank's with
    ``distributed``)."""
    if reduction == "none":
        return values
    return all_reduce_sum(values.sum()) if distributed else values.sum()


def micro_statistics(
    s: SoftmaxStats, *, weight: torch.Tensor | None, include_background: bool, mode: str
) -> SoftmaxStats:
    """Counts summed over the classes (``average="micro"``): ``sum_c w_c TP_c`` etc., ``[B]`` or ``[]``,
    without channel 0 unless ``include_background`` (multiclass / multilabel with C > 1)."""
    tp, sum_p, sum_y = s.tp, s.sum_p, s.sum_y
    if not include_background and mode != "binary" and tp.shape[-1] > 1:
        tp, sum_p, sum_y = tp[..., 1:], sum_p[..., 1:], sum_y[..., 1:]
        weight = None if weight is None else weight[1:]
    if weight is not None:
        if weight.numel() != tp.shape[-1]:
            raise ValueError(f"`weight` must have one entry per counted class ({tp.shape[-1]}); got {weight.numel()}")
        w = weight.to(tp.dtype)
        tp, sum_p, sum_y = tp * w, sum_p * w, sum_y * w
    return SoftmaxStats(tp.sum(-1), sum_p.sum(-1), sum_y.sum(-1), None)


def reduce_classes(
    loss: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    include_background: bool = True,
    reduction: str = "mean",
    mode: str = "multiclass",
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce a per-class loss ``[B, C]`` / ``[C]``: drop channel 0 unless ``include_background``
    (multiclass / multilabel with C > 1), weight classes, then mean / sum / none. ``present``
    (same shape, bool) excludes the entries it marks False (``ignore_empty``); if none is left the
    mean is 0."""
    n_classes = loss.shape[-1]
    if weight is None and present is None and reduction == "mean" and (include_background or n_classes == 1
                                                                      or mode == "binary"):
        return loss.mean()  # the common case, in one operation
    if weight is not None and weight.numel() != n_classes:
        raise ValueError(f"`weight` must have one entry per class ({n_classes}); got {weight.numel()}")
    w = torch.ones(n_classes, dtype=loss.dtype, device=loss.device) if weight is None else weight.to(loss.dtype)
    if not include_background and mode != "binary" and n_classes > 1:
        loss = loss[..., 1:]
        w = w[1:]
        present = None if present is None else present[..., 1:]
    w = w.expand_as(loss)
    if present is not None:
        w = w * present.to(loss.dtype)
        loss = loss * present.to(loss.dtype)  # excluded entries: 0, and no gradient
    if reduction == "none":
        return loss if weight is None else loss * w
    weighted = (loss * w).sum()
    if reduction == "sum":
        return weighted
    return weighted / w.sum().clamp_min(torch.finfo(w.dtype).tiny)  # nothing counted: 0 / tiny = 0


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


class DiceLoss(_RegionLoss):
    __doc__ = r"""Soft Dice loss (Milletari et al., V-Net, 2016), per class:

    .. math:: \mathcal{L}_c = 1 - \frac{2\,TP_c + s_{nr}}{2\,TP_c + FP_c + FN_c + s_{dr}}

    ``squared_pred=True`` takes the denominator of V-Net's paper, ``sum p^2 + sum y^2``;
    ``jaccard=True`` the soft Jaccard (IoU) form ``1 - (2 TP + s_nr) / (2 (sum p + sum y - TP) + s_dr)``
    (both as MONAI's ``DiceLoss``; :class:`JaccardLoss` is smp's form of the latter).

    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0], [0.0, 1.0]], [[-2.0, 1.0], [0.0, -1.0]]]).unsqueeze(0)
        >>> target = torch.tensor([[[0, 1], [0, 0]]])
        >>> round(DiceLoss()(logits, target).item(), 4)
        0.2192
    """ + _REGION_ARGS + """        squared_pred: square probabilities and labels in the denominator (default False).
        jaccard: the soft Jaccard form instead of Dice (default False).
"""

    def __init__(self, *, squared_pred: bool = False, jaccard: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.squared_pred = bool(squared_pred)
        self.jaccard = bool(jaccard)

    def statistics(self, input: torch.Tensor, target: torch.Tensor) -> SoftmaxStats:
        if not self.squared_pred:
            return super().statistics(input, target)
        # sum p^2 has no fused op: plain differentiable operations
        probs, onehot, mask = probabilities_and_targets(
            input, target, self.mode, from_logits=self.from_logits, ignore_index=self.ignore_index
        )
        dims = tuple(range(2, probs.ndim))
        dims = (0, *dims) if self.batch else dims
        with fp32_island():
            p = probs if mask is None else probs * mask
            counts = SoftmaxStats((p * onehot).sum(dims), (p * p).sum(dims), (onehot * onehot).sum(dims), None)
        return with_counted_images(counts, mask, softmax=self.mode == "multiclass", batch=self.batch)

    def per_class(self, s: SoftmaxStats) -> torch.Tensor:
        # 2 TP + FP + FN = sum p + sum y: the same ratio with fewer operations to differentiate
        total = s.sum_p + s.sum_y
        if self.jaccard:
            total = 2.0 * (total - s.tp)
        return 1.0 - (2.0 * s.tp + self.smooth_nr) / (total + self.smooth_dr)

    def extra_repr(self) -> str:
        extra = "".join(f", {k}=True" for k in ("squared_pred", "jaccard") if getattr(self, k))
        return super().extra_repr() + extra


class JaccardLoss(_RegionLoss):
    __doc__ = r"""Soft Jaccard (IoU) loss (as smp's ``JaccardLoss``), per class:

    .. math:: \mathcal{L}_c = 1 - \frac{TP_c + s_{nr}}{TP_c + FP_c + FN_c + s_{dr}}

    smp computes it over the whole batch (``batch=True``), with ``smooth_nr = 0`` and an absent
    class scoring 0 (``ignore_empty=True`` here leaves it out of the mean instead).

    Examples:
        >>> probs = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])
        >>> JaccardLoss(from_logits=False, smooth_nr=0.0, smooth_dr=0.0)(probs, torch.tensor([[1, 1, 0, 0]]))
        tensor(0.6667)
    """ + _REGION_ARGS

    def per_class(self, s: SoftmaxStats) -> torch.Tensor:
        return 1.0 - (s.tp + self.smooth_nr) / (s.sum_p + s.sum_y - s.tp + self.smooth_dr)


class GeneralizedDiceLoss(_RegionLoss):
    r"""Generalized Dice loss (Sudre et al., "Generalised Dice overlap as a deep learning loss
    function for highly unbalanced segmentations", DLMIA 2017), per image:

    .. math:: \mathcal{L} = 1 - \frac{2 \sum_c w_c TP_c + s_{nr}}{\sum_c w_c (\sum p_c + \sum y_c) + s_{dr}},
        \quad w_c = 1 / (\sum y_c)^2

    ``w_type``: ``"square"`` (default, the paper), ``"simple"`` (``1 / sum y_c``) or ``"uniform"``
    (1). A class absent from the ground truth has an infinite weight; it gets the largest finite
    weight of the image (of the batch with ``batch=True``) instead, as MONAI does, so a prediction
    on it is still penalised. With every class absent the loss is ``1 - s_nr / s_dr``.

    Args:
        w_type: class weighting, as above.
        mode, include_background, from_logits, ignore_index, batch, smooth_nr, smooth_dr: as
            :class:`DiceLoss` (channel 0 is dropped before the weights are formed).
        reduction: ``"mean"`` (default) or ``"sum"`` over images, or ``"none"`` (``[B]``; ``[1]``
            with ``batch``).
        distributed: the loss of the whole distributed batch on every rank (as :class:`DiceLoss`).

    Raises:
        ValueError: an unknown ``w_type`` or ``reduction``; inputs as :class:`DiceLoss`.

    Examples:
        >>> x = torch.tensor([[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
        >>> t = torch.tensor([[1, 0, 0], [1, 1, 0]])
        >>> round(GeneralizedDiceLoss(smooth_nr=1e-4, smooth_dr=1e-4)(x, t).item(), 6)
        0.414507
    """

    def __init__(
        self,
        *,
        w_type: str = "square",
        mode: str = "multiclass",
        include_background: bool = True,
        from_logits: bool = True,
        ignore_index: int | None = -100,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        distributed: bool = False,
    ) -> None:
        # the shared arguments are the region losses' (their class weights come from the volumes here)
        super().__init__(
            mode=mode, include_background=include_background, from_logits=from_logits, ignore_index=ignore_index,
            batch=batch, smooth_nr=smooth_nr, smooth_dr=smooth_dr, reduction=reduction, distributed=distributed,
        )
        self.w_type = check_choice(w_type, "w_type", ("square", "simple", "uniform"))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distributed_flag(self)
        s = self.statistics(input, target)
        if self.distributed and self.batch:
            s = all_reduce_statistics(s)
        tp, sum_p, sum_y = s.tp, s.sum_p, s.sum_y
        if not self.include_background and self.mode != "binary" and tp.shape[-1] > 1:
            tp, sum_p, sum_y = tp[..., 1:], sum_p[..., 1:], sum_y[..., 1:]
        with fp32_island():
            w = generalized_dice_weights(sum_y, self.w_type)
            numerator = 2.0 * (w * tp).sum(-1) + self.smooth_nr
            loss = 1.0 - numerator / ((w * (sum_p + sum_y)).sum(-1) + self.smooth_dr)
        counted = None if s.counted is None else s.counted.any(-1, keepdim=True)  # images with a counted pixel
        if self.distributed and not self.batch and self.reduction != "none":  # the mean over every rank's images
            return global_reduction(loss.reshape(-1, 1), self.reduction, mode=self.mode, present=counted)
        out = reduce_classes(loss.reshape(-1, 1), reduction=self.reduction, mode=self.mode, present=counted)
        return out.reshape(-1) if self.reduction == "none" else out

    def extra_repr(self) -> str:
        return f"w_type={self.w_type!r}, mode={self.mode!r}, batch={self.batch}, reduction={self.reduction!r}"


def generalized_dice_weights(sum_y: torch.Tensor, w_type: str) -> torch.Tensor:
    """Class weights of the Generalized Dice loss from the ground-truth volumes ``[..., C]``
    (no gradient); an absent class takes the largest finite weight along the last dim."""
    sum_y = sum_y.detach()
    if w_type == "uniform":
        return torch.ones_like(sum_y)
    present = sum_y > 0
    safe = torch.where(present, sum_y, 1.0)
    w = torch.where(present, (safe * safe if w_type == "square" else safe).reciprocal(), 0.0)
    return torch.where(present, w, w.amax(-1, keepdim=True))


class MCCLoss(_RegionLoss):
    __doc__ = r"""Matthews correlation coefficient loss (Abhishek & Hamarneh, "Matthews Correlation
    Coefficient Loss for Deep Convolutional Networks: Application to Skin Lesion Segmentation",
    ISBI 2021), per class:

    .. math:: \mathcal{L}_c = 1 - \frac{TP\,TN - FP\,FN + s_{nr}}
        {\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN) + s_{dr}}}

    with soft counts over the counted pixels (``TN = N - TP - FP - FN``). A perfect prediction
    (``FP = FN = 0``) scores 0 even when a factor of the denominator is 0, as MONAI's
    ``MCCLoss`` (whose defaults ``smooth_nr = 0``, ``smooth_dr = 1e-5`` are used here). smp's
    ``MCCLoss`` is binary only, over the whole batch (``batch=True``), and adds its ``eps`` to each
    count instead. The loss lies in [0, 2].

    Examples:
        >>> x = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])
        >>> round(MCCLoss(mode="binary")(x, torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])).item(), 6)
        0.733197
    """ + _REGION_ARGS.replace("(default 1e-5 each)", "(default 0 and 1e-5)")

    def __init__(self, *, smooth_nr: float = 0.0, smooth_dr: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(smooth_nr=smooth_nr, smooth_dr=smooth_dr, **kwargs)
        if self.average != "macro":
            raise ValueError(f"`average` must be 'macro' for MCCLoss; got {self.average!r}")

    def statistics(self, input: torch.Tensor, target: torch.Tensor) -> SoftmaxStats:
        s = super().statistics(input, target)  # validates the input, once
        # counted pixels per image (and channel in the sigmoid modes): TN = N - sum p - sum y + TP
        if self.mode == "multiclass":  # each counted pixel is in one class's sum y
            s.n = s.sum_y.sum(-1, keepdim=True).expand_as(s.tp)
            return s
        channels = s.tp.shape[-1]
        t = target.reshape(target.shape[0], channels, -1)  # binary [B, *] or [B, 1, *]; multilabel [B, C, *]
        counted = t.new_ones(t.shape, dtype=s.tp.dtype) if self.ignore_index is None else (
            (t != self.ignore_index).to(s.tp.dtype))
        s.n = (counted.sum((0, 2)) if self.batch else counted.sum(2)).expand_as(s.tp)
        return s

    def per_class(self, s: SoftmaxStats) -> torch.Tensor:
        fp, fn = s.fp, s.fn
        tn = s.n - s.sum_p - s.sum_y + s.tp
        numerator = s.tp * tn - fp * fn + self.smooth_nr
        denominator = torch.sqrt((s.tp + fp) * (s.tp + fn) * (tn + fp) * (tn + fn) + self.smooth_dr)
        loss = torch.where((fp == 0) & (fn == 0), 0.0, 1.0 - numerator / denominator)
        # A ground truth with no positive (or no negative) leaves MCC undefined; the formula above would
        # give 1 with a zero gradient whatever the prediction. Chicco & Jurman's limits instead: MCC = 1
        # for a prediction with no error, -1 for all wrong, here linearly between: 1 - MCC = 2 FP / N
        # (no positive) or 2 FN / N (no negative), so false positives on an empty mask get a gradient.
        n = s.n.clamp_min(torch.finfo(s.n.dtype).tiny)
        loss = torch.where(s.sum_y == 0, 2.0 * fp / n, loss)
        return torch.where(s.sum_y == s.n, 2.0 * fn / n, loss)


class TverskyLoss(_RegionLoss):
    __doc__ = r"""Tversky loss (Salehi et al., "Tversky loss function for image segmentation using 3D
    fully convolutional deep networks", 2017), per class:

    .. math:: TI_c = \frac{TP_c + s_{nr}}{TP_c + \alpha FP_c + \beta FN_c + s_{dr}},\quad
        \mathcal{L}_c = 1 - TI_c

    ``alpha`` weights false positives, ``beta`` false negatives (defaults 0.3, 0.7: recall
    matters more for small lesions); ``alpha = beta = 0.5`` is the Dice loss.
    """ + _REGION_ARGS + """        alpha, beta: weights of FP and FN (default 0.3, 0.7).

    Examples:
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # perfect: every Tversky index is 1
        >>> TverskyLoss(from_logits=False)(probs, torch.tensor([[0, 0, 1, 1]]))
        tensor(0.)
        >>> half = torch.full((1, 2, 4), 0.5)  # class 1: TP 1, FP 1, FN 1 -> 1 - 1 / (1 + 0.3 + 0.7)
        >>> loss = TverskyLoss(from_logits=False, smooth_nr=0.0, smooth_dr=0.0, reduction="none")
        >>> loss(half, torch.tensor([[0, 0, 1, 1]]))
        tensor([[0.5000, 0.5000]])
"""

    def __init__(self, *, alpha: float = 0.3, beta: float = 0.7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.beta = check_number(beta, "beta", low=0.0)

    def tversky_index(self, s: SoftmaxStats) -> torch.Tensor:
        return (s.tp + self.smooth_nr) / (s.tp + self.alpha * s.fp + self.beta * s.fn + self.smooth_dr)

    def per_class(self, s: SoftmaxStats) -> torch.Tensor:
        return 1.0 - self.tversky_index(s)


class FocalTverskyLoss(TverskyLoss):
    __doc__ = r"""Focal Tversky loss (Abraham & Khan, "A Novel Focal Tversky Loss Function with Improved
    Attention U-Net for Lesion Segmentation", ISBI 2019), per class ``(1 - TI_c)^gamma``.

    Convention: ``gamma`` is the exponent itself, default 0.75. The paper writes
    ``(1 - TI)^{1/gamma}`` and recommends gamma = 4/3, i.e. the same exponent 0.75. An exponent
    below 1 focuses on hard (low-TI) classes; the gradient at a perfect prediction is 0, not inf.
    """ + _REGION_ARGS + """        alpha, beta: weights of FP and FN (default 0.3, 0.7).
        gamma: exponent > 0 (default 0.75).

    Examples:
        >>> half = torch.full((1, 2, 4), 0.5)  # 1 - TI = 0.5 for both classes; 0.5 ** 0.75
        >>> FocalTverskyLoss(from_logits=False, smooth_nr=0.0, smooth_dr=0.0)(half, torch.tensor([[0, 0, 1, 1]]))
        tensor(0.5946)
"""

    def __init__(self, *, gamma: float = 0.75, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = check_number(gamma, "gamma", low=0.0, low_inclusive=False)

    def per_class(self, s: SoftmaxStats) -> torch.Tensor:
        return safe_pow(1.0 - self.tversky_index(s), self.gamma)


class ComboLoss(nn.Module):
    r"""Combo loss (Taghanaki et al., "Combo loss: Handling input and output imbalance in
    multi-organ segmentation", CMIG 2019):

    .. math:: \mathcal{L} = \alpha\, \mathcal{L}_{wCE} - (1 - \alpha)\, \mathrm{DSC},\quad
        \mathcal{L}_{wCE} = -\mathrm{mean}\big(\beta\, y \log p + (1 - \beta)(1 - y) \log(1 - p)\big)

    ``alpha`` mixes the two terms, ``beta`` weights false negatives against false positives in
    the weighted cross-entropy (``beta > 0.5`` penalises missed foreground more). The mean runs
    over pixels and classes (one-hot ``y``; ``log p`` and ``log(1 - p)`` from the logits, never
    clipped); ``DSC`` is the soft Dice coefficient averaged over classes and images. The loss lies
    in ``[-(1 - alpha), inf)``: it is negative for good predictions, as in the paper. (Article 004
    misplaces a parenthesis and applies alpha inside the cross-entropy; the official Keras code
    sums the cross-entropy over channels instead of averaging.)

    Args:
        alpha: weight of the cross-entropy term (default 0.5).
        beta: weight of the positive (foreground) part of the cross-entropy (default 0.5).
        mode, include_background, from_logits, ignore_index, batch, smooth_nr, smooth_dr: as
            :class:`DiceLoss` (they apply to the Dice term; the cross-entropy covers every channel).
        reduction: ``"mean"`` (default: the cross-entropy's mean over every counted pixel and class, the Dice
            term's over images and classes), ``"none"`` (the loss of each image ``[B]``, its cross-entropy
            averaged within the image) or ``"sum"`` (of those).
        distributed: under ``torch.distributed`` (DDP), the loss of the whole distributed batch on
            every rank (default False); see :class:`DiceLoss` and ``docs/distributed.md``.

    Raises:
        ValueError: an argument out of range, or ``reduction`` other than ``"mean"`` with ``batch=True`` (no
            per-image losses).

    Examples:
        >>> onehot = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # perfect: 0.5 * ~0 - 0.5 * 1
        >>> round(ComboLoss(from_logits=False)(onehot, torch.tensor([[0, 0, 1, 1]])).item(), 4)
        -0.5
    """

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        mode: str = "multiclass",
        include_background: bool = True,
        from_logits: bool = True,
        ignore_index: int | None = -100,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0)
        self.beta = check_number(beta, "beta", low=0.0, high=1.0)
        self.reduction = check_reduction(reduction)
        check_per_image_reduction(self.reduction, batch, "ComboLoss")
        self.dice = DiceLoss(
            mode=mode, include_background=include_background, from_logits=from_logits, ignore_index=ignore_index,
            batch=batch, smooth_nr=smooth_nr, smooth_dr=smooth_dr,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = self.dice
        distributed_flag(self)
        # softmax modes: the cross-entropy comes from the same pass as the Dice counts
        per_image = self.reduction != "mean"  # then the cross-entropy is taken per image below, not here
        s = segmentation_statistics(
            input, target, d.mode, from_logits=d.from_logits, ignore_index=d.ignore_index, batch=d.batch,
            weighted_ce=None if per_image else self.beta,
        )
        with fp32_island():
            if per_image:  # the Dice term over each image's classes, the cross-entropy within it
                dice = region_per_image(s, d.per_class, include_background=d.include_background, mode=d.mode)
                losses = self.alpha * self._weighted_ce_per_image(input, target) - (1.0 - self.alpha) * (1.0 - dice)
                return finish_per_image(losses, self.reduction, self.distributed)
            if s.term_total is None:
                s.term_total, s.term_count = self._weighted_ce(input, target)
            dice_loss, wce_mean = region_and_term_means(
                s, d.per_class, batch=d.batch, distributed=self.distributed,
                include_background=d.include_background, mode=d.mode,
            )
        return self.alpha * wce_mean - (1.0 - self.alpha) * (1.0 - dice_loss)

    def _weighted_ce(self, input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sigmoid modes (binary / multilabel): the weighted CE's sum and its number of counted entries."""
        d = self.dice
        x, y, valid, _ = prepare_segmentation(
            input, target, d.mode, from_logits=d.from_logits, ignore_index=d.ignore_index
        )
        with fp32_island():
            # -(beta y log p + (1 - beta)(1 - y) log(1 - p)): the sigmoid focal op at gamma 0 (one op, one kernel
            # each way on every implementation)
            beta = x.new_tensor([self.beta])
            total = sigmoid_focal_loss(x, y, valid, beta, 1.0 - beta, 0.0, 0.0, "sum", "elements")
            count = valid.expand_as(x).sum() if valid is not None else x.new_tensor(float(x.numel()))
            return total, count.to(total.dtype)

    def _weighted_ce_per_image(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted cross-entropy's mean over the counted pixels and classes of each image ``[B]`` (0 for an
        image with none): the sigmoid focal op at gamma 0 per element, or the softmax form per pixel."""
        d = self.dice
        sigmoid = d.mode != "multiclass"
        x, t, valid, _ = prepare_segmentation(input, target, d.mode, from_logits=d.from_logits,
                                              ignore_index=d.ignore_index)
        b, c = x.shape[:2]
        with fp32_island():
            if sigmoid:
                beta = x.new_tensor([self.beta])
                values = sigmoid_focal_loss(x, t, valid, beta, 1.0 - beta, 0.0, 0.0, "none", "elements")
                counted = torch.ones_like(x) if valid is None else valid.expand_as(x).to(x.dtype)
            else:
                xv = x.reshape(b, c, -1)
                onehot = F.one_hot(t.reshape(b, -1), c).transpose(1, 2).to(x.dtype)
                values = weighted_ce_reference(xv, torch.log_softmax(xv, 1), onehot, self.beta)
                counted = torch.ones_like(values) if valid is None else valid.reshape(b, -1).to(x.dtype)
                counted = counted * c  # the mean runs over pixels and classes
            total = (values.reshape(b, -1) * (counted.reshape(b, -1) > 0)).sum(1)
            return total / counted.reshape(b, -1).sum(1).clamp_min(1.0)
