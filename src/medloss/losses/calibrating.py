r"""Train-time calibration losses: a model trained with them is calibrated as it trains, where post-hoc
calibrators (:mod:`medloss.calibration`) fix it afterwards.

- :class:`FocalLossAdaptive` (FLSD-53, Mukhoti et al., NeurIPS 2020): focal loss with a per-sample gamma.
- :class:`MDCALoss` (Hebbalaguppe et al., CVPR 2022) and :class:`DCALoss` (Liang et al., BMVC 2020): the
  cross-entropy plus a penalty on the batch's gap between confidence and accuracy.
- :class:`MarginLabelSmoothingLoss` (MbLS, Liu et al., CVPR 2022): the cross-entropy plus a hinge on logit
  distances beyond a margin.
- :class:`SpatiallyVaryingLabelSmoothingLoss` (SVLS, Islam & Glocker, IPMI 2021) and
  :class:`NeighborAwareCalibrationLoss` (NACL, Murugesan et al., MICCAI 2023): a segmentation target, and a
  penalty on the logits, that follow the labels of each pixel's neighbourhood, 2-D and 3-D.

Inputs as every loss: logits ``[B, C, *]`` with class indices ``[B, *]`` (``mode="multiclass"``), or one
logit ``[B, 1, *]`` / ``[B, *]`` with 0 / 1 labels (``mode="binary"``, seen as the two-class softmax
``[1 - p, p]``); ``*`` is 0 (classification) to 3 spatial dims. ``ignore_index`` positions count nowhere,
``weight`` is per class on the cross-entropy term (PyTorch's weighted mean with ``reduction="mean"``).

Reductions: the pixel-wise losses (FLSD, MbLS, SVLS, NACL) average over the counted positions (``"none"``:
per position ``[B, *]``). MDCA and DCA add a statistic of the whole batch: ``"mean"`` is the mean
cross-entropy plus ``beta`` times the penalty, ``"sum"`` the summed cross-entropy plus it, and ``"none"``
each position's cross-entropy plus an equal share of it (so that ``"none"`` sums to ``"sum"``). With
``distributed=True`` every mean and batch statistic runs over every rank's positions (sums and counts
all-reduced, differentiably).

Plain PyTorch operations (no fused op): device-generic, ``torch.compile(fullgraph=True)``, second derivatives.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._distributed import all_reduce_sums, require_process_group
from .._validation import check_choice, check_class_vector, check_mode, check_number, check_reduction
from ..ops.reference import focal_modulated_log
from ._common import fp32_island
from ._region import prepare_segmentation

MODES = ("binary", "multiclass")


class _Options:
    """The options every loss of this module takes, checked once."""

    def __init__(self, owner: str, *, mode: str = "multiclass", weight: Any = None, ignore_index: int | None = -100,
                 reduction: str = "mean", distributed: bool = False) -> None:
        self.owner = owner
        self.mode = check_choice(check_mode(mode), "mode", MODES)
        self.weight = None if weight is None else check_class_vector(weight, "weight", None, low=0.0)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        self.distributed = bool(distributed)


def _prepared(input: torch.Tensor, target: torch.Tensor, o: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_softmax [B, C, *], labels [B, *], counted [B, *] float)``, checked, in fp32 or wider."""
    if o.distributed:
        require_process_group(o.owner)
    x, t, valid, _ = prepare_segmentation(input, target, o.mode, from_logits=True, ignore_index=o.ignore_index,
                                          binary_as_two_classes=True)
    counted = torch.ones_like(t, dtype=x.dtype) if valid is None else valid.reshape(t.shape).to(x.dtype)
    return torch.log_softmax(x, 1), t, counted


def _class_weight(o: Any, t: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor | None:
    if o.weight is None:
        return None
    if o.weight.numel() != n_classes:
        raise ValueError(f"`weight` must have one entry per class ({n_classes}); got {o.weight.numel()}")
    return o.weight.to(device=t.device, dtype=dtype)[t]


def _reduce(values: torch.Tensor, counted: torch.Tensor, o: Any, denominator: torch.Tensor | None = None,
            extra: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position values ``[B, *]`` -> the reduction (ignored positions count nowhere): the mean divides by
    ``denominator`` (default the counted positions); ``extra`` (a batch penalty, already global) is added once to
    "mean" and "sum" and shared equally by the counted positions of "none"."""
    values = values * counted
    count = counted.sum()
    if o.reduction == "none":
        if extra is not None:
            values = values + counted * extra / count.clamp_min(1.0)
        return values
    denominator = count if denominator is None else denominator
    total = values.sum()
    if o.distributed:
        total, denominator = all_reduce_sums(total, denominator)
    out = total if o.reduction == "sum" else total / denominator.clamp_min(torch.finfo(total.dtype).tiny)
    return out if extra is None else out + extra


def _cross_entropy(logp: torch.Tensor, t: torch.Tensor, o: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``-w_t log p_t`` per position and the class weights of the positions (None: unweighted)."""
    w = _class_weight(o, t, logp.shape[1], logp.dtype)
    ce = -logp.gather(1, t.unsqueeze(1)).squeeze(1)
    return (ce if w is None else ce * w), w


def _weighted_mean_denominator(w: torch.Tensor | None, counted: torch.Tensor) -> torch.Tensor | None:
    return None if w is None else (w * counted).sum()


def _doc_common(extra_args: str, returns: str) -> str:
    return ("""
    Args:
""" + extra_args + """        mode: ``"multiclass"`` (default) or ``"binary"`` (one logit, as the two-class softmax).
        weight: per-class weights ``[C]`` of the cross-entropy term (default None).
        ignore_index: target value whose positions count nowhere (default -100).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (module docstring).
        distributed: under ``torch.distributed``, every mean and batch statistic over every rank's positions
            (default False).

    Returns:
""" + returns + """

    Raises:
        ValueError: an option out of range (the message names it); a ``target`` of the wrong shape or labels
            outside ``[0, C - 1]`` other than ``ignore_index``; non-finite logits; a ``weight`` of the wrong length.
        TypeError: an integer ``input``, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.
""")


_PIXEL_RETURNS = """        The loss: a scalar for ``"mean"`` / ``"sum"``, the per-position losses ``[B, *]`` for
        ``"none"`` (0 at ignored positions)."""
_BATCH_RETURNS = """        The loss: a scalar for ``"mean"`` / ``"sum"``; for ``"none"`` each position's cross-entropy
        plus an equal share of the batch penalty ``[B, *]`` (it sums to ``"sum"``)."""


class _CalibratingLoss(nn.Module):
    """Stores the checked options (``weight`` as a buffer) and hands them to the loss's function."""

    def __init__(self, *, mode: str = "multiclass", weight: Any = None, ignore_index: int | None = -100,
                 reduction: str = "mean", distributed: bool = False) -> None:
        super().__init__()
        o = _Options(type(self).__name__, mode=mode, weight=weight, ignore_index=ignore_index, reduction=reduction,
                     distributed=distributed)
        self.owner, self.mode, self.ignore_index = o.owner, o.mode, o.ignore_index
        self.reduction, self.distributed = o.reduction, o.distributed
        self.weight: torch.Tensor | None
        if o.weight is not None:
            self.register_buffer("weight", o.weight)
        else:
            self.weight = None


# ------------------------------------------------------------------------------------------------ FLSD-53

def _adaptive_gamma(logp_t: torch.Tensor, thresholds: tuple[float, ...], gammas: tuple[float, ...]) -> torch.Tensor:
    """``gammas[i]`` for ``p_t`` in ``[thresholds[i - 1], thresholds[i])`` (``p_t`` detached: a schedule, not a
    function to differentiate, as the official code's ``pt.item()``)."""
    p = logp_t.detach().exp()
    gamma = torch.full_like(p, gammas[-1])
    for threshold, g in zip(reversed(thresholds), reversed(gammas[:-1]), strict=True):
        gamma = torch.where(p < threshold, g, gamma)
    return gamma


def _focal_adaptive(input: torch.Tensor, target: torch.Tensor, o: Any, thresholds: tuple[float, ...],
                    gammas: tuple[float, ...]) -> torch.Tensor:
    with fp32_island():
        logp, t, counted = _prepared(input, target, o)
        logp_t = logp.gather(1, t.unsqueeze(1)).squeeze(1)
        values = focal_modulated_log(logp_t, _adaptive_gamma(logp_t, thresholds, gammas))
        w = _class_weight(o, t, logp.shape[1], logp.dtype)
        if w is not None:
            values = values * w
        return _reduce(values, counted, o)


def _check_schedule(thresholds: Any, gammas: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    thresholds = tuple(check_number(v, "thresholds", low=0.0, high=1.0) for v in thresholds)
    gammas = tuple(check_number(v, "gammas", low=0.0) for v in gammas)
    if len(gammas) != len(thresholds) + 1:
        raise ValueError(f"`gammas` needs one more entry than `thresholds`; got {len(gammas)} and {len(thresholds)}")
    if list(thresholds) != sorted(thresholds):
        raise ValueError(f"`thresholds` must be increasing; got {list(thresholds)}")
    return thresholds, gammas


def focal_loss_adaptive(input: torch.Tensor, target: torch.Tensor, *, thresholds: Any = (0.2,),
                        gammas: Any = (5.0, 3.0), **options: Any) -> torch.Tensor:
    return _focal_adaptive(input, target, _Options("focal_loss_adaptive", **options), *_check_schedule(thresholds,
                                                                                                        gammas))


_FLSD_ARGS = """        thresholds: increasing ``p_t`` thresholds (default ``(0.2,)``).
        gammas: one more gamma than thresholds, low ``p_t`` first (default ``(5.0, 3.0)``: FLSD-53).
"""


class FocalLossAdaptive(_CalibratingLoss):
    __doc__ = r"""Sample-dependent focal loss, FLSD-53 (Mukhoti et al., "Calibrating Deep Neural Networks using Focal
    Loss", NeurIPS 2020): ``-(1 - p_t)^gamma_t log p_t`` with ``gamma_t = 5`` where ``p_t < 0.2`` and 3 elsewhere.

    Focal loss calibrates by penalising over-confidence; a fixed gamma under-trains confident-but-right samples,
    so FLSD raises gamma only for the hard ones. ``gamma_t`` reads ``p_t`` without gradient (the official code's
    ``pt.item()``); the official code also sums over the batch, here ``reduction="mean"`` averages.
""" + _doc_common(_FLSD_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> x, t = torch.tensor([[0.0, 0.0], [4.0, 0.0]]), torch.tensor([0, 0])  # p_t = 0.5 and 0.982
        >>> FocalLossAdaptive(reduction="none")(x, t)  # gamma 3 for both: (1 - p_t)^3 (-log p_t)
        tensor([8.6643e-02, 1.0561e-07])
"""

    def __init__(self, *, thresholds: Any = (0.2,), gammas: Any = (5.0, 3.0), **options: Any) -> None:
        super().__init__(**options)
        self.thresholds, self.gammas = _check_schedule(thresholds, gammas)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _focal_adaptive(input, target, self, self.thresholds, self.gammas)


focal_loss_adaptive.__doc__ = ("FLSD-53, ``-(1 - p_t)^gamma_t log p_t``: the functional form of "
                               ":class:`FocalLossAdaptive` (same options; no module is built)."
                               + _doc_common("""        input: logits ``[B, C, *]`` (binary: ``[B, 1, *]``).
        target: class indices ``[B, *]`` (binary: 0 / 1).
""" + _FLSD_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> focal_loss_adaptive(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))  # 0.5^3 log 2
        tensor(0.0866)
""")


# ------------------------------------------------------------------------------------------------ MDCA, DCA

def _batch_means(sums: list[torch.Tensor], count: torch.Tensor, distributed: bool) -> list[torch.Tensor]:
    if distributed:
        *sums, count = all_reduce_sums(*sums, count)
    return [s / count.clamp_min(1.0) for s in sums]


def _with_penalty(input: torch.Tensor, target: torch.Tensor, o: Any, beta: float, penalty: str,
                  gamma: float = 0.0) -> torch.Tensor:
    with fp32_island():
        logp, t, counted = _prepared(input, target, o)
        base, w = _cross_entropy(logp, t, o)
        if gamma > 0:  # the focal variant of MDCA's classification term
            logp_t = logp.gather(1, t.unsqueeze(1)).squeeze(1)
            base = focal_modulated_log(logp_t, gamma) * (1.0 if w is None else w)
        p = logp.exp()
        c = counted.unsqueeze(1)
        count = counted.sum()
        if penalty == "mdca":  # (1 / K) sum_k |mean_i p_ik - mean_i y_ik|
            onehot = F.one_hot(t, p.shape[1]).movedim(-1, 1).to(p.dtype)
            dims = [0, *range(2, p.ndim)]
            conf, freq = _batch_means([(p * c).sum(dims), (onehot * c).sum(dims)], count, o.distributed)
            gap = (conf - freq).abs().mean()
        else:  # DCA: |mean_i max_k p_ik - mean_i 1[argmax = y]|
            top = p.max(1)
            correct = (top.indices == t).to(p.dtype)
            conf, acc = _batch_means([(top.values * counted).sum(), (correct * counted).sum()], count, o.distributed)
            gap = (conf - acc).abs()
        return _reduce(base, counted, o, _weighted_mean_denominator(w, counted), extra=beta * gap)


def mdca_loss(input: torch.Tensor, target: torch.Tensor, *, beta: float = 1.0, gamma: float = 0.0,
              **options: Any) -> torch.Tensor:
    o = _Options("mdca_loss", **options)
    return _with_penalty(input, target, o, check_number(beta, "beta", low=0.0), "mdca",
                         check_number(gamma, "gamma", low=0.0))


def dca_loss(input: torch.Tensor, target: torch.Tensor, *, beta: float = 5.0, **options: Any) -> torch.Tensor:
    return _with_penalty(input, target, _Options("dca_loss", **options), check_number(beta, "beta", low=0.0), "dca")


_MDCA_ARGS = """        beta: weight of the penalty (default 1.0, the official code's).
        gamma: focusing parameter of the classification term (default 0: cross-entropy; the official code's
            ``FL+MDCA`` uses e.g. 1 or 2).
"""
_DCA_ARGS = """        beta: weight of the penalty (default 5.0, the official code's).
"""


class MDCALoss(_CalibratingLoss):
    __doc__ = r"""Multi-class difference of confidence and accuracy (Hebbalaguppe et al., "A Stitch in Time Saves
    Nine: A Train-Time Regularizing Loss for Improved Neural Network Calibration", CVPR 2022):

    .. math:: \mathcal{L} = \mathrm{CE} + \beta\, \frac{1}{K} \sum_k \Big|\frac{1}{N} \sum_i p_{ik} -
        \frac{1}{N} \sum_i y_{ik}\Big|

    over the batch's counted samples (or pixels): each class's mean predicted probability pulled towards its
    frequency. A statistic of the batch: large batches estimate it best (``distributed=True`` takes it over
    every rank's).
""" + _doc_common(_MDCA_ARGS, _BATCH_RETURNS) + """
    Examples:
        >>> x, t = torch.zeros(4, 2), torch.tensor([0, 0, 0, 1])  # p = 1/2 for both classes; frequencies 3/4, 1/4
        >>> MDCALoss()(x, t)  # log 2 + (|1/2 - 3/4| + |1/2 - 1/4|) / 2
        tensor(0.9431)
"""

    def __init__(self, *, beta: float = 1.0, gamma: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.beta = check_number(beta, "beta", low=0.0)
        self.gamma = check_number(gamma, "gamma", low=0.0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _with_penalty(input, target, self, self.beta, "mdca", self.gamma)


class DCALoss(_CalibratingLoss):
    __doc__ = r"""Cross-entropy plus the difference between confidence and accuracy (Liang et al., "Improved Trainable
    Calibration Method for Neural Networks on Medical Imaging Classification", BMVC 2020):

    .. math:: \mathcal{L} = \mathrm{CE} + \beta\, \Big|\frac{1}{N} \sum_i \max_k p_{ik} -
        \frac{1}{N} \sum_i 1[\arg\max_k p_{ik} = y_i]\Big|

    over the batch's counted samples (or pixels). The accuracy has no gradient: the penalty moves the mean
    confidence towards it.
""" + _doc_common(_DCA_ARGS, _BATCH_RETURNS) + """
    Examples:
        >>> x, t = torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1])  # confidence 0.881, accuracy 1/2
        >>> DCALoss(beta=1.0)(x, t)  # (0.12693 + 2.12693) / 2 + |0.88080 - 0.5|
        tensor(1.5077)
"""

    def __init__(self, *, beta: float = 5.0, **options: Any) -> None:
        super().__init__(**options)
        self.beta = check_number(beta, "beta", low=0.0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _with_penalty(input, target, self, self.beta, "dca")


mdca_loss.__doc__ = ("MDCA: cross-entropy (or focal) plus ``beta`` times the batch's mean gap between class "
                     "confidence and frequency; the functional form of :class:`MDCALoss`." + _doc_common(
                         """        input: logits ``[B, C, *]``.
        target: class indices ``[B, *]``.
""" + _MDCA_ARGS, _BATCH_RETURNS) + """
    Examples:
        >>> mdca_loss(torch.zeros(4, 2), torch.tensor([0, 0, 0, 1]))  # log 2 + 1/4
        tensor(0.9431)
""")
dca_loss.__doc__ = ("DCA: cross-entropy plus ``beta`` times the batch's gap between mean confidence and accuracy; "
                    "the functional form of :class:`DCALoss`." + _doc_common(
                        """        input: logits ``[B, C, *]``.
        target: class indices ``[B, *]``.
""" + _DCA_ARGS, _BATCH_RETURNS) + """
    Examples:
        >>> dca_loss(torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1]), beta=1.0)
        tensor(1.5077)
""")


# ------------------------------------------------------------------------------------------------ MbLS

def _margin_label_smoothing(input: torch.Tensor, target: torch.Tensor, o: Any, margin: float,
                            lambda_: float) -> torch.Tensor:
    with fp32_island():
        if o.distributed:
            require_process_group(o.owner)
        x, t, valid, _ = prepare_segmentation(input, target, o.mode, from_logits=True, ignore_index=o.ignore_index,
                                              binary_as_two_classes=True)
        counted = torch.ones_like(t, dtype=x.dtype) if valid is None else valid.reshape(t.shape).to(x.dtype)
        logp = torch.log_softmax(x, 1)
        ce, w = _cross_entropy(logp, t, o)
        # the official code: relu(max_j z_j - z_k - margin), averaged over the classes (and the positions)
        hinge = F.relu(x.amax(1, keepdim=True) - x - margin).mean(1)
        if w is None:
            return _reduce(ce + lambda_ * hinge, counted, o)
        # weighted: the cross-entropy's weighted mean plus the hinge's plain mean, as two means
        mean_ce = _reduce(ce, counted, o, _weighted_mean_denominator(w, counted))
        if o.reduction == "none":
            return mean_ce + lambda_ * hinge * counted
        return mean_ce + lambda_ * _reduce(hinge, counted, o)


def margin_label_smoothing_loss(input: torch.Tensor, target: torch.Tensor, *, margin: float = 10.0,
                                lambda_: float = 0.1, **options: Any) -> torch.Tensor:
    o = _Options("margin_label_smoothing_loss", **options)
    return _margin_label_smoothing(input, target, o, check_number(margin, "margin", low=0.0),
                                   check_number(lambda_, "lambda_", low=0.0))


_MBLS_ARGS = """        margin: logit distances up to this are free (default 10).
        lambda_: weight of the hinge (default 0.1).
"""


class MarginLabelSmoothingLoss(_CalibratingLoss):
    __doc__ = r"""Margin-based label smoothing, MbLS (Liu et al., "The Devil is in the Margin: Margin-based Label
    Smoothing for Network Calibration", CVPR 2022):

    .. math:: \mathcal{L} = \mathrm{CE} + \lambda\, \frac{1}{K} \sum_k \max\big(0, \max_j z_j - z_k - m\big)

    per sample or pixel: label smoothing penalises every logit distance, MbLS only those beyond the margin
    ``m``. The paper writes the sum over classes; its official code (and its default ``lambda_ = 0.1``) averages
    them, as here. The official code drops ``ignore_index`` pixels only for a non-negative index; here they count
    nowhere whatever the index.
""" + _doc_common(_MBLS_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> x, t = torch.tensor([[14.0, 0.0, 2.0]]), torch.tensor([0])  # distances 0, 14, 12: beyond 10 by 4 and 2
        >>> round(MarginLabelSmoothingLoss()(x, t).item(), 4)  # CE 1e-5 + 0.1 (0 + 4 + 2) / 3
        0.2
"""

    def __init__(self, *, margin: float = 10.0, lambda_: float = 0.1, **options: Any) -> None:
        super().__init__(**options)
        self.margin = check_number(margin, "margin", low=0.0)
        self.lambda_ = check_number(lambda_, "lambda_", low=0.0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _margin_label_smoothing(input, target, self, self.margin, self.lambda_)


margin_label_smoothing_loss.__doc__ = (
    "MbLS, ``CE + lambda_ mean_k max(0, max_j z_j - z_k - margin)``: the functional form of "
    ":class:`MarginLabelSmoothingLoss`." + _doc_common("""        input: logits ``[B, C, *]``.
        target: class indices ``[B, *]``.
""" + _MBLS_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> round(margin_label_smoothing_loss(torch.tensor([[14.0, 0.0, 2.0]]), torch.tensor([0])).item(), 4)
        0.2
""")


# ------------------------------------------------------------------------------------------------ SVLS, NACL

def _neighbourhood_offsets(spatial: int) -> list[tuple[int, ...]]:
    return list(itertools.product((-1, 0, 1), repeat=spatial))


def _svls_kernel(spatial: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """SVLS's kernel over the 3^d neighbourhood: the centre 1/2, the neighbours a Gaussian of their distance
    normalised to 1/2 (the official code's: the Gaussian's centre replaced by its neighbours' sum, then
    normalised), so a uniform region keeps its one-hot label."""
    offsets = torch.tensor(_neighbourhood_offsets(spatial), dtype=dtype, device=device)
    g = torch.exp(-(offsets**2).sum(1) / (2.0 * sigma**2))
    centre = (offsets == 0).all(1)
    neighbours = torch.where(centre, 0.0, g)
    kernel = torch.where(centre, 0.5, 0.5 * neighbours / neighbours.sum())
    return kernel.reshape((3,) * spatial)


def _filter(values: torch.Tensor, kernel: torch.Tensor, padding: str) -> torch.Tensor:
    """Each channel of ``[B, C, *]`` filtered by the 3^d ``kernel`` (``padding``: "replicate" or "zeros")."""
    spatial = values.ndim - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    c = values.shape[1]
    weight = kernel.expand(c, 1, *kernel.shape).to(values.dtype)
    if padding == "replicate":
        return conv(F.pad(values, (1, 1) * spatial, mode="replicate"), weight, groups=c)
    return conv(values, weight, padding=1, groups=c)


def _spatial_inputs(input: torch.Tensor, target: torch.Tensor, o: Any
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits, labels, one-hot labels with ignored positions zeroed, counted [B, 1, *], counted [B, *])``."""
    if o.distributed:
        require_process_group(o.owner)
    x, t, valid, _ = prepare_segmentation(input, target, o.mode, from_logits=True, ignore_index=o.ignore_index,
                                          binary_as_two_classes=True)
    if x.ndim < 3 or x.ndim > 5:
        raise ValueError(f"{o.owner} needs images: `input` [B, C, H, W] or [B, C, D, H, W] (1 to 3 spatial dims); "
                         f"got {list(input.shape)}")
    counted = torch.ones_like(t, dtype=x.dtype) if valid is None else valid.reshape(t.shape).to(x.dtype)
    onehot = F.one_hot(t, x.shape[1]).movedim(-1, 1).to(x.dtype) * counted.unsqueeze(1)
    return x, t, onehot, counted.unsqueeze(1), counted


def _svls(input: torch.Tensor, target: torch.Tensor, o: Any, sigma: float) -> torch.Tensor:
    with fp32_island():
        x, _, onehot, c1, counted = _spatial_inputs(input, target, o)
        kernel = _svls_kernel(x.ndim - 2, sigma, x.dtype, x.device)
        # neighbours that are ignored (or outside, by replication) do not dilute the target: renormalised
        smoothed = _filter(onehot, kernel, "replicate") / _filter(c1, kernel, "replicate").clamp_min(1e-12)
        logp = torch.log_softmax(x, 1)
        w = 1.0 if o.weight is None else _check_weight(o, x.shape[1]).view(1, -1, *([1] * (x.ndim - 2)))
        values = -(w * smoothed * logp).sum(1)
        return _reduce(values, counted, o)


def _check_weight(o: Any, n_classes: int) -> torch.Tensor:
    if o.weight.numel() != n_classes:
        raise ValueError(f"`weight` must have one entry per class ({n_classes}); got {o.weight.numel()}")
    return o.weight


def spatially_varying_label_smoothing_loss(input: torch.Tensor, target: torch.Tensor, *, sigma: float = 1.0,
                                           **options: Any) -> torch.Tensor:
    o = _Options("spatially_varying_label_smoothing_loss", **options)
    return _svls(input, target, o, check_number(sigma, "sigma", low=0.0, low_inclusive=False))


_SVLS_ARGS = """        sigma: the Gaussian's standard deviation over the neighbourhood, in pixels (default 1).
"""


class SpatiallyVaryingLabelSmoothingLoss(_CalibratingLoss):
    __doc__ = r"""Spatially varying label smoothing, SVLS (Islam & Glocker, "Spatially Varying Label Smoothing:
    Capturing Uncertainty from Expert Annotations", IPMI 2021), 2-D and 3-D:

    .. math:: \mathcal{L} = -\sum_c \tilde y_c \log p_c,\qquad \tilde y = K * y

    with ``K`` the official code's kernel over the 3x3 (3x3x3) neighbourhood: the centre ``1/2`` and the
    neighbours a Gaussian of their distance (``sigma``) summing to ``1/2``; borders replicated. Inside a uniform
    region the target stays one-hot; at a boundary it mixes the classes around, where annotators disagree.
    Ignored neighbours do not dilute a pixel's target (the kernel is renormalised over the counted ones).
""" + _doc_common(_SVLS_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> x, t = torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long)
        >>> t[0, :, 2] = 1                                  # the right column is class 1
        >>> loss = SpatiallyVaryingLabelSmoothingLoss(reduction="none")
        >>> bool(torch.allclose(loss(x, t), torch.full((1, 3, 3), 0.693147)))  # p = 1/2: log 2 for any target
        True
"""

    def __init__(self, *, sigma: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.sigma = check_number(sigma, "sigma", low=0.0, low_inclusive=False)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _svls(input, target, self, self.sigma)


spatially_varying_label_smoothing_loss.__doc__ = (
    "SVLS, the cross-entropy against the one-hot mask smoothed over each pixel's neighbourhood: the functional "
    "form of :class:`SpatiallyVaryingLabelSmoothingLoss`." + _doc_common("""        input: logits ``[B, C, *]``.
        target: class indices ``[B, *]``.
""" + _SVLS_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> x, t = torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
        >>> spatially_varying_label_smoothing_loss(x, t)  # p = 1/2 everywhere
        tensor(0.6931)
""")


def _nacl(input: torch.Tensor, target: torch.Tensor, o: Any, lambda_: float, kernel_size: int) -> torch.Tensor:
    with fp32_island():
        x, t, onehot, c1, counted = _spatial_inputs(input, target, o)
        spatial = x.ndim - 2
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
        pad = kernel_size // 2

        def window_mean(v: torch.Tensor) -> torch.Tensor:  # the k^d mean, borders replicated (the official code's)
            return pool(F.pad(v, (pad, pad) * spatial, mode="replicate"), kernel_size, 1)

        # each label's share of the counted pixels of the window; ignored pixels dilute nothing
        shares = window_mean(onehot) / window_mean(c1).clamp_min(1e-12)
        logp = torch.log_softmax(x, 1)
        ce, w = _cross_entropy(logp, t, o)
        penalty = (shares - x).abs().mean(1)  # on the logits, as the paper's constraint and its code
        if w is None:
            return _reduce(ce + lambda_ * penalty, counted, o)
        mean_ce = _reduce(ce, counted, o, _weighted_mean_denominator(w, counted))
        if o.reduction == "none":
            return mean_ce + lambda_ * penalty * counted
        return mean_ce + lambda_ * _reduce(penalty, counted, o)


def _check_kernel(kernel_size: Any) -> int:
    k = int(check_number(kernel_size, "kernel_size", low=1.0))
    if k % 2 == 0 or k != kernel_size:
        raise ValueError(f"`kernel_size` must be an odd integer; got {kernel_size!r}")
    return k


def neighbor_aware_calibration_loss(input: torch.Tensor, target: torch.Tensor, *, lambda_: float = 0.1,
                                    kernel_size: int = 3, **options: Any) -> torch.Tensor:
    o = _Options("neighbor_aware_calibration_loss", **options)
    return _nacl(input, target, o, check_number(lambda_, "lambda_", low=0.0), _check_kernel(kernel_size))


_NACL_ARGS = """        lambda_: weight of the penalty (default 0.1, the official code's).
        kernel_size: odd width of the neighbourhood (default 3).
"""


class NeighborAwareCalibrationLoss(_CalibratingLoss):
    __doc__ = r"""Neighbor-aware calibration, NACL (Murugesan et al., "Trust your Neighbours: Penalty-based
    Constraints for Model Calibration", MICCAI 2023), 2-D and 3-D:

    .. math:: \mathcal{L} = \mathrm{CE} + \lambda\, \frac{1}{K} \sum_c \big|\tau_c - z_c\big|

    per pixel, ``z`` the logits and ``tau_c`` the share of class ``c`` among the labels of the pixel's ``k^d``
    neighbourhood (borders replicated, as the official code and MONAI's ``NACLLoss``): the logits are held near
    the neighbourhood's label proportions (1 inside a uniform region, mixed at boundaries), a linear penalty
    that, like MbLS's margin, keeps them from growing without end. Ignored pixels count nowhere and do not
    dilute their neighbours' shares.
""" + _doc_common(_NACL_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> x, t = torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long)  # logits 0, a uniform region
        >>> NeighborAwareCalibrationLoss()(x, t)  # log 2 + 0.1 (|1 - 0| + |0 - 0|) / 2
        tensor(0.7431)
"""

    def __init__(self, *, lambda_: float = 0.1, kernel_size: int = 3, **options: Any) -> None:
        super().__init__(**options)
        self.lambda_ = check_number(lambda_, "lambda_", low=0.0)
        self.kernel_size = _check_kernel(kernel_size)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _nacl(input, target, self, self.lambda_, self.kernel_size)


neighbor_aware_calibration_loss.__doc__ = (
    "NACL, the cross-entropy plus a pull of each pixel's logits towards its neighbourhood's label shares: the "
    "functional form of :class:`NeighborAwareCalibrationLoss`." + _doc_common("""        input: logits ``[B, C, *]``.
        target: class indices ``[B, *]``.
""" + _NACL_ARGS, _PIXEL_RETURNS) + """
    Examples:
        >>> neighbor_aware_calibration_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long))
        tensor(0.7431)
""")

__all__ = [
    "DCALoss",
    "FocalLossAdaptive",
    "MDCALoss",
    "MarginLabelSmoothingLoss",
    "NeighborAwareCalibrationLoss",
    "SpatiallyVaryingLabelSmoothingLoss",
    "dca_loss",
    "focal_loss_adaptive",
    "margin_label_smoothing_loss",
    "mdca_loss",
    "neighbor_aware_calibration_loss",
    "spatially_varying_label_smoothing_loss",
]

