"""The one region-loss pipeline: inputs validated once into logits / labels, per-class soft counts, a per-class
index, the class reduction, the sample reduction; and the options every region, Unified and compound loss
shares (:class:`RegionOptions`), with the base class that stores them (:class:`RegionLoss`).

A loss is a function of these pieces (``dice_loss`` = :func:`region_loss` with Dice's per-class term); its class
stores the validated options and calls the same function, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from .._distributed import all_reduce_sum, all_reduce_sums, require_process_group
from .._validation import (
    MODES,
    canonical_inputs,
    check_choice,
    check_class_vector,
    check_mode,
    check_number,
    check_reduction,
    value_checks_active,
)
from ._common import fp32_island, upcast
from ._overlap import (
    SoftmaxStats,
    counted_entries,
    probabilities_and_targets,
    sigmoid_statistics,
    soft_confusion,
    softmax_statistics,
)
from .focal import _probabilities_to_logits

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
        x = _probabilities_to_logits(x, mode)
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

    Args:
        input: logits (or probabilities) ``[B, C, *]``; binary ``[B, 1, *]`` or ``[B, *]``.
        target: class indices ``[B, *]`` (multiclass) or 0 / 1 labels of the input's shape.
        mode: ``"multiclass"``, ``"binary"`` or ``"multilabel"``.
        from_logits: logits (default) or probabilities, counted as given.
        ignore_index: target value whose pixels count nowhere (default -100).
        batch: sum over the whole batch (default False: per image).
        binary_as_two_classes: a binary input as the two-channel softmax ``[1 - p, p]`` (default False).
        focal: ``(alpha per class, gamma_background, gamma_others)`` of a focal term, or None.
        weighted_ce: ``beta`` of Combo's weighted cross-entropy, or None.

    Returns:
        The counts ``tp``, ``fp``, ``fn``, ``sum_p``, ``sum_y`` (``[B, C]``, ``[C]`` with ``batch``), and
        ``.focal`` (the pixel term's mean) when asked.

    Raises:
        ValueError: as :class:`DiceLoss` (shapes, labels, non-finite logits, probabilities outside [0, 1]).
        TypeError: an integer ``input``.

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


@dataclass(frozen=True)
class RegionOptions:
    """The options every region, Unified and compound loss takes, validated (:func:`region_options`).

    ``owner`` names the class or function the user called (in errors); ``two_class_binary`` marks the
    losses that see a binary input as the two-channel softmax ``[1 - p, p]`` (channel 0 the background).
    """

    owner: str
    mode: str
    include_background: bool
    from_logits: bool
    ignore_index: int | None
    batch: bool
    weight: torch.Tensor | None
    smooth_nr: float
    smooth_dr: float
    reduction: str
    ignore_empty: bool
    average: str
    distributed: bool
    two_class_binary: bool = False

    @property
    def class_mode(self) -> str:
        """The mode the class reduction sees: a two-class binary input has a background channel to drop."""
        return "multiclass" if self.two_class_binary else self.mode


_OPTION_NAMES = tuple(f.name for f in fields(RegionOptions) if f.name not in ("owner", "two_class_binary"))


def region_options(
    owner: str,
    *,
    modes: tuple[str, ...] = MODES,
    two_class_binary: bool = False,
    mode: str = "multiclass",
    include_background: bool = True,
    from_logits: bool = True,
    ignore_index: int | None = -100,
    batch: bool = False,
    weight: Any = None,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    reduction: str = "mean",
    ignore_empty: bool = False,
    average: str = "macro",
    distributed: bool = False,
) -> RegionOptions:
    """Check the shared options once; raises ValueError / TypeError naming the argument."""
    return RegionOptions(
        owner=owner,
        mode=check_choice(check_mode(mode), "mode", modes),
        include_background=bool(include_background),
        from_logits=bool(from_logits),
        ignore_index=ignore_index,
        batch=bool(batch),
        weight=None if weight is None else check_class_vector(weight, "weight", None, low=0.0),
        smooth_nr=check_number(smooth_nr, "smooth_nr", low=0.0),
        smooth_dr=check_number(smooth_dr, "smooth_dr", low=0.0),
        reduction=check_reduction(reduction),
        ignore_empty=bool(ignore_empty),
        average=check_choice(average, "average", AVERAGES),
        distributed=bool(distributed),
        two_class_binary=two_class_binary,
    )


def check_process_group(o: RegionOptions) -> None:
    """``distributed=True`` needs an initialised process group; the error names what the user called."""
    if o.distributed:
        require_process_group(o.owner)


def region_statistics(
    input: torch.Tensor, target: torch.Tensor, o: RegionOptions, *,
    focal: tuple[torch.Tensor, float, float] | None = None, weighted_ce: float | None = None,
) -> SoftmaxStats:
    """Step 1: the inputs validated once and the per-class soft counts (and the pixel term, if asked)."""
    check_process_group(o)
    return segmentation_statistics(
        input, target, o.mode, from_logits=o.from_logits, ignore_index=o.ignore_index, batch=o.batch,
        binary_as_two_classes=o.two_class_binary, focal=focal, weighted_ce=weighted_ce,
    )


def class_view(s: SoftmaxStats, o: RegionOptions) -> tuple[SoftmaxStats, dict[str, Any]]:
    """Step 2: the counts as the per-class index sees them, and the class reduction's arguments.

    ``average="macro"`` keeps one entry per class; ``"micro"`` sums the (weighted, included) classes' counts
    into one entry per image, ``[B, 1]`` (``[1]`` with ``batch``), whose class reduction is the identity."""
    if o.average == "macro":
        return s, {"weight": o.weight, "include_background": o.include_background, "mode": o.class_mode,
                   "present": s.present(o.ignore_empty)}
    m = micro_statistics(s, weight=o.weight, include_background=o.include_background, mode=o.class_mode)
    view = SoftmaxStats(m.tp.unsqueeze(-1), m.sum_p.unsqueeze(-1), m.sum_y.unsqueeze(-1), s.term_total,
                        term_count=s.term_count, counted=None if s.counted is None else s.counted.any(-1, keepdim=True))
    return view, {"mode": o.class_mode, "present": view.present(o.ignore_empty)}


def region_loss(s: SoftmaxStats, per_class: Callable[[SoftmaxStats], torch.Tensor], o: RegionOptions) -> torch.Tensor:
    """Steps 2-4 of a region loss from its counts: the per-class index ``per_class`` (``[B, C]`` -> ``[B, C]``),
    the class reduction, the sample reduction (over every rank's images with ``distributed``)."""
    if o.distributed and o.batch:
        s = all_reduce_statistics(s)  # the whole distributed batch's counts, then one ratio
    view, kwargs = class_view(s, o)
    loss = per_class(view)
    if o.distributed and not o.batch and o.reduction != "none":
        return global_reduction(loss, o.reduction, **kwargs)  # per image: the mean over every rank's images
    out = reduce_classes(loss, reduction=o.reduction, **kwargs)
    return out.squeeze(-1) if o.average == "micro" and o.reduction == "none" else out


class RegionLoss(nn.Module):
    """Base of every region, Unified and compound loss: stores the validated :class:`RegionOptions` (``weight``
    as a buffer, so that it follows the module's device) and hands them to the loss's function."""

    modes: tuple[str, ...] = MODES
    two_class_binary = False

    def __init__(
        self,
        *,
        mode: str = "multiclass",
        include_background: bool = True,
        from_logits: bool = True,
        ignore_index: int | None = -100,
        batch: bool = False,
        weight: Any = None,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        ignore_empty: bool = False,
        average: str = "macro",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        o = region_options(
            type(self).__name__, modes=self.modes, two_class_binary=self.two_class_binary, mode=mode,
            include_background=include_background, from_logits=from_logits, ignore_index=ignore_index, batch=batch,
            weight=weight, smooth_nr=smooth_nr, smooth_dr=smooth_dr, reduction=reduction, ignore_empty=ignore_empty,
            average=average, distributed=distributed,
        )
        for name in _OPTION_NAMES:
            if name != "weight":
                setattr(self, name, getattr(o, name))
        self.weight: torch.Tensor | None
        if o.weight is not None:
            self.register_buffer("weight", o.weight)
        else:
            self.weight = None

    @property
    def options(self) -> RegionOptions:
        """The stored options (``weight`` where the module is), as the loss's function takes them."""
        return RegionOptions(type(self).__name__, *(getattr(self, n) for n in _OPTION_NAMES),
                             two_class_binary=self.two_class_binary)

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
    s: SoftmaxStats, per_class: Callable[[SoftmaxStats], torch.Tensor], o: RegionOptions
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of a per-class region loss (:func:`class_view`, ``reduce_classes``) and of the per-pixel term
    carried by ``s`` (focal / weighted CE), over this rank's batch or, with ``distributed``, over the whole
    distributed batch: the counts (``batch``) or the per-image sums, and the term's sum and count, travel in
    one all-reduce."""
    if not o.distributed:
        view, kwargs = class_view(s, o)
        return reduce_classes(per_class(view), reduction="mean", **kwargs), s.focal
    if o.batch:
        tp, sum_p, sum_y, total, count = all_reduce_sums(s.tp, s.sum_p, s.sum_y, s.term_total, s.term_count)
        view, kwargs = class_view(SoftmaxStats(tp, sum_p, sum_y.detach()), o)
        region = reduce_classes(per_class(view), reduction="mean", **kwargs)
    else:
        view, kwargs = class_view(s, o)
        loss_total, loss_count, total, count = all_reduce_sums(
            *_sum_and_count(per_class(view), **kwargs), s.term_total, s.term_count
        )
        region = loss_total / loss_count.clamp_min(torch.finfo(loss_count.dtype).tiny)
    return region, total / count.detach().clamp_min(1.0)  # nothing counted anywhere: 0


def region_per_image(s: SoftmaxStats, per_class: Callable[[SoftmaxStats], torch.Tensor], o: RegionOptions
                     ) -> torch.Tensor:
    """A per-class region loss averaged over the classes of each image ``[B]`` (``reduce_classes``'s weights,
    background and ``present`` rules; 0 for an image with no class counted)."""
    view, kwargs = class_view(s, o)
    loss = per_class(view)
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


