"""Bootstrap confidence intervals (bias-corrected and accelerated, or percentile) for any calibration (or
other) metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._optional import progress_bar, progress_counter
from .._validation import check_choice, check_int, check_number
from ._inputs import as_probs_labels, top_label
from ._intervals import bounds, jackknife_groups, jackknife_values
from .clinical import CLINICAL_METRICS
from .metrics import (
    CalibrationAccumulator,
    _calibration_error_from_bins,
    _uniform_bin_index,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)

METRICS: dict[str, Callable[..., float]] = {
    "ece": expected_calibration_error,
    "mce": maximum_calibration_error,
    "ace": adaptive_calibration_error,
    "classwise_ece": classwise_calibration_error,
    "brier": brier_score,
    "nll": negative_log_likelihood,
    **CLINICAL_METRICS,
}
METHODS = ("auto", "rows", "binned")
INTERVALS = ("bca", "percentile")
#: the metrics whose bias has a known cause (the key of ``_intervals.BIAS_CAUSES`` their notes cite)
_BIAS_KIND = {"ece": "ece", "ace": "ece", "adaptive_ece": "ece", "classwise_ece": "ece", "mce": "max",
              "e_avg": "smoothed", "e_90": "smoothed", "e_max": "max"}


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate (the metric on all samples) and its bootstrap interval.

    Attributes:
        estimate: the metric on all samples.
        low, high: the interval's bounds.
        level: its coverage, e.g. 0.95.
        n_boot: the number of resamples.
        method: how the resamples were drawn (``"rows"``, ``"binned"``, ``"clusters"``).
        interval: how the bounds were read from them: ``"bca"`` (bias-corrected and accelerated) or
            ``"percentile"``.
        note: why the interval does not hold its estimate strictly inside (a biased estimator whose resamples
            lie on one side, an estimate equal to a bound), or that its BCa bounds fall among the most extreme
            resamples; None otherwise.

    Examples:
        >>> ci = bootstrap_ci("brier", torch.tensor([0.9, 0.1, 0.8, 0.3]), torch.tensor([1, 0, 1, 0]), n_boot=200)
        >>> ci.low <= ci.estimate <= ci.high, ci.level, ci.n_boot
        (True, 0.95, 200)
    """

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    method: str
    interval: str = "percentile"
    note: str | None = None

    def __str__(self) -> str:
        kind = "BCa" if self.interval == "bca" else "percentile"
        text = f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}] ({self.level:.0%} {kind} CI)"
        return text if self.note is None else f"{text}; {self.note}"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("estimate", "low", "high", "level", "n_boot", "method", "interval",
                                              "note")}


def _resolve_metric(metric: str | Callable[..., float]) -> Callable[..., float]:
    if isinstance(metric, str):
        check_choice(metric, "metric", METRICS)
        return METRICS[metric]
    if not callable(metric):
        raise TypeError(f"`metric` must be a metric name or a callable f(probs, labels); got {type(metric).__name__}")
    return metric


def bootstrap_ci(
    metric: str | Callable[..., float],
    probs: Any,
    labels: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    method: str = "auto",
    groups: Any = None,
    interval: str = "bca",
    progress: bool | None = None,
    **metric_kwargs: Any,
) -> ConfidenceInterval:
    """Bootstrap interval for ``metric(probs, labels, **metric_kwargs)``: bias-corrected and accelerated
    (BCa) by default.

    Args:
        metric: a callable ``f(probs, labels, **kw) -> float`` (any of this module's metrics, or
            your own) or a name: "ece", "mce", "ace", "classwise_ece", "brier", "nll", or one of
            the clinical metrics (binary input, :mod:`medloss.calibration.clinical`):
            "calibration_in_the_large", "calibration_slope", "calibration_intercept",
            "integrated_calibration_index", "e_90", "e_max", "spiegelhalter_z", "c_statistic".
        probs, labels: as for the metrics.
        n_boot: number of resamples (default 1000).
        level: coverage of the interval (default 0.95).
        seed: seeds NumPy's generator (default 0); the same seed gives the same interval.
        method: ``"rows"`` resamples samples with replacement and recomputes the metric.
            ``"binned"`` (ECE / MCE with uniform bins only) resamples per-bin sufficient
            statistics instead: the number of resampled samples in each (bin, correct) cell is
            drawn from the same multinomial as row resampling gives, and the sum of their
            confidences from a normal with the cell's exact mean and variance (the confidences of
            one bin differ by at most the bin width, so this is accurate; the tests check it
            against row resampling). It costs O(n_boot x n_bins) after one pass over the data:
            1000 resamples of 10^6 samples take well under a second. ``"auto"`` (default) uses
            "binned" when it applies, "rows" otherwise.
        groups: optional ``[N]`` cluster ids (e.g. patient ids when a patient has several images):
            the bootstrap then resamples whole clusters with replacement (a cluster bootstrap),
            which keeps correlated samples together; implies ``method="rows"``.
        interval: ``"bca"`` (default): Efron's bias-corrected and accelerated interval, as
            ``scipy.stats.bootstrap(method="BCa")`` computes it. ECE-type errors are biased upward (binning
            noise), so their resamples sit above the estimate and the percentile interval can exclude
            it; BCa corrects the percentiles by that bias (``z0``) and by the skew of a jackknife (the
            acceleration; leave-one-out up to 100 rows or clusters, else 100 random groups left out in
            turn, as ``bcaboot::bcajack``'s ``m``). Where every resample lies on one side of the
            estimate no correction exists and the percentile interval is given. ``"percentile"``: the
            plain percentile interval. Either way an interval that excludes its estimate, or has it as
            a bound, says why in ``note``.
        progress: show a progress bar (default: when row resampling touches > 5e7 samples).
        **metric_kwargs: passed to the metric (e.g. ``n_bins=10``).

    Returns:
        A :class:`ConfidenceInterval`: the metric on all samples, the interval and its note.

    Raises:
        ValueError: an unknown metric name, ``method`` or ``interval``, ``n_boot`` < 1, ``level`` outside (0, 1),
            ``method="binned"`` with a metric it cannot bin; inputs as the metric.
        TypeError: ``metric`` neither a name nor a callable.

    Examples:
        >>> g = torch.Generator().manual_seed(1)
        >>> p = torch.rand(2000, generator=g, dtype=torch.float64)
        >>> y = torch.bernoulli(p, generator=g).long()  # calibrated by construction
        >>> ci = bootstrap_ci("ece", p, y, n_boot=200, seed=0)
        >>> ci.low < 0.05 and ci.high < 0.05
        True
    """
    fn = _resolve_metric(metric)
    n_boot = check_int(n_boot, "n_boot", low=1)
    level = check_number(level, "level", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    check_choice(method, "method", METHODS)
    check_choice(interval, "interval", INTERVALS)
    p, y = as_probs_labels(probs, labels)
    estimate = float(fn(p, y, **metric_kwargs))
    binnable = fn in (expected_calibration_error, maximum_calibration_error) and (
        metric_kwargs.get("binning", "uniform") == "uniform"
    )
    if method == "binned" and not binnable:
        raise ValueError("method='binned' applies to ECE / MCE with uniform bins only; use method='rows'")
    cluster_rows = None
    if groups is not None:
        if method == "binned":
            raise ValueError("`groups` needs row resampling: use method='rows' or 'auto'")
        cluster_rows = _cluster_rows(groups, p.shape[0])
    rng = np.random.default_rng(seed)
    if cluster_rows is not None:
        stats = _cluster_bootstrap(fn, p, y, n_boot, rng, cluster_rows, metric_kwargs)
        used = "clusters"
    elif method == "binned" or (method == "auto" and binnable):
        stats = _binned_bootstrap(fn, p, y, n_boot, rng, metric_kwargs)
        used = "binned"
    else:
        stats = _fast_row_bootstrap(fn, p, y, n_boot, rng, progress, metric_kwargs)
        if stats is None:
            stats = _row_bootstrap(fn, p, y, n_boot, rng, progress, metric_kwargs)
        used = "rows"
    jack = _jackknife(fn, p, y, used, rng, cluster_rows, metric_kwargs) if interval == "bca" else None
    name = metric if isinstance(metric, str) else next((k for k, f in METRICS.items() if f is fn), None)
    low, high, kind, note = bounds(stats, estimate, jack, level, interval=interval, metric=_BIAS_KIND.get(name))
    return ConfidenceInterval(estimate, low, high, level, n_boot, used, kind, note)


def _group_ids(groups: list[np.ndarray], n: int) -> np.ndarray:
    """The jackknife group of each of ``n`` units."""
    gid = np.empty(n, dtype=np.int64)
    for g, units in enumerate(groups):
        gid[units] = g
    return gid


def _rows_without(n: int, units: np.ndarray, cluster_rows: list[np.ndarray] | None) -> torch.Tensor:
    """The indices of the ``n`` rows left when the jackknife group ``units`` (rows, or clusters) is out."""
    rows = units if cluster_rows is None else np.concatenate([cluster_rows[c] for c in units])
    keep = np.ones(n, dtype=bool)
    keep[rows] = False
    return torch.from_numpy(np.flatnonzero(keep))


def _jackknife(fn, p, y, used, rng, cluster_rows, kwargs) -> np.ndarray:
    """The metric with each jackknife group of rows (or clusters) left out, for the BCa acceleration: from
    per-group sums for the binned ECE / MCE and the per-row means (NLL, Brier), by refitting otherwise."""
    n = p.shape[0]
    units = n if cluster_rows is None else len(cluster_rows)
    groups = jackknife_groups(units, rng)
    if used == "binned":
        return _binned_jackknife(fn, p, y, _group_ids(groups, n), len(groups), kwargs)
    terms = _per_row_terms(fn, p, y, kwargs) if cluster_rows is None else None
    if terms is not None:
        gid = _group_ids(groups, n)
        left = np.bincount(gid, weights=terms, minlength=len(groups))
        return (terms.sum() - left) / (n - np.bincount(gid, minlength=len(groups)))

    def without(out: np.ndarray) -> float:
        t = _rows_without(n, out, cluster_rows)
        return float(fn(p[t], y[t], **kwargs))

    return jackknife_values(without, groups)


def _binned_jackknife(fn, p, y, gid: np.ndarray, n_groups: int, kwargs) -> np.ndarray:
    """Equal-width ECE / MCE with each group of rows left out, from the per-(group, bin, correct) sums."""
    n_bins = kwargs.get("n_bins", 15)
    norm = "max" if fn is maximum_calibration_error else kwargs.get("norm", "l1")
    conf, correct = top_label(p, y)
    cell = (_uniform_bin_index(conf, n_bins) * 2 + correct.long()).cpu().numpy()
    size = 2 * n_bins
    index = gid * size + cell
    counts = np.bincount(index, minlength=n_groups * size).reshape(n_groups, size).astype(np.float64)
    sums = np.bincount(index, weights=conf.detach().cpu().to(torch.float64).numpy(),
                       minlength=n_groups * size).reshape(n_groups, size)
    m = (counts.sum(0) - counts).reshape(n_groups, n_bins, 2)
    s = (sums.sum(0) - sums).reshape(n_groups, n_bins, 2).sum(-1)
    return np.asarray(_calibration_error_from_bins(m.sum(-1), s, m[..., 1], norm), dtype=np.float64)


def _per_sample(values: Any, name: str, n: int, what: str = "id") -> np.ndarray:
    """``values`` as a 1-D NumPy array of one entry per sample, or a ValueError naming ``name``."""
    v = np.asarray(values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values)
    if v.ndim != 1 or len(v) != n:
        raise ValueError(f"`{name}` must hold one {what} per sample ({n}); got shape {list(v.shape)}")
    return v


def _cluster_rows(groups: Any, n: int) -> list[np.ndarray]:
    """The rows of each cluster id in ``groups`` (one id per sample)."""
    g = _per_sample(groups, "groups", n)
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inverse))[:-1])


def bootstrap_clinical(
    probs: Any,
    labels: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    groups: Any = None,
    ordinal: bool = False,
    progress: bool | None = None,
    method: str = "auto",
    interval: str = "bca",
) -> dict[Any, Any]:
    """Bootstrap intervals (BCa by default) for every number of
    :func:`medloss.calibration.clinical_calibration`, from one set of resamples.

    Args:
        probs, labels, ordinal: as for :func:`~medloss.calibration.clinical_calibration`.
        n_boot: resamples (default 1000); ``level``: coverage (default 0.95); ``seed`` seeds NumPy's
            generator (default 0). ``groups``: ``[N]`` cluster ids (e.g. patients) to resample
            whole clusters. ``progress``: a progress bar (default: more than 200 resamples).
        method: ``"exact"`` refits every number on every resample of the rows (O(rows) per fit);
            ``"binned"`` resamples the rows grouped on a fine grid of the predicted risk and fits on
            the groups (O(grid) per fit; ``medloss.calibration._binned`` says how, and its intervals
            move by less than the bootstrap's own noise); ``"auto"`` (default) is exact up to
            ``BINNED_FROM`` rows (2,000) and binned above, and always exact with ``groups``. The point
            estimates are exact either way.
        interval: ``"bca"`` (default) or ``"percentile"``, as for :func:`bootstrap_ci`. The jackknife behind the
            acceleration leaves out each of up to 100 groups of rows in turn and refits on the risk grid of the
            binned method (one vectorised pass; the acceleration is a small correction, so the grid's
            approximation does not show), or, with ``groups``, refits exactly with each group of clusters left out.

    Returns:
        Binary input: a dict from each key of ``clinical_calibration`` except ``n`` / ``events`` to a
        :class:`ConfidenceInterval`; ``[N, K]`` input: a dict from the class (threshold) index to such
        a dict. A resample where a value is undefined (one outcome only, a separated fit) is left
        out of that value's interval; ``n_boot`` of each interval counts the resamples it used.

    Raises:
        ValueError: input the hierarchy is undefined for (one outcome only, one distinct probability),
            probabilities outside (0, 1) where logits are taken, ``n_boot`` < 1, ``level`` outside (0, 1),
            an unknown ``method`` or ``interval``; inputs as :func:`clinical_calibration`.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> p = rng.uniform(0.05, 0.95, 500)
        >>> ci = bootstrap_clinical(p, rng.binomial(1, p), n_boot=50)
        >>> ci["slope"].low < ci["slope"].estimate < ci["slope"].high
        True
    """
    import warnings

    from .clinical import CLINICAL_KEYS, clinical_calibration

    n_boot = check_int(n_boot, "n_boot", low=1)
    level = check_number(level, "level", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    method = check_choice(method, "method", ("auto", "exact", "binned"))
    check_choice(interval, "interval", INTERVALS)
    if method == "binned" and groups is not None:
        raise ValueError("`method='binned'` resamples rows: use method='exact' (or 'auto') with `groups`")
    p, y = as_probs_labels(probs, labels)
    estimate = clinical_calibration(p, y, ordinal=ordinal)
    nested = p.ndim == 2
    keys = [k for k in CLINICAL_KEYS if k not in ("n", "events")]
    parts = list(estimate) if nested else [None]
    cluster_rows = _cluster_rows(groups, p.shape[0]) if groups is not None else None
    rng = np.random.default_rng(seed)
    show = progress if progress is not None else n_boot > 200
    binned = method == "binned" or (method == "auto" and groups is None and p.shape[0] > BINNED_FROM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # per-resample repeats of the warnings given above
        if binned:
            samples = _binned_clinical_samples(p, y, parts, keys, n_boot, rng, ordinal, show)
        else:
            samples = _exact_clinical_samples(p, y, parts, keys, n_boot, rng, ordinal, show, cluster_rows)
    used = "clusters" if cluster_rows is not None else "rows"
    jack = None
    if interval == "bca":
        units = p.shape[0] if cluster_rows is None else len(cluster_rows)
        groups = jackknife_groups(units, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if cluster_rows is None:  # vectorised on the risk grid: the acceleration is a small correction
                jack = _binned_clinical_jackknife(p, y, parts, keys, _group_ids(groups, units), len(groups), ordinal)
            else:
                jack = _exact_clinical_jackknife(p, y, parts, keys, groups, ordinal, cluster_rows)

    def interval_of(part, k) -> ConfidenceInterval:
        v = samples[(part, k)]
        v = v[np.isfinite(v)]
        point = float((estimate[part] if nested else estimate)[k])
        if v.size == 0:
            return ConfidenceInterval(point, float("nan"), float("nan"), level, 0, used, interval)
        low, high, kind, note = bounds(v, point, None if jack is None else jack[(part, k)], level,
                                       interval=interval, metric=_BIAS_KIND.get(k))
        return ConfidenceInterval(point, low, high, level, int(v.size), used, kind, note)

    if nested:
        return {part: {k: interval_of(part, k) for k in keys} for part in parts}
    return {k: interval_of(None, k) for k in keys}


#: rows above which ``bootstrap_clinical(method="auto")`` resamples on the risk grid (exact below)
BINNED_FROM = 2000


def _exact_clinical_jackknife(p, y, parts, keys, groups, ordinal, cluster_rows) -> dict:
    """The hierarchy refitted with each jackknife group of rows (or clusters) left out."""
    from .clinical import clinical_calibration

    out = {(part, k): np.full(len(groups), np.nan) for part in parts for k in keys}
    for g, units in enumerate(groups):
        t = _rows_without(p.shape[0], units, cluster_rows)
        try:
            r = clinical_calibration(p[t], y[t], ordinal=ordinal)
        except ValueError:  # one outcome left
            continue
        for part in parts:
            for k in keys:
                out[(part, k)][g] = (r[part] if part is not None else r)[k]
    return out


def _binned_clinical_jackknife(p, y, parts, keys, gid, n_groups, ordinal) -> dict:
    """The hierarchy of each binary curve with each jackknife group of rows left out, on the risk grid."""
    from ._binned import binned_jackknife

    out = {}
    for part, (pj, yj) in _binary_curves(p, y, ordinal).items():
        if part not in parts:
            continue
        if 0 < yj.sum() < len(yj) and np.unique(pj).size > 1:
            values = binned_jackknife(pj, yj, gid, n_groups, keys)
        else:
            values = {k: np.full(n_groups, np.nan) for k in keys}
        out.update({(part, k): values[k] for k in keys})
    return out


def _binary_curves(p, y, ordinal) -> dict:
    """``{part: (p, y)}`` as NumPy arrays: the one binary curve (part None) or each class / grade threshold."""
    from .clinical import _one_vs_rest

    pn = p.detach().cpu().to(torch.float64).numpy()
    yn = y.detach().cpu().numpy()
    if pn.ndim == 1:
        return {None: (pn, yn.astype(np.float64))}
    return {j: (pj, yj) for j, pj, yj in _one_vs_rest(pn, yn, ordinal)}


def _exact_clinical_samples(p, y, parts, keys, n_boot, rng, ordinal, show, cluster_rows) -> dict:
    """The hierarchy refitted on each resample of the rows (or clusters)."""
    from .clinical import clinical_calibration

    samples = {(part, k): np.full(n_boot, np.nan) for part in parts for k in keys}
    for b in progress_bar(range(n_boot), enabled=show, desc="bootstrap (clinical)", leave=False):
        t = _resample(rng, p.shape[0], cluster_rows)
        try:
            r = clinical_calibration(p[t], y[t], ordinal=ordinal)
        except ValueError:  # a resample with one outcome or one distinct probability
            continue
        for part in parts:
            values = r[part] if part is not None else r
            for k in keys:
                samples[(part, k)][b] = values[k]
    return samples


def _binned_clinical_samples(p, y, parts, keys, n_boot, rng, ordinal, show) -> dict:
    """The hierarchy of each binary curve (the positive class, each class one-vs-rest or each grade
    threshold) on ``n_boot`` resamples drawn on the risk grid (:mod:`medloss.calibration._binned`).
    Each curve is resampled on its own: its intervals are marginal, as reported."""
    from ._binned import binned_bootstrap

    curves = _binary_curves(p, y, ordinal)
    samples = {}
    with progress_counter(n_boot * len(parts), enabled=show, desc="bootstrap (clinical)", leave=False) as bar:
        for part in parts:
            pj, yj = curves[part]
            if 0 < yj.sum() < len(yj) and np.unique(pj).size > 1:
                values = binned_bootstrap(pj, yj, n_boot, rng, keys, on_chunk=bar.update)
            else:  # an absent class: its intervals are undefined, as the exact bootstrap leaves them
                values = {k: np.full(n_boot, np.nan) for k in keys}
                bar.update(n_boot)
            for k in keys:
                samples[(part, k)] = values[k]
    return samples


def clinical_calibration_by_subgroup(
    probs: Any,
    labels: Any,
    subgroups: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    groups: Any = None,
) -> dict[Any, dict[str, Any]]:
    """The clinical calibration hierarchy with bootstrap intervals in every subgroup (site, sex, scanner...),
    so that a subgroup whose calibration differs is visible.

    Args:
        probs, labels: binary ``[N]`` probabilities and 0 / 1 labels.
        subgroups: ``[N]`` subgroup value of each sample (any hashable values, e.g. strings).
        n_boot, level, seed: as for :func:`bootstrap_clinical` (each subgroup is resampled on its own).
        groups: optional ``[N]`` cluster ids (patients) for a cluster bootstrap within each subgroup.

    Returns:
        ``{subgroup: {"n": .., "events": .., "intervals": {key: ConfidenceInterval} or None, "error": str or None}}``
        in sorted subgroup order, plus ``"all"`` for every sample. A subgroup where the hierarchy is
        undefined (one outcome only, one distinct probability) gets ``intervals`` None and the reason
        in ``error`` instead of failing the others.

    Raises:
        ValueError: ``subgroups`` (or ``groups``) of another length than ``probs``, ``[N, K]`` input (binary
            only), or inputs as :func:`bootstrap_clinical` for all samples together.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> p = rng.uniform(0.05, 0.95, 600)
        >>> site = np.where(np.arange(600) < 300, "A", "B")
        >>> out = clinical_calibration_by_subgroup(p, rng.binomial(1, p), site, n_boot=20)
        >>> sorted(out), out["A"]["n"]
        (['A', 'B', 'all'], 300)
    """
    p, y = as_probs_labels(probs, labels)
    if p.ndim != 1:
        raise ValueError("`probs` must be [N] binary probabilities for subgroup calibration; select one class "
                         "(probs[:, k], labels == k) for multiclass models")
    s = _per_sample(subgroups, "subgroups", p.shape[0], "value")
    g = None if groups is None else _per_sample(groups, "groups", p.shape[0])
    out: dict[Any, dict[str, Any]] = {}
    values = sorted(set(s.tolist()), key=str)
    for value in [*values, "all"]:
        rows = np.arange(len(s)) if value == "all" else np.flatnonzero(s == value)
        t = torch.from_numpy(rows)
        entry: dict[str, Any] = {"n": int(rows.size), "events": int(y[t].sum()), "intervals": None, "error": None}
        try:
            entry["intervals"] = bootstrap_clinical(p[t], y[t], n_boot=n_boot, level=level, seed=seed,
                                                    groups=None if g is None else g[rows], progress=False)
        except ValueError as err:
            entry["error"] = str(err)
        out[value] = entry
    return out


def _per_row_terms(fn, p: torch.Tensor, y: torch.Tensor, kwargs: dict) -> np.ndarray | None:
    """The per-row terms whose mean is ``fn(p, y, **kwargs)`` (NLL, Brier), or None for other metrics."""
    p64 = p.detach().cpu().to(torch.float64)
    y = y.detach().cpu()
    if fn is negative_log_likelihood and set(kwargs) <= {"eps"}:
        eps = torch.finfo(p.dtype).eps if kwargs.get("eps") is None else float(kwargs["eps"])
        py = torch.where(y == 1, p64, 1.0 - p64) if p64.ndim == 1 else p64.gather(1, y.unsqueeze(1)).squeeze(1)
        return (-torch.log(py.clamp(eps, 1.0 - eps))).numpy()
    if fn is brier_score and set(kwargs) <= {"scale_by_half"}:
        half = kwargs.get("scale_by_half", "auto")
        if p64.ndim == 1:
            return (2.0 * (p64 - y.to(torch.float64)) ** 2 / (2.0 if half in ("auto", True) else 1.0)).numpy()
        sq = (p64**2).sum(1) - 2.0 * p64.gather(1, y.unsqueeze(1)).squeeze(1) + 1.0
        return (sq / (2.0 if half is True else 1.0)).numpy()
    return None


def _fast_row_bootstrap(fn, p, y, n_boot, rng, progress, kwargs) -> np.ndarray | None:
    """The row bootstrap of the metrics that need no refit per resample, from the same resamples
    (the same draws of ``rng``) as :func:`_row_bootstrap` and to rounding the same values, in O(rows)
    NumPy work per resample: the mean of per-row terms (NLL, Brier), and the equal-mass ECE from the
    rows sorted once, a resample being a count per row (no sort per resample). None for other metrics."""
    n = p.shape[0]
    show = progress if progress is not None else n * n_boot > 5e7
    terms = _per_row_terms(fn, p, y, kwargs)
    out = np.empty(n_boot)
    if terms is not None:
        for b in progress_bar(range(n_boot), enabled=show, desc="bootstrap", leave=False):
            out[b] = terms[rng.integers(0, n, size=n)].mean()
        return out
    quantile = (fn is adaptive_calibration_error and set(kwargs) <= {"n_bins", "norm"}) or (
        fn is expected_calibration_error and kwargs.get("binning") == "quantile"
        and set(kwargs) <= {"n_bins", "norm", "binning"})
    if not quantile:
        return None
    n_bins, norm = int(kwargs.get("n_bins", 15)), kwargs.get("norm", "l1")
    conf, correct = top_label(p, y)
    conf = conf.detach().cpu().to(torch.float64).numpy()
    order = np.argsort(conf, kind="stable")
    s, hit = conf[order], correct.detach().cpu().numpy()[order].astype(np.float64)
    sizes = np.full(n_bins, n // n_bins)
    sizes[: n % n_bins] += 1
    ends = np.clip(np.cumsum(sizes)[:-1] - 1, 0, n - 1)  # positions of the inner edges in a sorted resample
    for b in progress_bar(range(n_boot), enabled=show, desc="bootstrap", leave=False):
        c = np.bincount(rng.integers(0, n, size=n), minlength=n)[order].astype(np.float64)
        inner = s[np.searchsorted(np.cumsum(c), ends, side="right")]  # _quantile_edges of the resample
        bins = np.searchsorted(inner, s, side="left")
        counts = np.bincount(bins, weights=c, minlength=n_bins)
        out[b] = _calibration_error_from_bins(counts, np.bincount(bins, weights=c * s, minlength=n_bins),
                                             np.bincount(bins, weights=c * hit, minlength=n_bins), norm)
    return out


def _row_bootstrap(fn, p, y, n_boot, rng, progress, kwargs) -> np.ndarray:
    n = p.shape[0]
    show = progress if progress is not None else n * n_boot > 5e7
    out = np.empty(n_boot)
    for b in progress_bar(range(n_boot), enabled=show, desc="bootstrap", leave=False):
        idx = torch.from_numpy(rng.integers(0, n, size=n))
        out[b] = fn(p[idx], y[idx], **kwargs)
    return out


def _cluster_bootstrap(fn, p, y, n_boot, rng, cluster_rows, kwargs) -> np.ndarray:
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = _resample(rng, p.shape[0], cluster_rows)
        out[b] = fn(p[idx], y[idx], **kwargs)
    return out


def _resample(rng: np.random.Generator, n: int, cluster_rows: list[np.ndarray] | None) -> torch.Tensor:
    """Row indices of one bootstrap resample: ``n`` rows with replacement, or (``cluster_rows``) as many
    whole clusters with replacement."""
    if cluster_rows is None:
        return torch.from_numpy(rng.integers(0, n, size=n))
    chosen = rng.integers(0, len(cluster_rows), size=len(cluster_rows))
    return torch.from_numpy(np.concatenate([cluster_rows[c] for c in chosen]))


def _binned_bootstrap(fn, p, y, n_boot, rng, kwargs) -> np.ndarray:
    n_bins = kwargs.get("n_bins", 15)
    norm = "max" if fn is maximum_calibration_error else kwargs.get("norm", "l1")
    acc = CalibrationAccumulator(n_bins)
    conf, correct = top_label(p, y)
    acc._add(conf, correct, track_squares=True)
    counts = acc.counts.reshape(-1).astype(np.float64)
    n = counts.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, acc.sum_conf.reshape(-1) / counts, 0.0)
        var = np.where(counts > 0, acc.sum_conf_sq.reshape(-1) / counts - mean**2, 0.0)
    var = np.clip(var, 0.0, None)
    m = rng.multinomial(int(n), counts / n, size=n_boot).astype(np.float64)  # [n_boot, 2 n_bins]
    sum_conf = m * mean + np.sqrt(m * var) * rng.standard_normal(m.shape)
    m = m.reshape(n_boot, n_bins, 2)
    sum_conf = sum_conf.reshape(n_boot, n_bins, 2).sum(-1)
    return np.asarray(_calibration_error_from_bins(m.sum(-1), sum_conf, m[..., 1], norm), dtype=np.float64)
