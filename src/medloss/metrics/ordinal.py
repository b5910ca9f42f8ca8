"""Ordinal (graded) evaluation: QWK, MAE, Kendall tau-b, Spearman rho, within-k accuracy,
per-grade and threshold sensitivity / specificity, confusion matrix.

Grades are integers ``0 .. K-1`` and distances are differences of grade *values*, never of
positions among the grades present: rare grades are often absent from a test fold, and
position-based code (dlordinal 2.7's AMAE / MMAE / 1-off, scikit-learn's kappa without
``labels=``) is then wrong. Pass ``num_classes`` so absent grades still get their row.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy import stats

from .._distributed import all_reduce_numbers, require_process_group
from .._validation import check_choice, check_int, fmt_shape


def _grades(y_true: Any, y_pred: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    def arr(x: Any, name: str) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        a = np.asarray(x)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise ValueError(f"`{name}` must be a 1-D array of grades; got shape {fmt_shape(a.shape)}")
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise TypeError(f"`{name}` must hold integer grades; got non-integer or non-finite values")
            a = a.astype(np.int64)
        elif a.dtype.kind not in "iub":
            raise TypeError(f"`{name}` must hold integer grades; got dtype {a.dtype}")
        return a.astype(np.int64)

    t, p = arr(y_true, "y_true"), arr(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"`y_true` and `y_pred` must have the same length; got {len(t)} and {len(p)}")
    if t.size == 0:
        raise ValueError("`y_true` is empty: ordinal metrics need at least one sample")
    lo, hi = min(t.min(), p.min()), max(t.max(), p.max())
    if num_classes is None:
        k = int(hi) + 1
    else:
        k = check_int(num_classes, "num_classes", low=2)
        if hi >= k:
            raise ValueError(f"grades must lie in [0, {k - 1}] (num_classes={k}); got a maximum of {int(hi)}")
    if lo < 0:
        raise ValueError(f"grades must be >= 0; got a minimum of {int(lo)}")
    return t, p, max(k, 2)


def ordinal_confusion_matrix(
    y_true: Any, y_pred: Any, num_classes: int | None = None, *, distributed: bool = False
) -> np.ndarray:
    """``[K, K]`` counts, rows = true grade, columns = predicted grade; absent grades get zero rows.

    ``distributed=True`` (under ``torch.distributed``; needs ``num_classes``, so that every rank has
    the same ``K``) sums the matrices of every rank: the QWK, MAE, within-k accuracy and
    sensitivity / specificity below are all functions of it, so they take ``distributed`` too.

    Examples:
        >>> ordinal_confusion_matrix([0, 1, 2, 2], [0, 1, 1, 2], num_classes=3)  # rows: true, columns: predicted
        array([[1, 0, 0],
               [0, 1, 0],
               [0, 1, 1]])
    """
    if distributed:
        if num_classes is None:
            raise ValueError("distributed=True needs num_classes: every rank must count the same grades")
        require_process_group("ordinal_confusion_matrix")
    t, p, k = _grades(y_true, y_pred, num_classes)
    matrix = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    if distributed:
        (total,) = all_reduce_numbers(matrix)
        matrix = np.rint(total).astype(np.int64)
    return matrix


def _distance_counts(y_true: Any, y_pred: Any, num_classes: int | None, distributed: bool) -> tuple[np.ndarray, int]:
    """``|grade - prediction|`` of every sample, as counts per distance (over every rank with ``distributed``)."""
    o = ordinal_confusion_matrix(y_true, y_pred, num_classes, distributed=distributed)
    k = o.shape[0]
    grid = np.arange(k)
    distance = np.abs(grid[:, None] - grid[None, :])
    return np.bincount(distance.ravel(), weights=o.ravel().astype(np.float64), minlength=k), int(o.sum())


def quadratic_weighted_kappa(
    y_true: Any, y_pred: Any, num_classes: int | None = None, *, weights: str = "quadratic", distributed: bool = False
) -> float:
    r"""Cohen's weighted kappa, ``1 - sum(W O) / sum(W E)``, with ``W_ij = (i - j)^2`` (or ``|i - j|``
    for ``weights="linear"``), O the confusion matrix and E the outer product of its marginals.

    Equals ``sklearn.metrics.cohen_kappa_score(y_true, y_pred, weights=..., labels=range(K))``.
    When every sample (true and predicted) has the same grade, kappa is undefined: NaN with a warning.

    Examples:
        >>> quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3])
        1.0
        >>> round(quadratic_weighted_kappa([0, 1, 2, 3], [0, 2, 2, 1]), 4)  # = sklearn cohen_kappa_score
        0.375
    """
    check_choice(weights, "weights", ("quadratic", "linear"))
    o = ordinal_confusion_matrix(y_true, y_pred, num_classes, distributed=distributed).astype(np.float64)
    k = o.shape[0]
    grid = np.arange(k)
    d = np.abs(grid[:, None] - grid[None, :]).astype(np.float64)
    w = d**2 if weights == "quadratic" else d
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    denominator = (w * e).sum()
    if denominator == 0:
        warnings.warn("weighted kappa is undefined when all grades are identical; returning NaN", stacklevel=2)
        return float("nan")
    return float(1.0 - (w * o).sum() / denominator)


def mean_absolute_error(
    y_true: Any, y_pred: Any, num_classes: int | None = None, *, distributed: bool = False
) -> float:
    """Mean absolute difference of grades, ``mean |y - y_hat|``.

    Examples:
        >>> mean_absolute_error([0, 1, 2, 3], [0, 2, 2, 1])  # (0 + 1 + 0 + 2) / 4
        0.75
    """
    if distributed:
        counts, n = _distance_counts(y_true, y_pred, num_classes, True)
        return float((counts * np.arange(len(counts))).sum() / n)
    t, p, _ = _grades(y_true, y_pred, num_classes)
    return float(np.abs(t - p).mean())


def within_k_accuracy(
    y_true: Any, y_pred: Any, k: int = 1, num_classes: int | None = None, *, distributed: bool = False
) -> float:
    """Fraction of predictions at most ``k`` grades away from the truth (``k = 0``: accuracy).

    Examples:
        >>> within_k_accuracy([0, 1, 2, 3], [0, 2, 2, 1], k=1)  # |error| <= 1 for 3 of 4
        0.75
    """
    k = check_int(k, "k", low=0)
    if distributed:
        counts, n = _distance_counts(y_true, y_pred, num_classes, True)
        return float(counts[: k + 1].sum() / n)
    t, p, _ = _grades(y_true, y_pred, num_classes)
    return float((np.abs(t - p) <= k).mean())


def accuracy(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Exact-grade accuracy.

    Examples:
        >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
        0.75
    """
    return within_k_accuracy(y_true, y_pred, 0, num_classes)


def _rank_correlation(fn, y_true: Any, y_pred: Any, num_classes: int | None) -> float:
    t, p, _ = _grades(y_true, y_pred, num_classes)
    if np.all(t == t[0]) or np.all(p == p[0]):
        warnings.warn("rank correlation is undefined for a constant input; returning NaN", stacklevel=3)
        return float("nan")
    return float(fn(t, p).statistic)


def kendall_tau(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Kendall's tau-b (tie-corrected), as ``scipy.stats.kendalltau``. NaN for a constant input.

    Examples:
        >>> kendall_tau([0, 1, 2, 3], [0, 1, 2, 3]), kendall_tau([0, 1, 2, 3], [3, 2, 1, 0])
        (1.0, -1.0)
    """
    return _rank_correlation(lambda a, b: stats.kendalltau(a, b, variant="b"), y_true, y_pred, num_classes)


def spearman_rho(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Spearman's rank correlation with average ranks for ties, as ``scipy.stats.spearmanr``.

    Examples:
        >>> round(spearman_rho([0, 1, 2, 3], [0, 2, 1, 3]), 12)  # 1 - 6 * 2 / (4 * 15)
        0.8
    """
    return _rank_correlation(stats.spearmanr, y_true, y_pred, num_classes)


def sensitivity_specificity(
    y_true: Any, y_pred: Any, num_classes: int | None = None, *, distributed: bool = False
) -> dict[str, dict[str, list]]:
    """Sensitivity and specificity two ways.

    - ``"per_grade"``: grade k against all others (one-vs-rest), for k = 0 .. K-1.
    - ``"threshold"``: "grade >= k" against "grade < k", for k = 1 .. K-1 — the form used
      clinically ("moderate or worse"), with predictions thresholded the same way.

    Each is a dict of lists: ``grade`` (or ``threshold``), ``sensitivity``, ``specificity``,
    ``positives`` and ``negatives`` (true counts). Undefined values (no positives or no
    negatives in ``y_true``) are NaN.

    Examples:
        >>> r = sensitivity_specificity([0, 1, 2, 2], [0, 1, 1, 2], num_classes=3)
        >>> r["threshold"]["threshold"], r["threshold"]["sensitivity"]  # "grade >= 2": 1 of 2 found
        ([1, 2], [1.0, 0.5])
    """
    o = ordinal_confusion_matrix(y_true, y_pred, num_classes, distributed=distributed).astype(np.float64)
    k = o.shape[0]
    n = o.sum()

    def rates(tp: float, pos: float, tn: float, neg: float) -> tuple[float, float]:
        return (float(tp / pos) if pos else float("nan"), float(tn / neg) if neg else float("nan"))

    per_grade: dict[str, list] = {"grade": [], "sensitivity": [], "specificity": [], "positives": [], "negatives": []}
    for g in range(k):
        pos = o[g].sum()
        tp = o[g, g]
        tn = n - pos - (o[:, g].sum() - tp)
        sens, spec = rates(tp, pos, tn, n - pos)
        for key, v in zip(per_grade, (g, sens, spec, int(pos), int(n - pos)), strict=True):
            per_grade[key].append(v)
    threshold: dict[str, list] = {"threshold": [], "sensitivity": [], "specificity": [], "positives": [],
                                  "negatives": []}
    for g in range(1, k):
        pos = o[g:].sum()
        tp = o[g:, g:].sum()
        tn = o[:g, :g].sum()
        sens, spec = rates(tp, pos, tn, n - pos)
        for key, v in zip(threshold, (g, sens, spec, int(pos), int(n - pos)), strict=True):
            threshold[key].append(v)
    return {"per_grade": per_grade, "threshold": threshold}
