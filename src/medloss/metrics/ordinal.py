"""Ordinal (graded) evaluation: QWK, MAE, Kendall tau-b, Spearman rho, within-k accuracy,
per-grade and threshold sensitivity / specificity, confusion matrix.

Grades are integers ``0 .. K-1`` and distances are differences of grade *values*, never of
positions among the grades present: rare grades are often absent from a test fold, and
position-based code (dlordinal 2.7's AMAE / MMAE / 1-off, scikit-learn's kappa without
``labels=``) is then wrong. Pass ``num_classes`` so absent grades still get their row.

Every function takes the predicted grades first and the true grades second, ``(preds, labels)``, as
the losses and the calibration metrics do (medloss < 0.2 took ``(y_true, y_pred)``: those keywords
still work with a FutureWarning, and the two functions whose value depends on the order warn when
both arrive by position).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy import stats

from .._deprecation import renamed_keywords, reordered_positionals
from .._distributed import all_reduce_numbers, require_process_group
from .._validation import check_choice, check_int, fmt_shape

_RENAMED = {"y_pred": "preds", "y_true": "labels"}
_GRADES_ARGS = """preds: predicted grades, integers ``0 .. K-1`` (1-D array, list or tensor; ``[N, 1]`` is
            taken as ``[N]``).
        labels: true grades, same length.
        num_classes: ``K`` (default: the largest grade seen + 1); pass it so absent grades get their row."""
_GRADES_RAISES = """ValueError: ``preds`` and ``labels`` differ in length, are empty, not 1-D, or hold a grade outside
            ``[0, num_classes - 1]``.
        TypeError: a grade is not an integer (floats must hold whole numbers)."""


def _grades(preds: Any, labels: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(true grades, predicted grades, K)`` as int64 arrays, checked."""
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

    p, t = arr(preds, "preds"), arr(labels, "labels")
    if t.shape != p.shape:
        raise ValueError(f"`preds` and `labels` must have the same length; got {len(p)} and {len(t)}")
    if t.size == 0:
        raise ValueError("`labels` is empty: ordinal metrics need at least one sample")
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


def _with_shared_docs(fn):
    fn.__doc__ = fn.__doc__.replace("{grades_args}", _GRADES_ARGS).replace("{grades_raises}", _GRADES_RAISES)
    return fn


@reordered_positionals("preds", "labels", old_order="(y_true, y_pred)")
@renamed_keywords(**_RENAMED)
@_with_shared_docs
def ordinal_confusion_matrix(
    preds: Any, labels: Any, num_classes: int | None = None, *, distributed: bool = False
) -> np.ndarray:
    """Counts of (true grade, predicted grade) pairs; absent grades get zero rows.

    ``distributed=True`` (under ``torch.distributed``; needs ``num_classes``, so that every rank has
    the same ``K``) sums the matrices of every rank: the QWK, MAE, within-k accuracy and
    sensitivity / specificity below are all functions of it, so they take ``distributed`` too.

    Args:
        {grades_args}
        distributed: sum over every rank of the process group (default False).

    Returns:
        ``[K, K]`` int64 array, rows = true grade, columns = predicted grade (as
        ``sklearn.metrics.confusion_matrix(labels, preds, labels=range(K))``).

    Raises:
        {grades_raises}
        ValueError: ``distributed=True`` without ``num_classes``.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> ordinal_confusion_matrix([0, 1, 1, 2], labels=[0, 1, 2, 2], num_classes=3)  # rows: true
        array([[1, 0, 0],
               [0, 1, 0],
               [0, 1, 1]])
    """
    if distributed:
        if num_classes is None:
            raise ValueError("distributed=True needs num_classes: every rank must count the same grades")
        require_process_group("ordinal_confusion_matrix")
    t, p, k = _grades(preds, labels, num_classes)
    matrix = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    if distributed:
        (total,) = all_reduce_numbers(matrix)
        matrix = np.rint(total).astype(np.int64)
    return matrix


def _confusion(preds: Any, labels: Any, num_classes: int | None, distributed: bool) -> np.ndarray:
    """The confusion matrix without the order warning (callers pass by keyword)."""
    return ordinal_confusion_matrix(preds, labels=labels, num_classes=num_classes, distributed=distributed)


def _distance_counts(preds: Any, labels: Any, num_classes: int | None, distributed: bool) -> tuple[np.ndarray, int]:
    """``|grade - prediction|`` of every sample, as counts per distance (over every rank with ``distributed``)."""
    o = _confusion(preds, labels, num_classes, distributed)
    k = o.shape[0]
    grid = np.arange(k)
    distance = np.abs(grid[:, None] - grid[None, :])
    return np.bincount(distance.ravel(), weights=o.ravel().astype(np.float64), minlength=k), int(o.sum())


@renamed_keywords(**_RENAMED)
@_with_shared_docs
def quadratic_weighted_kappa(
    preds: Any, labels: Any, num_classes: int | None = None, *, weights: str = "quadratic", distributed: bool = False
) -> float:
    r"""Cohen's weighted kappa, ``1 - sum(W O) / sum(W E)``, with ``W_ij = (i - j)^2`` (or ``|i - j|``
    for ``weights="linear"``), O the confusion matrix and E the outer product of its marginals.

    Equals ``sklearn.metrics.cohen_kappa_score(labels, preds, weights=..., labels=range(K))``; the
    value does not depend on the order of ``preds`` and ``labels``.

    Args:
        {grades_args}
        weights: ``"quadratic"`` (default) or ``"linear"``.
        distributed: over every rank of the process group (default False; needs ``num_classes``).

    Returns:
        The kappa in [-1, 1] as a float; NaN with a warning when every sample, true and predicted,
        has the same grade (kappa is undefined then).

    Raises:
        {grades_raises}
        ValueError: ``weights`` is not ``"quadratic"`` or ``"linear"``.

    Examples:
        >>> quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3])
        1.0
        >>> round(quadratic_weighted_kappa([0, 2, 2, 1], [0, 1, 2, 3]), 4)  # = sklearn cohen_kappa_score
        0.375
    """
    check_choice(weights, "weights", ("quadratic", "linear"))
    o = _confusion(preds, labels, num_classes, distributed).astype(np.float64)
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


@renamed_keywords(**_RENAMED)
@_with_shared_docs
def mean_absolute_error(
    preds: Any, labels: Any, num_classes: int | None = None, *, distributed: bool = False
) -> float:
    """Mean absolute difference of grades, ``mean |y - y_hat|``.

    Args:
        {grades_args}
        distributed: over every rank of the process group (default False; needs ``num_classes``).

    Returns:
        The mean absolute error in grades, a float >= 0.

    Raises:
        {grades_raises}

    Examples:
        >>> mean_absolute_error([0, 2, 2, 1], [0, 1, 2, 3])  # (0 + 1 + 0 + 2) / 4
        0.75
    """
    if distributed:
        counts, n = _distance_counts(preds, labels, num_classes, True)
        return float((counts * np.arange(len(counts))).sum() / n)
    t, p, _ = _grades(preds, labels, num_classes)
    return float(np.abs(t - p).mean())


@renamed_keywords(**_RENAMED)
@_with_shared_docs
def within_k_accuracy(
    preds: Any, labels: Any, k: int = 1, num_classes: int | None = None, *, distributed: bool = False
) -> float:
    """Fraction of predictions at most ``k`` grades away from the truth (``k = 0``: accuracy).

    Args:
        {grades_args}
        k: the largest error in grades that counts as correct (default 1).
        distributed: over every rank of the process group (default False; needs ``num_classes``).

    Returns:
        The fraction in [0, 1] as a float.

    Raises:
        {grades_raises}
        ValueError: ``k`` < 0.

    Examples:
        >>> within_k_accuracy([0, 2, 2, 1], [0, 1, 2, 3], k=1)  # |error| <= 1 for 3 of 4
        0.75
    """
    k = check_int(k, "k", low=0)
    if distributed:
        counts, n = _distance_counts(preds, labels, num_classes, True)
        return float(counts[: k + 1].sum() / n)
    t, p, _ = _grades(preds, labels, num_classes)
    return float((np.abs(t - p) <= k).mean())


@renamed_keywords(**_RENAMED)
@_with_shared_docs
def accuracy(preds: Any, labels: Any, num_classes: int | None = None) -> float:
    """Exact-grade accuracy, ``within_k_accuracy(preds, labels, k=0)``.

    Args:
        {grades_args}

    Returns:
        The fraction of exact grades in [0, 1] as a float.

    Raises:
        {grades_raises}

    Examples:
        >>> accuracy([0, 1, 1, 2], [0, 1, 2, 2])
        0.75
    """
    return within_k_accuracy(preds, labels, 0, num_classes)


def _rank_correlation(fn, preds: Any, labels: Any, num_classes: int | None) -> float:
    t, p, _ = _grades(preds, labels, num_classes)
    if np.all(t == t[0]) or np.all(p == p[0]):
        warnings.warn("rank correlation is undefined for a constant input; returning NaN", stacklevel=3)
        return float("nan")
    return float(fn(t, p).statistic)


@renamed_keywords(**_RENAMED)
@_with_shared_docs
def kendall_tau(preds: Any, labels: Any, num_classes: int | None = None) -> float:
    """Kendall's tau-b (tie-corrected), as ``scipy.stats.kendalltau``.

    Args:
        {grades_args}

    Returns:
        tau-b in [-1, 1] as a float; NaN with a warning for a constant input.

    Raises:
        {grades_raises}

    Examples:
        >>> kendall_tau([0, 1, 2, 3], [0, 1, 2, 3]), kendall_tau([3, 2, 1, 0], [0, 1, 2, 3])
        (1.0, -1.0)
    """
    return _rank_correlation(lambda a, b: stats.kendalltau(a, b, variant="b"), preds, labels, num_classes)


@renamed_keywords(**_RENAMED)
@_with_shared_docs
def spearman_rho(preds: Any, labels: Any, num_classes: int | None = None) -> float:
    """Spearman's rank correlation with average ranks for ties, as ``scipy.stats.spearmanr``.

    Args:
        {grades_args}

    Returns:
        rho in [-1, 1] as a float; NaN with a warning for a constant input.

    Raises:
        {grades_raises}

    Examples:
        >>> round(spearman_rho([0, 2, 1, 3], [0, 1, 2, 3]), 12)  # 1 - 6 * 2 / (4 * 15)
        0.8
    """
    return _rank_correlation(stats.spearmanr, preds, labels, num_classes)


def _rates(tp: float, pos: float, tn: float, neg: float) -> tuple[float, float]:
    return (float(tp / pos) if pos else float("nan"), float(tn / neg) if neg else float("nan"))


def _per_grade(o: np.ndarray) -> dict[str, list]:
    n = o.sum()
    table: dict[str, list] = {"grade": [], "sensitivity": [], "specificity": [], "positives": [], "negatives": []}
    for g in range(o.shape[0]):
        pos = o[g].sum()
        tp = o[g, g]
        tn = n - pos - (o[:, g].sum() - tp)
        sens, spec = _rates(tp, pos, tn, n - pos)
        for key, v in zip(table, (g, sens, spec, int(pos), int(n - pos)), strict=True):
            table[key].append(v)
    return table


def _per_threshold(o: np.ndarray) -> dict[str, list]:
    n = o.sum()
    table: dict[str, list] = {"threshold": [], "sensitivity": [], "specificity": [], "positives": [],
                              "negatives": []}
    for g in range(1, o.shape[0]):
        pos = o[g:].sum()
        sens, spec = _rates(o[g:, g:].sum(), pos, o[:g, :g].sum(), n - pos)
        for key, v in zip(table, (g, sens, spec, int(pos), int(n - pos)), strict=True):
            table[key].append(v)
    return table


@reordered_positionals("preds", "labels", old_order="(y_true, y_pred)")
@renamed_keywords(**_RENAMED)
@_with_shared_docs
def sensitivity_specificity(
    preds: Any, labels: Any, num_classes: int | None = None, *, distributed: bool = False
) -> dict[str, dict[str, list]]:
    """Sensitivity and specificity two ways.

    - ``"per_grade"``: grade k against all others (one-vs-rest), for k = 0 .. K-1.
    - ``"threshold"``: "grade >= k" against "grade < k", for k = 1 .. K-1 — the form used
      clinically ("moderate or worse"), with predictions thresholded the same way.

    Swapping ``preds`` and ``labels`` swaps sensitivity with the positive predictive value: pass
    ``labels=`` by keyword when in doubt.

    Args:
        {grades_args}
        distributed: over every rank of the process group (default False; needs ``num_classes``).

    Returns:
        ``{"per_grade": ..., "threshold": ...}``, each a dict of lists: ``grade`` (or
        ``threshold``), ``sensitivity``, ``specificity``, ``positives`` and ``negatives`` (true
        counts). Undefined values (no positives or no negatives in ``labels``) are NaN.

    Raises:
        {grades_raises}

    Examples:
        >>> r = sensitivity_specificity([0, 1, 1, 2], labels=[0, 1, 2, 2], num_classes=3)
        >>> r["threshold"]["threshold"], r["threshold"]["sensitivity"]  # "grade >= 2": 1 of 2 found
        ([1, 2], [1.0, 0.5])
    """
    o = _confusion(preds, labels, num_classes, distributed).astype(np.float64)
    return {"per_grade": _per_grade(o), "threshold": _per_threshold(o)}
