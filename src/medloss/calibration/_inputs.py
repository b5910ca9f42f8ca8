"""Validation and top-label reduction of (probabilities, labels) pairs for the calibration metrics."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import as_tensor, check_class_indices, check_float_tensor, fmt_shape

#: rows of a probability matrix must sum to one within this tolerance
SUM_ATOL = 1e-3


def as_probs_labels(
    probs: Any, labels: Any, *, ignore_index: int | None = None, sample_weight: Any = None
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and return ``(probs, labels)`` as tensors (and the weights, when ``sample_weight``
    is given: ``(probs, labels, weights)``).

    ``probs`` is ``[N, K]`` (K >= 2, rows on the simplex) or ``[N]`` / ``[N, 1]`` positive-class
    probabilities, returned as ``[N, K]`` or ``[N]``; ``labels`` are integers in ``[0, K)``
    (``{0, 1}`` for binary). Samples whose label equals ``ignore_index`` are dropped first (as
    torchmetrics). ``sample_weight``: ``[N]`` finite weights >= 0 with a positive sum (as
    scikit-learn). Every problem raises a ``ValueError`` / ``TypeError`` naming the argument.
    """
    p = as_tensor(probs, "probs")
    y = as_tensor(labels, "labels")
    w = None if sample_weight is None else as_tensor(sample_weight, "sample_weight")
    if ignore_index is not None and y.shape[:1] == p.shape[:1]:
        p, y, w = _drop_ignored(p, y, w, ignore_index)
    p, y = _shaped_probs_labels(p, y)
    n_classes = 2 if p.ndim == 1 else p.shape[1]
    check_class_indices(y, "labels", n_classes)
    _check_probability_values(p)
    if w is None:
        return p, y
    return p, y, check_sample_weight(w, p.shape[0])


def _drop_ignored(p: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None,
                  ignore_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The samples whose label is not ``ignore_index`` (an error if none is left)."""
    keep = (y.reshape(y.shape[0], -1)[:, 0] if y.ndim == 2 else y) != ignore_index
    if bool(keep.all()):
        return p, y, w
    if not bool(keep.any()):
        raise ValueError(f"every label equals ignore_index={ignore_index}: no sample left to evaluate")
    return p[keep], y[keep], None if w is None or w.shape[:1] != keep.shape else w[keep]


def _shaped_probs_labels(p: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``probs`` as ``[N, K]`` or ``[N]`` floats and ``labels`` as ``[N]`` integers (whole floats accepted)."""
    check_float_tensor(p, "probs")
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim not in (1, 2):
        raise ValueError(f"`probs` must be [N, K] class probabilities or [N] positive-class probabilities; "
                         f"got {fmt_shape(p.shape)}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"`labels` must be a 1-D array of integer labels; got shape {fmt_shape(y.shape)}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"`probs` and `labels` must have the same length; got {p.shape[0]} and {y.shape[0]}")
    if p.shape[0] == 0:
        raise ValueError("`probs` is empty: calibration metrics need at least one sample")
    if torch.is_floating_point(y):
        if not bool((y == y.round()).all()):
            raise TypeError("`labels` must hold integer class labels; got non-integer floats")
        y = y.long()
    return p, y


def check_sample_weight(w: torch.Tensor, n: int) -> torch.Tensor:
    """``[n]`` finite weights >= 0 with a positive sum, as float64 on their own device."""
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"`sample_weight` must be 1-D with one weight per sample ({n}); got {fmt_shape(w.shape)}")
    w = w.to(torch.float64)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("`sample_weight` must hold finite weights >= 0")
    if not bool(w.sum() > 0):
        raise ValueError("`sample_weight` sums to 0: no sample carries weight")
    return w


def _check_probability_values(p: torch.Tensor) -> None:
    # Two cheap passes: a global min/max (NaN propagates into it) and the row sums. A global
    # reduction is ~7x faster on CPU than a per-row one over a short last dim.
    lo, hi = (float(v) for v in torch.aminmax(p))
    if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
        if bool(torch.isnan(p).any()):
            raise ValueError("`probs` contains NaN")
        raise ValueError(f"`probs` must be probabilities in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]")
    if p.ndim == 1:
        return
    if p.shape[1] < 2:
        raise ValueError(f"`probs` needs K >= 2 columns for multiclass input; got {fmt_shape(p.shape)}")
    err = float(p.sum(1).sub_(1.0).abs_().max())
    if err > SUM_ATOL:
        raise ValueError(
            f"`probs` rows must sum to 1 (class probabilities); the largest deviation is {err:.3g}. "
            "Pass softmax outputs, not logits."
        )


def top_label(p: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and (boolean) correctness used for reliability.

    Binary ``[N]``: the positive-class probability and the label (reliability of P(y = 1), as
    torchmetrics and scikit-learn). Multiclass ``[N, K]``: the top-label confidence ``max_k p_k``
    and whether ``argmax`` (first index on ties, as ``torch.argmax``) equals the label.
    """
    if p.ndim == 1:
        return p, y.bool()
    conf = p.amax(1)
    correct = p.gather(1, y.unsqueeze(1)).squeeze(1) == conf
    # `p_y == max` equals `argmax == y` unless an earlier class ties the maximum; a tie needs
    # conf <= 1/2 on a row that sums to one, so only those rows are re-checked with argmax
    suspect = correct & (conf <= 0.5 + SUM_ATOL) & (y > 0)
    if p.device.type != "cpu":  # no host round trip for the row indices: argmax on every row
        return conf, torch.where(suspect, p.argmax(1) == y, correct)
    rows = torch.nonzero(suspect).squeeze(1)
    if rows.numel():
        correct[rows] = p[rows].argmax(1) == y[rows]
    return conf, correct
