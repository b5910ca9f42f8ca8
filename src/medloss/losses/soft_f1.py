"""Differentiable (soft) F1 loss."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .._distributed import all_reduce_sums, distributed_flag, require_process_group
from .._validation import check_choice, check_mode, check_number, check_reduction
from ._common import fp32_island
from ._overlap import probabilities_and_targets, soft_confusion
from .overlap import segmentation_statistics

AVERAGES = ("macro", "micro")


def _smoothing(owner: str, smooth_nr: float, smooth_dr: float, eps: float | None) -> tuple[float, float]:
    """``(smooth_nr, smooth_dr)`` checked; ``eps`` (medloss < 0.2) is ``smooth_dr``, with a FutureWarning."""
    if eps is not None:
        warnings.warn(f"{owner}(eps=...) is deprecated and will be removed in medloss 0.3; pass smooth_dr= (the "
                      "denominator's term, as every region loss; smooth_nr= is the numerator's)", FutureWarning,
                      stacklevel=3)
        smooth_dr = eps
    return check_number(smooth_nr, "smooth_nr", low=0.0), check_number(smooth_dr, "smooth_dr", low=0.0)


def soft_f1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str = "binary",
    average: str = "macro",
    from_logits: bool = True,
    ignore_index: int | None = -100,
    smooth_nr: float = 0.0,
    smooth_dr: float = 1e-7,
    reduction: str = "mean",
    distributed: bool = False,
    eps: float | None = None,
) -> torch.Tensor:
    """Soft-F1 loss ``1 - (2TP + s_nr) / (2TP + FP + FN + s_dr)``: the functional form of :class:`SoftF1Loss`.

    Args:
        input: logits (or probabilities with ``from_logits=False``), shapes as :func:`focal_loss`.
        target: 0 / 1 labels (binary, multilabel) or class indices (multiclass).
        mode, average, from_logits, ignore_index, smooth_nr, smooth_dr, reduction, distributed: as
            :class:`SoftF1Loss` (``eps`` is the deprecated spelling of ``smooth_dr``).

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the per-class losses ``[C]`` for ``"none"`` (``[1]`` in
        binary mode or with ``average="micro"``): F1 is a statistic of the whole batch, not of one sample.

    Raises:
        ValueError: an option out of range (the message names it), a ``target`` of the wrong shape, labels
            outside ``[0, C - 1]`` other than ``ignore_index``, non-finite logits.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> soft_f1_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), from_logits=False)  # perfect
        tensor(0.)
    """
    check_mode(mode)
    check_choice(average, "average", AVERAGES)
    check_reduction(reduction)
    smooth_nr, smooth_dr = _smoothing("soft_f1_loss", smooth_nr, smooth_dr, eps)
    if distributed:
        require_process_group("soft_f1_loss")
    with fp32_island():
        # the whole batch: F1 is not a per-sample quantity
        if input.ndim > 2:  # images: the statistics ops (medloss.ops.softmax_stats / sigmoid_stats)
            s = segmentation_statistics(
                input, target, mode, from_logits=from_logits, ignore_index=ignore_index, batch=True
            )
            tp, fp, fn = s.tp, s.fp, s.fn
        else:  # rows: plain operations (an op per row of a few classes costs more)
            probs, onehot, mask = probabilities_and_targets(
                input, target, mode, from_logits=from_logits, ignore_index=ignore_index
            )
            tp, fp, fn = soft_confusion(probs, onehot, (0, *range(2, probs.ndim)), mask)
        if distributed:  # the counts of every rank's samples (3 C numbers)
            tp, fp, fn = all_reduce_sums(tp, fp, fn)
        if average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        per_class = 1.0 - (2.0 * tp + smooth_nr) / (2.0 * tp + fp + fn + smooth_dr)
        if reduction == "none" or average == "micro":
            return per_class
        return per_class.mean() if reduction == "mean" else per_class.sum()


class SoftF1Loss(nn.Module):
    r"""Soft-F1 loss: one minus a differentiable F1 score computed over the batch.

    .. math:: \mathcal{L} = 1 - \frac{2\,TP + s_{nr}}{2\,TP + FP + FN + s_{dr}},\quad
        TP = \textstyle\sum p\,y,\ FP = \sum p\,(1-y),\ FN = \sum (1-p)\,y

    with probabilities ``p`` in place of hard predictions, summed over the whole batch (and any
    spatial dims). Binary mode scores the positive class; multiclass (softmax, one-hot targets)
    and multilabel (sigmoid per class) modes average the per-class losses (``average="macro"``,
    every class counts equally: the point for rare classes) or pool the counts first
    (``average="micro"``). See e.g. Bénédict et al., "sigmoidF1", 2021, for the construction.

    Args:
        mode: ``"binary"`` (default), ``"multiclass"`` or ``"multilabel"``; shapes as :class:`FocalLoss`.
        average: ``"macro"`` (default) or ``"micro"``.
        from_logits: ``True`` (default) for logits, ``False`` for probabilities (validated).
        ignore_index: target value excluded from every count (default -100; ``None`` disables).
        smooth_nr, smooth_dr: added to the numerator and the denominator (default 0 and 1e-7, as before
            the split; ``eps`` is the deprecated spelling of ``smooth_dr``): a class with no positives and no
            predicted mass then has loss 1 (``1 - s_nr / s_dr`` in general).
        reduction: ``"mean"`` (default) or ``"sum"`` over classes, or ``"none"`` for the per-class
            losses ``[C]``.
        distributed: under ``torch.distributed`` (DDP), the counts of every rank's samples, so the
            loss on every rank is that of the whole distributed batch (default False: this rank's);
            see ``docs/distributed.md``.

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the per-class losses ``[C]`` for ``"none"`` (``[1]`` in
        binary mode or with ``average="micro"``): F1 is a statistic of the whole batch, not of one sample.

    Raises:
        ValueError: an option out of range (the message names it), a ``target`` of the wrong shape, labels
            outside ``[0, C - 1]`` other than ``ignore_index``, non-finite logits.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> p = torch.tensor([1.0, 1.0, 0.0, 0.0])  # TP 1, FP 1, FN 1: F1 = 2 / 4
        >>> SoftF1Loss(from_logits=False, smooth_dr=0.0)(p, torch.tensor([1.0, 0.0, 1.0, 0.0]))
        tensor(0.5000)
    """

    def __init__(
        self,
        *,
        mode: str = "binary",
        average: str = "macro",
        from_logits: bool = True,
        ignore_index: int | None = -100,
        smooth_nr: float = 0.0,
        smooth_dr: float = 1e-7,
        reduction: str = "mean",
        distributed: bool = False,
        eps: float | None = None,
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.mode = check_mode(mode)
        self.average = check_choice(average, "average", AVERAGES)
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index
        self.smooth_nr, self.smooth_dr = _smoothing("SoftF1Loss", smooth_nr, smooth_dr, eps)
        self.reduction = check_reduction(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distributed_flag(self)  # the error names the module the user built
        return soft_f1_loss(
            input,
            target,
            mode=self.mode,
            average=self.average,
            from_logits=self.from_logits,
            ignore_index=self.ignore_index,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
            reduction=self.reduction,
            distributed=self.distributed,
        )

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, average={self.average!r}, smooth_nr={self.smooth_nr}, "
                f"smooth_dr={self.smooth_dr}, reduction={self.reduction!r}")
