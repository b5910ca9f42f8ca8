"""``torchmetrics.Metric`` versions of medloss's metrics, for Lightning and other torchmetrics users.

Their states are O(n_bins) / O(K^2) sums with ``dist_reduce_fx="sum"``: memory and the all-reduce
traffic under DDP do not grow with the number of samples (torchmetrics' own ``CalibrationError``
keeps every confidence and accuracy: O(N) memory, all-gathered). The values equal medloss's
functions on all the samples at once. Needs ``pip install 'medloss[lightning]'`` (torchmetrics).
"""

from __future__ import annotations

from typing import Any

import torch

from .._deprecation import renamed_keywords
from .._optional import require
from .._validation import check_choice, check_int
from ..calibration._inputs import as_probs_labels, top_label
from ..calibration.metrics import NORMS, _calibration_error_from_bins, _uniform_bin_index

_tm = require("torchmetrics", "medloss.integrations.torchmetrics")


class CalibrationError(_tm.Metric):
    r"""Top-label expected calibration error (l1 / l2 / max norm) with uniform bins, as
    :func:`medloss.calibration.expected_calibration_error`, accumulated batch by batch in ``3 * n_bins``
    float64 sums.

    Args:
        n_bins: number of equal-width bins (default 15).
        norm: ``"l1"`` (ECE, default), ``"l2"`` or ``"max"`` (MCE).
        **kwargs: passed to ``torchmetrics.Metric`` (``sync_on_compute``, ``process_group``, ...).

    Returns:
        ``compute()`` returns the calibration error of every batch seen, a float64 0-d tensor.

    Raises:
        ValueError: ``n_bins`` < 1 or an unknown ``norm``; ``update`` raises as
            :func:`medloss.calibration.expected_calibration_error`.

    Examples:
        >>> import torch
        >>> from medloss.calibration import expected_calibration_error
        >>> metric = CalibrationError(n_bins=10)
        >>> probs, labels = torch.softmax(torch.randn(100, 3), 1), torch.randint(0, 3, (100,))
        >>> metric.update(probs[:60], labels[:60]); metric.update(probs[60:], labels[60:])
        >>> abs(float(metric.compute()) - expected_calibration_error(probs, labels, n_bins=10)) < 1e-12
        True
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, n_bins: int = 15, norm: str = "l1", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_bins = check_int(n_bins, "n_bins", low=1)
        self.norm = check_choice(norm, "norm", NORMS)
        for name in ("counts", "sum_conf", "sum_correct"):
            self.add_state(name, default=torch.zeros(self.n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        p, y = as_probs_labels(probs, labels)
        conf, correct = top_label(p, y)
        idx = _uniform_bin_index(conf, self.n_bins)
        self.counts += torch.zeros_like(self.counts).index_add_(0, idx, torch.ones_like(conf, dtype=torch.float64))
        self.sum_conf += torch.zeros_like(self.sum_conf).index_add_(0, idx, conf.to(torch.float64))
        self.sum_correct += torch.zeros_like(self.sum_correct).index_add_(0, idx, correct.to(torch.float64))

    def compute(self) -> torch.Tensor:
        value = _calibration_error_from_bins(self.counts.cpu().numpy(), self.sum_conf.cpu().numpy(),
                                            self.sum_correct.cpu().numpy(), self.norm)
        return torch.tensor(value, dtype=torch.float64)


class QuadraticWeightedKappa(_tm.Metric):
    r"""Cohen's weighted kappa of ordinal grades (quadratic or linear weights), as
    :func:`medloss.metrics.quadratic_weighted_kappa`, accumulated in a ``[K, K]`` confusion matrix.

    Args:
        num_classes: the number of grades K.
        weights: ``"quadratic"`` (default) or ``"linear"``.
        **kwargs: passed to ``torchmetrics.Metric``.

    Returns:
        ``compute()`` returns the weighted kappa of every batch seen, a float64 0-d tensor.

    Raises:
        ValueError: ``num_classes`` < 2 or an unknown ``weights``; ``update`` with ``preds`` and ``labels`` of
            different lengths or grades outside ``[0, K)``.

    Examples:
        >>> import torch
        >>> metric = QuadraticWeightedKappa(num_classes=4)
        >>> metric.update(torch.tensor([0, 2, 2, 1]), torch.tensor([0, 1, 2, 3]))  # preds, labels
        >>> round(float(metric.compute()), 4)  # = medloss.metrics.quadratic_weighted_kappa
        0.375
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, weights: str = "quadratic", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_int(num_classes, "num_classes", low=2)
        self.weights = check_choice(weights, "weights", ("quadratic", "linear"))
        self.add_state("confusion", default=torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64),
                       dist_reduce_fx="sum")

    @renamed_keywords(y_pred="preds", y_true="labels")
    def update(self, preds: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the predicted and true grades of a batch to the confusion matrix (prediction first)."""
        t, p = torch.as_tensor(labels).long().flatten(), torch.as_tensor(preds).long().flatten()
        k = self.num_classes
        if t.shape != p.shape:
            raise ValueError(f"`preds` and `labels` must have the same length; got {p.numel()} and {t.numel()}")
        if bool(((t < 0) | (t >= k) | (p < 0) | (p >= k)).any()):
            raise ValueError(f"grades must lie in [0, {k - 1}] (num_classes={k})")
        cells = (t * k + p).to(self.confusion.device)
        self.confusion += torch.bincount(cells, minlength=k * k).reshape(k, k).to(torch.float64)

    def compute(self) -> torch.Tensor:
        o = self.confusion
        grid = torch.arange(self.num_classes, device=o.device, dtype=torch.float64)
        d = (grid[:, None] - grid[None, :]).abs()
        w = d**2 if self.weights == "quadratic" else d
        e = torch.outer(o.sum(1), o.sum(0)) / o.sum()
        return 1.0 - (w * o).sum() / (w * e).sum()


__all__ = ["CalibrationError", "QuadraticWeightedKappa"]
