"""Ordinal regression losses: the cumulative link model with ordered cutpoints, the class-distance
weighted cross-entropy, the squared earth mover's distance, and CORN."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._distributed import distributed_flag, require_process_group
from .._validation import (
    check_choice,
    check_class_indices,
    check_class_vector,
    check_finite,
    check_float_tensor,
    check_int,
    check_number,
    check_reduction,
    fmt_shape,
    value_checks_active,
)
from ..ops.reference import log1mexp
from ..ops.switch import resolve as resolve_implementation
from ._common import fp32_island, upcast
from .focal import _finish_reduction

LINKS = ("logit", "probit", "cloglog")
#: smallest gap between learned cutpoints: keeps them strictly ordered whatever the optimizer does
MIN_GAP = 1e-4
#: cloglog's exp(x) is continued linearly above this, so its NLL stays finite (see CumulativeLinkLoss)
_CLOGLOG_EXP_CAP = 50.0


class _LogNdtr(torch.autograd.Function):
    """``log Phi(x)`` with the derivative ``phi(x) / Phi(x) = sqrt(2/pi) / erfcx(-x / sqrt 2)``:
    torch's own backward loses all precision in the far lower tail in fp32."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.special.log_ndtr(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (math.sqrt(2.0 / math.pi) / torch.special.erfcx(-x / math.sqrt(2.0)))


def _log_ndtr(x: torch.Tensor) -> torch.Tensor:
    """Log of the standard normal CDF, with a gradient that is accurate in both tails."""
    return _LogNdtr.apply(x)


def _capped_exp(x: torch.Tensor) -> torch.Tensor:
    cap = _CLOGLOG_EXP_CAP
    return torch.where(x < cap, torch.exp(x.clamp(max=cap)), math.exp(cap) * (1.0 + (x - cap)))


def _log_interval_probability(
    a: torch.Tensor,
    b: torch.Tensor,
    lower_open: torch.Tensor,
    upper_open: torch.Tensor,
    link: str,
    width: torch.Tensor | None = None,
) -> torch.Tensor:
    """``log(F(b) - F(a))`` for the link's CDF ``F``, in log space.

    ``lower_open`` marks intervals with ``a = -inf`` (the first class) and ``upper_open`` those with
    ``b = +inf`` (the last); their ``a`` / ``b`` entries must be finite placeholders, so that no
    branch of the ``where`` below carries an infinity into the gradient. ``width`` (``b - a``, if
    known exactly, e.g. from learned increments) avoids recomputing it from rounded positions.
    """
    tiny = torch.finfo(a.dtype).tiny
    if link == "logit":
        # sigmoid(b) - sigmoid(a) = sigmoid(b) sigmoid(-a) (1 - exp(a - b))
        neg_width = torch.clamp(a - b if width is None else -width, max=-tiny)
        lb = torch.where(upper_open, 0.0, F.logsigmoid(b))
        la = torch.where(lower_open, 0.0, F.logsigmoid(-a))
        gap = torch.where(lower_open | upper_open, 0.0, log1mexp(neg_width))
        return lb + la + gap
    if link == "probit":
        # mass in the upper tail is computed by symmetry, Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
        upper_tail = (a + b) > 0
        hi = torch.where(upper_tail, -a, b)
        lo = torch.where(upper_tail, -b, a)
        l_hi, l_lo = _log_ndtr(hi), _log_ndtr(lo)
        middle = l_hi + log1mexp(torch.clamp(l_lo - l_hi, max=-tiny))
        first = _log_ndtr(b)
        last = _log_ndtr(-a)
        return torch.where(lower_open, first, torch.where(upper_open, last, middle))
    # cloglog: F(x) = 1 - exp(-exp(x)), 1 - F(x) = exp(-exp(x)). Deep in the lower tail
    # (b < -15) F(x) ~ exp(x) - exp(2x)/2, used there so nothing underflows.
    tail = b < -15.0
    ea = _capped_exp(torch.where(tail, -30.0, a))
    eb = _capped_exp(torch.where(tail, -20.0, b))
    first = torch.where(tail, b - 0.5 * torch.exp(b.clamp(max=-15.0)), log1mexp(-eb))
    middle = torch.where(
        tail,
        b + log1mexp(torch.clamp(a - b if width is None else -width, max=-tiny)),
        -ea + log1mexp(torch.clamp(ea - eb, max=-tiny)),
    )
    last = -_capped_exp(a)
    return torch.where(lower_open, first, torch.where(upper_open, last, middle))


def _scores_1d(input: torch.Tensor) -> torch.Tensor:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"`input` must be a torch.Tensor of scores, got {type(input).__name__}")
    check_float_tensor(input, "input")
    if input.ndim == 2 and input.shape[1] == 1:
        input = input[:, 0]
    if input.ndim != 1:
        raise ValueError(
            f"`input` must hold one score per sample, shape [B] or [B, 1]; got {fmt_shape(input.shape)}. "
            "A cumulative link model needs a single output unit (not one logit per class)."
        )
    if input.numel() == 0:
        raise ValueError("`input` is empty (no samples)")
    return input


def _targets(target: torch.Tensor, batch: int, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"`target` must be a torch.Tensor, got {type(target).__name__}")
    if target.ndim == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.ndim != 1 or target.shape[0] != batch:
        raise ValueError(f"`target` must be [B] grades with B = {batch}; got {fmt_shape(target.shape)}")
    check_class_indices(target, "target", num_classes, ignore_index)
    return target


def _fixed_cutpoints(num_classes: int, scale: float) -> torch.Tensor:
    """The K - 1 cutpoints evenly spaced over ``[-scale/2, scale/2]`` (one at 0 when K = 2)."""
    return torch.linspace(-scale / 2, scale / 2, num_classes - 1) if num_classes > 2 else torch.zeros(1)


def _padded_cutpoints(c: torch.Tensor, inner_widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cutpoints with finite placeholders for -inf / +inf (``[K + 1]``; the open ends are masked in
    :func:`_log_interval_probability`) and each class's interval width (``[K]``)."""
    one = c.new_ones(1)
    return torch.cat([c[:1] - 1.0, c, c[-1:] + 1.0]), torch.cat([one, inner_widths, one])


def _cumulative_link_nll(f: torch.Tensor, c: torch.Tensor, width: torch.Tensor, yi: torch.Tensor, link: str,
                         num_classes: int) -> torch.Tensor:
    """Per-sample NLL of scores ``f`` at grades ``yi`` with padded cutpoints ``c`` and widths."""
    if link == "logit":
        inf = c.new_full((1,), math.inf)
        c_ext = torch.cat([-inf, c[1:-1], inf])
        log_width = torch.cat([c.new_zeros(1), log1mexp(-width[1:-1]), c.new_zeros(1)])
        if resolve_implementation(f) == "triton":
            from ..ops.triton_logit_link import logit_link_nll_triton

            return logit_link_nll_triton(f, c_ext, log_width, yi)[0].to(f.dtype)
        return torch.ops.medloss.logit_link_nll(f, c_ext, log_width, yi)[0]
    # gather, not c[yi]: its backward into the K + 1 cutpoints is ~10x faster on CPU
    a = c.gather(0, yi) - f
    b = c.gather(0, yi + 1) - f
    w = width.gather(0, yi)
    return -_log_interval_probability(a, b, yi == 0, yi == num_classes - 1, link, w)


def _cumulative_link(input: torch.Tensor, target: torch.Tensor, num_classes: int, cutpoints: torch.Tensor,
                     inner_widths: torch.Tensor | None, link: str, weight: torch.Tensor | None,
                     ignore_index: int | None, reduction: str, distributed: bool) -> torch.Tensor:
    f = _scores_1d(input)
    check_finite(f.detach(), "input")
    yi, valid = _counted_targets(target, f.shape[0], num_classes, ignore_index)
    f = upcast(f)
    with fp32_island():
        c = cutpoints.to(device=f.device, dtype=f.dtype)
        inner = c[1:] - c[:-1] if inner_widths is None else inner_widths.to(f.dtype)
        nll = _cumulative_link_nll(f, *_padded_cutpoints(c, inner), yi, link, num_classes)
    weights = None if weight is None else weight.to(nll.dtype)[yi]
    return _reduce(nll, reduction, valid, weights, distributed)


def _check_cutpoints(cutpoints: torch.Tensor, num_classes: int) -> torch.Tensor:
    if not isinstance(cutpoints, torch.Tensor) or not torch.is_floating_point(cutpoints):
        raise TypeError("`cutpoints` must be a floating-point tensor of K - 1 increasing values")
    if cutpoints.shape != (num_classes - 1,):
        raise ValueError(f"`cutpoints` must have shape [K - 1] = [{num_classes - 1}]; got {fmt_shape(cutpoints.shape)}")
    if value_checks_active(cutpoints):
        check_finite(cutpoints.detach(), "cutpoints")
        if num_classes > 2 and not bool((cutpoints[1:] > cutpoints[:-1]).all()):
            raise ValueError("`cutpoints` must be strictly increasing")
    return cutpoints


def cumulative_link_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    *,
    cutpoints: torch.Tensor | None = None,
    link: str = "logit",
    scale: float = 20.0,
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
    reduction: str = "mean",
    distributed: bool = False,
) -> torch.Tensor:
    r"""Negative log-likelihood of the cumulative link model, ``-log(F(c_y - f) - F(c_{y-1} - f))``.

    The functional form of :class:`CumulativeLinkLoss` (no module is built): the cutpoints are given
    (``cutpoints``, differentiable, e.g. a learned tensor) or fixed, evenly spaced over ``[-scale/2, scale/2]``.

    Args:
        input: one score per sample, ``[B]`` or ``[B, 1]``.
        target: grades ``[B]`` in ``0 .. K-1`` (or ``ignore_index``).
        num_classes: K >= 2.
        cutpoints: the K - 1 strictly increasing cutpoints (default None: the fixed layout).
        link: ``"logit"`` (default), ``"probit"`` or ``"cloglog"``.
        scale: width of the fixed layout (default 20.0; unused with ``cutpoints``).
        weight, ignore_index, reduction, distributed: as :class:`CumulativeLinkLoss`.

    Returns:
        The mean (or sum) NLL, or the per-sample NLL ``[B]`` with ``reduction="none"`` (0 at ignored samples).

    Raises:
        ValueError: ``num_classes`` < 2, cutpoints of the wrong shape or not increasing, scores not one per
            sample, non-finite scores, grades outside ``[0, K)``, an unknown ``link`` or ``reduction``.
        TypeError: integer scores or cutpoints.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> # K = 2, cutpoint 0, logit link: -log sigmoid(0 - f) for grade 0, -log sigmoid(f) for grade 1
        >>> cumulative_link_loss(torch.tensor([0.0, 2.0]), torch.tensor([0, 1]), 2, reduction="none")
        tensor([0.6931, 0.1269])
    """
    k = check_int(num_classes, "num_classes", low=2)
    link = check_choice(link, "link", LINKS)
    if cutpoints is None:
        cutpoints = _fixed_cutpoints(k, check_number(scale, "scale", low=0.0, low_inclusive=False))
    if weight is not None:
        weight = check_class_vector(weight, "weight", k)
    if distributed:
        require_process_group("cumulative_link_loss")
    return _cumulative_link(input, target, k, _check_cutpoints(cutpoints, k), None, link, weight, ignore_index,
                            check_reduction(reduction), bool(distributed))


class CumulativeLinkLoss(nn.Module):
    r"""Negative log-likelihood of the cumulative link (proportional odds) model.

    The network outputs one score ``f`` per sample; with ordered cutpoints
    ``c_1 < ... < c_{K-1}``, ``P(y <= k) = F(c_k - f)`` and the class probabilities are successive
    differences (McCullagh 1980). ``F`` is the link's CDF: ``"logit"`` (sigmoid; proportional
    odds), ``"probit"`` (standard normal) or ``"cloglog"`` (``1 - exp(-exp(x))``, proportional
    hazards). The log-likelihood is computed in log space, e.g. for the logit link
    ``log(sigmoid(b) - sigmoid(a)) = logsigmoid(b) + logsigmoid(-a) + log(1 - exp(a - b))``, so it
    never saturates: a confident wrong answer costs about its margin and keeps a gradient of about
    1 (spacecutter clamps probabilities at 1e-15: a loss stuck at 34.5 with zero gradient). The
    cloglog NLL grows like ``exp(margin)`` on one side; its ``exp`` is continued linearly above 50
    so the loss stays finite.

    Cutpoints: fixed, evenly spaced over ``[-scale/2, scale/2]`` (a single cutpoint at 0 when
    K = 2), or learned (``learn_cutpoints=True``) as real ``nn.Parameter`` s: the first cutpoint
    plus cumulative ``softplus`` increments (+ 1e-4), so they stay strictly ordered whatever the
    optimizer does, starting from the fixed layout. (Far from 0, two float32 cutpoints can round
    to the same value; the likelihood uses the increments themselves, so every grade keeps a
    positive probability even then.) Put the loss's parameters in your optimizer:
    ``torch.optim.Adam([*model.parameters(), *loss.parameters()])``.

    Args:
        num_classes: number of grades K >= 2.
        link: ``"logit"`` (default), ``"probit"`` or ``"cloglog"``.
        learn_cutpoints: learn the cutpoints (default False).
        scale: width of the initial / fixed cutpoint range (default 20.0).
        weight: optional per-grade weights ``[K]``; the mean is then weighted
            (``sum w_y l / sum w_y``, PyTorch's weighted-CE convention). ``class_weights`` is its
            deprecated spelling (FutureWarning).
        ignore_index: grade value to skip (default -100).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        distributed: under ``torch.distributed`` (DDP), the mean / sum over every rank's counted
            samples (default False: this rank's); see ``docs/distributed.md``.

    Returns:
        The mean (or sum) NLL over the counted samples, or the per-sample NLL ``[B]`` with ``reduction="none"``
        (0 at ignored samples).

    Raises:
        ValueError: ``num_classes`` < 2, ``scale`` <= 0, an unknown ``link`` or ``reduction``, a ``weight`` of
            the wrong length; scores not one per sample, non-finite scores, grades outside ``[0, K)`` other
            than ``ignore_index``.
        TypeError: integer scores, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> loss = CumulativeLinkLoss(num_classes=4, learn_cutpoints=True)
        >>> scores = torch.randn(8, 1, requires_grad=True)
        >>> loss(scores, torch.randint(0, 4, (8,))).backward()
        >>> loss.class_probabilities(scores).shape
        torch.Size([8, 4])
    """

    def __init__(
        self,
        num_classes: int,
        *,
        link: str = "logit",
        learn_cutpoints: bool = False,
        scale: float = 20.0,
        weight: torch.Tensor | None = None,
        ignore_index: int | None = -100,
        reduction: str = "mean",
        class_weights: torch.Tensor | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        if class_weights is not None:
            if weight is not None:
                raise ValueError(
                    "pass per-grade weights once, as `weight` (`class_weights` is its deprecated spelling)"
                )
            warnings.warn("`class_weights` is deprecated and will be removed in medloss 0.3; pass `weight`",
                          FutureWarning, stacklevel=2)
            weight = class_weights
        self.num_classes = check_int(num_classes, "num_classes", low=2)
        self.link = check_choice(link, "link", LINKS)
        self.scale = check_number(scale, "scale", low=0.0, low_inclusive=False)
        self.learn_cutpoints = bool(learn_cutpoints)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        k = self.num_classes
        initial = _fixed_cutpoints(k, self.scale)
        if self.learn_cutpoints:
            self.first_cutpoint = nn.Parameter(initial[:1].clone())
            gaps = (initial[1:] - initial[:-1]) - MIN_GAP
            # inverse softplus, so the learned layout starts exactly at the fixed one
            self.raw_gaps = nn.Parameter(gaps + torch.log(-torch.expm1(-gaps)))
        else:
            self.register_buffer("fixed_cutpoints", initial)
        if weight is not None:
            self.register_buffer("weight", check_class_vector(weight, "weight", k))
        else:
            self.weight = None

    @property
    def cutpoints(self) -> torch.Tensor:
        """The K - 1 cutpoints, strictly increasing."""
        if not self.learn_cutpoints:
            return self.fixed_cutpoints
        increments = F.softplus(self.raw_gaps) + MIN_GAP
        return torch.cat([self.first_cutpoint, self.first_cutpoint + torch.cumsum(increments, 0)])

    def _padded_cutpoints(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Cutpoints with finite placeholders for -inf / +inf (``[K + 1]``; the open ends are
        masked in _log_interval_probability) and each class's interval width (``[K]``).

        Learned widths come from the increments themselves, so a class keeps a positive
        probability even when two cutpoints far from 0 round to the same float.
        """
        c = self.cutpoints.to(dtype)
        return _padded_cutpoints(c, self._inner_widths(dtype))

    def _inner_widths(self, dtype: torch.dtype) -> torch.Tensor:
        if self.learn_cutpoints:
            return (F.softplus(self.raw_gaps) + MIN_GAP).to(dtype)
        c = self.cutpoints.to(dtype)
        return c[1:] - c[:-1]

    def log_class_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """``log P(y = k)`` for every grade, ``[B, K]``."""
        f = upcast(_scores_1d(scores))
        with fp32_island():
            c, width = self._padded_cutpoints(f.dtype)
            a = c[:-1].unsqueeze(0) - f.unsqueeze(1)
            b = c[1:].unsqueeze(0) - f.unsqueeze(1)
            k = torch.arange(self.num_classes, device=f.device)
            return _log_interval_probability(a, b, k == 0, k == self.num_classes - 1, self.link, width.unsqueeze(0))

    def class_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """``P(y = k)`` for every grade, ``[B, K]``; rows sum to one."""
        return self.log_class_probabilities(scores).exp()

    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        """The most probable grade of each sample, ``[B]``."""
        with torch.no_grad():
            return self.log_class_probabilities(scores).argmax(1)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inner = (F.softplus(self.raw_gaps) + MIN_GAP) if self.learn_cutpoints else None
        return _cumulative_link(input, target, self.num_classes, self.cutpoints, inner, self.link, self.weight,
                                self.ignore_index, self.reduction, distributed_flag(self))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, link={self.link!r}, learn_cutpoints={self.learn_cutpoints}, "
                f"scale={self.scale}, reduction={self.reduction!r}")


def _class_logits(
    input: torch.Tensor, target: torch.Tensor, num_classes: int | None, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validated ``[B, K]`` logits, grades with ignored samples set to 0, and the mask of counted
    samples (None when none is ignored)."""
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("`input` and `target` must be torch.Tensors")
    check_float_tensor(input, "input")
    if input.ndim != 2:
        raise ValueError(f"`input` must be [B, K] logits, one per grade; got {fmt_shape(input.shape)}")
    if input.shape[0] == 0:
        raise ValueError("`input` is empty (no samples)")
    k = input.shape[1]
    if num_classes is not None and k != num_classes:
        raise ValueError(f"`input` has {k} columns but num_classes={num_classes}")
    if k < 2:
        raise ValueError(f"`input` needs K >= 2 grade logits; got {fmt_shape(input.shape)}")
    check_finite(input, "input")
    y, valid = _counted_targets(target, input.shape[0], k, ignore_index)
    return input, y, valid


def _counted_targets(
    target: torch.Tensor, batch: int, num_classes: int, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Grades as ``long`` with uncounted samples set to 0, and the mask of counted samples (None when
    all count).

    Eager mode has checked the labels (anything but ``ignore_index`` outside ``[0, K)`` raised) and
    skips the mask when nothing is ignored. Without value checks (``torch.compile``,
    :func:`medloss.value_checks`) the mask is always built, and a label outside ``[0, K)`` counts
    nowhere, as in the segmentation losses."""
    y = _targets(target, batch, num_classes, ignore_index).long()
    if value_checks_active(y):
        if ignore_index is None:
            return y, None
        ignored = y == ignore_index
        if not bool(ignored.any()):
            return y, None
        return y.masked_fill(ignored, 0), ~ignored
    valid = (y >= 0) & (y < num_classes)
    if ignore_index is not None:
        valid = valid & (y != ignore_index)
    return y.masked_fill(~valid, 0), valid


def _reduce(
    loss: torch.Tensor, reduction: str, valid: torch.Tensor | None = None, weights: torch.Tensor | None = None,
    distributed: bool = False,
) -> torch.Tensor:
    """Per-sample losses -> ``reduction``; ignored samples count nowhere (0 under "none"; a mean
    over no counted sample is 0, not NaN). ``weights`` (per sample, e.g. ``weight[y]``) make the
    mean ``sum w l / sum w``, PyTorch's weighted cross-entropy convention. ``distributed``: the sum
    or mean over every rank's samples (their sums and denominators all-reduced together)."""
    if valid is not None:
        weights = valid.to(loss.dtype) if weights is None else weights * valid
    if weights is not None:
        loss = loss * weights
    if reduction == "none":
        return loss
    if distributed:
        denominator = loss.new_tensor(float(loss.numel())) if weights is None else weights.sum()
        return _finish_reduction(loss.sum(), denominator, reduction, True, torch.finfo(loss.dtype).tiny)
    if reduction == "sum":
        return loss.sum()
    if weights is None:
        return loss.mean()
    return loss.sum() / weights.sum().clamp_min(torch.finfo(loss.dtype).tiny)


def _cdw_ce(input: torch.Tensor, target: torch.Tensor, num_classes: int | None, alpha: float,
            weight: torch.Tensor | None, ignore_index: int | None, reduction: str, distributed: bool) -> torch.Tensor:
    x, y, valid = _class_logits(input, target, num_classes, ignore_index)
    x = upcast(x)
    with fp32_island():
        logp = torch.log_softmax(x, 1)
        log1mp = log1mexp(logp.clamp(max=-torch.finfo(logp.dtype).tiny))
        # the top grade can have p ~ 1: use log(sum_{j != top} e^x_j) - logsumexp(x) there
        top = x.max(1, keepdim=True).indices
        others = torch.logsumexp(x.scatter(1, top, float("-inf")), 1, keepdim=True)
        log1mp = log1mp.scatter(1, top, others - torch.logsumexp(x, 1, keepdim=True))
        grades = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
        distance = (grades.unsqueeze(0) - y.unsqueeze(1).to(x.dtype)).abs().pow(alpha)
        loss = -(distance * log1mp).sum(1)
    if weight is not None and weight.numel() != x.shape[1]:
        raise ValueError(f"`weight` must have one entry per grade ({x.shape[1]}); got {weight.numel()}")
    weights = None if weight is None else weight.to(loss.dtype)[y]
    return _reduce(loss, reduction, valid, weights, distributed)


def _optional_k(num_classes: int | None) -> int | None:
    return None if num_classes is None else check_int(num_classes, "num_classes", low=2)


def _check_distributed(distributed: bool, owner: str) -> bool:
    if distributed:
        require_process_group(owner)
    return bool(distributed)


_SAMPLE_RETURNS = """
    Returns:
        The mean (or sum) over the counted samples, or the per-sample losses ``[B]`` with ``reduction="none"``
        (0 at ignored samples).

    Raises:
        ValueError: input not ``[B, K]`` or K different from ``num_classes``, non-finite logits, grades outside
            ``[0, K)`` other than ``ignore_index``, an option out of range (the message names it).
        TypeError: integer logits, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.
"""


def cdw_ce_loss(input: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *, alpha: float = 2.0,
                weight: torch.Tensor | None = None, ignore_index: int | None = -100, reduction: str = "mean",
                distributed: bool = False) -> torch.Tensor:
    k = _optional_k(num_classes)
    weight = None if weight is None else check_class_vector(weight, "weight", k, low=0.0)
    return _cdw_ce(input, target, k, check_number(alpha, "alpha", low=0.0, low_inclusive=False), weight,
                   ignore_index, check_reduction(reduction), _check_distributed(distributed, "cdw_ce_loss"))


cdw_ce_loss.__doc__ = r"""Class-distance weighted cross-entropy, ``-sum_k |k - y|^alpha log(1 - p_k)``
    (Polat et al. 2022).

    The functional form of :class:`CDWCELoss` (same options, defaults and errors; no module is built).

    Args:
        input: logits ``[B, K]``, one per grade.
        target: grades ``[B]``.
        num_classes, alpha, weight, ignore_index, reduction, distributed: as :class:`CDWCELoss`.
""" + _SAMPLE_RETURNS + """
    Examples:
        >>> x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 8.0, 1.0, 0.0], [-2.0, 5.0, 3.0, 2.0], [-4.0, 5.0, 3.0, 2.0]])
        >>> round(cdw_ce_loss(x, torch.tensor([0, 1, 2, 3]), 4, alpha=1.0).item(), 4)  # dlordinal's test: 2.37753
        2.3775
"""


class CDWCELoss(nn.Module):
    r"""Class-distance weighted cross-entropy (Polat et al., "Class Distance Weighted Cross-Entropy
    Loss for Ulcerative Colitis Severity Estimation", MIUA 2022).

    .. math:: \mathcal{L} = -\sum_{k} |k - y|^{\alpha} \log(1 - p_k)

    Every wrong grade is pushed down in proportion to its distance from the true grade raised to
    ``alpha``: predicting "severe" for "mild" costs more than "moderate". ``log(1 - p_k)`` is
    computed stably from the logits (``log(-expm1(log p_k))``, and a log-sum-exp over the other
    grades for the largest ``p_k``), so logits of any size give finite values (dlordinal's version
    returns NaN above ~88).

    Args:
        num_classes: K (optional; checked against the input's columns).
        alpha: distance exponent > 0 (default 2.0, matching the quadratic weights of QWK; the
            paper's experiments favour larger values, tune it).
        weight: optional per-grade weights ``[K]``: the mean becomes ``sum w_y l / sum w_y``
            (PyTorch's weighted cross-entropy; dlordinal divides by ``N sum_k w_k`` instead).
        ignore_index: grade value whose samples count nowhere (default -100, as PyTorch); the mean
            is over the counted samples.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        distributed: under ``torch.distributed`` (DDP), the mean / sum over every rank's counted
            samples (default False: this rank's); see ``docs/distributed.md``.

    Returns:
        The mean (or sum) over the counted samples, or the per-sample losses ``[B]`` with ``reduction="none"``
        (0 at ignored samples).

    Raises:
        ValueError: input not ``[B, K]`` or K different from ``num_classes``, non-finite logits, grades outside
            ``[0, K)`` other than ``ignore_index``, ``alpha`` <= 0, a ``weight`` of the wrong length.
        TypeError: integer logits, or an option of the wrong type.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 8.0, 1.0, 0.0], [-2.0, 5.0, 3.0, 2.0], [-4.0, 5.0, 3.0, 2.0]])
        >>> round(CDWCELoss(4, alpha=1.0)(x, torch.tensor([0, 1, 2, 3])).item(), 4)  # dlordinal's test: 2.37753
        2.3775
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        alpha: float = 2.0,
        weight: torch.Tensor | None = None,
        ignore_index: int | None = -100,
        reduction: str = "mean",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.num_classes = _optional_k(num_classes)
        self.alpha = check_number(alpha, "alpha", low=0.0, low_inclusive=False)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        self.weight: torch.Tensor | None
        if weight is not None:
            self.register_buffer("weight", check_class_vector(weight, "weight", self.num_classes, low=0.0))
        else:
            self.weight = None

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _cdw_ce(input, target, self.num_classes, self.alpha, self.weight, self.ignore_index, self.reduction,
                       distributed_flag(self))


def _squared_emd(input: torch.Tensor, target: torch.Tensor, num_classes: int | None, ignore_index: int | None,
                 reduction: str, distributed: bool) -> torch.Tensor:
    x, y, valid = _class_logits(input, target, num_classes, ignore_index)
    x = upcast(x)
    with fp32_island():
        cdf = torch.softmax(x, 1).cumsum(1)
        grades = torch.arange(x.shape[1], device=x.device)
        true_cdf = (grades.unsqueeze(0) >= y.unsqueeze(1)).to(x.dtype)
        loss = ((cdf - true_cdf) ** 2).sum(1)
    return _reduce(loss, reduction, valid, distributed=distributed)


def squared_emd_loss(input: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
                     ignore_index: int | None = -100, reduction: str = "mean", distributed: bool = False
                     ) -> torch.Tensor:
    return _squared_emd(input, target, _optional_k(num_classes), ignore_index, check_reduction(reduction),
                        _check_distributed(distributed, "squared_emd_loss"))


squared_emd_loss.__doc__ = r"""Squared earth mover's distance, ``sum_k (CDF_p(k) - CDF_y(k))^2`` (Hou et al. 2016).

    The functional form of :class:`SquaredEMDLoss` (same options, defaults and errors; no module is built).

    Args:
        input: logits ``[B, K]``, one per grade.
        target: grades ``[B]``.
        num_classes, ignore_index, reduction, distributed: as :class:`SquaredEMDLoss`.
""" + _SAMPLE_RETURNS + """
    Examples:
        >>> certain = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 20.0]])  # ~point masses at grades 0 and 2
        >>> squared_emd_loss(certain, torch.tensor([2, 2]), 3, reduction="none").round(decimals=4)  # |0 - 2|, |2 - 2|
        tensor([2., 0.])
"""


class SquaredEMDLoss(nn.Module):
    r"""Squared earth mover's distance between the predicted and true grade distributions
    (Hou et al., "Squared Earth Mover's Distance-based Loss for Training Deep Neural Networks", 2016).

    .. math:: \mathcal{L} = \sum_{k=0}^{K-1} \big(\mathrm{CDF}_p(k) - \mathrm{CDF}_y(k)\big)^2

    with ``p = softmax(input)`` and the one-hot target's CDF ``1[k >= y]``. For a point mass at
    grade ``j`` this is ``|j - y|``: the loss grows with the distance of the error.

    Args:
        num_classes: K (optional; checked against the input's columns).
        ignore_index: grade value whose samples count nowhere (default -100, as PyTorch); the mean
            is over the counted samples.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        distributed: under ``torch.distributed`` (DDP), the mean / sum over every rank's counted
            samples (default False: this rank's); see ``docs/distributed.md``.

    Returns:
        The mean (or sum) over the counted samples, or the per-sample losses ``[B]`` with ``reduction="none"``
        (0 at ignored samples).

    Raises:
        ValueError: input not ``[B, K]`` or K different from ``num_classes``, non-finite logits, grades outside
            ``[0, K)`` other than ``ignore_index``, an unknown ``reduction``.
        TypeError: integer logits.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> certain = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 20.0]])  # ~point masses at grades 0 and 2
        >>> round(SquaredEMDLoss(3)(certain, torch.tensor([2, 2])).item(), 4)  # |0 - 2| and |2 - 2|, mean
        1.0
    """

    def __init__(
        self, num_classes: int | None = None, *, ignore_index: int | None = -100, reduction: str = "mean",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.num_classes = _optional_k(num_classes)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _squared_emd(input, target, self.num_classes, self.ignore_index, self.reduction,
                            distributed_flag(self))


def _check_task_logits(input: torch.Tensor, num_classes: int, what: str) -> torch.Tensor:
    """``[B, K - 1]`` logits of the K - 1 binary tasks of CORAL / CORN (``[B]`` accepted for K = 2)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"`input` must be a torch.Tensor, got {type(input).__name__}")
    check_float_tensor(input, "input")
    if input.ndim == 1 and num_classes == 2:
        input = input.unsqueeze(1)
    if input.ndim != 2 or input.shape[1] != num_classes - 1:
        raise ValueError(f"`input` must be [B, K - 1] = [B, {num_classes - 1}] {what}; got {fmt_shape(input.shape)}")
    if input.shape[0] == 0:
        raise ValueError("`input` is empty (no samples)")
    return input


def _coral_logits(input: torch.Tensor, num_classes: int | None) -> tuple[torch.Tensor, int]:
    """The ``[B, K - 1]`` logits and K (declared, or the input's width + 1)."""
    k = num_classes
    if k is None:
        k = input.shape[1] + 1 if isinstance(input, torch.Tensor) and input.ndim == 2 and input.shape[1] else 2
    return _check_task_logits(input, k, "CORAL logits"), k


def _coral(input: torch.Tensor, target: torch.Tensor, num_classes: int | None,
           importance_weights: torch.Tensor | None, ignore_index: int | None, reduction: str, distributed: bool
           ) -> torch.Tensor:
    x, k = _coral_logits(input, num_classes)
    x = upcast(x)
    check_finite(x, "input")
    y, valid = _counted_targets(target, x.shape[0], k, ignore_index)
    with fp32_island():
        tasks = torch.arange(k - 1, device=x.device)
        levels = (y.unsqueeze(1) > tasks.unsqueeze(0)).to(x.dtype)
        bce = F.binary_cross_entropy_with_logits(x, levels, reduction="none")
        if importance_weights is not None:
            bce = bce * importance_weights.to(bce)
        loss = bce.sum(1)
    return _reduce(loss, reduction, valid, distributed=distributed)


def _coral_options(num_classes: int | None, importance_weights: Any) -> tuple[int | None, torch.Tensor | None]:
    k = _optional_k(num_classes)
    if importance_weights is None:
        return k, None
    w = check_class_vector(importance_weights, "importance_weights", None if k is None else k - 1, low=0.0)
    return w.numel() + 1, w


_TASK_RETURNS = _SAMPLE_RETURNS.replace("input not ``[B, K]`` or K different from ``num_classes``",
                                        "input not ``[B, K - 1]``")


def coral_loss(input: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
               importance_weights: torch.Tensor | None = None, ignore_index: int | None = -100,
               reduction: str = "mean", distributed: bool = False) -> torch.Tensor:
    k, w = _coral_options(num_classes, importance_weights)
    return _coral(input, target, k, w, ignore_index, check_reduction(reduction),
                  _check_distributed(distributed, "coral_loss"))


coral_loss.__doc__ = r"""CORAL loss,
    ``-sum_k lambda_k [1_{y>k} log sigmoid(z_k) + (1 - 1_{y>k}) log(1 - sigmoid(z_k))]``.

    The functional form of :class:`CORALLoss` (same options, defaults and errors; no module is built).

    Args:
        input: the K - 1 task logits ``[B, K - 1]``.
        target: grades ``[B]``.
        num_classes, importance_weights, ignore_index, reduction, distributed: as :class:`CORALLoss`.
""" + _TASK_RETURNS + """
    Examples:
        >>> logits = torch.tensor([[2.1, 1.8, -2.1, -1.8], [1.9, -1.0, -1.5, -1.3], [1.9, 1.8, 1.7, 1.6]])
        >>> coral_loss(logits, torch.tensor([2, 1, 4]), 5, reduction="none")  # coral-pytorch's test
        tensor([0.5370, 0.8951, 0.6441])
"""


class CORALLoss(nn.Module):
    r"""CORAL: consistent rank logits (Cao, Mirjalili & Raschka, "Rank consistent ordinal regression
    for neural networks with application to age estimation", Pattern Recognit. Lett. 2020).

    The network outputs K - 1 logits ``z_k`` (one shared score plus K - 1 ordered biases in the
    paper's layer) for ``P(y > k) = sigmoid(z_k)``; each is trained with binary cross-entropy
    against ``1[y > k]``, summed over the tasks:

    .. math:: \mathcal{L} = -\sum_{k=0}^{K-2} \lambda_k \big[1_{y>k} \log \sigma(z_k)
        + (1 - 1_{y>k}) \log(1 - \sigma(z_k))\big]

    in log space (``logsigmoid``), as coral-pytorch's ``coral_loss`` (same values; medloss takes
    the integer grades where coral-pytorch takes the "levels" ``1[y > k]``).

    Args:
        num_classes: K >= 2 (the input has K - 1 columns). Optional, as in coral-pytorch: without it
            K is the input's width + 1 (or the length of ``importance_weights`` + 1).
        importance_weights: ``lambda_k``, one weight >= 0 per task ``[K - 1]`` (default: 1 each),
            as coral-pytorch.
        ignore_index: grade value whose samples count nowhere (default -100).
        reduction: ``"mean"`` over samples (default), ``"sum"`` or ``"none"`` (``[B]``).
        distributed: under ``torch.distributed`` (DDP), the mean / sum over every rank's counted
            samples (default False: this rank's); see ``docs/distributed.md``.

    Returns:
        The mean (or sum) over the counted samples, or the per-sample losses ``[B]`` with ``reduction="none"``
        (0 at ignored samples).

    Raises:
        ValueError / TypeError: input not ``[B, K - 1]`` floating point, grades outside ``[0, K)``,
            bad ``importance_weights`` or ``reduction``.

    Examples:
        >>> logits = torch.tensor([[2.1, 1.8, -2.1, -1.8], [1.9, -1.0, -1.5, -1.3], [1.9, 1.8, 1.7, 1.6]])
        >>> CORALLoss(5, reduction="none")(logits, torch.tensor([2, 1, 4]))  # coral-pytorch's test
        tensor([0.5370, 0.8951, 0.6441])
        >>> CORALLoss(reduction="none")(logits, torch.tensor([2, 1, 4]))  # K = 4 columns + 1, as coral-pytorch
        tensor([0.5370, 0.8951, 0.6441])
    """

    def __init__(
        self, num_classes: int | None = None, *, importance_weights: torch.Tensor | None = None,
        ignore_index: int | None = -100, reduction: str = "mean", distributed: bool = False,
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.num_classes, w = _coral_options(num_classes, importance_weights)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        self.importance_weights: torch.Tensor | None
        if w is not None:
            self.register_buffer("importance_weights", w)
        else:
            self.importance_weights = None

    def _logits(self, input: torch.Tensor) -> tuple[torch.Tensor, int]:
        return _coral_logits(input, self.num_classes)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _coral(input, target, self.num_classes, self.importance_weights, self.ignore_index, self.reduction,
                      distributed_flag(self))

    def class_probabilities(self, input: torch.Tensor) -> torch.Tensor:
        """``P(y = k)``, ``[B, K]``, as differences of ``P(y > k)`` (non-negative when the logits are
        ordered, as the CORAL layer's shared score and ordered biases make them)."""
        survival = torch.sigmoid(upcast(self._logits(input)[0]))
        ones, zeros = torch.ones_like(survival[:, :1]), torch.zeros_like(survival[:, :1])
        return torch.cat([ones, survival], 1) - torch.cat([survival, zeros], 1)

    def predict(self, input: torch.Tensor) -> torch.Tensor:
        """Number of ``P(y > k) > 0.5``: coral-pytorch's ``proba_to_label``."""
        with torch.no_grad():
            return (self._logits(input)[0] > 0).sum(1)


def _corn(input: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None, reduction: str,
          distributed: bool) -> torch.Tensor:
    x = upcast(_check_task_logits(input, num_classes, "conditional logits"))
    check_finite(x, "input")
    y, valid = _counted_targets(target, x.shape[0], num_classes, ignore_index)
    with fp32_island():
        tasks = torch.arange(num_classes - 1, device=x.device)
        used = y.unsqueeze(1) >= tasks.unsqueeze(0)  # task k sees samples with y > k - 1
        if valid is not None:
            used = used & valid.unsqueeze(1)
        labels = (y.unsqueeze(1) > tasks.unsqueeze(0)).to(x.dtype)
        bce = F.binary_cross_entropy_with_logits(x, labels, reduction="none")
        per_sample = (bce * used).sum(1)
    if reduction == "none":
        return per_sample
    return _finish_reduction(per_sample.sum(), used.sum(), reduction, distributed, 1.0)


def corn_loss(input: torch.Tensor, target: torch.Tensor, num_classes: int, *, ignore_index: int | None = -100,
              reduction: str = "mean", distributed: bool = False) -> torch.Tensor:
    return _corn(input, target, check_int(num_classes, "num_classes", low=2), ignore_index,
                 check_reduction(reduction), _check_distributed(distributed, "corn_loss"))


corn_loss.__doc__ = r"""CORN loss: binary cross-entropy of ``P(y > k | y > k - 1)`` on the samples with ``y > k - 1``,
    summed over tasks and divided by the number of (sample, task) pairs used (Shi, Cao & Raschka 2023).

    The functional form of :class:`CORNLoss` (same options, defaults and errors; no module is built).

    Args:
        input: the K - 1 conditional logits ``[B, K - 1]``.
        target: grades ``[B]``.
        num_classes, ignore_index, reduction, distributed: as :class:`CORNLoss`.
""" + _TASK_RETURNS.replace("the per-sample losses ``[B]``", "each sample's sum over its tasks ``[B]``") + """
    Examples:
        >>> # one sample of grade 1, K = 3: task 0 (label 1) and task 1 (label 0) both used, logits 0
        >>> corn_loss(torch.zeros(1, 2), torch.tensor([1]), 3)  # (log 2 + log 2) / 2
        tensor(0.6931)
"""


class CORNLoss(nn.Module):
    r"""CORN: conditional ordinal regression (Shi, Cao & Raschka, "Deep Neural Networks for
    Rank-Consistent Ordinal Regression Based On Conditional Probabilities", 2023).

    The network outputs K - 1 logits; logit ``k`` models ``P(y > k | y > k - 1)`` and is trained
    with binary cross-entropy on the samples with ``y > k - 1`` only. The loss is the sum of the
    binary losses over all tasks divided by the number of (sample, task) pairs used (coral-pytorch's
    convention since 1.4; earlier versions divided by K). Rank consistency holds by construction:
    ``P(y > k)`` is a product of conditionals. Use :meth:`class_probabilities` and :meth:`predict`
    to read the model out.

    Args:
        num_classes: K >= 2 (the input has K - 1 columns).
        ignore_index: grade value whose samples count in no task (default -100, as PyTorch).
        reduction: ``"mean"`` (default) or ``"sum"`` over (sample, task) pairs, or ``"none"``: each sample's
            sum over the tasks it takes part in ``[B]`` (0 for an ignored sample; their sum is ``"sum"``).
        distributed: under ``torch.distributed`` (DDP), the mean / sum over every rank's counted
            samples (default False: this rank's); see ``docs/distributed.md``.

    Returns:
        The mean (or sum) over the (sample, task) pairs used, or each sample's sum over its tasks ``[B]`` with
        ``reduction="none"``.

    Raises:
        ValueError: input not ``[B, K - 1]``, non-finite logits, grades outside ``[0, K)`` other than
            ``ignore_index``, ``num_classes`` < 2, an unknown ``reduction``.
        TypeError: integer logits.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> logits = torch.tensor([[4.0, 4.0], [4.0, -4.0], [-4.0, 0.0]])  # P(y > 0), P(y > 1 | y > 0)
        >>> CORNLoss(3).predict(logits)
        tensor([2, 1, 0])
        >>> round(CORNLoss(3)(logits, torch.tensor([2, 1, 0])).item(), 4)  # all right: small loss
        0.0181
    """

    def __init__(
        self, num_classes: int, *, ignore_index: int | None = -100, reduction: str = "mean", distributed: bool = False
    ) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.num_classes = check_int(num_classes, "num_classes", low=2)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)

    def _check(self, input: torch.Tensor) -> torch.Tensor:
        return _check_task_logits(input, self.num_classes, "conditional logits")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _corn(input, target, self.num_classes, self.ignore_index, self.reduction, distributed_flag(self))

    def class_probabilities(self, input: torch.Tensor) -> torch.Tensor:
        """``P(y = k)``, ``[B, K]``, from the cumulative products of the conditionals."""
        x = upcast(self._check(input))
        survival = torch.cumprod(torch.sigmoid(x), 1)  # P(y > k)
        ones = torch.ones_like(survival[:, :1])
        zeros = torch.zeros_like(ones)
        upper = torch.cat([ones, survival], 1)
        lower = torch.cat([survival, zeros], 1)
        return upper - lower

    def predict(self, input: torch.Tensor) -> torch.Tensor:
        """Number of ``P(y > k) > 0.5``, the rank-consistent grade of coral-pytorch."""
        with torch.no_grad():
            x = upcast(self._check(input))
            return (torch.cumprod(torch.sigmoid(x), 1) > 0.5).sum(1)
