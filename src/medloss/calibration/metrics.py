"""Calibration metrics: ECE / MCE / adaptive / class-wise calibration error, Brier score, NLL,
reliability curves, and a mergeable streaming accumulator.

Binning convention (Guo et al. 2017, scikit-learn): bins are ``(lo, hi]`` with the first bin
closed at 0, so every sample lands in exactly one bin. Uniform bin edges are
``np.linspace(0, 1, n_bins + 1)`` (float64). torchmetrics' ``CalibrationError`` bins
``[lo, hi)`` instead (and puts 1.0 in a bin of its own), so the two agree except when a
confidence sits exactly on a bin edge: with 4 bins, p = [.5, .6, .75, 1.0], y = [0, 1, 1, 0]
gives ECE 0.5375 here and 0.3375 in torchmetrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._distributed import all_reduce_numbers, require_process_group
from .._validation import check_choice, check_int
from ._inputs import as_probs_labels, top_label

BINNINGS = ("uniform", "quantile")
NORMS = ("l1", "l2", "max")


def _uniform_bin_index(conf: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin of each confidence for the edges ``np.linspace(0, 1, n_bins + 1)`` (float64), bins
    ``(lo, hi]`` with the first one closed at 0. Computed on the input's device.

    For float32 / float16 / bf16 confidences this is ``ceil(conf * n) - 1`` in float64: a
    float32 times an integer below 2^29 is exact there, and no float32 value lies within a
    float64 rounding error of an edge, so the result equals the comparison with the edges at a
    fraction of the cost. float64 confidences are compared with the edges themselves, so that a
    value written as 0.7 lands in (0.6, 0.7] as in scikit-learn.
    """
    if conf.dtype == torch.float64:
        edges = torch.from_numpy(np.linspace(0.0, 1.0, n_bins + 1)).to(conf.device)
        return torch.bucketize(conf, edges.narrow(0, 1, n_bins - 1), right=False)
    k = conf.to(torch.float64).mul(n_bins).ceil_().long()
    return k.sub_(1).clamp_(0, n_bins - 1)


def _quantile_edges(conf: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-mass bin edges ``[n_bins + 1]`` (float64, on the input's device): the sorted
    confidences split into ``n_bins`` groups of (nearly) equal size (``np.array_split`` sizes);
    each inner edge is the largest confidence of a group. With ties, tied values stay in one bin,
    so some bins may be empty."""
    s = torch.sort(conf.detach().to(torch.float64).reshape(-1)).values
    n = s.numel()
    sizes = np.full(n_bins, n // n_bins)
    sizes[: n % n_bins] += 1
    ends = torch.as_tensor(np.clip(np.cumsum(sizes)[:-1] - 1, 0, max(n - 1, 0)), device=s.device)
    inner = s.index_select(0, ends) if n else s.new_zeros(n_bins - 1)
    return torch.cat([s.new_zeros(1), inner, s.new_ones(1)])


def _bin_index(conf: torch.Tensor, n_bins: int, binning: str) -> tuple[torch.Tensor, torch.Tensor]:
    if binning == "uniform":
        return _uniform_bin_index(conf, n_bins), torch.from_numpy(np.linspace(0.0, 1.0, n_bins + 1))
    edges = _quantile_edges(conf, n_bins)
    return torch.searchsorted(edges.narrow(0, 1, n_bins - 1), conf.to(torch.float64), right=False), edges


def _bin_sum(idx: torch.Tensor, size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-bin sums of ``weights`` (counts without), ``[size]``. ``bincount`` is fastest on CPU, but
    elsewhere its output size depends on the data (CUDA syncs the host to read the maximum), so
    the other devices use ``index_add_`` into a fixed-size zero tensor."""
    if idx.device.type == "cpu":
        return torch.bincount(idx, weights=weights, minlength=size)
    if weights is None:
        return torch.zeros(size, dtype=torch.int64, device=idx.device).index_add_(0, idx, torch.ones_like(idx))
    return torch.zeros(size, dtype=weights.dtype, device=idx.device).index_add_(0, idx, weights)


def _device_binned_sums(
    conf: torch.Tensor, correct: torch.Tensor, n_bins: int, binning: str = "uniform",
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per bin: sample count (the weights' sum with ``weights``), sum of confidences and sum of
    correctness (float64, weighted), and the edges, all ``O(n_bins)`` tensors on the input's
    device: the only numbers a metric needs on the host."""
    idx, edges = _bin_index(conf, n_bins, binning)
    conf64, correct64 = conf.to(torch.float64), correct.to(torch.float64)
    if weights is not None:
        conf64, correct64 = conf64 * weights, correct64 * weights
    counts = _bin_sum(idx, n_bins, weights)
    sum_conf = _bin_sum(idx, n_bins, conf64)
    sum_correct = _bin_sum(idx, n_bins, correct64)
    return counts, sum_conf, sum_correct, edges


def _host(*tensors: torch.Tensor) -> tuple[np.ndarray, ...]:
    return tuple(t.detach().cpu().numpy() for t in tensors)


@dataclass
class CalibrationAccumulator:
    """Streaming per-bin sufficient statistics for calibration error with uniform bins.

    Keeps, for each of ``n_bins`` bins and each correctness value (0 / 1), the count, the sum of
    confidences and the sum of squared confidences: O(n_bins) memory whatever the number of
    samples, so a 100-million-sample evaluation can be fed batch by batch, and partial
    accumulators from several workers or processes are combined with :meth:`merge` (or
    :meth:`to_dict` / :meth:`from_dict` across processes). :meth:`compute` gives the same value as
    :func:`expected_calibration_error` on all the samples at once.

    Attributes:
        n_bins: number of uniform bins (default 15).
        counts: ``[n_bins, 2]`` samples per bin and correctness (column 1 = correct / positive).
        sum_conf: ``[n_bins, 2]`` sums of confidences.
        sum_conf_sq: ``[n_bins, 2]`` sums of squared confidences (for the binned bootstrap).

    Raises:
        ValueError: ``n_bins`` < 1, or given arrays of the wrong shape; :meth:`update` raises as
            :func:`expected_calibration_error`.

    Examples:
        >>> acc = CalibrationAccumulator(n_bins=5)
        >>> acc = acc.update(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1]))  # batch by batch
        >>> acc = acc.update(torch.tensor([[0.6, 0.4], [0.3, 0.7]]), torch.tensor([1, 1]))
        >>> round(acc.compute(norm="l1"), 4)  # as expected_calibration_error on the four rows: 0.15
        0.15
    """

    n_bins: int = 15
    #: ``[n_bins, 2]``: samples per bin and correctness (column 1 = correct / positive)
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: ``[n_bins, 2]``: sum of confidences
    sum_conf: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: ``[n_bins, 2]``: sum of squared confidences (for the binned bootstrap)
    sum_conf_sq: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        check_int(self.n_bins, "n_bins", low=1)
        shape = (self.n_bins, 2)
        if self.counts is None:
            self.counts = np.zeros(shape, dtype=np.int64)
        if self.sum_conf is None:
            self.sum_conf = np.zeros(shape, dtype=np.float64)
        if self.sum_conf_sq is None:
            self.sum_conf_sq = np.zeros(shape, dtype=np.float64)
        for name in ("counts", "sum_conf", "sum_conf_sq"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"`{name}` must have shape {list(shape)}; got {list(getattr(self, name).shape)}")

    def update(self, probs: Any, labels: Any, *, track_squares: bool = True) -> CalibrationAccumulator:
        """Add a batch (validated like the metric functions). Returns ``self``."""
        p, y = as_probs_labels(probs, labels)
        conf, correct = top_label(p, y)
        self._add(conf, correct, track_squares)
        return self

    def _add(self, conf: torch.Tensor, correct: torch.Tensor, track_squares: bool) -> None:
        # sums on the input's device; only the [n_bins, 2] results come to the host
        cell = _uniform_bin_index(conf, self.n_bins).mul_(2).add_(correct)
        c64 = conf.to(torch.float64)
        size = 2 * self.n_bins
        sums = [_bin_sum(cell, size), _bin_sum(cell, size, c64)]
        if track_squares:
            sums.append(_bin_sum(cell, size, c64 * c64))
        host = _host(*sums)
        self.counts += host[0].reshape(self.n_bins, 2)
        self.sum_conf += host[1].reshape(self.n_bins, 2)
        if track_squares:
            self.sum_conf_sq += host[2].reshape(self.n_bins, 2)

    def merge(self, other: CalibrationAccumulator) -> CalibrationAccumulator:
        """Add another accumulator's statistics (same ``n_bins``). Returns ``self``."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge accumulators with n_bins={self.n_bins} and n_bins={other.n_bins}")
        self.counts += other.counts
        self.sum_conf += other.sum_conf
        self.sum_conf_sq += other.sum_conf_sq
        return self

    def all_reduce(self) -> CalibrationAccumulator:
        """Sum the statistics of every rank of ``torch.distributed`` (O(n_bins) numbers): afterwards
        every rank holds the accumulator of all samples. Returns ``self``."""
        require_process_group("CalibrationAccumulator.all_reduce")
        counts, sum_conf, sum_conf_sq = all_reduce_numbers(self.counts, self.sum_conf, self.sum_conf_sq)
        self.counts = np.rint(counts).astype(np.int64)
        self.sum_conf, self.sum_conf_sq = sum_conf, sum_conf_sq
        return self

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    def compute(self, norm: str = "l1") -> float:
        """Calibration error of everything accumulated so far."""
        check_choice(norm, "norm", NORMS)
        if self.n_samples == 0:
            raise ValueError("the accumulator is empty: call update() with at least one sample first")
        return _calibration_error_from_bins(
            self.counts.sum(1), self.sum_conf.sum(1), self.counts[:, 1].astype(np.float64), norm
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_bins": self.n_bins,
            "counts": self.counts.tolist(),
            "sum_conf": self.sum_conf.tolist(),
            "sum_conf_sq": self.sum_conf_sq.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CalibrationAccumulator:
        return cls(
            n_bins=int(state["n_bins"]),
            counts=np.asarray(state["counts"], dtype=np.int64),
            sum_conf=np.asarray(state["sum_conf"], dtype=np.float64),
            sum_conf_sq=np.asarray(state["sum_conf_sq"], dtype=np.float64),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _calibration_error_from_bins(
    counts: np.ndarray, sum_conf: np.ndarray, sum_correct: np.ndarray, norm: str
) -> float:
    """ECE-type value from per-bin sums (arrays over bins; last axis = bins if batched)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(sum_correct / counts - sum_conf / counts)
    gap = np.where(counts > 0, gap, 0.0)
    weight = counts / total
    if norm == "l1":
        out = (weight * gap).sum(-1)
    elif norm == "l2":
        out = np.sqrt((weight * gap**2).sum(-1))
    else:
        out = gap.max(-1)
    return float(out) if np.ndim(out) == 0 else out


def _check_binning_args(n_bins: int, binning: str, norm: str) -> None:
    check_int(n_bins, "n_bins", low=1)
    check_choice(binning, "binning", BINNINGS)
    check_choice(norm, "norm", NORMS)


def _binned_sums(conf: torch.Tensor, correct: torch.Tensor, n_bins: int, binning: str,
                 weights: torch.Tensor | None = None):
    return _host(*_device_binned_sums(conf, correct, n_bins, binning, weights))


def _check_distributed(distributed: bool, owner: str, binning: str = "uniform") -> None:
    if not distributed:
        return
    if binning != "uniform":
        raise ValueError(f"{owner}(distributed=True) needs binning='uniform': equal-mass bin edges depend on every "
                         "rank's samples, which are not exchanged")
    require_process_group(owner)


def expected_calibration_error(
    probs: Any, labels: Any, *, n_bins: int = 15, binning: str = "uniform", norm: str = "l1",
    ignore_index: int | None = None, sample_weight: Any = None, distributed: bool = False,
) -> float:
    r"""Expected calibration error (Guo et al. 2017), ``ECE = sum_b (n_b / N) |acc_b - conf_b|``.

    Args:
        probs: ``[N, K]`` class probabilities (top-label confidence vs. correctness of the
            argmax), or ``[N]`` / ``[N, 1]`` positive-class probabilities (reliability of
            P(y = 1) against y). Torch or NumPy.
        labels: ``[N]`` integer labels.
        n_bins: number of bins (default 15).
        binning: ``"uniform"`` (equal width, default) or ``"quantile"`` (equal mass; the
            adaptive ECE of Nixon et al. 2019).
        norm: ``"l1"`` (ECE, default), ``"l2"`` (root of the count-weighted mean squared gap,
            torchmetrics' l2) or ``"max"`` (MCE: the largest gap over non-empty bins).
        ignore_index: samples with this label are left out (torchmetrics' ``ignore_index``).
        sample_weight: ``[N]`` weights >= 0 (scikit-learn's convention): bin sizes, accuracies
            and confidences become weighted sums; integer weights equal repeated rows.
        distributed: under ``torch.distributed``, the value over every rank's samples (uniform
            bins; only the O(n_bins) bin sums are exchanged). Default False.

    Bins are ``(lo, hi]``, the first closed at 0 (module docstring); sums are in float64.

    Returns:
        The calibration error, a float in [0, 1].

    Raises:
        ValueError: ``probs`` not ``[N, K]`` / ``[N]`` or rows off the simplex, probabilities outside [0, 1],
            ``probs`` and ``labels`` of different lengths, labels outside ``[0, K)``, no sample left, an option
            out of range (the message names the argument).
        TypeError: non-numeric inputs or non-integer labels.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
        >>> round(expected_calibration_error(probs, torch.tensor([0, 1, 1, 1]), n_bins=5), 4)  # 2/4 * 0.15 + 2/4 * 0.15
        0.15
    """
    _check_binning_args(n_bins, binning, norm)
    _check_distributed(distributed, "expected_calibration_error", binning)
    if sample_weight is not None:
        p, y, w = as_probs_labels(probs, labels, ignore_index=ignore_index, sample_weight=sample_weight)
        conf, correct = top_label(p, y)
        counts, sum_conf, sum_correct, _ = _binned_sums(conf, correct, n_bins, binning, w.to(conf.device))
        if distributed:
            counts, sum_conf, sum_correct = all_reduce_numbers(counts, sum_conf, sum_correct)
        return _calibration_error_from_bins(counts, sum_conf, sum_correct, norm)
    p, y = as_probs_labels(probs, labels, ignore_index=ignore_index)
    conf, correct = top_label(p, y)
    if binning == "uniform":
        acc = CalibrationAccumulator(n_bins)
        acc._add(conf, correct, track_squares=False)
        if distributed:
            acc.all_reduce()
        return acc.compute(norm)
    counts, sum_conf, sum_correct, _ = _binned_sums(conf, correct, n_bins, binning)
    return _calibration_error_from_bins(counts, sum_conf, sum_correct, norm)


def maximum_calibration_error(
    probs: Any, labels: Any, *, n_bins: int = 15, binning: str = "uniform", ignore_index: int | None = None,
    distributed: bool = False,
) -> float:
    """Maximum calibration error: the largest ``|acc_b - conf_b|`` over non-empty bins.

    Args:
        probs: ``[N, K]`` class probabilities or ``[N]`` / ``[N, 1]`` positive-class probabilities (torch or NumPy).
        labels: ``[N]`` integer labels.
        n_bins, binning, ignore_index, distributed: as :func:`expected_calibration_error`.

    Returns:
        The largest gap, a float in [0, 1].

    Raises:
        ValueError: ``probs`` not ``[N, K]`` / ``[N]`` or rows off the simplex, probabilities outside [0, 1],
            ``probs`` and ``labels`` of different lengths, labels outside ``[0, K)``, no sample left, an option
            out of range (the message names the argument).
        TypeError: non-numeric inputs or non-integer labels.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> p = torch.tensor([0.1, 0.2, 0.7, 0.9], dtype=torch.float64)  # bins of 0.5: gaps 0.15 and 0.2
        >>> round(maximum_calibration_error(p, torch.tensor([0, 0, 1, 1]), n_bins=2), 4)
        0.2
    """
    return expected_calibration_error(probs, labels, n_bins=n_bins, binning=binning, norm="max",
                                      ignore_index=ignore_index, distributed=distributed)


def adaptive_calibration_error(probs: Any, labels: Any, *, n_bins: int = 15, norm: str = "l1") -> float:
    """ECE with equal-mass (quantile) bins, the "adaptive" calibration error of Nixon et al. 2019
    (not netcal's "average" calibration error).

    Args:
        probs: ``[N, K]`` class probabilities or ``[N]`` / ``[N, 1]`` positive-class probabilities (torch or NumPy).
        labels: ``[N]`` integer labels.
        n_bins: number of equal-mass bins (default 15).
        norm: ``"l1"`` (default), ``"l2"`` or ``"max"``, as :func:`expected_calibration_error`.

    Returns:
        The calibration error, a float in [0, 1].

    Raises:
        ValueError: ``probs`` not ``[N, K]`` / ``[N]`` or rows off the simplex, probabilities outside [0, 1],
            ``probs`` and ``labels`` of different lengths, labels outside ``[0, K)``, no sample left, an option
            out of range (the message names the argument).
        TypeError: non-numeric inputs or non-integer labels.

    Examples:
        >>> p = torch.tensor([0.1, 0.2, 0.7, 0.9], dtype=torch.float64)  # two equal-mass bins: gaps 0.15 and 0.2
        >>> round(adaptive_calibration_error(p, torch.tensor([0, 0, 1, 1]), n_bins=2), 4)
        0.175
    """
    return expected_calibration_error(probs, labels, n_bins=n_bins, binning="quantile", norm=norm)


def classwise_calibration_error(
    probs: Any, labels: Any, *, n_bins: int = 15, binning: str = "uniform", norm: str = "l1",
    ignore_index: int | None = None, distributed: bool = False,
) -> float:
    """Class-wise ECE (Kull et al. 2019): the mean over classes k of the calibration error of
    ``p_k`` against ``1[y = k]``. Binary ``[N]`` input counts both classes (p and 1 - p).
    Samples labelled ``ignore_index`` are left out.

    Args:
        probs: ``[N, K]`` class probabilities or ``[N]`` / ``[N, 1]`` positive-class probabilities (torch or NumPy).
        labels: ``[N]`` integer labels.
        n_bins, binning, norm, ignore_index, distributed: as :func:`expected_calibration_error`.

    Returns:
        The mean over classes of the per-class calibration errors, a float in [0, 1].

    Raises:
        ValueError: ``probs`` not ``[N, K]`` / ``[N]`` or rows off the simplex, probabilities outside [0, 1],
            ``probs`` and ``labels`` of different lengths, labels outside ``[0, K)``, no sample left, an option
            out of range (the message names the argument).
        TypeError: non-numeric inputs or non-integer labels.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> probs = torch.tensor([[0.8, 0.2], [0.3, 0.7]], dtype=torch.float64)
        >>> round(classwise_calibration_error(probs, torch.tensor([0, 1]), n_bins=1), 4)  # |0.55 - 0.5| per class
        0.05
    """
    _check_binning_args(n_bins, binning, norm)
    _check_distributed(distributed, "classwise_calibration_error", binning)
    p, y = as_probs_labels(probs, labels, ignore_index=ignore_index)
    if p.ndim == 1:
        p = torch.stack([1.0 - p, p], 1)
    values = []
    for k in range(p.shape[1]):
        counts, sum_conf, sum_correct, _ = _binned_sums(p[:, k], (y == k).to(p.dtype), n_bins, binning)
        if distributed:
            counts, sum_conf, sum_correct = all_reduce_numbers(counts, sum_conf, sum_correct)
        values.append(_calibration_error_from_bins(counts, sum_conf, sum_correct, norm))
    return float(np.mean(values))


def brier_score(
    probs: Any, labels: Any, *, scale_by_half: bool | str = "auto", ignore_index: int | None = None,
    sample_weight: Any = None, distributed: bool = False,
) -> float:
    """Brier score: mean over samples of ``sum_k (p_k - onehot_k)^2``.

    ``scale_by_half="auto"`` (default) follows scikit-learn's ``brier_score_loss``: binary
    ``[N]`` input gives ``mean (p - y)^2`` (half the two-class sum), ``[N, K]`` input the full
    multiclass sum. ``True`` / ``False`` force the halving on or off. ``sample_weight`` makes it
    the weighted mean (scikit-learn's ``sample_weight``); samples labelled ``ignore_index`` are
    left out.

    Args:
        probs: ``[N, K]`` class probabilities or ``[N]`` / ``[N, 1]`` positive-class probabilities (torch or NumPy).
        labels: ``[N]`` integer labels.
        scale_by_half: ``"auto"`` (default), True or False, as above.
        ignore_index: label whose samples are left out (default None).
        sample_weight: ``[N]`` weights >= 0 (default None: equal).
        distributed: over every rank's samples (default False).

    Returns:
        The Brier score, a float (in [0, 1] for binary input, [0, 2] for the multiclass sum).

    Raises:
        ValueError: ``probs`` not ``[N, K]`` / ``[N]`` or rows off the simplex, probabilities outside [0, 1],
            ``probs`` and ``labels`` of different lengths, labels outside ``[0, K)``, no sample left, an option
            out of range (the message names the argument).
        TypeError: non-numeric inputs or non-integer labels.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> p = torch.tensor([0.9, 0.2, 0.6], dtype=torch.float64)  # (0.01 + 0.04 + 2 * 0.36) / 4:
        >>> round(brier_score(p, torch.tensor([1, 0, 0]), sample_weight=[1.0, 1.0, 2.0]), 12)
        0.1925
    """
    if scale_by_half not in ("auto", True, False):
        raise ValueError(f"`scale_by_half` must be 'auto', True or False; got {scale_by_half!r}")
    checked = as_probs_labels(probs, labels, ignore_index=ignore_index, sample_weight=sample_weight)
    p, y = checked[0], checked[1]
    p64 = p.to(torch.float64)
    if p.ndim == 1:
        sq = 2.0 * (p64 - y.to(torch.float64)) ** 2
        half = scale_by_half in ("auto", True)
    else:
        sq = (p64**2).sum(1) - 2.0 * p64.gather(1, y.unsqueeze(1)).squeeze(1) + 1.0
        half = scale_by_half is True
    total, weight = (sq.sum(), float(sq.numel())) if sample_weight is None else ((sq * checked[2]).sum(),
                                                                                 checked[2].sum())
    if distributed:
        require_process_group("brier_score")
        total, weight = all_reduce_numbers(float(total), float(weight))
    full = float(total) / float(weight)
    return float(full / 2.0 if half else full)


def negative_log_likelihood(
    probs: Any, labels: Any, *, eps: float | None = None, ignore_index: int | None = None,
    distributed: bool = False,
) -> float:
    """Mean negative log-likelihood of the labels, ``-mean log p_y``.

    Probabilities are clipped to ``[eps, 1 - eps]`` first, ``eps`` defaulting to the machine
    epsilon of the input dtype, as scikit-learn's ``log_loss`` does: a probability of exactly 0
    for the true class has no finite log-likelihood. Pass logits to a calibrator's NLL instead
    when you have them. Samples labelled ``ignore_index`` are left out.

    Args:
        probs: ``[N, K]`` class probabilities or ``[N]`` / ``[N, 1]`` positive-class probabilities (torch or NumPy).
        labels: ``[N]`` integer labels.
        eps: the clipping (default None: the machine epsilon of the input's dtype).
        ignore_index: label whose samples are left out (default None).
        distributed: over every rank's samples (default False).

    Returns:
        The mean NLL in nats, a float >= 0.

    Raises:
        ValueError: ``probs`` not ``[N, K]`` / ``[N]`` or rows off the simplex, probabilities outside [0, 1],
            ``probs`` and ``labels`` of different lengths, labels outside ``[0, K)``, no sample left, an option
            out of range (the message names the argument).
        TypeError: non-numeric inputs or non-integer labels.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])  # (log 2 + log 4/3) / 2
        >>> round(negative_log_likelihood(probs, torch.tensor([0, 1])), 4)
        0.4904
    """
    p, y = as_probs_labels(probs, labels, ignore_index=ignore_index)
    e = torch.finfo(p.dtype).eps if eps is None else float(eps)
    p64 = p.to(torch.float64)
    py = torch.where(y == 1, p64, 1.0 - p64) if p.ndim == 1 else p64.gather(1, y.unsqueeze(1)).squeeze(1)
    total, count = float(-torch.log(py.clamp(e, 1.0 - e)).sum()), float(py.numel())
    if distributed:
        require_process_group("negative_log_likelihood")
        total, count = all_reduce_numbers(total, count)
    return float(total) / float(count)


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin reliability data (arrays over bins; empty bins have NaN confidence and accuracy).

    Attributes:
        edges: the ``n_bins + 1`` bin edges.
        counts: samples per bin.
        mean_confidence: mean confidence (binary: mean P(y = 1)) per bin.
        accuracy: accuracy (binary: fraction of positives) per bin.
        ece: the expected calibration error these bins give.
        mce: the maximum calibration error these bins give.
        binary: whether the input was ``[N]`` positive-class probabilities.

    Examples:
        >>> curve = reliability_curve(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1]), n_bins=2)
        >>> curve.counts.tolist(), curve.accuracy.tolist()
        ([2, 2], [0.0, 1.0])
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    ece: float
    mce: float
    binary: bool

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    def to_dict(self) -> dict[str, Any]:
        def clean(a: np.ndarray) -> list:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "mean_confidence": clean(self.mean_confidence),
            "accuracy": clean(self.accuracy),
            "ece": self.ece,
            "mce": self.mce,
            "binary": self.binary,
        }


def reliability_curve(
    probs: Any, labels: Any, *, n_bins: int = 15, binning: str = "uniform", ignore_index: int | None = None,
    distributed: bool = False,
) -> ReliabilityCurve:
    """Bin edges, counts, mean confidence and accuracy per bin, with the ECE and MCE they give.

    For binary ``[N]`` input "confidence" is P(y = 1) and "accuracy" the fraction of positives.
    Samples labelled ``ignore_index`` are left out.

    Args:
        probs: ``[N, K]`` class probabilities or ``[N]`` / ``[N, 1]`` positive-class probabilities (torch or NumPy).
        labels: ``[N]`` integer labels.
        n_bins, binning, ignore_index, distributed: as :func:`expected_calibration_error`.

    Returns:
        A :class:`ReliabilityCurve`.

    Raises:
        ValueError: ``probs`` not ``[N, K]`` / ``[N]`` or rows off the simplex, probabilities outside [0, 1],
            ``probs`` and ``labels`` of different lengths, labels outside ``[0, K)``, no sample left, an option
            out of range (the message names the argument).
        TypeError: non-numeric inputs or non-integer labels.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> p = torch.tensor([0.1, 0.2, 0.8, 0.9], dtype=torch.float64)
        >>> curve = reliability_curve(p, torch.tensor([0, 0, 1, 1]), n_bins=2)
        >>> curve.mean_confidence.round(4).tolist(), round(curve.ece, 4)  # each bin |acc - conf| = 0.15
        ([0.15, 0.85], 0.15)
    """
    _check_binning_args(n_bins, binning, "l1")
    _check_distributed(distributed, "reliability_curve", binning)
    p, y = as_probs_labels(probs, labels, ignore_index=ignore_index)
    conf, correct = top_label(p, y)
    counts, sum_conf, sum_correct, edges = _binned_sums(conf, correct, n_bins, binning)
    if distributed:
        counts, sum_conf, sum_correct = all_reduce_numbers(counts, sum_conf, sum_correct)
        counts = np.rint(counts).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, sum_conf / counts, np.nan)
        accuracy = np.where(counts > 0, sum_correct / counts, np.nan)
    return ReliabilityCurve(
        edges=np.asarray(edges, dtype=np.float64),
        counts=counts.astype(np.int64),
        mean_confidence=mean_conf,
        accuracy=accuracy,
        ece=_calibration_error_from_bins(counts, sum_conf, sum_correct, "l1"),
        mce=_calibration_error_from_bins(counts, sum_conf, sum_correct, "max"),
        binary=p.ndim == 1,
    )
